"""One connection protocol against a recording transport: flow control and writes, no sockets.

What a connection writes in one loop iteration reaches the transport in one write at the iteration's
end (methodhub.burst): a test lets the loop turn (``await turn()``) before it looks at the writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from methodhub.burst import BURST_LIMIT
from methodhub.http.flow import MAX_PIPELINE
from methodhub.http.messages import Deferred, Request, Response, SwitchProtocol
from methodhub.http.routing import Routes
from methodhub.http.server import HttpServer
from tests.unit.http.support import request


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.reading = True
        self.closing = False
        self.protocol: asyncio.BaseProtocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing, "write after close"
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def can_write_eof(self) -> bool:
        return False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol


async def turn() -> None:
    """Let the loop run one iteration: the connection's burst is written."""
    await asyncio.sleep(0)


def responses(transport: RecordingTransport) -> list[tuple[bytes, bytes]]:
    """(status line, body) of every response written, in order, across all the writes."""
    data = b"".join(transport.writes)
    found: list[tuple[bytes, bytes]] = []
    while data:
        head, separator, rest = data.partition(b"\r\n\r\n")
        assert separator, f"not a response: {data[:80]!r}"
        lines = head.split(b"\r\n")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        found.append((lines[0], rest[:length]))
        data = rest[length:]
    return found


def statuses(transport: RecordingTransport) -> list[bytes]:
    return [status for status, _ in responses(transport)]


@pytest.fixture
def calls() -> list[str]:
    return []


Connection = tuple[asyncio.Protocol, RecordingTransport, dict[str, Any]]
"""The protocol under test, its transport, and knobs for its handler (``gate``: a future to return)."""


@pytest.fixture
async def connection(calls: list[str]) -> AsyncIterator[Connection]:
    state: dict[str, Any] = {"gate": None}

    def handler(request: Request) -> Response | asyncio.Future[Response]:
        calls.append(request.path)
        if state["gate"] is not None:
            return state["gate"]
        return Response(200, request.path.encode(), "text/plain")

    routes = Routes()
    routes.add("GET", "/{name}", handler)
    server = HttpServer(routes)
    protocol = server.protocol_factory()
    transport = RecordingTransport()
    protocol.connection_made(transport)
    yield protocol, transport, state
    protocol.connection_lost(None)


async def test_one_write_per_loop_iteration_in_request_order(
    connection: Connection, calls: list[str]
) -> None:
    protocol, transport, _ = connection
    protocol.data_received(request("GET", "/a") + request("GET", "/b"))
    assert calls == ["/a", "/b"]
    assert transport.writes == []  # queued in the connection's burst until the iteration ends
    await turn()
    assert len(transport.writes) == 1
    assert responses(transport) == [(b"HTTP/1.1 200 OK", b"/a"), (b"HTTP/1.1 200 OK", b"/b")]


async def test_paused_writing_stops_the_pipeline(connection: Connection, calls: list[str]) -> None:
    protocol, transport, _ = connection
    protocol.pause_writing()
    protocol.data_received(request("GET", "/a") + request("GET", "/b"))
    assert calls == [] and transport.writes == []
    protocol.resume_writing()
    assert calls == ["/a", "/b"]
    await turn()
    assert statuses(transport) == [b"HTTP/1.1 200 OK"] * 2


async def test_reading_pauses_when_the_pipeline_is_full(connection: Connection, calls: list[str]) -> None:
    protocol, transport, state = connection
    gate: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    state["gate"] = gate
    protocol.data_received(b"".join(request("GET", f"/{index}") for index in range(MAX_PIPELINE + 1)))
    assert calls == ["/0"]  # the first is pending; the rest wait in the queue
    assert not transport.reading
    state["gate"] = None
    gate.set_result(Response(200, b"first", "text/plain"))
    await asyncio.sleep(0)  # the done-callback runs on the next loop iteration
    assert len(calls) == MAX_PIPELINE + 1
    assert transport.reading
    await turn()
    bodies = [body for _, body in responses(transport)]
    assert bodies == [b"first"] + [f"/{i}".encode() for i in range(1, MAX_PIPELINE + 1)]


async def test_nothing_is_written_after_the_connection_is_lost(
    connection: Connection, calls: list[str]
) -> None:
    protocol, transport, state = connection
    gate: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    state["gate"] = gate
    protocol.data_received(request("GET", "/a"))
    protocol.connection_lost(ConnectionResetError())
    transport.closing = True  # any write now fails the test
    assert gate.cancelled()
    await asyncio.sleep(0)
    assert transport.writes == []


