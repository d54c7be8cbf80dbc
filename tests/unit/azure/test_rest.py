"""The Azure REST front door (``AzureApi``) in memory: real Requests in, Azure's shapes out, no sockets.

A stub engine records the :class:`Call` each request becomes and answers it as told; the registry is
SQLite in a temporary directory; tokens are signed with the registry's default policies' keys.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from methodhub.calls import CONNECT_TIMEOUT_INFO, Call, CallKind, CallOutcome
from methodhub.calls.model import CallOrigin
from methodhub.config import MAX_METHOD_PAYLOAD
from methodhub.dialects.azure.rest import AzureApi
from methodhub.dialects.azure.sas import generate_sas_token
from methodhub.dialects.azure.service_auth import ServiceAuthenticator
from methodhub.errors import ErrorKind, HubError
from methodhub.http.messages import Deferred, Request, Response
from methodhub.http.routing import MethodNotAllowed, RouteNotFound, Routes
from methodhub.http.server import HttpServer
from methodhub.registry import SqliteRegistry

HUB = "hub.example.test"
FAR_FUTURE = 4_000_000_000
"""A token expiry (epoch seconds, year 2096) that no test run reaches."""


class StubEngine:
    """Records calls; answers each with ``outcome`` (a device answer, or a HubError to fail with)."""

    def __init__(self, outcome: CallOutcome | HubError | None = None) -> None:
        self.calls: list[Call] = []
        self.origins: list[CallOrigin | None] = []
        self.front_doors: list[str] = []
        self.outcome = outcome or CallOutcome(200, b'{"ok":true}')

    def invoke(
        self, call: Call, front_door: str = "", origin: CallOrigin | None = None
    ) -> asyncio.Future[CallOutcome]:
        self.calls.append(call)
        self.front_doors.append(front_door)
        self.origins.append(origin)
        future: asyncio.Future[CallOutcome] = asyncio.get_running_loop().create_future()
        if isinstance(self.outcome, HubError):
            future.set_exception(self.outcome)
        else:
            future.set_result(self.outcome)
        return future


class Presence:
    """``dev1`` is connected since a fixed time; nobody else is."""

    async def connection_states(self, targets: list[str]) -> dict[str, tuple[bool, float | None]]:
        return {
            target: (target == "dev1", 1_700_000_000.0 if target == "dev1" else None) for target in targets
        }


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[SqliteRegistry]:
    reg = SqliteRegistry(tmp_path / "registry.db")
    await reg.open()
    await reg.ensure_default_policies()
    yield reg
    await reg.close()


class FrontDoor:
    """An AzureApi on its own routing table, driven the way the HTTP server drives a handler."""

    def __init__(self, registry: SqliteRegistry, engine: StubEngine) -> None:
        self.registry = registry
        self.engine = engine
        self.api = AzureApi(engine, registry, ServiceAuthenticator(registry, HUB), Presence())  # type: ignore[arg-type]
        self.routes = Routes()
        self.api.register(self.routes)

    async def token(self, policy: str = "service", *, expiry: int = FAR_FUTURE, audience: str = HUB) -> str:
        found = await self.registry.get_policy(policy)
        assert found is not None
        return generate_sas_token(audience, found.keys.primary, expiry, key_name=policy)

    def handle(self, request: Request) -> Any:
        """What the handler returns (a Response, a Future or a coroutine), as the server sees it."""
        handler, request.path_params = self.routes.match(request.method, request.path)
        return handler(request)

    async def send(
        self, method: str, path: str, body: Any = None, *, authorization: str | None = "", **headers: str
    ) -> Response:
        """A request with a valid ``service`` token, unless ``authorization`` is given (None: no header)."""
        fields = {"host": HUB, **headers}
        if authorization == "":
            fields["authorization"] = await self.token()
        elif authorization is not None:
            fields["authorization"] = authorization
        raw = body if isinstance(body, bytes) else b"" if body is None else orjson.dumps(body)
        result = self.handle(Request(method, path, headers=fields, body=raw))
        if isinstance(result, Deferred):  # the fast path: the response from the engine's future
            await asyncio.wait([result.future])
            result = result.respond(result.future)
        response = result if isinstance(result, Response) else await result
        assert isinstance(response, Response)
        return response


@pytest.fixture
def engine() -> StubEngine:
    return StubEngine()


@pytest.fixture
def door(registry: SqliteRegistry, engine: StubEngine) -> FrontDoor:
    return FrontDoor(registry, engine)


def azure_error(response: Response) -> dict[str, Any]:
    """Azure's error envelope opened: the inner JSON of ``Message``, plus the status and header."""
    outer = orjson.loads(response.body)
    assert set(outer) == {"Message", "ExceptionMessage"} and outer["ExceptionMessage"] == ""
    inner: dict[str, Any] = orjson.loads(outer["Message"])
    assert set(inner) == {"errorCode", "trackingId", "message", "info", "timestampUtc"}
    headers = dict(response.headers or [])
    return {"status": response.status, "iothub-errorcode": headers.get("iothub-errorcode"), **inner}


