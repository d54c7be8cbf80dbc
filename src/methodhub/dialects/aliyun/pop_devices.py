"""The POP API's device status and lookup actions (RegistryRead), answered as Alibaba's IoT Platform
(2018-01-20) answers them; :class:`~methodhub.dialects.aliyun.pop.AliyunApi` puts them in its action
table.

* ``GetDeviceStatus`` (IotId or ProductKey + DeviceName): ``Data: {Status, Timestamp}``.
* ``BatchGetDeviceState`` (``IotId.N``, or ProductKey + ``DeviceName.N``; at most 50 devices):
  ``DeviceStatusList: {DeviceStatus: [{IotId, DeviceName, Status, Timestamp, LastOnlineTime}]}``.
* ``BatchQueryDeviceDetail`` (ProductKey + ``DeviceName.N``; at most 100): ``Data: {Data: [...]}``,
  each entry the fields ``QueryDeviceDetail`` answers (:func:`device_detail`).
* ``QueryDevice`` (ProductKey; ``PageSize`` 1–50, default 10; ``CurrentPage`` from 1; ``NextToken``):
  ``Data: {DeviceInfo: [...]}``, newest device first, and ``Total``, ``PageSize``, ``PageCount``,
  ``Page``, ``NextToken`` (only when there is a next page).
* ``QueryDeviceStatistics`` (ProductKey optional: without it, every device of the hub):
  ``Data: {deviceCount, activeCount, onlineCount}`` — lower camel case, as Alibaba's SDK models read.

Status is ``DISABLE`` for a disabled identity, else ``ONLINE`` while the device is connected to any
node of the cluster (:class:`Presence`, the port ``QueryDeviceDetail`` uses), else ``OFFLINE``.
methodhub keeps no record of a device's first connection, so no device is ever ``UNACTIVE`` and
every registered device counts as activated (``activeCount == deviceCount``). Times a hub does not
know (when an offline device went offline, its IP address) are left out rather than made up.
Devices that do not exist are left out of batch answers (Alibaba documents this for
``BatchQueryDeviceDetail``; methodhub does the same for ``BatchGetDeviceState``). The decisions are
listed in docs/aliyun-compatibility.md.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from methodhub.dialects.aliyun.errors import required
from methodhub.errors import ErrorKind, HubError
from methodhub.registry import Identity, ProductDevice, Registry, validate_device_id, validate_product_names
from methodhub.registry.products import product_key_error

MAX_STATE_DEVICES = 50
"""``BatchGetDeviceState``: "单次调用本接口最多可查询50个设备的运行状态" [DOC 69906]."""
MAX_DETAIL_DEVICES = 100
"""``BatchQueryDeviceDetail``: "单次调用最多能查询100个设备" [DOC 123470]."""
PAGE_SIZE = (1, 50, 10)
"""``QueryDevice``'s PageSize: 1 to 50, default 10 [DOC 69905]."""
MAX_PAGE_WITHOUT_TOKEN = 10_000
"""``QueryDevice``: past PageSize × CurrentPage = 10,000 a NextToken is needed [DOC 69905]."""
MAX_DEVICES_LISTED = 1_000_000
"""``QueryDevice`` lists at most the first million devices of a product [DOC 69905]."""
STATISTICS_BATCH = 1000
"""Devices ``QueryDeviceStatistics`` reads (and asks the cluster about) at a time."""
_INDEXED = re.compile(r"([A-Za-z]+)\.([1-9][0-9]{0,5})")
_TOKEN_PREFIX = "mh1:"
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Presence(Protocol):
    """Who is connected right now, cluster-wide (the gateway answers)."""

    async def connection_states(self, targets: list[str]) -> dict[str, tuple[bool, float | None]]: ...


Lookup = Callable[[dict[str, str]], Awaitable[tuple[Identity, ProductDevice | None]]]
"""The device a request names (``IotId``, or ProductKey + DeviceName) and its Alibaba names."""


def gmt_time(epoch: float) -> str:
    """Alibaba's ``Gmt*`` detail fields: ``2019-06-21 20:31:42`` (methodhub prints UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def utc_time(epoch: float) -> str:
    """Alibaba's ``Utc*`` fields: ``2019-06-21T12:31:42.000Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(epoch))


def cookie_time(epoch: float) -> str:
    """``QueryDevice``'s ``GmtCreate`` / ``GmtModified``: ``Wed, 20-Feb-2019 02:16:09 GMT`` (English
    names whatever the process locale)."""
    t = time.gmtime(epoch)
    return f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year} " + time.strftime(
        "%H:%M:%S GMT", t
    )


def status_of(identity: Identity, connected: bool) -> str:
    """``DISABLE``, ``ONLINE`` or ``OFFLINE`` (never ``UNACTIVE``: see the module docstring)."""
    return "DISABLE" if identity.status != "enabled" else "ONLINE" if connected else "OFFLINE"