async def test_a_response_due_when_the_connection_is_lost_is_dropped(
    connection: Connection, calls: list[str]
) -> None:
    protocol, transport, state = connection
    gate: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    state["gate"] = gate
    protocol.data_received(request("GET", "/a"))
    gate.set_result(Response(200))  # the done-callback is scheduled, not yet run...
    protocol.connection_lost(ConnectionResetError())  # ...when the client goes away
    transport.closing = True
    await asyncio.sleep(0)
    assert transport.writes == []


async def test_a_request_arriving_byte_by_byte(connection: Connection, calls: list[str]) -> None:
    protocol, transport, _ = connection
    data = request("GET", "/slowly?x=1", headers=[("X-Long-Header-Name", "some value")])
    for index in range(len(data)):
        protocol.data_received(data[index : index + 1])
    assert calls == ["/slowly"]
    await turn()
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"/slowly")


async def test_a_body_bigger_than_a_parser_slice() -> None:
    bodies: list[bytes] = []

    def keep(request: Request) -> Response:
        bodies.append(request.body)
        return Response(200)

    routes = Routes()
    routes.add("POST", "/upload", keep)
    protocol = HttpServer(routes).protocol_factory()
    transport = RecordingTransport()
    protocol.connection_made(transport)
    body = bytes(range(256)) * 400  # 100 KiB: several slices, several on_body calls
    protocol.data_received(request("POST", "/upload", body) + request("POST", "/upload", b"next"))
    assert bodies == [body, b"next"]
    protocol.connection_lost(None)


async def test_held_back_requests_are_parsed_once_the_queue_drains(
    connection: Connection, calls: list[str]
) -> None:
    protocol, transport, state = connection
    gate: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    state["gate"] = gate
    count = 2000  # ~60 KB: more than one parser slice
    protocol.data_received(b"".join(request("GET", f"/{index}") for index in range(count)))
    assert calls == ["/0"]
    assert not transport.reading  # the rest is queued or held back, not read further
    state["gate"] = None
    gate.set_result(Response(200, b"0", "text/plain"))
    await asyncio.sleep(0)
    assert calls == [f"/{index}" for index in range(count)]
    assert transport.reading
    await turn()
    assert [body for _, body in responses(transport)] == [b"0"] + [f"/{i}".encode() for i in range(1, count)]


def serve(routes: Routes, transport: RecordingTransport | None = None) -> tuple[Any, RecordingTransport]:
    protocol = HttpServer(routes).protocol_factory()
    transport = transport or RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def test_a_raising_handler_gets_500_and_the_connection_goes_on() -> None:
    """Both of _run's ``except`` clauses on one connection: a method not allowed, then a handler that
    raises (one ``exc`` name for both crashed the connection when the module was compiled)."""

    def boom(request: Request) -> Response:
        raise RuntimeError("a bug in a handler")

    routes = Routes()
    routes.add("GET", "/boom", boom)
    routes.add("GET", "/fine", lambda request: Response(200, b"fine", "text/plain"))
    protocol, transport = serve(routes)
    protocol.data_received(request("POST", "/fine") + request("GET", "/boom") + request("GET", "/fine"))
    await turn()
    assert statuses(transport) == [
        b"HTTP/1.1 405 Method Not Allowed",
        b"HTTP/1.1 500 Internal Server Error",
        b"HTTP/1.1 200 OK",
    ]
    assert not transport.closing
    protocol.data_received(request("GET", "/boom"))
    await turn()
    assert statuses(transport)[-1] == b"HTTP/1.1 500 Internal Server Error" and not transport.closing
    protocol.connection_lost(None)


async def test_a_close_writes_the_queued_responses_first(connection: Connection, calls: list[str]) -> None:
    protocol, transport, _ = connection
    protocol.data_received(request("GET", "/a") + request("GET", "/b", headers=[("Connection", "close")]))
    assert transport.closing  # closed at once, after one write of both (a write after close fails)
    assert len(transport.writes) == 1
    assert [body for _, body in responses(transport)] == [b"/a", b"/b"]


async def test_an_abort_drops_the_queued_responses(connection: Connection, calls: list[str]) -> None:
    protocol, transport, _ = connection
    protocol.data_received(request("GET", "/a"))
    protocol.abort()  # type: ignore[attr-defined]
    await turn()
    assert calls == ["/a"] and transport.writes == []