# -- a method call becomes the right Call ---------------------------------------------------------------


async def test_a_device_method_call_becomes_a_call_and_the_answer_azures_body(
    door: FrontDoor, engine: StubEngine
) -> None:
    body = {
        "methodName": "reboot",
        "payload": {"delay": 1, "mode": "soft"},
        "responseTimeoutInSeconds": 12,
        "connectTimeoutInSeconds": 3,
    }
    response = await door.send("POST", "/twins/dev1/methods", body)
    assert response.status == 200
    assert orjson.loads(response.body) == {"status": 200, "payload": {"ok": True}}
    [call] = engine.calls
    assert (call.target, call.method, call.kind, call.dialect_data) == (
        "dev1",
        "reboot",
        CallKind.METHOD,
        None,
    )
    assert orjson.loads(call.payload) == {"delay": 1, "mode": "soft"}
    assert engine.front_doors == ["azure"]  # the latency metric's front_door label
    assert (call.response_timeout, call.connect_timeout) == (12, 3)


async def test_timeouts_default_to_azures_and_a_missing_payload_is_null(
    door: FrontDoor, engine: StubEngine
) -> None:
    await door.send("POST", "/twins/dev1/methods", {"methodName": "ping"})
    [call] = engine.calls
    assert (call.response_timeout, call.connect_timeout, call.payload) == (30, 0, b"null")


async def test_a_module_method_call_targets_device_slash_module(door: FrontDoor, engine: StubEngine) -> None:
    response = await door.send("POST", "/twins/dev1/modules/camera/methods", {"methodName": "snap"})
    assert response.status == 200
    [call] = engine.calls
    assert (call.target, call.method) == ("dev1/camera", "snap")


async def test_the_devices_status_and_payload_pass_through_in_a_200(registry: SqliteRegistry) -> None:
    engine = StubEngine(CallOutcome(404, b'[1, "two", {"three": 3}]'))
    response = await FrontDoor(registry, engine).send("POST", "/twins/dev1/methods", {"methodName": "m"})
    assert response.status == 200  # Azure: the call worked; the device's own status is in the body
    assert response.body == b'{"status":404,"payload":[1, "two", {"three": 3}]}'  # not re-encoded


async def test_a_verified_token_takes_the_fast_path_to_the_engines_future(door: FrontDoor) -> None:
    """First request: the token is checked against the registry (a coroutine). Later ones with the same
    header: the engine's own future, the response made from it in its done-callback (a Deferred: no
    task, no second future)."""
    headers = {"host": HUB, "authorization": await door.token()}
    body = orjson.dumps({"methodName": "m"})
    first = door.handle(Request("POST", "/twins/dev1/methods", headers=headers, body=body))
    assert asyncio.iscoroutine(first)
    assert (await first).status == 200
    second = door.handle(Request("POST", "/twins/dev1/methods", headers=headers, body=body))
    assert isinstance(second, Deferred) and asyncio.isfuture(second.future)
    await second.future
    assert second.respond(second.future).status == 200
    bad = door.handle(Request("POST", "/twins/dev1/methods", headers=headers, body=b"{"))
    assert isinstance(bad, Response) and bad.status == 400  # a bad body is answered at once
    assert len(door.engine.calls) == 2
    # both paths tell the engine the call's origin (the call history): this API and the policy
    assert door.engine.origins == [CallOrigin("azure", "service")] * 2


