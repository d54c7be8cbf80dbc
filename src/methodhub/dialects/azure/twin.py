"""What a device's twin request gets, whatever carries it (MQTT ``$iothub/twin/...`` topics or the
AMQP ``/twin`` links): one answer per operation, so the transports cannot drift apart.

:class:`DeviceTwins` answers from the registry's twins. A hub built without a twin store answers as
methodhub did before it had twins, so that SDK calls fail fast instead of hanging
(:func:`answer_twin_request`):

- a twin GET gets an empty twin (no desired properties: there is no API to set any);
- subscribing to desired-property updates (AMQP ``PUT``/``DELETE`` of
  ``/notifications/twin/properties/desired``; MQTT grants the subscription) succeeds, and no update
  ever comes;
- a reported-properties PATCH, and anything else, gets 405 with a message saying so.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from methodhub.dialects.azure.errors import utc_timestamp
from methodhub.errors import ErrorKind, HubError
from methodhub.registry.twins import Twin, desired_patches_since, patch_reported

if TYPE_CHECKING:
    from methodhub.registry import Identity

EMPTY_TWIN = b'{"desired":{"$version":1},"reported":{"$version":1}}'
TWIN_NOT_SUPPORTED = (
    b'{"errorCode":405000,"message":"methodhub does not store device twins; reported properties are '
    b'not kept. See docs/azure-compatibility.md."}'
)
"""IoT Hub's error body shape: Node's MQTT twin client ignores the status in the topic and fails a
request only when the body has an ``errorCode``."""
NEVER = "0001-01-01T00:00:00Z"
"""IoT Hub's "never" time."""
DESIRED_NOTIFICATIONS = "/notifications/twin/properties/desired"
"""The AMQP resource of desired-property update notifications (Node and C send it)."""


@dataclass(frozen=True, slots=True)
class TwinAnswer:
    """The status and body (JSON bytes, or empty) of the answer to one twin request, and the
    reported properties' new ``$version`` after a PATCH."""

    status: int
    body: bytes
    version: int | None = None


def answer_twin_request(operation: str, resource: str | None) -> TwinAnswer:
    """The answer to twin ``operation`` (``GET``, ``PATCH``, ``PUT``, ``DELETE``, any case) on
    ``resource`` (None or ``/`` for the whole twin, ``/properties/reported``, or
    :data:`DESIRED_NOTIFICATIONS`)."""
    operation = operation.upper()
    whole = resource in (None, "", "/")
    if operation == "GET" and whole:
        return TwinAnswer(200, EMPTY_TWIN)
    if (
        operation in ("PUT", "DELETE")
        and resource is not None
        and resource.rstrip("/") == DESIRED_NOTIFICATIONS
    ):
        return TwinAnswer(200, b"")
    return TwinAnswer(405, TWIN_NOT_SUPPORTED)


# -- the service's view (REST: GET/PATCH/PUT /twins/{id}) ---------------------------------------------


def _properties(values: dict[str, Any], metadata: dict[str, Any], version: int) -> dict[str, Any]:
    return {**values, "$metadata": metadata, "$version": version}


