"""methodhub.burst: each loop iteration's output of a connection in one write, in order, one loop
callback for all the connections that wrote (issue 16, lever 1)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest
import uvloop

from methodhub.burst import BURST_LIMIT, Burst, Flusher, flusher_for


class Transport(asyncio.Transport):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False
        self.fail = fail

    def write(self, data: Any) -> None:
        if self.fail:
            raise RuntimeError("a broken transport")
        assert not self.closing, "write after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing


class Loop:
    """Stands in for a loop: records what is scheduled; the test runs it (one loop iteration)."""

    def __init__(self) -> None:
        self.scheduled: list[Callable[[], object]] = []

    def call_soon(self, callback: Callable[[], object]) -> None:
        self.scheduled.append(callback)

    def run_once(self) -> None:
        ready, self.scheduled = self.scheduled, []
        for callback in ready:
            callback()


def burst(loop: Loop, transport: Transport) -> Burst:
    out = Burst(Flusher(loop))  # type: ignore[arg-type]
    out.transport = transport
    return out


def test_an_iterations_writes_go_out_in_one_write_in_order() -> None:
    loop, transport = Loop(), Transport()
    out = burst(loop, transport)
    for part in (b"one ", b"two ", b"three"):
        out.write(part)
    assert transport.writes == [] and out.size == 13
    loop.run_once()
    assert transport.writes == [b"one two three"] and out.size == 0
    out.write(b"next")  # the next iteration: its own burst
    loop.run_once()
    assert transport.writes == [b"one two three", b"next"]


def test_one_callback_per_iteration_for_all_the_connections_that_wrote() -> None:
    loop = Loop()
    flusher = Flusher(loop)  # type: ignore[arg-type]
    transports = [Transport() for _ in range(3)]
    outs = []
    for transport in transports:
        out = Burst(flusher)
        out.transport = transport
        outs.append(out)
    for n, out in enumerate(outs):
        out.write(b"a%d" % n)
        out.write(b"b%d" % n)
    assert len(loop.scheduled) == 1
    loop.run_once()
    assert [t.writes for t in transports] == [[b"a0b0"], [b"a1b1"], [b"a2b2"]]
    assert loop.scheduled == []  # nothing more until someone writes


def test_a_flush_writes_what_is_queued_first_and_the_iteration_writes_nothing_more() -> None:
    loop, transport = Loop(), Transport()
    out = burst(loop, transport)
    out.write(b"queued ")
    out.write(b"then the hand-over's head")
    out.flush()  # before a close, a write_eof or handing the transport over
    transport.writes.append(b"<written by the next owner>")
    loop.run_once()
    assert transport.writes == [b"queued then the hand-over's head", b"<written by the next owner>"]


def test_past_the_limit_the_burst_is_written_at_once() -> None:
    loop, transport = Loop(), Transport()
    out = burst(loop, transport)
    out.write(b"x" * (BURST_LIMIT - 1))
    assert transport.writes == []
    out.write(b"yz")  # the transport's flow control sees big outputs as early as before
    assert transport.writes == [b"x" * (BURST_LIMIT - 1) + b"yz"] and out.size == 0
    out.write(b"after")  # still this iteration: goes with its burst, registered once
    assert len(loop.scheduled) == 1
    loop.run_once()
    assert transport.writes[1:] == [b"after"]


def test_discard_drops_what_is_queued() -> None:
    loop, transport = Loop(), Transport()
    out = burst(loop, transport)
    out.write(b"never sent")
    out.discard()  # an abort
    assert out.size == 0
    loop.run_once()
    assert transport.writes == []


def test_nothing_is_written_to_a_closing_or_forgotten_transport() -> None:
    loop, transport = Loop(), Transport()
    out = burst(loop, transport)
    out.write(b"late")
    transport.closing = True  # closed by the peer's reset meanwhile
    loop.run_once()
    assert transport.writes == []
    out.transport = None
    out.write(b"later")
    loop.run_once()
    assert out.size == 0


def test_a_broken_transport_does_not_keep_the_others_output(caplog: pytest.LogCaptureFixture) -> None:
    loop = Loop()
    flusher = Flusher(loop)  # type: ignore[arg-type]
    broken, fine = Transport(fail=True), Transport()
    first, second = Burst(flusher), Burst(flusher)
    first.transport, second.transport = broken, fine
    first.write(b"lost")
    second.write(b"delivered")
    loop.run_once()
    assert fine.writes == [b"delivered"]
    assert any("writing a connection's output failed" in r.getMessage() for r in caplog.records)
    first.write(b"again")  # the broken one registers again next time
    assert len(loop.scheduled) == 1


def test_one_flusher_per_loop() -> None:
    one, two = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert flusher_for(one) is flusher_for(one)
        assert flusher_for(one) is not flusher_for(two)
    finally:
        one.close()
        two.close()


@pytest.mark.parametrize(
    "new_loop", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_the_burst_is_written_after_every_read_of_the_same_poll(
    new_loop: Callable[[], asyncio.AbstractEventLoop], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two connections readable at once (one epoll_wait): both are served, then one flush writes both
    connections' answers, on asyncio's loop and on uvloop."""
    events: list[str] = []
    flush = Flusher._flush

    def recorded_flush(self: Flusher) -> None:
        events.append("flush")
        flush(self)

    monkeypatch.setattr(Flusher, "_flush", recorded_flush)
    loop = new_loop()

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.out = Burst(flusher_for(loop))
            self.out.transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            events.append(f"read {data.decode()}")
            self.out.write(data.upper())
            self.out.write(b"!")

    try:
        server = loop.run_until_complete(loop.create_server(Echo, "127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        loop.run_until_complete(asyncio.sleep(0.05))  # both accepted
        for client, text in zip(clients, (b"a", b"b"), strict=True):
            client.sendall(text)  # the loop is not running: both are readable at its next poll
        loop.run_until_complete(asyncio.sleep(0.05))
        assert sorted(events[:2]) == ["read a", "read b"] and events[2:] == ["flush"]
        assert [client.recv(10) for client in clients] == [b"A!", b"B!"]
        for client in clients:
            client.close()
        server.close()
        loop.run_until_complete(server.wait_closed())
    finally:
        loop.close()
