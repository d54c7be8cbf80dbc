"""The HTTP server over real sockets on 127.0.0.1, driven byte by byte with a raw client."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import httpx
import orjson
import pytest

from methodhub.http.messages import HttpError, Request, Response, StreamResponse, SwitchProtocol
from methodhub.http.routing import Routes
from methodhub.http.server import HttpServer
from methodhub.process.tls import ServerCertificate, ensure_dev_server_cert
from methodhub.process.tls import server_context as tls_server_context
from tests.unit.http.support import IO_TIMEOUT, RawClient, RawResponse, request

Start = Callable[..., Awaitable[tuple[HttpServer, int]]]
Connect = Callable[[int], Awaitable[RawClient]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    servers: list[HttpServer] = []

    async def start(routes: Routes, **options: Any) -> tuple[HttpServer, int]:
        server = HttpServer(routes, **options)
        listener = await server.listen("127.0.0.1", 0)
        servers.append(server)
        return server, listener.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    clients: list[RawClient] = []

    async def connect(port: int) -> RawClient:
        client = await RawClient.connect(port)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.close()


def echo(request: Request) -> Response:
    """Everything the handler saw, as JSON."""
    return Response.json(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "raw_query": request.raw_query,
            "params": request.path_params,
            "headers": request.headers,
            "body": request.body.decode("latin-1"),
            "peer": list(request.peer) if request.peer else None,
            "scheme": request.scheme,
        }
    )


def echo_routes() -> Routes:
    routes = Routes()
    routes.add("GET", "/echo", echo)
    routes.add("POST", "/echo", echo)
    routes.add("POST", "/twins/{device_id}/methods", echo)
    return routes


async def wait_until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition()`` holds (a guard against hangs, not a timing check)."""
    for _ in range(int(IO_TIMEOUT / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


# -- basics -------------------------------------------------------------------------------------------


async def test_request_fields_reach_the_handler(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes())
    client = await connect(port)
    await client.send(
        request(
            "POST",
            "/twins/dev%201%2Fx/methods?api-version=2021-04-12&b=x%20y+z&b=last&empty",
            b'{"methodName":"m"}',
            headers=[
                ("X-Multi", "one"),
                ("x-multi", "two  "),
                ("Authorization", "SharedAccessSignature sr=a"),
            ],
        )
    )
    response = await client.response()
    assert response.status == 200
    seen = orjson.loads(response.body)
    assert seen["method"] == "POST"
    assert seen["path"] == "/twins/dev%201%2Fx/methods"  # raw, not decoded
    assert seen["params"] == {"device_id": "dev 1/x"}
    assert seen["raw_query"] == "api-version=2021-04-12&b=x%20y+z&b=last&empty"
    assert seen["query"] == {"api-version": "2021-04-12", "b": "last", "empty": ""}
    assert seen["headers"]["x-multi"] == "one, two"  # RFC 9110 §5.3, trailing OWS removed
    assert seen["headers"]["authorization"] == "SharedAccessSignature sr=a"
    assert seen["body"] == '{"methodName":"m"}'
    assert seen["peer"][0] == "127.0.0.1" and seen["peer"][1] > 0
    assert seen["scheme"] == "http"


async def test_response_framing_headers(start: Start, connect: Connect) -> None:
    routes = Routes()
    routes.add("GET", "/text", lambda r: Response(201, b"hello", "text/plain", [("X-Custom", "1")]))
    routes.add("GET", "/none", lambda r: Response(204, content_type=None))
    _, port = await start(routes)
    client = await connect(port)
    await client.send(request("GET", "/text") + request("GET", "/none"))
    text = await client.response()
    assert text.status == 201 and text.body == b"hello"
    assert text.header("content-type") == "text/plain"
    assert text.header("content-length") == "5"
    assert text.header("server") == "methodhub"
    assert text.header("x-custom") == "1"
    assert email.utils.parsedate_to_datetime(text.header("date") or "").tzname() == "UTC"
    assert text.header("connection") is None  # HTTP/1.1: persistent by default
    no_content = await client.response()
    assert no_content.status == 204
    assert no_content.header("content-length") is None  # RFC 9110 §8.6
    assert no_content.header("content-type") is None


async def test_with_an_ordinary_client(start: Start) -> None:
    _, port = await start(echo_routes())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        first = await client.post("/twins/a/methods", content=b"x" * 5000)  # bigger than one read
        second = await client.get("/echo?x=1")
    assert first.status_code == 200 and first.json()["body"] == "x" * 5000
    assert second.json()["query"] == {"x": "1"}


async def test_absolute_form_target(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes())
    client = await connect(port)
    await client.send(request("GET", "http://test/echo?x=1"))  # RFC 9112 §3.2.2: MUST accept
    seen = orjson.loads((await client.response()).body)
    assert seen["path"] == "/echo" and seen["query"] == {"x": "1"}


# -- routing over HTTP --------------------------------------------------------------------------------


async def test_not_found_and_method_not_allowed(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes())
    client = await connect(port)
    await client.send(request("GET", "/nope") + request("DELETE", "/echo"))
    missing = await client.response()
    assert missing.status == 404
    assert orjson.loads(missing.body)["error"] == "not_found"
    wrong = await client.response()
    assert wrong.status == 405
    assert wrong.header("allow") == "GET, HEAD, POST"  # RFC 9110 §15.5.6
    assert orjson.loads(wrong.body)["error"] == "method_not_allowed"


async def test_custom_not_found_and_method_not_allowed_hooks(start: Start, connect: Connect) -> None:
    _, port = await start(
        echo_routes(),
        not_found=lambda request: Response(404, b"gone " + request.path.encode(), "text/plain"),
        method_not_allowed=lambda request, allowed: Response(405, ",".join(allowed).encode(), "text/plain"),
    )
    client = await connect(port)
    await client.send(request("GET", "/nope") + request("PUT", "/echo"))
    missing = await client.response()
    assert (missing.status, missing.body) == (404, b"gone /nope")
    wrong = await client.response()
    assert (wrong.status, wrong.body) == (405, b"GET,HEAD,POST")
    assert wrong.header("allow") == "GET, HEAD, POST"  # added because the hook left it out


# -- keep-alive and connection management -------------------------------------------------------------


async def test_keep_alive_serves_many_requests_on_one_connection(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes())
    client = await connect(port)
    ports = set()
    for index in range(5):
        await client.send(request("POST", "/echo", f"request {index}".encode()))
        response = await client.response()
        seen = orjson.loads(response.body)
        assert seen["body"] == f"request {index}"
        ports.add(seen["peer"][1])
    assert len(ports) == 1  # the same connection throughout


async def test_connection_close_is_honoured(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes())
    client = await connect(port)
    await client.send(request("GET", "/echo", headers=[("Connection", "close")]))
    response = await client.response()
    assert response.status == 200
    assert response.header("connection") == "close"
    assert await client.closed_by_server()


async def test_http_1_0_closes_unless_keep_alive_is_asked(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes())
    plain = await connect(port)
    await plain.send(request("GET", "/echo", version="HTTP/1.0"))
    response = await plain.response()
    assert response.status == 200 and response.header("connection") == "close"
    assert await plain.closed_by_server()

    keep = await connect(port)
    for _ in range(2):
        await keep.send(request("GET", "/echo", headers=[("Connection", "keep-alive")], version="HTTP/1.0"))
        response = await keep.response()
        assert response.status == 200
        assert response.header("connection") == "keep-alive"  # HTTP/1.0 needs the echo


async def test_idle_keep_alive_connection_is_closed(start: Start, connect: Connect) -> None:
    server, port = await start(echo_routes(), keepalive_timeout=0.2)
    client = await connect(port)
    await client.send(request("GET", "/echo"))
    assert (await client.response()).status == 200
    assert await client.closed_by_server()
    await wait_until(lambda: server.connection_count == 0)


async def test_unfinished_request_times_out_with_408(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes(), keepalive_timeout=0.2)
    client = await connect(port)
    await client.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nabc")
    response = await client.response()
    assert response.status == 408
    assert response.header("connection") == "close"
    assert await client.closed_by_server()


async def test_client_eof_counts_as_disconnect(start: Start, connect: Connect) -> None:
    gate: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    routes = Routes()
    routes.add("GET", "/later", lambda r: gate)
    server, port = await start(routes)
    client = await connect(port)
    await client.send(request("GET", "/later"))
    await wait_until(lambda: server.connection_count == 1)
    client.writer.write_eof()  # half-close: indistinguishable from a client that gave up
    await wait_until(gate.done)
    assert gate.cancelled()
    assert await client.closed_by_server()


async def drip(client: RawClient, data: bytes) -> RawResponse:
    """Send ``data`` a byte at a time (a slowloris client) until the server answers; the answer.
    Each byte used to re-arm the idle timer, so without a head/body deadline this never ends."""
    loop = asyncio.get_running_loop()
    reply = loop.create_task(client.response())
    for index in range(len(data)):
        if reply.done():
            break
        try:
            await client.send(data[index : index + 1])
        except ConnectionError:
            break
        await asyncio.sleep(0.02)
    return await reply


SLOW_HEAD = b"POST /echo HTTP/1.1\r\nHost: test\r\nX-Padding: " + b"p" * 5000 + b"\r\n\r\n"


async def test_a_request_head_dripping_in_gets_408_at_its_deadline(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes(), request_head_timeout=0.3, keepalive_timeout=30)
    client = await connect(port)
    await client.send(request("GET", "/echo"))  # an established connection, then a slow second head
    assert (await client.response()).status == 200
    response = await drip(client, SLOW_HEAD)
    assert response.status == 408 and response.header("connection") == "close"
    assert orjson.loads(response.body) == {
        "error": "request_timeout",
        "message": "The request head (request line and header fields) did not arrive within 0.3 s.",
    }
    assert await client.closed_by_server()


async def test_a_first_request_head_counts_from_the_connection(start: Start, connect: Connect) -> None:
    server, port = await start(echo_routes(), request_head_timeout=0.3, keepalive_timeout=30)
    client = await connect(port)
    response = await drip(client, SLOW_HEAD)
    assert response.status == 408
    assert await client.closed_by_server()
    await wait_until(lambda: server.connection_count == 0)


async def test_a_body_dripping_in_gets_408_at_its_deadline(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes(), request_body_timeout=0.3, keepalive_timeout=30)
    client = await connect(port)
    await client.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5000\r\n\r\n")
    response = await drip(client, b"b" * 5000)
    assert response.status == 408
    assert orjson.loads(response.body)["message"] == "The request body did not arrive within 0.3 s."
    assert await client.closed_by_server()


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
    start: Start, connect: Connect
) -> None:
    server, port = await start(echo_routes(), request_head_timeout=0.2, keepalive_timeout=30)
    client = await connect(port)
    assert await client.closed_by_server()  # EOF with no bytes: no 408 to a request never made
    await wait_until(lambda: server.connection_count == 0)


async def test_a_slow_handler_is_not_a_slow_request(start: Start, connect: Connect) -> None:
    gate: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    routes = echo_routes()
    routes.add("GET", "/later", lambda r: gate)
    _, port = await start(routes, request_head_timeout=0.1, request_body_timeout=0.1, keepalive_timeout=30)
    client = await connect(port)
    await client.send(request("GET", "/later"))
    await asyncio.sleep(0.5)  # several head/body periods pass while the handler runs
    gate.set_result(Response(200, b"done", "text/plain"))
    response = await client.response()
    assert response.status == 200 and response.body == b"done"
    await client.send(request("GET", "/echo"))  # and the connection stays usable
    assert (await client.response()).status == 200


@pytest.mark.parametrize("coding", ["gzip, chunked", "deflate,chunked", "chunked, chunked", "identity"])
async def test_a_transfer_coding_other_than_chunked_is_501(
    start: Start, connect: Connect, coding: str
) -> None:
    _, port = await start(echo_routes())
    client = await connect(port)
    await client.send(
        f"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: {coding}\r\n\r\n".encode()
        + b"3\r\nabc\r\n0\r\n\r\n"
    )
    response = await client.response()
    assert response.status in (400, 501), response  # llhttp itself refuses some as malformed
    if coding == "gzip, chunked":  # llhttp reads this one as chunked and handed over gzip bytes
        assert response.status == 501 and orjson.loads(response.body)["error"] == "not_implemented"
    assert await client.closed_by_server()


async def test_chunked_in_any_case_is_still_accepted(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes())
    client = await connect(port)
    await client.send(
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    assert orjson.loads((await client.response()).body)["body"] == "abc"


# -- admission: connection limits per listener -------------------------------------------------------


async def test_past_the_unestablished_cap_the_oldest_silent_connection_makes_room(
    start: Start, connect: Connect
) -> None:
    server, port = await start(echo_routes(), max_unestablished=3)
    silent = [await connect(port) for _ in range(3)]
    await wait_until(lambda: server.connection_count == 3)
    newcomer = await connect(port)
    await newcomer.send(request("GET", "/echo"))
    assert (await newcomer.response()).status == 200
    assert await silent[0].closed_by_server()
    for other in silent[1:]:  # the others are still held
        await other.send(request("GET", "/echo"))
        assert (await other.response()).status == 200


async def test_at_the_connection_cap_an_idle_connection_is_shed_never_a_busy_one(
    start: Start, connect: Connect
) -> None:
    gate: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    called = asyncio.Event()

    def later(request: Request) -> asyncio.Future[Response]:
        called.set()
        return gate

    routes = echo_routes()
    routes.add("GET", "/later", later)
    server, port = await start(routes, max_connections=2)
    busy = await connect(port)
    await busy.send(request("GET", "/later"))
    await asyncio.wait_for(called.wait(), IO_TIMEOUT)
    idle = await connect(port)
    await idle.send(request("GET", "/echo"))
    assert (await idle.response()).status == 200
    newcomer = await connect(port)
    await newcomer.send(request("GET", "/echo"))
    assert (await newcomer.response()).status == 200
    assert await idle.closed_by_server()
    gate.set_result(Response(200, b"still here", "text/plain"))
    assert (await busy.response()).body == b"still here"
    assert server.admissions[0].shed == 1


async def test_when_every_connection_is_busy_a_new_one_is_refused(start: Start, connect: Connect) -> None:
    gate: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    routes = Routes()
    routes.add("GET", "/later", lambda r: gate)
    server, port = await start(routes, max_connections=1)
    busy = await connect(port)
    await busy.send(request("GET", "/later"))
    await wait_until(lambda: server.admissions[0].busy_count == 1)
    refused = await connect(port)
    assert await refused.closed_by_server()
    assert server.admissions[0].refused == 1
    gate.set_result(Response(200, b"ok", "text/plain"))
    assert (await busy.response()).body == b"ok"


async def test_each_listener_has_its_own_limits(start: Start, connect: Connect) -> None:
    server, port = await start(echo_routes(), max_unestablished=1)
    other = await server.listen("127.0.0.1", 0)
    other_port = other.sockets[0].getsockname()[1]
    first = await connect(port)
    second = await connect(other_port)
    await wait_until(lambda: server.connection_count == 2)
    for client in (first, second):
        await client.send(request("GET", "/echo"))
        assert (await client.response()).status == 200
    assert [a.shed for a in server.admissions] == [0, 0]


# -- pipelining -------------------------------------------------------------------------------------


async def test_pipelined_responses_keep_request_order(start: Start, connect: Connect) -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[Response] = loop.create_future()
    calls: list[str] = []

    def slow(request: Request) -> asyncio.Future[Response]:
        calls.append("slow")
        return gate

    def fast(request: Request) -> Response:
        calls.append("fast")
        return Response(200, b"fast", "text/plain")

    routes = Routes()
    routes.add("GET", "/slow", slow)
    routes.add("GET", "/fast", fast)
    _, port = await start(routes)
    client = await connect(port)
    await client.send(request("GET", "/slow") + request("GET", "/fast"))  # one write
    await wait_until(lambda: calls == ["slow"])
    assert calls == ["slow"]  # served one at a time: /fast waits for /slow
    gate.set_result(Response(200, b"slow", "text/plain"))
    first = await client.response()
    second = await client.response()
    assert (first.body, second.body) == (b"slow", b"fast")
    assert calls == ["slow", "fast"]


async def test_deep_pipeline_is_answered_completely_and_in_order(start: Start, connect: Connect) -> None:
    routes = Routes()
    routes.add("GET", "/n/{index}", lambda r: Response(200, r.path_params["index"].encode(), "text/plain"))
    _, port = await start(routes)
    client = await connect(port)
    count = 3000  # ~100 KB in one write: more than one parser slice and MAX_PIPELINE requests
    await client.send(b"".join(request("GET", f"/n/{index}") for index in range(count)))
    bodies = [(await client.response()).body for _ in range(count)]
    assert bodies == [str(index).encode() for index in range(count)]


async def test_head_sends_length_but_no_body(start: Start, connect: Connect) -> None:
    routes = Routes()
    routes.add("GET", "/doc", lambda r: Response(200, b"0123456789", "text/plain"))
    _, port = await start(routes)
    client = await connect(port)
    await client.send(request("HEAD", "/doc") + request("GET", "/doc"))
    head = await client.response(head_request=True)
    assert head.status == 200 and head.header("content-length") == "10"
    after = await client.response()  # parses only if HEAD sent no body bytes
    assert after.status == 200 and after.body == b"0123456789"


# -- Expect: 100-continue ------------------------------------------------------------------------------


async def test_expect_100_continue(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes())
    client = await connect(port)
    await client.send(
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    _, _, head = await client.read_head()
    assert head == b"HTTP/1.1 100 Continue\r\n\r\n"
    await client.send(b"hello")
    response = await client.response()
    assert response.status == 200 and orjson.loads(response.body)["body"] == "hello"


async def test_expect_100_continue_waits_for_earlier_pipelined_responses(
    start: Start, connect: Connect
) -> None:
    gate: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    routes = echo_routes()
    routes.add("GET", "/slow", lambda r: gate)
    _, port = await start(routes)
    client = await connect(port)
    await client.send(
        request("GET", "/slow")
        + b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    )
    gate.set_result(Response(200, b"slow", "text/plain"))
    first = await client.response()
    assert first.body == b"slow"  # the final response of the earlier request comes first
    status, _, _ = await client.read_head()
    assert status == 100
    await client.send(b"ok")
    assert orjson.loads((await client.response()).body)["body"] == "ok"


async def test_expect_100_continue_with_oversize_body_gets_413_instead(
    start: Start, connect: Connect
) -> None:
    _, port = await start(echo_routes(), max_body_size=1000)
    client = await connect(port)
    await client.send(
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
    )
    response = await client.response()
    assert response.status == 413  # and no interim 100 before it
    assert await client.closed_by_server()


# -- limits and protocol errors --------------------------------------------------------------------


async def test_declared_oversize_body_is_refused_without_reading_it(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes(), max_body_size=1000)
    client = await connect(port)
    await client.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10000000\r\n\r\n")  # no body
    response = await client.response()
    assert response.status == 413
    assert orjson.loads(response.body)["error"] == "payload_too_large"
    assert response.header("connection") == "close"
    assert await client.closed_by_server()


async def test_oversize_body_sent_anyway_still_gets_its_413(start: Start) -> None:
    _, port = await start(echo_routes(), max_body_size=1000)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        response = await client.post("/echo", content=b"x" * (1024 * 1024))
    assert response.status_code == 413


async def test_chunked_body_growing_past_the_limit(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes(), max_body_size=1000)
    client = await connect(port)
    await client.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(3):
        await client.send(b"258\r\n" + b"x" * 600 + b"\r\n")
    response = await client.response()
    assert response.status == 413
    assert await client.closed_by_server()


async def test_chunked_body_within_the_limit(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes(), max_body_size=1000)
    client = await connect(port)
    await client.send(
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    response = await client.response()
    assert orjson.loads(response.body)["body"] == "abcde"


async def test_header_section_too_large(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes(), max_header_size=1024)
    client = await connect(port)
    await client.send(request("GET", "/echo", headers=[("X-Big", "y" * 2000)]))
    response = await client.response()
    assert response.status == 431
    assert response.header("connection") == "close"
    assert await client.closed_by_server()


async def test_header_that_never_ends_is_refused(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes(), max_header_size=1024)
    client = await connect(port)
    await client.send(b"GET /echo HTTP/1.1\r\nX-Endless: ")
    for _ in range(40):  # 40 KB of one header value, no line end: the parser would buffer it all
        await client.send(b"z" * 1024)
    response = await client.response()
    assert response.status == 431


async def test_request_target_too_long(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes(), max_header_size=1024)
    client = await connect(port)
    await client.send(request("GET", "/echo?" + "a" * 2000))
    response = await client.response()
    assert response.status == 414
    assert await client.closed_by_server()


@pytest.mark.parametrize(
    "garbage",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        # Content-Length with Transfer-Encoding: the classic request-smuggling ambiguity (RFC 9112 §6.1)
        b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET /echo HTTP/1.1\r\n\r\n",  # RFC 9112 §3.2: HTTP/1.1 needs Host
        b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ],
)
async def test_malformed_request_is_400_and_closes(start: Start, connect: Connect, garbage: bytes) -> None:
    _, port = await start(echo_routes())
    client = await connect(port)
    await client.send(garbage)
    response = await client.response()
    assert response.status == 400
    assert orjson.loads(response.body)["error"] == "bad_request"
    assert await client.closed_by_server()


async def test_protocol_error_after_good_requests_comes_last(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes())
    client = await connect(port)
    await client.send(request("GET", "/echo") + b"NOT HTTP AT ALL\r\n\r\n")
    assert (await client.response()).status == 200
    assert (await client.response()).status == 400
    assert await client.closed_by_server()


async def test_on_error_shapes_protocol_errors(start: Start, connect: Connect) -> None:
    seen: list[tuple[Request | None, BaseException]] = []

    def on_error(request: Request | None, exc: BaseException) -> Response:
        seen.append((request, exc))
        status = exc.status if isinstance(exc, HttpError) else 500
        return Response(status, b"custom", "text/plain")

    _, port = await start(echo_routes(), on_error=on_error, max_body_size=10)
    garbage = await connect(port)
    await garbage.send(b"GARBAGE\r\n\r\n")
    assert (await garbage.response()).body == b"custom"
    big = await connect(port)
    await big.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\n\r\n")
    response = await big.response()
    assert (response.status, response.body) == (413, b"custom")
    (no_request, bad), (with_request, too_big) = seen
    assert no_request is None and isinstance(bad, HttpError) and bad.status == 400
    assert with_request is not None and with_request.path == "/echo"
    assert isinstance(too_big, HttpError) and too_big.status == 413


# -- handlers --------------------------------------------------------------------------------------------


async def test_handler_may_return_response_future_or_coroutine(start: Start, connect: Connect) -> None:
    loop = asyncio.get_running_loop()

    def future_handler(request: Request) -> asyncio.Future[Response]:
        future: asyncio.Future[Response] = loop.create_future()
        loop.call_soon(future.set_result, Response(200, b"future", "text/plain"))
        return future

    async def coroutine_handler(request: Request) -> Response:
        await asyncio.sleep(0)
        return Response(200, b"coroutine", "text/plain")

    routes = Routes()
    routes.add("GET", "/direct", lambda r: Response(200, b"direct", "text/plain"))
    routes.add("GET", "/future", future_handler)
    routes.add("GET", "/coroutine", coroutine_handler)
    _, port = await start(routes)
    client = await connect(port)
    for name in ("direct", "future", "coroutine"):
        await client.send(request("GET", f"/{name}"))
        response = await client.response()
        assert (response.status, response.body) == (200, name.encode())


async def test_failing_handlers_answer_500_and_the_connection_goes_on(
    start: Start, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()

    def raises(request: Request) -> Response:
        raise RuntimeError("secret internals")

    async def coroutine_raises(request: Request) -> Response:
        raise KeyError("secret internals")

    def future_fails(request: Request) -> asyncio.Future[Response]:
        future: asyncio.Future[Response] = loop.create_future()
        future.set_exception(ValueError("secret internals"))
        return future

    def bad_result(request: Request) -> Any:
        return 42

    routes = echo_routes()
    for path, handler in (
        ("/raises", raises),
        ("/coro", coroutine_raises),
        ("/future", future_fails),
        ("/bad", bad_result),
    ):
        routes.add("GET", path, handler)
    _, port = await start(routes)
    client = await connect(port)
    with caplog.at_level(logging.ERROR, logger="methodhub.http"):
        for path in ("/raises", "/coro", "/future", "/bad"):
            await client.send(request("GET", path))
            response = await client.response()
            assert response.status == 500
            assert b"secret" not in response.body
            assert orjson.loads(response.body)["error"] == "internal_error"
            assert response.header("connection") is None  # the connection stays usable
    await client.send(request("GET", "/echo"))
    assert (await client.response()).status == 200
    assert sum(record.exc_info is not None for record in caplog.records) == 4
    assert "secret internals" in caplog.text  # the details go to the log, not to the client


async def test_handler_http_error_renders_its_status(start: Start, connect: Connect) -> None:
    def forbidden(request: Request) -> Response:
        raise HttpError(403, "forbidden", "Not for you.")

    routes = Routes()
    routes.add("GET", "/x", forbidden)
    _, port = await start(routes)
    client = await connect(port)
    await client.send(request("GET", "/x"))
    response = await client.response()
    assert response.status == 403
    assert orjson.loads(response.body) == {"error": "forbidden", "message": "Not for you."}


async def test_header_injection_is_refused(start: Start, connect: Connect) -> None:
    routes = Routes()
    routes.add("GET", "/x", lambda r: Response(200, headers=[("X-Evil", "a\r\nSet-Cookie: b")]))
    routes.add("GET", "/y", lambda r: Response(200, headers=[("Content-Length", "99")]))
    _, port = await start(routes)
    client = await connect(port)
    await client.send(request("GET", "/x") + request("GET", "/y"))
    for _ in range(2):
        response = await client.response()
        assert response.status == 500
        assert response.header("set-cookie") is None


async def test_client_disconnect_cancels_the_pending_future(start: Start, connect: Connect) -> None:
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Future[Response]] = []

    def never(request: Request) -> asyncio.Future[Response]:
        future: asyncio.Future[Response] = loop.create_future()
        pending.append(future)
        return future

    routes = Routes()
    routes.add("POST", "/call", never)
    server, port = await start(routes)
    client = await connect(port)
    await client.send(request("POST", "/call", b"{}"))
    await wait_until(lambda: len(pending) == 1)
    await client.close()
    await wait_until(lambda: pending[0].done())
    assert pending[0].cancelled()
    await wait_until(lambda: server.connection_count == 0)


async def test_client_disconnect_cancels_the_coroutine(start: Start, connect: Connect) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever(request: Request) -> Response:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Response(200)

    routes = Routes()
    routes.add("GET", "/forever", forever)
    _, port = await start(routes)
    client = await connect(port)
    await client.send(request("GET", "/forever"))
    await asyncio.wait_for(started.wait(), IO_TIMEOUT)
    await client.close()
    await asyncio.wait_for(cancelled.wait(), IO_TIMEOUT)
    assert cancelled.is_set()


# -- switching protocols ---------------------------------------------------------------------------


class Echo(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self.received += data
        assert self.transport is not None
        self.transport.write(data.upper())


async def test_switch_protocol_hands_over_the_connection_with_early_bytes(
    start: Start, connect: Connect
) -> None:
    echo_protocol = Echo()

    def upgrade(request: Request) -> SwitchProtocol:
        return SwitchProtocol(headers=[("Upgrade", "echo")], protocol=echo_protocol)

    routes = Routes()
    routes.add("GET", "/ws", upgrade)
    server, port = await start(routes)
    client = await connect(port)
    await client.send(
        request("GET", "/ws", headers=[("Upgrade", "echo"), ("Connection", "Upgrade")]) + b"early bytes"
    )
    status, headers, _ = await client.read_head()
    assert status == 101
    assert headers["upgrade"] == "echo" and headers["connection"].lower() == "upgrade"
    assert headers.get("content-length") is None  # RFC 9110 §8.6: none in a 1xx
    assert await asyncio.wait_for(client.reader.readexactly(11), IO_TIMEOUT) == b"EARLY BYTES"
    await client.send(b"later")
    assert await asyncio.wait_for(client.reader.readexactly(5), IO_TIMEOUT) == b"LATER"
    assert bytes(echo_protocol.received) == b"early byteslater"
    assert server.connection_count == 0  # no longer an HTTP connection


async def test_switch_protocol_without_upgrade_request_is_an_error(start: Start, connect: Connect) -> None:
    routes = Routes()
    routes.add("GET", "/ws", lambda r: SwitchProtocol(headers=[], protocol=Echo()))
    _, port = await start(routes)
    client = await connect(port)
    await client.send(request("GET", "/ws"))
    assert (await client.response()).status == 500


async def test_declined_upgrade_is_answered_then_closed(start: Start, connect: Connect) -> None:
    _, port = await start(echo_routes())
    client = await connect(port)
    await client.send(
        request("GET", "/echo", headers=[("Upgrade", "h2c"), ("Connection", "Upgrade")]) + b"xyz"
    )
    response = await client.response()
    assert response.status == 200
    assert response.header("connection") == "close"
    assert await client.closed_by_server()


# -- streamed responses (StreamResponse) -----------------------------------------------------------


class Ticker(asyncio.Protocol):
    """Writes a line when the server hands it the connection, then whatever it is told to."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(b"data: first\n\n")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


async def test_stream_response_has_no_length_and_hands_over_the_connection(
    start: Start, connect: Connect
) -> None:
    ticker = Ticker()
    routes = Routes()
    routes.add(
        "GET",
        "/events",
        lambda r: StreamResponse("text/event-stream", [("cache-control", "no-store")], ticker),
    )
    server, port = await start(routes)
    client = await connect(port)
    await client.send(request("GET", "/events"))
    status, headers, _ = await client.read_head()
    assert status == 200 and headers["content-type"] == "text/event-stream"
    assert headers["cache-control"] == "no-store" and headers["connection"] == "close"
    assert "content-length" not in headers and "transfer-encoding" not in headers
    assert await asyncio.wait_for(client.reader.readexactly(13), IO_TIMEOUT) == b"data: first\n\n"
    assert ticker.transport is not None
    ticker.transport.write(b"data: later\n\n")
    assert await asyncio.wait_for(client.reader.readexactly(13), IO_TIMEOUT) == b"data: later\n\n"
    assert server.connection_count == 0  # no longer an HTTP connection
    ticker.transport.close()
    assert await client.closed_by_server()
    await asyncio.wait_for(ticker.lost.wait(), IO_TIMEOUT)


async def test_stream_response_to_head_is_only_the_head(start: Start, connect: Connect) -> None:
    ticker = Ticker()
    routes = Routes()
    routes.add("GET", "/events", lambda r: StreamResponse("text/event-stream", [], ticker))
    _, port = await start(routes)
    client = await connect(port)
    await client.send(request("HEAD", "/events"))
    response = await client.response(head_request=True)
    assert response.status == 200 and response.header("content-type") == "text/event-stream"
    assert ticker.transport is None  # never handed the connection


async def test_stream_response_with_a_framing_header_is_an_error(start: Start, connect: Connect) -> None:
    routes = Routes()
    routes.add(
        "GET", "/events", lambda r: StreamResponse("text/event-stream", [("content-length", "5")], Ticker())
    )
    _, port = await start(routes)
    client = await connect(port)
    await client.send(request("GET", "/events"))
    assert (await client.response()).status == 500


# -- shutdown ------------------------------------------------------------------------------------------


async def test_close_finishes_in_flight_requests_and_closes_idle_connections(
    start: Start, connect: Connect
) -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[Response] = loop.create_future()
    called = asyncio.Event()

    def slow(request: Request) -> asyncio.Future[Response]:
        called.set()
        return gate

    routes = echo_routes()
    routes.add("GET", "/slow", slow)
    server, port = await start(routes)
    idle = await connect(port)
    await idle.send(request("GET", "/echo"))
    assert (await idle.response()).status == 200
    busy = await connect(port)
    await busy.send(request("GET", "/slow"))
    await asyncio.wait_for(called.wait(), IO_TIMEOUT)
    closing = asyncio.create_task(server.close())
    assert await idle.closed_by_server()
    gate.set_result(Response(200, b"done", "text/plain"))
    response = await busy.response()
    assert response.body == b"done" and response.header("connection") == "close"
    await asyncio.wait_for(closing, IO_TIMEOUT)
    assert server.connection_count == 0


async def test_close_flushes_a_response_the_client_reads_slowly(start: Start, connect: Connect) -> None:
    """A response answered while the server closes (e.g. 503 to a waiting call) is written out in
    full before the connection closes, even when it outgrows the socket's buffers."""
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[Response] = loop.create_future()
    called = asyncio.Event()

    def slow(request: Request) -> asyncio.Future[Response]:
        called.set()
        return gate

    routes = Routes()
    routes.add("GET", "/slow", slow)
    server, port = await start(routes)
    client = await connect(port)
    await client.send(request("GET", "/slow"))
    await asyncio.wait_for(called.wait(), IO_TIMEOUT)
    closing = asyncio.create_task(server.close())
    await asyncio.sleep(0)
    body = b"x" * (16 * 1024 * 1024)  # more than loopback's socket buffers: the rest waits to be sent
    gate.set_result(Response(200, body, "application/octet-stream"))
    await asyncio.sleep(0.05)  # the client is not reading yet
    response = await asyncio.wait_for(client.response(), IO_TIMEOUT)
    assert len(response.body) == len(body) and response.header("connection") == "close"
    await asyncio.wait_for(closing, IO_TIMEOUT)


async def test_close_cancels_what_outlives_the_grace(start: Start, connect: Connect) -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[Response] = loop.create_future()
    called = asyncio.Event()

    def slow(request: Request) -> asyncio.Future[Response]:
        called.set()
        return gate

    routes = Routes()
    routes.add("GET", "/slow", slow)
    server, port = await start(routes, shutdown_grace=0.05)
    client = await connect(port)
    await client.send(request("GET", "/slow"))
    await asyncio.wait_for(called.wait(), IO_TIMEOUT)
    await asyncio.wait_for(server.close(), IO_TIMEOUT)
    assert gate.cancelled()
    assert await client.closed_by_server()


# -- TLS ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> ServerCertificate:
    """A server certificate for 127.0.0.1 from the hub's own development CA (no openssl needed)."""
    return ensure_dev_server_cert(tmp_path_factory.mktemp("tls"), "127.0.0.1")


async def test_https_sets_the_scheme(tls_files: ServerCertificate) -> None:
    server_context = tls_server_context(tls_files)
    assert tls_files.ca is not None
    client_context = ssl.create_default_context(cafile=str(tls_files.ca))
    server = HttpServer(echo_routes())
    listener = await server.listen("127.0.0.1", 0, ssl=server_context)
    port = listener.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_context)
        client = RawClient(reader, writer)
        for _ in range(2):  # keep-alive over TLS too
            await client.send(request("GET", "/echo"))
            response = await client.response()
            assert orjson.loads(response.body)["scheme"] == "https"
        await client.close()
    finally:
        await server.close()


def test_stream_head_has_no_length_and_closes() -> None:
    from methodhub.http.wire import stream_head

    head = stream_head("text/event-stream", [("cache-control", "no-store")])
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"Connection: close\r\n\r\n")
    assert b"Content-Type: text/event-stream\r\n" in head and b"cache-control: no-store\r\n" in head
    assert b"Content-Length" not in head
    for framing in ("content-length", "Transfer-Encoding", "connection"):
        with pytest.raises(ValueError):
            stream_head("text/event-stream", [(framing, "1")])