# -- each error kind in Azure's shape ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "waited, timeout_text, message",
    [
        (5, "00:00:05", "Device 'dev1' is not online and did not connect within 5 s."),
        (65, "00:01:05", "Device 'dev1' is not online and did not connect within 65 s."),
        (300, "00:05:00", "Device 'dev1' is not online and did not connect within 300 s."),
        (0, "00:00:00", "Device 'dev1' is not online."),
    ],
)
async def test_offline_after_the_engine_waited_is_404103_with_the_wait_as_a_timespan(
    registry: SqliteRegistry, waited: int, timeout_text: str, message: str
) -> None:
    engine = StubEngine(HubError(ErrorKind.DEVICE_OFFLINE, message, {CONNECT_TIMEOUT_INFO: waited}))
    response = await FrontDoor(registry, engine).send(
        "POST", "/twins/dev1/methods", {"methodName": "m", "connectTimeoutInSeconds": waited}
    )
    error = azure_error(response)
    assert (error["status"], error["errorCode"], error["iothub-errorcode"]) == (
        404,
        404103,
        "DeviceNotOnline",
    )
    assert error["message"] == f"Timed out waiting for device to connect. {message}"
    assert error["info"] == {"timeout": timeout_text}


async def test_offline_without_a_wait_keeps_the_engines_words_and_empty_info(
    registry: SqliteRegistry,
) -> None:
    engine = StubEngine(HubError(ErrorKind.DEVICE_OFFLINE, "Device 'dev1' is not online."))
    error = azure_error(
        await FrontDoor(registry, engine).send("POST", "/twins/dev1/methods", {"methodName": "m"})
    )
    assert (error["status"], error["errorCode"]) == (404, 404103)
    assert error["message"] == "Device 'dev1' is not online." and error["info"] == {}


@pytest.mark.parametrize(
    "kind, status, code, name",
    [
        (ErrorKind.CALL_TIMEOUT, 504, 504101, "GatewayTimeout"),
        (ErrorKind.DEVICE_DISCONNECTED, 404, 404104, "DeviceConnectionClosedRemotely"),
        (ErrorKind.DEVICE_NOT_FOUND, 404, 404001, "DeviceNotFound"),
        (ErrorKind.INVALID_DEVICE_RESPONSE, 502, 502001, "InvalidDeviceResponse"),
    ],
)
async def test_engine_failures_map_to_azures_status_code_and_header(
    registry: SqliteRegistry, kind: ErrorKind, status: int, code: int, name: str
) -> None:
    engine = StubEngine(HubError(kind, "what happened"))
    error = azure_error(
        await FrontDoor(registry, engine).send("POST", "/twins/dev1/methods", {"methodName": "m"})
    )
    assert (error["status"], error["errorCode"], error["iothub-errorcode"]) == (status, code, name)
    assert error["message"] == "what happened"
    assert len(error["trackingId"]) == 32 and error["timestampUtc"].endswith("Z")


async def test_each_error_gets_its_own_tracking_id(registry: SqliteRegistry) -> None:
    door = FrontDoor(registry, StubEngine(HubError(ErrorKind.CALL_TIMEOUT)))
    ids = {
        azure_error(await door.send("POST", "/twins/dev1/methods", {"methodName": "m"}))["trackingId"]
        for _ in range(3)
    }
    assert len(ids) == 3


# -- bad requests: 400 (or 413) with Azure's codes, and the engine never called ---------------------------


