"""Two NATS routers in this process against a real nats-server: orderings that whole nodes hit only
under load, made to happen every time."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from methodhub.calls import Call, CallOutcome
from methodhub.errors import ErrorKind, HubError
from methodhub.router.nats import NatsRouter
from tests.servers import NatsServer


class HoldingRelay:
    """A TCP relay between one client and NATS whose client → NATS direction can be held: what the
    client sends meanwhile waits here, as if NATS had not read it yet."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.downstream = bytearray()
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"nats://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_writer]
        self._tasks += [
            asyncio.ensure_future(self._pump(reader, up_writer, gated=True)),
            asyncio.ensure_future(self._pump(up_reader, writer, gated=False)),
        ]

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gated: bool) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while chunk := await reader.read(65536):
                if gated:
                    await self._open.wait()
                else:
                    self.downstream += chunk
                writer.write(chunk)
                await writer.drain()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()


class FakeLink:
    """A session as the router sees it (methodhub.router.ReleasableLink)."""

    connected_since: float | None = None

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.released: list[str] = []

    def submit(self, call: Call, reply: asyncio.Future[CallOutcome]) -> None:
        self.calls.append(call)

    def release(self, reason: str) -> None:
        self.released.append(reason)


async def test_a_call_reaching_a_node_that_just_let_the_device_go_is_answered_offline(
    nats: NatsServer,
) -> None:
    """Node B lets a device go (deleted, disconnected); node A's call reaches B's NATS
    subscription before NATS has processed B's UNSUB. B must answer "offline" — the caller's
    engine then asks the registry (404001 for a deleted device) — not drop the call, which A
    would later report as 404104 "disconnected" (tests/cluster/test_calls.py, under load)."""
    relay = HoldingRelay(nats.port)
    a, b = NatsRouter(nats.url, "node-a"), NatsRouter(await relay.start(), "node-b")
    await a.start()
    await b.start()
    try:
        link = FakeLink()
        settled = b.reachable("dev")
        assert settled is not None
        await settled
        b.session_opened("dev", link)
        b.announce("dev", link)

        relay.hold()  # B's UNSUB (below) waits in the relay: NATS still routes calls for dev to B
        b.withdraw("dev", link)
        b.session_closed("dev", link)
        reply: asyncio.Future[CallOutcome] = asyncio.get_running_loop().create_future()
        a.dispatch(Call("dev", "m", b"null", 30), reply)
        for _ in range(500):
            if b"MSG mh.call.dev " in relay.downstream:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("NATS did not route the call to node B")
        relay.release()

        with pytest.raises(HubError) as answered:
            await asyncio.wait_for(reply, 10)
        assert answered.value.kind is ErrorKind.DEVICE_OFFLINE  # before the fix: DEVICE_DISCONNECTED
        assert link.calls == []
    finally:
        await a.stop()
        await b.stop()
        await relay.close()
