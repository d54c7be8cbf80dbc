"""The Alibaba Cloud front door: IoT Platform's POP RPC API (version 2018-01-20) at ``/``.

``GET /?Action=...`` or ``POST /`` with parameters in the query and/or a form body, signed with a
shared access policy (AccessKeyId = policy name, AccessKeySecret = its key) in either of Alibaba's
schemes (:func:`signature_scheme`): V2, ``Signature`` in the query
(:mod:`methodhub.dialects.aliyun.signing`, ``aliyun-python-sdk-core``), or V3, ``Authorization:
ACS3-HMAC-SHA256 ...`` with the action and version in ``x-acs-action`` / ``x-acs-version``
(:mod:`methodhub.dialects.aliyun.acs3`, the Tea SDK ``alibabacloud_iot20180120``). Actions
(aliyun-rrpc-wire.md §2):

* ``RRpc`` (ServiceConnect): raw bytes to a device and back — system RRPC, or custom-topic RRPC
  with ``Topic``. Timeout 1000–8000 ms, Alibaba's range (the Azure front door keeps Azure's).
* ``InvokeThingService`` (ServiceConnect): a thing-model service, Alink JSON on the wire; ``IotId``
  (any methodhub device id, so Azure devices too) or ``ProductKey`` + ``DeviceName``. Synchronous
  (RRPC mode; Alibaba's 8 s limit is the response timeout) unless the product's TSL says the
  service is ``async`` (:attr:`AliyunApi.async_services`, :mod:`methodhub.dialects.aliyun.pop_tsl`):
  then ``{Data: {MessageId}}`` at once and a queued call.
* ``RegisterDevice`` / ``DeleteDevice`` (RegistryWrite), ``QueryDeviceDetail`` (RegistryRead).
* Batch service calls and jobs (:mod:`methodhub.dialects.aliyun.pop_jobs`, :meth:`AliyunApi.add_actions`).

Both calls run on the same :class:`~methodhub.calls.CallEngine` as Azure's direct methods, with the
hub's payload limit (128 KiB) and errors; only the answer's shape is Alibaba's
(:mod:`methodhub.dialects.aliyun.errors`). ``IotInstanceId``, ``RegionId``, ``Qos`` and ``ContentType``
are accepted and ignored: a hub is one instance in one region.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import string
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl

from methodhub import jsontext
from methodhub.api.outcomes import response_future
from methodhub.calls import Call, CallEngine, CallKind, CallOutcome
from methodhub.calls.model import CallOrigin
from methodhub.calls.quotas import NO_QUOTAS, Quotas
from methodhub.config import MAX_METHOD_PAYLOAD
from methodhub.dialects.aliyun.calls import call_data
from methodhub.dialects.aliyun.errors import new_request_id, pop_error, required, rrpc_error
from methodhub.dialects.aliyun.pop_auth import Acs3Check, PopAuthenticator
from methodhub.dialects.aliyun.pop_devices import DeviceQueries, device_detail, gmt_time, utc_time
from methodhub.errors import ErrorKind, HubError
from methodhub.http.messages import Handler, Request, Response
from methodhub.http.routing import Routes
from methodhub.registry import (
    Identity,
    ProductDevice,
    Registry,
    Right,
    product_device_id,
    split_product_device_id,
    validate_device_id,
    validate_product_names,
)

API_VERSION = "2018-01-20"
"""The IoT Platform API version ``aliyun-python-sdk-iot`` speaks."""
RRPC_TIMEOUT_MS = (1000, 8000)
"""``RRpc``'s ``Timeout`` range in ms [DOC 69797]. It fits the SDK's 10 s read timeout."""
SERVICE_TIMEOUT = 8.0
"""Seconds a synchronous thing service has to answer (Alibaba: 8 s) [DOC 69584]."""
MAX_MESSAGE = MAX_METHOD_PAYLOAD
"""The hub's payload limit (128 KiB) applies here too; it is tighter than Alibaba's 256 KB."""
MAX_TOPIC_BYTES = 128
"""Alibaba's topic length limit; it applies to ``Topic``."""
IDENTIFIER = re.compile(r"(?:[A-Za-z0-9_]{1,30}:)?[A-Za-z0-9_]{1,50}")
"""A TSL service identifier (letters, digits, ``_``, up to 50), optionally ``module:identifier``."""
UNIMPLEMENTED = frozenset({"AsyncRRpc", "Pub", "PubBroadcast", "SetDeviceProperty", "BatchRegisterDevice"})
"""Alibaba actions a migrating user may try that methodhub does not implement (yet)."""
_NAME_ALPHABET = string.ascii_letters + string.digits
POP_PARAMETERS = frozenset(
    {
        "Action",
        "Version",
        "AccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "Timestamp",
        "Format",
    }
)
"""The POP RPC style's common request parameters [DOC 69797 "Common parameters"]: a request to
``/`` carrying any of them is an API call (and gets the API's answer, e.g. ``MissingParameter``)."""
ACS3_HEADERS = ("authorization", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce")
"""Headers of the V3 signature: a request to ``/`` carrying any of them is an API call too."""
V2_PARAMETERS = ("Signature", "AccessKeyId", "SignatureMethod", "SignatureVersion", "SignatureNonce")
"""Parameters only a V2-signed request carries."""


class Presence(Protocol):
    """Who is connected right now (the gateway answers)."""

    async def connection_states(self, targets: list[str]) -> dict[str, tuple[bool, float | None]]: ...


class AsyncServices(Protocol):
    """Which services are asynchronous, and calling them
    (:class:`~methodhub.dialects.aliyun.pop_tsl.ThingModels`)."""

    async def call_type(self, target: str, identifier: str) -> str: ...

    async def invoke_async(self, target: str, identifier: str, args: bytes) -> str: ...


class MessageIds:
    """Alibaba-style MessageIds: 64-bit, unique and increasing within the process.

    ``(ms since 2020-01-01) << 22``, bumped by one when two calls share a millisecond: positive
    int64 until 2089, and time-ordered like Alibaba's own ids."""

    EPOCH_MS = 1_577_836_800_000

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        candidate = (int(time.time() * 1000) - self.EPOCH_MS) << 22
        self._last = max(self._last + 1, candidate)
        return self._last


FRONT_DOOR = "aliyun"
"""The call history's name for this API's calls."""
CALLER = "methodhub:caller"
"""The parameter :meth:`AliyunApi._authenticate_then_run` sets to the authenticated policy (the
AccessKeyId) once the signature is verified; no Alibaba parameter has a colon in its name."""


@dataclass(frozen=True, slots=True)
class _Action:
    right: Right
    run: Callable[[dict[str, str], str, str | None], Response | Awaitable[Response]]
    registry: bool = False
    """An identity registry operation: counted against the registry operations quota."""


def request_params(request: Request) -> dict[str, str]:
    """Every parameter of a POP request: the query plus, for a form body, its fields.

    Raises:
        HubError: ``MALFORMED_REQUEST`` for a repeated parameter (the signature would be ambiguous),
            a body that is not ``application/x-www-form-urlencoded``, or text that is not UTF-8.
    """
    return _merged(*_query_and_body(request))


def _merged(query: dict[str, str], body_pairs: list[tuple[str, str]]) -> dict[str, str]:
    params = dict(query)
    for name, value in body_pairs:
        if name in params:
            raise _repeated(name)
        params[name] = value
    return params


def _repeated(name: str) -> HubError:
    return HubError(ErrorKind.MALFORMED_REQUEST, f"The parameter {name!r} is given more than once.")


def _query_and_body(request: Request) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The query's parameters (each once) and the form body's pairs (see :func:`request_params`)."""
    query: dict[str, str] = {}
    for name, value in _parse_form(request.raw_query, "query"):
        if name in query:
            raise _repeated(name)
        query[name] = value
    pairs: list[tuple[str, str]] = []
    if request.body:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise HubError(
                ErrorKind.MALFORMED_REQUEST,
                "Send parameters in the query or as an application/x-www-form-urlencoded body.",
            )
        try:
            body = request.body.decode("ascii")
        except UnicodeDecodeError:
            raise HubError(ErrorKind.MALFORMED_REQUEST, "A form body is percent-encoded ASCII.") from None
        pairs = _parse_form(body, "body")
    return query, pairs


def _parse_form(text: str, where: str) -> list[tuple[str, str]]:
    if not text:
        return []
    try:
        return parse_qsl(text, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise HubError(ErrorKind.MALFORMED_REQUEST, f"The {where} is not percent-encoded UTF-8.") from None


def is_pop_call(request: Request) -> bool:
    """Whether a request to ``/`` is meant for the POP API: a POST (parameters may be in a form
    body), a query with one of :data:`POP_PARAMETERS`, or one of :data:`ACS3_HEADERS`. A plain
    ``GET /`` is a person."""
    if request.method not in ("GET", "HEAD"):
        return True
    return not POP_PARAMETERS.isdisjoint(request.query) or any(h in request.headers for h in ACS3_HEADERS)


def signature_scheme(request: Request) -> str:
    """``"acs3"`` or ``"v2"``: an ``Authorization`` header means V3 (whatever its scheme: an unknown
    one is refused naming it); else V2 parameters mean V2; else ``x-acs-*`` signature headers mean a
    V3 request without its Authorization; anything else is treated as V2 (and told what is missing)."""
    if "authorization" in request.headers:
        return "acs3"
    if any(name in request.query for name in V2_PARAMETERS):
        return "v2"
    if any(h in request.headers for h in ACS3_HEADERS):
        return "acs3"
    return "v2"


def _named(params: dict[str, str], headers: dict[str, str] | None, parameter: str, header: str) -> str:
    """``header``'s value (V3) or ``parameter``'s; both given must agree."""
    value = headers.get(header) if headers is not None else None
    if not value:
        if headers is None:
            return required(params, parameter)
        if not params.get(parameter):
            raise HubError(
                ErrorKind.MISSING_ARGUMENT,
                f'The header "{header}" (or the parameter "{parameter}") that is mandatory for processing '
                "this request is not supplied.",
            )
        return params[parameter]
    given = params.get(parameter)
    if given and given != value:
        raise HubError(
            ErrorKind.MALFORMED_REQUEST,
            f"The header {header} ({value[:60]!r}) and the parameter {parameter} ({given[:60]!r}) disagree.",
        )
    return value


def _names(params: dict[str, str]) -> tuple[str, str]:
    return validate_product_names(required(params, "ProductKey"), required(params, "DeviceName"))


def call_target(params: dict[str, str]) -> str:
    """``IotId`` if given (it wins, as on Alibaba), else the device id of ProductKey + DeviceName."""
    iot_id = params.get("IotId")
    if iot_id:
        return validate_device_id(iot_id)
    if not params.get("ProductKey") and not params.get("DeviceName"):
        raise HubError(
            ErrorKind.MISSING_ARGUMENT, "Give IotId, or ProductKey and DeviceName, to name the device."
        )
    return product_device_id(*_names(params))


def _rrpc_timeout(params: dict[str, str]) -> float:
    text = required(params, "Timeout")
    low, high = RRPC_TIMEOUT_MS
    # isascii/len first: "²" is isdigit() but not int(), and int() refuses 4,300+ digits (a 500).
    if not (text.isascii() and text.isdigit() and len(text) <= 6) or not low <= int(text) <= high:
        raise HubError(
            ErrorKind.INVALID_TIMEOUT,
            f"Timeout must be an integer from {low} to {high} (ms); got {text[:40]!r}.",
        )
    return int(text) / 1000


def _rrpc_message(params: dict[str, str]) -> bytes:
    text = required(params, "RequestBase64Byte")
    try:
        message = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HubError(
            ErrorKind.NOT_BASE64, "RequestBase64Byte is not base64 (RFC 4648, with padding)."
        ) from None
    if len(message) > MAX_MESSAGE:
        raise HubError(
            ErrorKind.PAYLOAD_TOO_LARGE,
            f"The message is {len(message)} bytes; the limit is {MAX_MESSAGE} bytes.",
        )
    return message


def _rrpc_topic(params: dict[str, str], product_key: str, device_name: str) -> str | None:
    topic = params.get("Topic")
    if not topic:
        return None
    own = f"/{product_key}/{device_name}/"
    if (
        not topic.startswith(own)
        or len(topic) == len(own)
        or any(c in topic for c in "+#")
        or "//" in topic
        or len(topic.encode()) > MAX_TOPIC_BYTES
    ):
        raise HubError(
            ErrorKind.INVALID_ARGUMENT,
            f"Topic must be one of the device's own topics, {own}..., without wildcards, at most "
            f"{MAX_TOPIC_BYTES} bytes; got {topic!r}.",
        )
    return topic


def thing_args(params: dict[str, str]) -> bytes:
    text = required(params, "Args")
    try:
        args = jsontext.loads(text)
    except jsontext.NotJson as exc:
        raise HubError(ErrorKind.INVALID_ARGUMENT, f"Args is not JSON: {exc}.") from None
    if not isinstance(args, dict):
        raise HubError(ErrorKind.INVALID_ARGUMENT, 'Args must be a JSON object ("{}" for none).')
    payload = text.encode()
    if len(payload) > MAX_MESSAGE:
        raise HubError(
            ErrorKind.PAYLOAD_TOO_LARGE, f"Args is {len(payload)} bytes; the limit is {MAX_MESSAGE} bytes."
        )
    return payload


class AliyunApi:
    """Handlers for the POP API. ``register()`` adds ``GET /`` and ``POST /`` to a :class:`Routes`."""

    def __init__(
        self, engine: CallEngine, registry: Registry, auth: PopAuthenticator, presence: Presence
    ) -> None:
        self._engine = engine
        self._registry = registry
        self._auth = auth
        self._presence = presence
        self._message_ids = MessageIds()
        self.async_services: AsyncServices | None = None
        """The thing models (set by the hub): without them every service is synchronous."""
        self.quotas: Quotas = NO_QUOTAS
        """The node's rate limits (set by the hub): calls and registry operations per second."""
        devices = DeviceQueries(registry, presence, self._lookup)  # pop_devices.py
        self._actions: dict[str, _Action] = {
            "RRpc": _Action(Right.SERVICE_CONNECT, self._rrpc),
            "InvokeThingService": _Action(Right.SERVICE_CONNECT, self._invoke_thing_service),
            **{
                name: _Action(right, self._guard(run), registry=True)
                for name, right, run in (
                    ("RegisterDevice", Right.REGISTRY_WRITE, self._register_device),
                    ("QueryDeviceDetail", Right.REGISTRY_READ, self._query_device_detail),
                    ("DeleteDevice", Right.REGISTRY_WRITE, self._delete_device),
                    ("GetDeviceStatus", Right.REGISTRY_READ, devices.get_device_status),
                    ("BatchGetDeviceState", Right.REGISTRY_READ, devices.batch_get_device_state),
                    ("BatchQueryDeviceDetail", Right.REGISTRY_READ, devices.batch_query_device_detail),
                    ("QueryDevice", Right.REGISTRY_READ, devices.query_device),
                    ("QueryDeviceStatistics", Right.REGISTRY_READ, devices.query_device_statistics),
                )
            },
        }

    def add_actions(
        self, actions: Mapping[str, tuple[Right, Callable[[dict[str, str], str], Awaitable[dict[str, Any]]]]]
    ) -> None:
        """More actions (:mod:`methodhub.dialects.aliyun.pop_jobs`), answered as registry ones are."""
        for name, (right, run) in actions.items():
            self._actions[name] = _Action(right, self._guard(run))

    def register(self, routes: Routes, *, not_a_pop_call: Handler | None = None) -> None:
        """``GET /`` and ``POST /``; a ``GET /`` that is no POP call (:func:`is_pop_call`) goes to
        ``not_a_pop_call`` when given (the hub's landing page)."""
        if not_a_pop_call is None:
            routes.add("GET", "/", self.handle)
        else:
            other = not_a_pop_call

            def get(request: Request) -> Any:
                return self.handle(request) if is_pop_call(request) else other(request)

            routes.add("GET", "/", get)
        routes.add("POST", "/", self.handle)

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        """Parse, authenticate (signature, timestamp, nonce — the nonce in the shared registry), run."""
        request_id = new_request_id()
        host = request.headers.get("host")
        check: Acs3Check | None = None
        try:
            if signature_scheme(request) == "acs3":
                check = self._auth.check_acs3(request.headers, request.body)
            query, body_pairs = _query_and_body(request)
            params = _merged(query, body_pairs)
            action = self._action(params, request.headers if check else None)
        except HubError as exc:
            return pop_error(exc, request_id, host)
        if check is None:
            authenticated = self._auth.authenticate(request.method, params, action.right)
        else:
            authenticated = self._auth.authenticate_acs3(
                check, request.method, request.path, query, request.headers, action.right
            )
        return self._authenticate_then_run(authenticated, params, action, request_id, host)

    def _action(self, params: dict[str, str], acs3_headers: dict[str, str] | None = None) -> _Action:
        """The action the request names: with V3 (``acs3_headers``), ``x-acs-action`` and
        ``x-acs-version`` (signed), which, when ``Action`` / ``Version`` are given too, must agree."""
        name = _named(params, acs3_headers, "Action", "x-acs-action")
        version = _named(params, acs3_headers, "Version", "x-acs-version")
        action = self._actions.get(name)
        if action is None:
            what = "is not implemented by methodhub" if name in UNIMPLEMENTED else "does not exist"
            raise HubError(
                ErrorKind.NOT_FOUND,
                f"Specified api is not found: the Action {name!r} {what}. "
                f"Implemented: {', '.join(sorted(self._actions))}.",
            )
        if version != API_VERSION:
            raise HubError(
                ErrorKind.INVALID_PROTOCOL_VERSION,
                f"Specified parameter Version is not valid: {version!r}; methodhub serves {API_VERSION}.",
            )
        accept = params.get("Format", "JSON")
        if accept.upper() != "JSON":
            raise HubError(ErrorKind.MALFORMED_REQUEST, f"Format {accept!r} is not supported; use JSON.")
        return action

    async def _authenticate_then_run(
        self,
        authenticated: Awaitable[str],
        params: dict[str, str],
        action: _Action,
        request_id: str,
        host: str | None,
    ) -> Response:
        try:
            params[CALLER] = await authenticated  # after the signature: no request can set it
        except HubError as exc:
            self._auth.refused(exc)
            return pop_error(exc, request_id, host)
        if action.registry:
            quotas = self.quotas
            try:
                quotas.check(quotas.registry, "registry_operations")
            except HubError as exc:
                return pop_error(exc, request_id, host)
        result = action.run(params, request_id, host)
        return result if isinstance(result, Response) else await result

    def _guard(
        self, handler: Callable[[dict[str, str], str], Awaitable[dict[str, Any]]]
    ) -> Callable[[dict[str, str], str, str | None], Awaitable[Response]]:
        """A registry action: its ``Data`` (or error) in Alibaba's envelope."""

        async def run(params: dict[str, str], request_id: str, host: str | None) -> Response:
            try:
                body = await handler(params, request_id)
            except HubError as exc:
                return pop_error(exc, request_id, host)
            return Response.json({"RequestId": request_id, "Success": True, **body})

        return run

    # -- calls ------------------------------------------------------------------------------------------

    def _rrpc(
        self, params: dict[str, str], request_id: str, host: str | None
    ) -> Response | Awaitable[Response]:
        try:
            product_key, device_name = _names(params)
            timeout = _rrpc_timeout(params)
            message = _rrpc_message(params)
            topic = _rrpc_topic(params, product_key, device_name)
        except HubError as exc:
            return pop_error(exc, request_id, host)
        message_id = self._message_ids.next()
        call = Call(
            target=product_device_id(product_key, device_name),
            method="rrpc",
            payload=message,
            response_timeout=timeout,
            kind=CallKind.MESSAGE,
            dialect_data=call_data(str(message_id), topic),
        )

        def answered(outcome: CallOutcome) -> Response:
            return Response.json(
                {
                    "RequestId": request_id,
                    "Success": True,
                    "RrpcCode": "SUCCESS",
                    "PayloadBase64Byte": base64.b64encode(outcome.payload).decode(),
                    "MessageId": message_id,
                }
            )

        def failed(error: HubError) -> Response:
            sent = error.kind in (ErrorKind.CALL_TIMEOUT, ErrorKind.DEVICE_DISCONNECTED)
            return rrpc_error(error, request_id, message_id if sent else None, host)

        origin = CallOrigin(FRONT_DOOR, params.get(CALLER), request_id)
        return response_future(self._engine.invoke(call, FRONT_DOOR, origin), answered, failed)

    def _invoke_thing_service(
        self, params: dict[str, str], request_id: str, host: str | None
    ) -> Response | Awaitable[Response]:
        try:
            target = call_target(params)
            identifier = required(params, "Identifier")
            if not IDENTIFIER.fullmatch(identifier):
                raise HubError(
                    ErrorKind.INVALID_ARGUMENT,
                    f"Identifier {identifier!r} is not a service identifier (letters, digits and _, up to "
                    "50, optionally prefixed with 'module:').",
                )
            args = thing_args(params)
        except HubError as exc:
            return pop_error(exc, request_id, host)
        message_id = str(self._message_ids.next())
        call = Call(
            target=target,
            method=identifier,
            payload=args,
            response_timeout=SERVICE_TIMEOUT,
            dialect_data=call_data(message_id),
        )

        def answered(outcome: CallOutcome) -> Response:
            data = {"Result": outcome.payload.decode(), "MessageId": message_id}
            if outcome.status == 200:
                return Response.json({"RequestId": request_id, "Success": True, "Data": data})
            return Response.json(
                {
                    "RequestId": request_id,
                    "Success": False,
                    "Code": "iot.device.InvokeThingServiceFailed",
                    "ErrorMessage": f"The device answered the service call with code {outcome.status}.",
                    "Data": data,
                }
            )

        def synchronous() -> Awaitable[Response]:
            origin = CallOrigin(FRONT_DOOR, params.get(CALLER), request_id)
            return response_future(
                self._engine.invoke(call, FRONT_DOOR, origin),
                answered,
                lambda error: pop_error(error, request_id, host),
            )

        services = self.async_services
        if services is None or split_product_device_id(target) is None:
            return synchronous()
        return self._maybe_async(services, call, request_id, host, synchronous)

    @staticmethod
    async def _maybe_async(
        services: AsyncServices,
        call: Call,
        request_id: str,
        host: str | None,
        synchronous: Callable[[], Awaitable[Response]],
    ) -> Response:
        """An asynchronous service (the product's TSL says so) is queued and answered at once with
        its MessageId (the queued call's id); any other runs synchronously."""
        try:
            if await services.call_type(call.target, call.method) == "async":
                message_id = await services.invoke_async(call.target, call.method, call.payload)
                return Response.json(
                    {"RequestId": request_id, "Success": True, "Data": {"MessageId": message_id}}
                )
        except HubError as exc:
            return pop_error(exc, request_id, host)
        return await synchronous()

    # -- registry -----------------------------------------------------------------------------------------

    async def _register_device(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        product_key = required(params, "ProductKey")
        # Alibaba names the device itself when DeviceName is empty.
        device_name = params.get("DeviceName") or "".join(secrets.choice(_NAME_ALPHABET) for _ in range(20))
        device = await self._registry.create_product_device(product_key, device_name)
        return {
            "Data": {
                "IotId": device.device_id,
                "ProductKey": device.product_key,
                "DeviceName": device.device_name,
                "DeviceSecret": device.device_secret,
            }
        }

    async def _lookup(self, params: dict[str, str]) -> tuple[Identity, ProductDevice | None]:
        """The identity the request names (``IotId`` or ProductKey + DeviceName) and its Alibaba names."""
        iot_id = params.get("IotId")
        if iot_id:
            identity = await self._registry.get_identity(iot_id)
            device = await self._registry.find_product_device(iot_id) if identity else None
            if identity is None:
                raise HubError(ErrorKind.DEVICE_NOT_FOUND, f"No device with IotId {iot_id!r} is registered.")
            return identity, device
        product_key, device_name = _names(params)
        device = await self._registry.get_product_device(product_key, device_name)
        if device is None:
            raise HubError(
                ErrorKind.DEVICE_NOT_FOUND,
                f"No device {device_name!r} of product {product_key!r} is registered.",
            )
        return device.identity, device

    async def _query_device_detail(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        identity, device = await self._lookup(params)
        states = await self._presence.connection_states([identity.device_id])
        connected, since = states[identity.device_id]
        data = device_detail(identity, device, connected)
        if since is not None:
            data.update(GmtOnline=gmt_time(since), UtcOnline=utc_time(since))
        return {"Data": data}

    async def _delete_device(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        identity, _ = await self._lookup(params)
        await self._registry.delete_identity(identity.device_id)
        return {}