@pytest.mark.parametrize(
    "body, words",
    [
        (b"", "The request body is empty"),
        (b"{", "The request body is not valid JSON"),
        (b'{"methodName": "m", "payload": NaN}', "The request body is not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        ({"payload": 1}, "methodName is required"),
        ({"methodName": ""}, "methodName is required"),
        ({"methodName": 7}, "methodName is required"),
        ({"methodName": "a/b"}, "methodName contains '/'"),
        ({"methodName": "two words"}, "methodName contains ' '"),
        ({"methodName": "x" * 129}, "methodName is longer than 128"),
        ({"methodName": "m", "responseTimeoutInSeconds": 4}, "between 5 and 300"),
        ({"methodName": "m", "responseTimeoutInSeconds": 301}, "between 5 and 300"),
        ({"methodName": "m", "responseTimeoutInSeconds": "30"}, "must be an integer"),
        ({"methodName": "m", "responseTimeoutInSeconds": 30.5}, "must be an integer"),
        ({"methodName": "m", "responseTimeoutInSeconds": True}, "must be an integer"),
        ({"methodName": "m", "connectTimeoutInSeconds": -1}, "between 0 and 300"),
        ({"methodName": "m", "connectTimeoutInSeconds": 301}, "between 0 and 300"),
    ],
)
async def test_a_bad_method_request_is_400_argument_invalid(
    door: FrontDoor, engine: StubEngine, body: Any, words: str
) -> None:
    error = azure_error(await door.send("POST", "/twins/dev1/methods", body))
    assert (error["status"], error["errorCode"], error["iothub-errorcode"]) == (
        400,
        400004,
        "ArgumentInvalid",
    )
    assert words in error["message"]
    assert engine.calls == []


async def test_a_payload_over_the_limit_is_413(door: FrontDoor, engine: StubEngine) -> None:
    body = {"methodName": "m", "payload": "x" * MAX_METHOD_PAYLOAD}
    error = azure_error(await door.send("POST", "/twins/dev1/methods", body))
    assert (error["status"], error["errorCode"], error["iothub-errorcode"]) == (
        413,
        413001,
        "MessageTooLarge",
    )
    assert engine.calls == []


@pytest.mark.parametrize(
    "path, words",
    [
        ("/twins/a%2Fb/methods", "A device id cannot contain '/'"),
        ("/twins/dev1/modules/a%2Fb/methods", "A module id cannot contain '/'"),
    ],
)
async def test_an_id_with_an_encoded_slash_is_refused_not_routed(
    door: FrontDoor, engine: StubEngine, path: str, words: str
) -> None:
    error = azure_error(await door.send("POST", path, {"methodName": "m"}))
    assert (error["status"], error["errorCode"]) == (400, 400004)
    assert error["message"].startswith(words)
    assert engine.calls == []


# -- authentication: 401 for anything but a valid, unexpired ServiceConnect token for this hub -------------


def _unsigned_key() -> str:
    return base64.b64encode(b"not the policy's key, 32 bytes!!").decode()


@pytest.mark.parametrize(
    "make_header, words",
    [
        (lambda door: None, "No Authorization header"),
        (lambda door: "Bearer abc", "not a valid SAS token"),
        (lambda door: "SharedAccessSignature sr=x&se=1", "not a valid SAS token"),
        (lambda door: generate_sas_token(HUB, _unsigned_key(), FAR_FUTURE), "has no skn"),
        (
            lambda door: generate_sas_token(HUB, _unsigned_key(), FAR_FUTURE, "service"),
            "does not match policy",
        ),
        (
            lambda door: generate_sas_token(HUB, _unsigned_key(), FAR_FUTURE, "nobody"),
            "No shared access policy",
        ),
        (lambda door: door.token(expiry=int(time.time()) - 60), "expired"),
        (lambda door: door.token(audience="other-hub.example.test"), "but this hub is"),
        (lambda door: door.token("registryRead"), "lacks the ServiceConnect permission"),
        (lambda door: door.token("device"), "lacks the ServiceConnect permission"),
    ],
)
async def test_a_method_call_without_a_valid_service_token_is_401(
    door: FrontDoor, engine: StubEngine, make_header: Any, words: str
) -> None:
    header = make_header(door)
    if asyncio.iscoroutine(header):
        header = await header
    response = await door.send("POST", "/twins/dev1/methods", {"methodName": "m"}, authorization=header)
    error = azure_error(response)
    assert (error["status"], error["errorCode"], error["iothub-errorcode"]) == (
        401,
        401002,
        "IotHubUnauthorizedAccess",
    )
    assert words in error["message"]
    assert engine.calls == []


async def test_a_token_verified_for_one_right_does_not_open_another(door: FrontDoor) -> None:
    """The verified-token cache keeps rights: a ``service`` token that called a method is still refused
    by the registry routes (RegistryRead), and a ``registryRead`` token cannot call methods."""
    service = await door.token("service")
    assert (
        await door.send("POST", "/twins/dev1/methods", {"methodName": "m"}, authorization=service)
    ).status == 200
    refused = azure_error(await door.send("GET", "/devices/dev1", authorization=service))
    assert refused["status"] == 401 and "lacks the RegistryRead permission" in refused["message"]
    reader = await door.token("registryRead")
    assert (await door.send("GET", "/devices", authorization=reader)).status == 200
    refused = azure_error(
        await door.send("POST", "/twins/dev1/methods", {"methodName": "m"}, authorization=reader)
    )
    assert refused["status"] == 401


async def test_a_token_signed_for_the_hub_with_its_port_is_accepted(door: FrontDoor) -> None:
    """azure-iot-hub signs the HostName it was given ("hub:443"); clients leave :443 out of Host."""
    token = await door.token(audience=f"{HUB}:443")
    assert (
        await door.send("POST", "/twins/dev1/methods", {"methodName": "m"}, authorization=token)
    ).status == 200


# -- routes -----------------------------------------------------------------------------------------------


def test_the_front_door_routes_methods_by_path_and_http_method(door: FrontDoor) -> None:
    routes = door.routes
    assert routes.match("POST", "/twins/dev1/methods")[1] == {"device_id": "dev1"}
    assert routes.match("POST", "/twins/dev%201/modules/m1/methods")[1] == {
        "device_id": "dev 1",
        "module_id": "m1",
    }
    with pytest.raises(MethodNotAllowed) as wrong_method:
        routes.match("GET", "/twins/dev1/methods")
    assert wrong_method.value.allowed == ["POST"]
    with pytest.raises(MethodNotAllowed) as twin_method:  # a twin is read and written, not POSTed
        routes.match("POST", "/twins/dev1")
    assert twin_method.value.allowed == ["GET", "HEAD", "PATCH", "PUT"]
    for path in ("/twins/dev1/method", "/twins/dev1/modules/m1/methods/x", "/twins//methods"):
        with pytest.raises(RouteNotFound):
            routes.match("POST", path)


# -- the registry surface, briefly ---------------------------------------------------------------------


async def test_a_device_is_created_read_and_deleted_in_azures_shape(door: FrontDoor) -> None:
    owner = await door.token("registryReadWrite")
    created = await door.send("PUT", "/devices/dev1", {"deviceId": "dev1"}, authorization=owner)
    assert created.status == 200
    device = orjson.loads(created.body)
    assert device["deviceId"] == "dev1" and device["status"] == "enabled"
    assert dict(created.headers or [])["etag"] == f'"{device["etag"]}"'
    read = orjson.loads((await door.send("GET", "/devices/dev1", authorization=owner)).body)
    assert read["connectionState"] == "Connected"  # from the presence stub
    assert read["connectionStateUpdatedTime"].startswith("2023-11-14T22:13:20")
    for listing in ("/devices", "/devices/"):  # Node's Registry.list() adds the slash
        listed = orjson.loads((await door.send("GET", listing, authorization=owner)).body)
        assert [d["deviceId"] for d in listed] == ["dev1"], listing
    again = azure_error(await door.send("PUT", "/devices/dev1", {}, authorization=owner))
    assert (again["status"], again["iothub-errorcode"]) == (409, "DeviceAlreadyExists")
    deleted = await door.send("DELETE", "/devices/dev1", authorization=owner)
    assert (deleted.status, deleted.body) == (204, b"")
    gone = azure_error(await door.send("GET", "/devices/dev1", authorization=owner))
    assert (gone["status"], gone["errorCode"], gone["iothub-errorcode"]) == (404, 404001, "DeviceNotFound")


# -- through the HTTP protocol, still without a socket ----------------------------------------------------


class _MemoryTransport(asyncio.Transport):
    """Collects what the server writes; no socket underneath."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.first_write: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data
        if not self.first_write.done():
            self.first_write.set_result(None)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_raw_http_bytes_reach_the_front_door_and_azures_answer_goes_back(
    door: FrontDoor, engine: StubEngine
) -> None:
    """The HTTP server's protocol builds the Request (lower-cased headers, decoded path parameters)."""
    server = HttpServer(door.routes)
    protocol = server.protocol_factory()
    transport = _MemoryTransport()
    protocol.connection_made(transport)
    body = b'{"methodName":"reboot","payload":null}'
    token = (await door.token()).encode()
    protocol.data_received(
        b"POST /twins/dev%2D1/modules/m1/methods?api-version=2021-04-12 HTTP/1.1\r\n"
        b"Host: " + HUB.encode() + b"\r\nAuthorization: " + token + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
    )
    await asyncio.wait_for(transport.first_write, 5)  # a guard against a hang; the registry reads in a thread
    head, _, content = bytes(transport.written).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert orjson.loads(content) == {"status": 200, "payload": {"ok": True}}
    assert engine.calls[0].target == "dev-1/m1"
    protocol.connection_lost(None)
    await server.close()


async def test_queries_page_and_report_bad_queries_with_their_position(door: FrontDoor) -> None:
    owner = await door.token("registryReadWrite")
    for n in range(3):
        assert (await door.send("PUT", f"/devices/d{n}", {}, authorization=owner)).status == 200
    first = await door.send(
        "POST",
        "/devices/query",
        {"query": "SELECT deviceId FROM devices"},
        authorization=owner,
        **{"x-ms-max-item-count": "2"},
    )
    assert first.status == 200 and orjson.loads(first.body) == [{"deviceId": "d0"}, {"deviceId": "d1"}]
    headers = dict(first.headers or [])
    assert headers["x-ms-item-type"] == "Raw" and headers["x-ms-continuation"] == "2"
    rest = await door.send(
        "POST",
        "/devices/query",
        {"query": "SELECT deviceId FROM devices"},
        authorization=owner,
        **{"x-ms-max-item-count": "2", "x-ms-continuation": "2"},
    )
    assert orjson.loads(rest.body) == [{"deviceId": "d2"}] and "x-ms-continuation" not in dict(
        rest.headers or []
    )
    bad = azure_error(
        await door.send(
            "POST", "/devices/query", {"query": "SELECT * FROM devices WHERE"}, authorization=owner
        )
    )
    assert bad["status"] == 400 and "at position 27" in bad["message"], bad
    jobs = await door.send(
        "POST", "/devices/query", {"query": "SELECT * FROM devices.jobs"}, authorization=owner
    )
    assert orjson.loads(jobs.body) == [] and dict(jobs.headers or [])["x-ms-item-type"] == "DeviceJob"
    for body, header in (({"q": "x"}, None), ({"query": "SELECT * FROM devices"}, "0")):
        refused = await door.send(
            "POST",
            "/devices/query",
            body,
            authorization=owner,
            **({"x-ms-max-item-count": header} if header else {}),
        )
        assert refused.status == 400