def device_properties(twin: Twin) -> bytes:
    """A device's twin GET answer: ``{"desired": {...}, "reported": {...}}``, each with ``$version``
    (and ``$metadata``, which the SDKs ignore), as IoT Hub sends it."""
    return json.dumps(
        {
            "desired": _properties(twin.desired, twin.desired_metadata, twin.desired_version),
            "reported": _properties(twin.reported, twin.reported_metadata, twin.reported_version),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def twin_json(twin: Twin, identity: Identity, connected: bool, since: float | None) -> dict[str, Any]:
    """The twin in IoT Hub's REST shape (azure-jobs-twins-query.md §3.2)."""
    doc: dict[str, Any] = {"deviceId": identity.device_id}
    if identity.module_id is not None:
        doc["moduleId"] = identity.module_id
    doc.update(
        etag=twin.etag,
        deviceEtag=identity.etag,
        version=twin.version,
        status=identity.status,
        statusReason=identity.status_reason,
        statusUpdateTime=utc_timestamp(identity.status_updated_at),
        connectionState="Connected" if connected else "Disconnected",
        lastActivityTime=utc_timestamp(since) if since else NEVER,
        cloudToDeviceMessageCount=0,
        authenticationType=identity.auth.type.value,
        x509Thumbprint={
            "primaryThumbprint": identity.auth.primary_thumbprint,
            "secondaryThumbprint": identity.auth.secondary_thumbprint,
        },
        modelId="",
    )
    if identity.module_id is None:
        doc["capabilities"] = {"iotEdge": identity.iot_edge}
    doc["tags"] = twin.tags
    doc["properties"] = {
        "desired": _properties(twin.desired, twin.desired_metadata, twin.desired_version),
        "reported": _properties(twin.reported, twin.reported_metadata, twin.reported_version),
    }
    return doc


def service_change(body: object) -> tuple[object | None, object | None]:
    """``(tags, desired)`` of a PATCH or PUT body (None where absent); raises ``INVALID_ARGUMENT``
    for a body that is not an object or that writes reported properties (the device's)."""
    if not isinstance(body, dict):
        raise HubError(ErrorKind.INVALID_ARGUMENT, "The twin must be a JSON object.")
    properties = body.get("properties")
    if properties is not None and not isinstance(properties, dict):
        raise HubError(ErrorKind.INVALID_ARGUMENT, "The twin's properties must be a JSON object.")
    properties = properties or {}
    if properties.get("reported") is not None:
        raise HubError(
            ErrorKind.INVALID_ARGUMENT,
            "Reported properties are written by the device only; the service writes tags and "
            "properties.desired.",
        )
    desired = properties.get("desired")
    if isinstance(desired, dict):  # $version/$metadata as read back by a GET are not properties
        desired = {k: v for k, v in desired.items() if k not in ("$version", "$metadata")}
    return body.get("tags"), desired


# -- the device's view, from the registry -----------------------------------------------------------------


class TwinStore(Protocol):
    """What device twin requests need of the registry (a :class:`~methodhub.registry.Registry` is one)."""

    async def get_twin(self, device_id: str, module_id: str | None = None) -> Twin | None: ...

    async def update_twin(
        self,
        device_id: str,
        module_id: str | None,
        change: Callable[[Twin], Twin],
        *,
        etag: str | None = None,
    ) -> Twin: ...


def _error(status: int, code: int, message: str) -> TwinAnswer:
    body = json.dumps({"errorCode": code, "message": message}, separators=(",", ":")).encode()
    return TwinAnswer(status, body)


class DeviceTwins:
    """Answers a device's twin requests from the registry, for MQTT and AMQP alike:

    - GET: 200 with ``{"desired": {...}, "reported": {...}}`` (each with ``$version``);
    - PATCH ``/properties/reported``: the JSON object merged into the reported properties (a ``null``
      removes a key), 204 with the new reported ``$version``; not an object or over a limit: 400
      with an IoT Hub error body;
    - PUT/DELETE :data:`DESIRED_NOTIFICATIONS`: 200 (the subscription itself is the transport's);
    - anything else: 405. The registry unreachable: 503.

    ``store`` None: the answers of a hub without twins (:func:`answer_twin_request`).
    """

    def __init__(self, store: TwinStore | None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def answer(
        self, device_id: str, module_id: str | None, operation: str, resource: str | None, body: bytes
    ) -> TwinAnswer:
        store = self.store
        operation = operation.upper()
        resource = (resource or "").rstrip("/")
        if store is None or (
            (operation != "GET" or resource)
            and not (operation == "PATCH" and resource == "/properties/reported")
        ):
            return answer_twin_request(operation, resource)
        try:
            if operation == "GET":
                twin = await store.get_twin(device_id, module_id)
                if twin is None:
                    return _error(404, 404001, f"'{device_id}' has no twin: it is not registered.")
                return TwinAnswer(200, device_properties(twin))
            try:
                patch = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                return _error(400, 400004, "The reported properties patch is not JSON.")
            now = self.clock()
            twin = await store.update_twin(device_id, module_id, lambda t: patch_reported(t, patch, now))
            return TwinAnswer(204, b"", twin.reported_version)
        except HubError as exc:
            if exc.kind is ErrorKind.SERVICE_UNAVAILABLE:
                return _error(503, 503001, "The registry is unavailable; retry.")
            if exc.kind in (ErrorKind.DEVICE_NOT_FOUND, ErrorKind.MODULE_NOT_FOUND):
                return _error(404, 404001, exc.message)
            return _error(400, 400004, exc.message)


# -- desired-property notifications ------------------------------------------------------------------------


def desired_updates(
    twin: Twin, last_sent: int | None, subscribed_at: float
) -> tuple[list[tuple[int, bytes]], int | None]:
    """The notifications to send a device whose last one carried desired ``$version`` ``last_sent``
    (None: none yet since it subscribed at ``subscribed_at``, epoch seconds: it is sent the
    changes made since), as ``(version, payload)`` oldest first, and the version it then has. Each
    payload is the patch with ``$version`` (IoT Hub's notification body); when patches it missed
    are no longer kept, one payload with the whole desired properties replaces them."""
    version = twin.desired_version
    if last_sent is not None and last_sent >= version:
        return [], last_sent
    patches = desired_patches_since(twin, last_sent, subscribed_at)
    if patches is None:
        patches = [(version, twin.desired)]
    if not patches:
        return [], last_sent
    updates = [
        (v, json.dumps({**patch, "$version": v}, separators=(",", ":"), ensure_ascii=False).encode())
        for v, patch in patches
    ]
    return updates, version