async def test_what_the_next_protocol_writes_comes_after_the_queued_responses_and_the_101() -> None:
    class Greeter(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            cast(asyncio.Transport, transport).write(b"hello")  # straight to the transport

    routes = Routes()
    routes.add("GET", "/a", lambda request: Response(200, b"a", "text/plain"))
    routes.add("GET", "/up", lambda request: SwitchProtocol([("upgrade", "test")], Greeter()))
    protocol, transport = serve(routes)
    upgrade = request("GET", "/up", headers=[("Upgrade", "test"), ("Connection", "upgrade")])
    protocol.data_received(request("GET", "/a") + upgrade)
    assert len(transport.writes) == 2 and transport.writes[1] == b"hello"
    first, _, rest = transport.writes[0].partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK") and rest.startswith(b"aHTTP/1.1 101 Switching Protocols\r\n")
    assert rest.endswith(b"\r\n\r\n")
    await turn()
    assert len(transport.writes) == 2


class HighWaterTransport(RecordingTransport):
    """Tells its protocol to pause writing once more than 64 KiB are written (as a socket whose
    client does not read)."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        super().write(data)
        if sum(map(len, self.writes)) > 64 * 1024 and self.protocol is not None:
            cast(asyncio.Protocol, self.protocol).pause_writing()


async def test_a_big_response_reaches_the_transport_at_once_and_its_pause_stops_the_pipeline() -> None:
    served: list[int] = []

    def big(request: Request) -> Response:
        served.append(len(served))
        return Response(200, b"x" * BURST_LIMIT, "application/octet-stream")

    routes = Routes()
    routes.add("GET", "/big", big)
    transport = HighWaterTransport()
    protocol, _ = serve(routes, transport)
    transport.protocol = protocol
    protocol.data_received(request("GET", "/big") * 3)
    assert served == [0]  # its write paused the transport before the next request was served
    assert len(transport.writes) == 1
    protocol.resume_writing()
    assert served == [0, 1]
    protocol.connection_lost(None)


async def test_a_deferred_response_is_made_from_its_future_when_it_is_done() -> None:
    """A handler's Deferred: the response made by ``respond`` in the future's done-callback (one turn
    after the future is done); ``respond`` raising is a 500; the connection keeps serving."""
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[int]] = []

    def later(request: Request) -> Deferred:
        future: asyncio.Future[int] = loop.create_future()
        futures.append(future)
        return Deferred(future, lambda done: Response(200, str(done.result()).encode(), "text/plain"))

    routes = Routes()
    routes.add("GET", "/later", later)
    routes.add("GET", "/broken", lambda request: Deferred(_done(loop, 1), lambda done: 1 / 0))  # type: ignore[arg-type,return-value]
    protocol, transport = serve(routes)
    protocol.data_received(request("GET", "/later") + request("GET", "/broken") + request("GET", "/later"))
    await turn()
    assert transport.writes == [] and len(futures) == 1  # the first waits: the pipeline keeps order
    futures[0].set_result(7)
    for _ in range(4):
        await turn()
    futures[1].set_result(8)
    for _ in range(3):
        await turn()
    assert [(status, body) for status, body in responses_with_status(transport)] == [
        (b"HTTP/1.1 200 OK", b"7"),
        (b"HTTP/1.1 500 Internal Server Error", None),
        (b"HTTP/1.1 200 OK", b"8"),
    ]
    protocol.connection_lost(None)


async def test_a_deferred_future_is_cancelled_when_the_client_goes_and_its_error_retrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[int]] = []

    def later(request: Request) -> Deferred:
        futures.append(loop.create_future())
        return Deferred(futures[-1], lambda done: Response(200, b"", "text/plain"))

    routes = Routes()
    routes.add("GET", "/later", later)
    gone, _ = serve(routes)
    gone.data_received(request("GET", "/later"))
    gone.connection_lost(None)
    assert futures[0].cancelled()  # the hub stops working on it
    failed, _ = serve(routes)
    failed.data_received(request("GET", "/later"))
    futures[1].set_exception(RuntimeError("ended as the client went"))
    failed.connection_lost(None)  # in the same iteration: its done-callback has not run
    del futures[:]
    import gc

    await turn()
    gc.collect()
    assert "never retrieved" not in caplog.text


def _done(loop: asyncio.AbstractEventLoop, value: int) -> asyncio.Future[int]:
    future: asyncio.Future[int] = loop.create_future()
    future.set_result(value)
    return future


def responses_with_status(transport: RecordingTransport) -> list[tuple[bytes, bytes | None]]:
    """(status line, body) of each response written; body None for an error page."""
    found = []
    for status in statuses(transport):
        found.append(status)
    bodies = [body for _, body in responses(transport)]
    return [(s, b if s.endswith(b"200 OK") else None) for s, b in zip(found, bodies, strict=True)]
