"""Micro benchmark of methodhub's HTTP server (``methodhub.http.server``).

Modes:

``inproc``
    No sockets: feeds one request at a time to a connection protocol with a fake transport and
    counts the responses. Measures our own per-request cost (parse, route, handler, encode).

``socket``
    The server listens on 127.0.0.1 in this process; a client process opens ``--connections``
    keep-alive connections over raw sockets and keeps ``--depth`` requests outstanding on each
    (1 = request/response lock-step, like an HTTP client pool; >1 = pipelining). Prints requests/s
    and the server process's CPU time per request (µs), which does not depend on how fast the
    client is.

``serve``
    Just run the server (for an external load tool such as ``wrk``) until interrupted.

The handler is trivial: ``POST /twins/{device_id}/methods`` answers ``{"status":200,"payload":...}``
(``--handler sync`` returns a Response, ``future`` a done Future, ``coroutine`` a coroutine).

Examples::

    python bench/http_server.py inproc
    python bench/http_server.py socket --connections 16 --seconds 5
    python bench/http_server.py socket --loop asyncio --handler future
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from typing import Any, cast

from methodhub.http.messages import Request, Response
from methodhub.http.routing import Routes
from methodhub.http.server import HttpServer

BODY = b'{"methodName":"reboot","payload":{"delay":1},"responseTimeoutInSeconds":30}'
REQUEST = (
    b"POST /twins/bench-device-1/methods?api-version=2021-04-12 HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\n"
    b"Authorization: SharedAccessSignature sr=hub&sig=abcdefghijklmnopqrstuvwxyz0123456789%%3D"
    b"&se=1999999999&skn=service\r\n"
    b"Content-Type: application/json\r\n"
    b"User-Agent: bench/1.0\r\n"
    b"Content-Length: %d\r\n\r\n%b" % (len(BODY), BODY)
)
RESULT = b'{"status":200,"payload":{"ok":true}}'


def make_routes(kind: str) -> Routes:
    """Routes with the benchmark handler plus a few others, as the hub would have."""

    def sync_handler(request: Request) -> Response:
        return Response(200, RESULT)

    def future_handler(request: Request) -> asyncio.Future[Response]:
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        future.set_result(Response(200, RESULT))
        return future

    async def coroutine_handler(request: Request) -> Response:
        return Response(200, RESULT)

    handler: Callable[[Request], Any] = {
        "sync": sync_handler,
        "future": future_handler,
        "coroutine": coroutine_handler,
    }[kind]
    routes = Routes()
    routes.add("POST", "/twins/{device_id}/methods", handler)
    routes.add("POST", "/twins/{device_id}/modules/{module_id}/methods", handler)
    for method in ("GET", "PUT", "DELETE"):
        routes.add(method, "/devices/{device_id}", sync_handler)
        routes.add(method, "/devices/{device_id}/modules/{module_id}", sync_handler)
    routes.add("GET", "/health", sync_handler)
    return routes


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    """A fresh loop of the requested kind (no policy is installed)."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


# -- inproc ------------------------------------------------------------------------------------------