def device_detail(identity: Identity, device: ProductDevice | None, connected: bool) -> dict[str, Any]:
    """The fields ``QueryDeviceDetail`` and ``BatchQueryDeviceDetail`` answer for one device."""
    return {
        "IotId": identity.device_id,
        "ProductKey": device.product_key if device else None,
        "DeviceName": device.device_name if device else None,
        "DeviceSecret": device.device_secret if device else None,
        "Status": status_of(identity, connected),
        "NodeType": 0,
        "GmtCreate": gmt_time(identity.created_at),
        "UtcCreate": utc_time(identity.created_at),
    }


def _status_time(identity: Identity, connected: bool, since: float | None) -> int | None:
    """``Timestamp``, when the status last changed (ms): the connection's start while online, the
    identity's status change while disabled; None (left out) for an offline device."""
    if identity.status != "enabled":
        return int(identity.status_updated_at * 1000)
    if connected and since is not None:
        return int(since * 1000)
    return None


def repeat_list(params: dict[str, str], name: str, limit: int) -> list[str]:
    """The values of Alibaba's RepeatList ``{name}.1`` ... ``{name}.N``, by index (the legacy SDK
    leaves gaps where a value was None), duplicates dropped. Raises ``INVALID_ARGUMENT`` for more
    than ``limit`` values or an index that is not a positive integer."""
    indexed: list[tuple[int, str]] = []
    prefix = f"{name}."
    for key, value in params.items():
        if not key.startswith(prefix):
            continue
        match = _INDEXED.fullmatch(key)
        if match is None:
            raise HubError(
                ErrorKind.INVALID_ARGUMENT,
                f"{key!r} is not a list item: name them {name}.1, {name}.2, ... (at most {limit}).",
            )
        indexed.append((int(match.group(2)), value))
    if len(indexed) > limit:
        raise HubError(
            ErrorKind.INVALID_ARGUMENT,
            f"At most {limit} devices can be given in {name}.N in one call; got {len(indexed)}.",
        )
    return list(dict.fromkeys(value for _, value in sorted(indexed)))


def _page_number(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name)
    if not text:
        return default
    # isascii/len first: "²" is isdigit() but not int()
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not low <= int(text) <= high:
        raise HubError(
            ErrorKind.INVALID_PAGE_PARAMS,
            f"{name} must be an integer from {low} to {high}; got {text[:40]!r}.",
        )
    return int(text)


