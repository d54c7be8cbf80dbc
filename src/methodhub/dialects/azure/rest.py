"""The Azure IoT Hub REST front door: direct methods and the device registry, in Azure's shapes.

``POST /twins/{id}[/modules/{mid}]/methods`` (ServiceConnect) maps onto the call engine;
``PUT/GET/DELETE /devices/{id}[/modules/{mid}]`` (RegistryRead/RegistryWrite) onto the registry.
Bodies, status codes and errors follow azure-direct-methods-wire.md §2 so that Microsoft's
``azure-iot-hub`` SDK and plain curl users see what Azure would answer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from methodhub import jsontext
from methodhub.api.outcomes import deferred_response, response_future
from methodhub.calls import Call, CallEngine, CallOutcome
from methodhub.calls.model import CallOrigin, identity_key
from methodhub.calls.quotas import NO_QUOTAS, Quotas
from methodhub.config import (
    CONNECT_TIMEOUT_DEFAULT,
    CONNECT_TIMEOUT_RANGE,
    MAX_METHOD_PAYLOAD,
    RESPONSE_TIMEOUT_DEFAULT,
    RESPONSE_TIMEOUT_RANGE,
)
from methodhub.dialects.azure.authentication import authentication_json, parse_authentication
from methodhub.dialects.azure.errors import azure_error, utc_timestamp
from methodhub.dialects.azure.service_auth import ServiceAuthenticator
from methodhub.dialects.azure.topics import validate_method_name
from methodhub.dialects.azure.twin import NEVER, service_change, twin_json
from methodhub.errors import ErrorKind, HubError
from methodhub.http.messages import Deferred, Request, Response
from methodhub.http.routing import Routes
from methodhub.query import Collection, Query, QuerySyntaxError, parse
from methodhub.registry import Identity, Registry, Right
from methodhub.registry.twins import Twin, patch_twin, replace_twin

FRONT_DOOR = "azure"
"""The call history's name for this API's calls."""
QUERY_PAGE_DEFAULT = 100
QUERY_PAGE_MAX = 1000

"""How Azure prints a time that never happened (e.g. lastActivityTime of a new device)."""


class Presence(Protocol):
    """Who is connected right now, on any node (the gateway answers)."""

    async def connection_states(self, targets: list[str]) -> dict[str, tuple[bool, float | None]]:
        """Per target: (connected, since when — epoch seconds, or None if unknown)."""
        ...


def parse_json(body: bytes, what: str) -> Any:
    """Parse a request body (see :mod:`methodhub.jsontext`); ``INVALID_ARGUMENT`` if it is not JSON."""
    try:
        return jsontext.loads(body)
    except jsontext.NotJson as exc:
        raise HubError(ErrorKind.INVALID_ARGUMENT, f"{what} is not valid JSON: {exc}") from None


dump_json = jsontext.dumps


def _integer(body: dict[str, Any], key: str, default: int, bounds: tuple[int, int]) -> int:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise HubError(ErrorKind.INVALID_ARGUMENT, f"{key} must be an integer number of seconds.")
    low, high = bounds
    if not low <= value <= high:
        raise HubError(
            ErrorKind.INVALID_ARGUMENT, f"{key} must be between {low} and {high} seconds; got {value}."
        )
    return value


def parse_method_call(body_bytes: bytes, target: str) -> Call:
    """Turn an Azure ``CloudToDeviceMethod`` body into a :class:`Call` (or raise a 400/413 error)."""
    if not body_bytes:
        raise HubError(
            ErrorKind.INVALID_ARGUMENT, "The request body is empty; send a JSON object with methodName."
        )
    body = parse_json(body_bytes, "The request body")
    if not isinstance(body, dict):
        raise HubError(ErrorKind.INVALID_ARGUMENT, "The request body must be a JSON object.")
    method = validate_method_name(body.get("methodName"))
    payload = dump_json(body.get("payload"))
    if len(payload) > MAX_METHOD_PAYLOAD:
        raise HubError(
            ErrorKind.PAYLOAD_TOO_LARGE,
            f"The method payload is {len(payload)} bytes of JSON; the limit is {MAX_METHOD_PAYLOAD} bytes.",
        )
    return Call(
        target=target,
        method=method,
        payload=payload,
        response_timeout=_integer(
            body, "responseTimeoutInSeconds", RESPONSE_TIMEOUT_DEFAULT, RESPONSE_TIMEOUT_RANGE
        ),
        connect_timeout=_integer(
            body, "connectTimeoutInSeconds", CONNECT_TIMEOUT_DEFAULT, CONNECT_TIMEOUT_RANGE
        ),
    )


def method_result(outcome: CallOutcome) -> Response:
    """``{"status": <device status>, "payload": <device JSON>}`` without re-encoding the payload."""
    return Response(200, b'{"status":%d,"payload":%b}' % (outcome.status, outcome.payload))


def _etag_header(identity: Identity) -> list[tuple[str, str]]:
    return [("etag", f'"{identity.etag}"')]


def _if_match(request: Request) -> str | None:
    value = request.headers.get("if-match")
    if value is None:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"') or None


class AzureApi:
    """Handlers for Azure's REST surface. ``routes()`` registers them on a :class:`Routes`."""

    def __init__(
        self, engine: CallEngine, registry: Registry, auth: ServiceAuthenticator, presence: Presence
    ) -> None:
        self._engine = engine
        self._registry = registry
        self._auth = auth
        self._presence = presence
        self.job_rows: Callable[[Query, int, int], Awaitable[list[Any]]] | None = None
        """A page of ``devices.jobs`` rows (set by the hub once jobs run; None: there are none)."""
        self.quotas: Quotas = NO_QUOTAS
        """The node's rate limits (set by the hub): registry operations per second."""

    def register(self, routes: Routes) -> None:
        routes.add("POST", "/twins/{device_id}/methods", self.invoke_device_method)
        routes.add("POST", "/twins/{device_id}/modules/{module_id}/methods", self.invoke_module_method)
        routes.add("GET", "/devices", self._registry_call(Right.REGISTRY_READ, self._list_devices))
        # Node's Registry.list() asks for /devices/ (azure-jobs-twins-query.md, issue 12)
        routes.add("GET", "/devices/", self._registry_call(Right.REGISTRY_READ, self._list_devices))
        for method, right, handler in (
            ("GET", Right.REGISTRY_READ, self._get_identity),
            ("PUT", Right.REGISTRY_WRITE, self._put_identity),
            ("DELETE", Right.REGISTRY_WRITE, self._delete_identity),
        ):
            routes.add(method, "/devices/{device_id}", self._registry_call(right, handler))
            routes.add(
                method, "/devices/{device_id}/modules/{module_id}", self._registry_call(right, handler)
            )
        routes.add(
            "GET",
            "/devices/{device_id}/modules",
            self._registry_call(Right.REGISTRY_READ, self._list_modules),
        )
        routes.add("POST", "/devices/query", self._registry_call(Right.REGISTRY_READ, self._query, False))
        for method, handler in (
            ("GET", self._get_twin),
            ("PATCH", self._patch_twin),
            ("PUT", self._put_twin),
        ):  # twins are the service's (ServiceConnect), as on IoT Hub
            routes.add(
                method, "/twins/{device_id}", self._registry_call(Right.SERVICE_CONNECT, handler, False)
            )
            routes.add(
                method,
                "/twins/{device_id}/modules/{module_id}",
                self._registry_call(Right.SERVICE_CONNECT, handler, False),
            )

    # -- direct methods ---------------------------------------------------------------------------

    def invoke_device_method(self, request: Request) -> Response | Deferred | Awaitable[Response]:
        device_id = request.path_params["device_id"]
        if "/" in device_id:
            return _slash_in_id("device")
        return self._invoke(request, device_id)

    def invoke_module_method(self, request: Request) -> Response | Deferred | Awaitable[Response]:
        params = request.path_params
        device_id, module_id = params["device_id"], params["module_id"]
        if "/" in device_id or "/" in module_id:
            return _slash_in_id("device" if "/" in device_id else "module")
        return self._invoke(request, identity_key(device_id, module_id))

    def _invoke(self, request: Request, target: str) -> Response | Deferred | Awaitable[Response]:
        """Fast path: a cached token and a parsed body lead straight to the engine's future, whose
        done-callback makes the response (no task, no second future). Anything else takes the
        coroutine path."""
        header = request.headers.get("authorization")
        policy = None if header is None else self._auth.cached(header, Right.SERVICE_CONNECT)
        if policy is None:
            return self._invoke_after_auth(request, target)
        try:
            call = parse_method_call(request.body, target)
        except HubError as exc:
            return azure_error(exc)
        origin = CallOrigin(FRONT_DOOR, policy)
        return deferred_response(self._engine.invoke(call, FRONT_DOOR, origin), method_result, azure_error)

    async def _invoke_after_auth(self, request: Request, target: str) -> Response:
        try:
            policy = await self._auth.authenticate(
                request.headers.get("authorization"), request.headers.get("host"), Right.SERVICE_CONNECT
            )
            call = parse_method_call(request.body, target)
        except HubError as exc:
            return azure_error(exc)
        origin = CallOrigin(FRONT_DOOR, policy)
        return await response_future(
            self._engine.invoke(call, FRONT_DOOR, origin), method_result, azure_error
        )

    # -- registry -------------------------------------------------------------------------------------

    def _registry_call(
        self, right: Right, handler: Callable[[Request], Awaitable[Response]], identities: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` behind the SAS check of ``right``; an ``identities`` operation (create, get,
        list, update, delete a device or module: Azure's "identity registry operations") also
        counts against the registry operations quota."""

        async def authorized(request: Request) -> Response:
            try:
                await self._auth.authenticate(
                    request.headers.get("authorization"), request.headers.get("host"), right
                )
                if identities:
                    self.quotas.check(self.quotas.registry, "registry_operations")
                return await handler(request)
            except HubError as exc:
                return azure_error(exc)

        return authorized

    def identity_json(self, identity: Identity, state: tuple[bool, float | None]) -> dict[str, Any]:
        """An identity in Azure's Device (or Module) shape; ``state``: (connected, since)."""
        connected, since = state
        doc: dict[str, Any] = {
            "deviceId": identity.device_id,
            "generationId": identity.generation_id,
            "etag": identity.etag,
            "connectionState": "Connected" if connected else "Disconnected",
            "connectionStateUpdatedTime": utc_timestamp(since) if since else NEVER,
            "lastActivityTime": utc_timestamp(since) if since else NEVER,
            "cloudToDeviceMessageCount": 0,
            "authentication": authentication_json(identity),
        }
        if identity.module_id is None:
            doc.update(
                status=identity.status,
                statusReason=identity.status_reason,
                statusUpdatedTime=utc_timestamp(identity.status_updated_at),
                capabilities={"iotEdge": identity.iot_edge},
                deviceScope=None,
                parentScopes=[],
            )
        else:
            doc = {"moduleId": identity.module_id, **doc, "managedBy": None}
        return doc

    async def _identity_response(self, identity: Identity, status: int = 200) -> Response:
        states = await self._presence.connection_states([identity.key])
        return Response.json(
            self.identity_json(identity, states[identity.key]), status, headers=_etag_header(identity)
        )

    async def _identities_response(self, identities: list[Identity]) -> Response:
        states = await self._presence.connection_states([identity.key for identity in identities])
        return Response.json([self.identity_json(identity, states[identity.key]) for identity in identities])

    async def _get_identity(self, request: Request) -> Response:
        device_id, module_id = _ids(request)
        identity = await self._registry.get_identity(device_id, module_id)
        if identity is None:
            raise _missing(device_id, module_id)
        return await self._identity_response(identity)

    async def _put_identity(self, request: Request) -> Response:
        device_id, module_id = _ids(request)
        body = parse_json(request.body, "The request body") if request.body else {}
        if not isinstance(body, dict):
            raise HubError(ErrorKind.INVALID_ARGUMENT, "The request body must be a JSON object.")
        for key, expected in (("deviceId", device_id), ("moduleId", module_id)):
            if body.get(key) not in (None, expected):
                raise HubError(
                    ErrorKind.INVALID_ARGUMENT, f"{key} in the body ({body[key]!r}) differs from the URL."
                )
        keys, auth = parse_authentication(body.get("authentication"))
        status = body.get("status")
        if module_id is None and status is not None and status not in ("enabled", "disabled"):
            raise HubError(ErrorKind.INVALID_ARGUMENT, "status must be 'enabled' or 'disabled'.")
        reason = _status_reason(body.get("statusReason"))
        iot_edge = _iot_edge(body.get("capabilities"))
        etag = _if_match(request)
        existing = await self._registry.get_identity(device_id, module_id)
        if existing is None:
            if etag not in (None, "*"):
                raise _missing(device_id, module_id)
            identity = await self._registry.create_identity(
                device_id,
                module_id,
                keys=keys,
                status=status or "enabled",
                status_reason=reason,
                iot_edge=iot_edge,
                auth=auth,
            )
            return await self._identity_response(identity)
        if etag is None:
            kind = ErrorKind.MODULE_ALREADY_EXISTS if module_id else ErrorKind.DEVICE_ALREADY_EXISTS
            raise HubError(
                kind, f"'{existing.key}' already exists; send If-Match with its etag (or \"*\") to update it."
            )
        identity = await self._registry.update_identity(
            device_id, module_id, etag=etag, keys=keys, status=status, status_reason=reason, auth=auth
        )
        return await self._identity_response(identity)

    async def _delete_identity(self, request: Request) -> Response:
        device_id, module_id = _ids(request)
        await self._registry.delete_identity(device_id, module_id, etag=_if_match(request))
        return Response(204, content_type=None)

    async def _list_devices(self, request: Request) -> Response:
        limit = _top(request)
        identities = await self._registry.list_identities(None, limit=limit)
        return await self._identities_response(identities)

    async def _list_modules(self, request: Request) -> Response:
        device_id = request.path_params["device_id"]
        if await self._registry.get_identity(device_id) is None:
            raise _missing(device_id, None)
        identities = await self._registry.list_identities(device_id)
        return await self._identities_response(identities)

    # -- twins ----------------------------------------------------------------------------------------

    async def _twin_response(self, twin: Twin) -> Response:
        identity = await self._registry.get_identity(twin.device_id, twin.module_id)
        if identity is None:  # deleted meanwhile
            raise _missing(twin.device_id, twin.module_id)
        connected, since = (await self._presence.connection_states([identity.key]))[identity.key]
        return Response.json(
            twin_json(twin, identity, connected, since), headers=[("etag", f'"{twin.etag}"')]
        )

    async def _get_twin(self, request: Request) -> Response:
        device_id, module_id = _ids(request)
        twin = await self._registry.get_twin(device_id, module_id)
        if twin is None:
            raise _missing(device_id, module_id)
        return await self._twin_response(twin)

    async def _patch_twin(self, request: Request) -> Response:
        return await self._change_twin(request, patch_twin)

    async def _put_twin(self, request: Request) -> Response:
        return await self._change_twin(request, replace_twin)

    async def _change_twin(
        self, request: Request, change: Callable[[Twin, object, object, float], Twin]
    ) -> Response:
        device_id, module_id = _ids(request)
        tags, desired = service_change(parse_json(request.body, "The twin") if request.body else None)
        now = time.time()
        twin = await self._registry.update_twin(
            device_id, module_id, lambda current: change(current, tags, desired, now), etag=_if_match(request)
        )
        return await self._twin_response(twin)

    # -- queries --------------------------------------------------------------------------------------

    async def _query(self, request: Request) -> Response:
        """``POST /devices/query`` ``{"query": ...}``: a page of at most ``x-ms-max-item-count``
        rows (default 100, at most 1000), the next page named by ``x-ms-continuation``."""
        body = parse_json(request.body, "The request body") if request.body else None
        text = body.get("query") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise HubError(ErrorKind.INVALID_ARGUMENT, 'The request body must be {"query": "SELECT ..."}.')
        try:
            query = parse(text)
        except QuerySyntaxError as exc:
            raise HubError(ErrorKind.INVALID_ARGUMENT, f"The query is not valid: {exc.message}") from None
        size_header = request.headers.get("x-ms-max-item-count", str(QUERY_PAGE_DEFAULT))
        try:
            size = int(size_header)
        except ValueError:
            size = 0
        if not 1 <= size <= QUERY_PAGE_MAX:
            raise HubError(ErrorKind.INVALID_ARGUMENT, f"x-ms-max-item-count must be 1 to {QUERY_PAGE_MAX}.")
        offset = _continuation(request.headers.get("x-ms-continuation"))
        if query.from_ is Collection.JOBS:
            rows: list[Any] = [] if self.job_rows is None else await self.job_rows(query, offset, size + 1)
        else:
            rows = await self._registry.query_twins(query, offset=offset, limit=size + 1)
        headers = [("x-ms-item-type", query.item_type)]
        if len(rows) > size:
            rows = rows[:size]
            headers.append(("x-ms-continuation", str(offset + size)))
        return Response.json(rows, headers=headers)


def _continuation(token: str | None) -> int:
    if not token:
        return 0
    if not token.isdigit() or len(token) > 12:
        raise HubError(ErrorKind.INVALID_ARGUMENT, "x-ms-continuation is not one this hub gave.")
    return int(token)


def _slash_in_id(kind: str) -> Response:
    """A call to an id holding ``/`` (sent as ``%2F``): no identity has one (registry rule), and the
    call target key joins a device and a module id with ``/``, so ``a%2Fb`` would mean module b of
    device a. Refused instead of routed."""
    return azure_error(
        HubError(
            ErrorKind.INVALID_ARGUMENT,
            f"A {kind} id cannot contain '/' (sent as %2F); "
            "call a module at /twins/{deviceId}/modules/{moduleId}/methods.",
        )
    )


def _ids(request: Request) -> tuple[str, str | None]:
    return request.path_params["device_id"], request.path_params.get("module_id")


def _missing(device_id: str, module_id: str | None) -> HubError:
    if module_id:
        return HubError(ErrorKind.MODULE_NOT_FOUND, f"No module '{module_id}' on device '{device_id}'.")
    return HubError(ErrorKind.DEVICE_NOT_FOUND, f"No device '{device_id}' is registered.")


def _top(request: Request) -> int:
    raw = request.query.get("top", "1000")
    if not raw.isdigit() or not 1 <= int(raw) <= 10000:
        raise HubError(ErrorKind.INVALID_ARGUMENT, "top must be an integer between 1 and 10000.")
    return int(raw)


MAX_STATUS_REASON = 128
"""Azure's limit on a device's ``statusReason``, in characters."""


def _object(value: Any, name: str) -> dict[str, Any]:
    """A JSON object field of a request body (absent or null: empty); INVALID_ARGUMENT otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HubError(ErrorKind.INVALID_ARGUMENT, f"{name} must be a JSON object; got {_json_type(value)}.")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    kinds: dict[type, str] = {str: "a string", list: "an array", dict: "an object"}
    return kinds.get(type(value), "null")


def _iot_edge(capabilities: Any) -> bool:
    iot_edge = _object(capabilities, "capabilities").get("iotEdge", False)
    if not isinstance(iot_edge, bool):
        raise HubError(
            ErrorKind.INVALID_ARGUMENT,
            f"capabilities.iotEdge must be true or false; got {_json_type(iot_edge)}.",
        )
    return iot_edge


def _status_reason(reason: Any) -> str | None:
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise HubError(
            ErrorKind.INVALID_ARGUMENT, f"statusReason must be a string; got {_json_type(reason)}."
        )
    if len(reason) > MAX_STATUS_REASON:
        raise HubError(
            ErrorKind.INVALID_ARGUMENT, f"statusReason has at most {MAX_STATUS_REASON} characters."
        )
    return reason