class _FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.responses = 0
        self.bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.responses += bytes(data).count(b"HTTP/1.1 ")  # one write may carry several (methodhub.burst)
        self.bytes += len(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


async def run_inproc(args: argparse.Namespace) -> None:
    server = HttpServer(make_routes(args.handler))
    protocol = server.protocol_factory()
    transport = _FakeTransport()
    protocol.connection_made(transport)
    feed = protocol.data_received
    sync = args.handler == "sync"

    async def one() -> None:
        answered = transport.responses
        feed(REQUEST)
        for _ in range(100):  # a future/task answers a loop iteration or two later
            if transport.responses != answered:
                return
            await asyncio.sleep(0)
        raise AssertionError("no response")

    for _ in range(2000):  # warm up
        if sync:
            feed(REQUEST)
        else:
            await one()
    await asyncio.sleep(0)
    best = float("inf")
    for _ in range(args.rounds):
        before = transport.responses
        start = time.perf_counter()
        if sync:
            for _ in range(args.requests):
                feed(REQUEST)
            await asyncio.sleep(0)  # what is queued in the connection's burst is written
        else:
            for _ in range(args.requests):
                await one()
        elapsed = time.perf_counter() - start
        assert transport.responses - before == args.requests, "a response went missing"
        best = min(best, elapsed)
    per = best / args.requests
    print(
        f"inproc  loop={args.loop} handler={args.handler}: {args.requests / best:,.0f} requests/s, "
        f"{per * 1e6:.2f} µs/request (best of {args.rounds} × {args.requests})"
    )
    protocol.connection_lost(None)
    await server.close()


# -- socket ------------------------------------------------------------------------------------------


def _client_process(
    port: int, connections: int, depth: int, seconds: float, response_size: int, out: Any
) -> None:
    """Drive the server from another process with raw keep-alive sockets."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        deadline = loop.time() + seconds
        counts = [0] * connections

        class Client(asyncio.Protocol):
            def __init__(self, index: int) -> None:
                self.index = index
                self.pending = 0

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = cast(asyncio.Transport, transport)
                self.transport.write(REQUEST * depth)

            def data_received(self, data: bytes) -> None:
                self.pending += len(data)
                answered, self.pending = divmod(self.pending, response_size)
                counts[self.index] += answered
                if loop.time() >= deadline:
                    if not done.done():
                        done.set_result(None)
                    return
                if answered:
                    self.transport.write(REQUEST * answered)

        transports = []
        for index in range(connections):
            transport, _ = await loop.create_connection(lambda i=index: Client(i), "127.0.0.1", port)
            transports.append(transport)
        await done
        for transport in transports:
            transport.close()
        return sum(counts)

    try:
        import uvloop

        total = uvloop.run(main())
    except ImportError:
        total = asyncio.run(main())
    out.send(total)


async def _response_size(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    writer.close()
    return len(head) + length


async def run_socket(args: argparse.Namespace) -> None:
    server = HttpServer(make_routes(args.handler))
    listener = await server.listen("127.0.0.1", args.port)
    port = listener.sockets[0].getsockname()[1]
    if args.mode == "serve":
        print(f"serving on http://127.0.0.1:{port}/twins/x/methods (POST); Ctrl-C to stop", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.close()
        return
    response_size = await _response_size(port)
    receiver, sender = multiprocessing.Pipe(duplex=False)
    ctx = multiprocessing.get_context("spawn")
    client = ctx.Process(
        target=_client_process,
        args=(port, args.connections, args.depth, args.seconds, response_size, sender),
    )
    cpu_before = time.process_time()
    wall_before = time.perf_counter()
    client.start()
    total = await asyncio.get_running_loop().run_in_executor(None, receiver.recv)
    wall = time.perf_counter() - wall_before
    cpu = time.process_time() - cpu_before
    client.join()
    await server.close()
    # The client needs ~0.3 s to start (spawn); its requests/s counts from its own start, so use
    # its duration for the rate and the server's CPU time for the per-request cost.
    print(
        f"socket  loop={args.loop} handler={args.handler} connections={args.connections} depth={args.depth}: "
        f"{total / args.seconds:,.0f} requests/s; server CPU {cpu / total * 1e6:.1f} µs/request "
        f"({total:,} requests, {wall:.1f} s wall incl. client start-up, {os.cpu_count()} CPUs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["inproc", "socket", "serve"], nargs="?", default="inproc")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--handler", choices=["sync", "future", "coroutine"], default="sync")
    parser.add_argument("--requests", type=int, default=50_000, help="inproc: requests per round")
    parser.add_argument("--rounds", type=int, default=5, help="inproc: rounds (best is reported)")
    parser.add_argument("--connections", type=int, default=16, help="socket: keep-alive connections")
    parser.add_argument("--depth", type=int, default=1, help="socket: requests outstanding per connection")
    parser.add_argument("--seconds", type=float, default=5.0, help="socket: client run time")
    parser.add_argument("--port", type=int, default=0, help="socket/serve: port (0 = any free)")
    args = parser.parse_args()
    if args.loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            sys.exit("uvloop is not installed; use --loop asyncio")
    runner = run_inproc if args.mode == "inproc" else run_socket
    with asyncio.Runner(loop_factory=lambda: new_loop(args.loop)) as asyncio_runner:
        asyncio_runner.run(runner(args))


if __name__ == "__main__":
    main()