def _next_token(product_key: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{product_key}:{offset}".encode()).decode()


def _token_offset(token: str, product_key: str) -> int:
    """The offset a NextToken of :func:`_next_token` carries, for this product."""
    try:
        text = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
    except (binascii.Error, ValueError):
        text = ""
    key, _, offset = text.removeprefix(_TOKEN_PREFIX).rpartition(":")
    if (
        not text.startswith(_TOKEN_PREFIX)
        or key != product_key
        or not (offset.isdigit() and len(offset) <= 9)
    ):
        raise HubError(
            ErrorKind.INVALID_ARGUMENT,
            "NextToken is not one this hub gave for this ProductKey: pass the NextToken of the previous "
            "QueryDevice answer unchanged, or none for the first page.",
        )
    return int(offset)


def _product_key(params: dict[str, str]) -> str:
    product_key = required(params, "ProductKey")
    error = product_key_error(product_key)
    if error:
        raise HubError(ErrorKind.INVALID_ARGUMENT, error)
    return product_key


class DeviceQueries:
    """The five actions; each takes the request's parameters and gives the answer's fields (the
    caller adds ``RequestId`` and ``Success`` and renders errors)."""

    def __init__(self, registry: Registry, presence: Presence, lookup: Lookup) -> None:
        self._registry = registry
        self._presence = presence
        self._lookup = lookup

    async def get_device_status(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        identity, _ = await self._lookup(params)
        connected, since = (await self._presence.connection_states([identity.device_id]))[identity.device_id]
        data: dict[str, Any] = {"Status": status_of(identity, connected)}
        timestamp = _status_time(identity, connected, since)
        if timestamp is not None:
            data["Timestamp"] = timestamp
        return {"Data": data}

    async def batch_get_device_state(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        devices = await self._named_devices(params, MAX_STATE_DEVICES, by_iot_id=True)
        states = await self._presence.connection_states([identity.device_id for identity, _ in devices])
        entries = []
        for identity, device in devices:
            connected, since = states[identity.device_id]
            entry: dict[str, Any] = {
                "IotId": identity.device_id,
                "DeviceName": device.device_name if device else None,
                "Status": status_of(identity, connected),
            }
            timestamp = _status_time(identity, connected, since)
            if timestamp is not None:
                entry["Timestamp"] = timestamp
            if connected and since is not None:
                entry["LastOnlineTime"] = gmt_time(since)
            entries.append(entry)
        return {"DeviceStatusList": {"DeviceStatus": entries}}

    async def batch_query_device_detail(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        devices = await self._named_devices(params, MAX_DETAIL_DEVICES, by_iot_id=False)
        states = await self._presence.connection_states([identity.device_id for identity, _ in devices])
        details = [
            device_detail(identity, device, states[identity.device_id][0]) for identity, device in devices
        ]
        return {"Data": {"Data": details}}

    async def query_device(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        product_key = _product_key(params)
        low, high, default = PAGE_SIZE
        page_size = _page_number(params, "PageSize", default, low, high)
        current_page = _page_number(params, "CurrentPage", 1, 1, MAX_DEVICES_LISTED)
        token = params.get("NextToken")
        if token:
            offset = _token_offset(token, product_key)
        elif page_size * current_page > MAX_PAGE_WITHOUT_TOKEN:
            raise HubError(
                ErrorKind.INVALID_PAGE_PARAMS,
                f"PageSize × CurrentPage is {page_size * current_page}; past {MAX_PAGE_WITHOUT_TOKEN} "
                "page on with the NextToken of the previous answer.",
            )
        else:
            offset = page_size * (current_page - 1)
        if offset + page_size > MAX_DEVICES_LISTED:
            raise HubError(
                ErrorKind.INVALID_PAGE_PARAMS,
                f"QueryDevice lists the first {MAX_DEVICES_LISTED} devices of a product; this page starts "
                f"at device {offset + 1}.",
            )
        total = await self._registry.count_product_devices(product_key)
        devices = await self._registry.list_product_devices(product_key, limit=page_size, offset=offset)
        states = await self._presence.connection_states([device.device_id for device in devices])
        body: dict[str, Any] = {
            "Data": {"DeviceInfo": [_device_info(d, states[d.device_id][0]) for d in devices]},
            "Total": total,
            "PageSize": page_size,
            "PageCount": math.ceil(total / page_size),
            "Page": offset // page_size + 1,
        }
        if offset + len(devices) < min(total, MAX_DEVICES_LISTED) and devices:
            body["NextToken"] = _next_token(product_key, offset + len(devices))
        return body

    async def query_device_statistics(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        product_key = _product_key(params) if params.get("ProductKey") else None
        devices = online = 0
        offset = 0
        after: str | None = None
        while True:
            if product_key is None:
                identities = await self._registry.list_identities(limit=STATISTICS_BATCH, after=after)
                ids = [identity.device_id for identity in identities]
            else:
                batch = await self._registry.list_product_devices(
                    product_key, limit=STATISTICS_BATCH, offset=offset
                )
                ids = [device.device_id for device in batch]
            if not ids:
                break
            states = await self._presence.connection_states(ids)
            devices += len(ids)
            online += sum(1 for connected, _ in states.values() if connected)
            offset += len(ids)
            after = ids[-1]
            if len(ids) < STATISTICS_BATCH:
                break
        return {"Data": {"deviceCount": devices, "activeCount": devices, "onlineCount": online}}

    async def _named_devices(
        self, params: dict[str, str], limit: int, *, by_iot_id: bool
    ) -> list[tuple[Identity, ProductDevice | None]]:
        """The registered devices ``IotId.N`` (if ``by_iot_id`` and given) or ProductKey +
        ``DeviceName.N`` name, in the request's order; unknown devices are left out."""
        iot_ids = repeat_list(params, "IotId", limit) if by_iot_id else []
        found: list[tuple[Identity, ProductDevice | None]] = []
        if iot_ids:
            for iot_id in iot_ids:
                identity = await self._registry.get_identity(validate_device_id(iot_id))
                if identity is not None:
                    found.append((identity, await self._registry.find_product_device(iot_id)))
            return found
        names = repeat_list(params, "DeviceName", limit)
        if not names:
            either = "IotId.N, or ProductKey and DeviceName.N" if by_iot_id else "ProductKey and DeviceName.N"
            raise HubError(
                ErrorKind.MISSING_ARGUMENT,
                f"Give {either} (DeviceName.1, DeviceName.2, ...) to name the devices.",
            )
        product_key = _product_key(params)
        for name in names:
            device = await self._registry.get_product_device(*validate_product_names(product_key, name))
            if device is not None:
                found.append((device.identity, device))
        return found


def _device_info(device: ProductDevice, connected: bool) -> dict[str, Any]:
    """One ``QueryDevice`` entry (``DeviceInfo``)."""
    identity = device.identity
    return {
        "IotId": identity.device_id,
        "ProductKey": device.product_key,
        "DeviceName": device.device_name,
        "DeviceSecret": device.device_secret,
        "DeviceStatus": status_of(identity, connected),
        "GmtCreate": cookie_time(identity.created_at),
        "GmtModified": cookie_time(identity.updated_at),
        "UtcCreate": utc_time(identity.created_at),
        "UtcModified": utc_time(identity.updated_at),
    }
