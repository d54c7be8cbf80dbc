"""The device SDK's keep-alive: one timer per link, armed from the state machine's get_timer(). The
link's loop has a manual clock: time moves only when the test says so."""

from __future__ import annotations

import asyncio
from typing import Any

from methodhub.mqtt import Connack, Connect, Pingresp, Publish, encode
from methodhub.sdk import DeviceClient
from methodhub.sdk.device import _Link
from tests.unit.manual_clock import ManualClockLoop

PINGREQ = b"\xc0\x00"


class MemoryTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def connected_link(keepalive: int) -> tuple[_Link, MemoryTransport, ManualClockLoop, float, float]:
    """A link that sent CONNECT and then got CONNACK at the two times returned."""
    client = DeviceClient(hostname="hub", device_id="dev1", key="a2V5", keepalive=keepalive)
    link = _Link(client)
    clock = link.loop = ManualClockLoop(link.loop)  # type: ignore[assignment]
    transport = MemoryTransport()
    link.connection_made(transport)
    sent_at = clock.now
    link.send(Connect("dev1", keepalive=keepalive))
    clock.now += 0.1
    link.data_received(encode(Connack(False, 0), 4))
    transport.written.clear()
    return link, transport, clock, sent_at, clock.now


async def test_the_link_pings_a_period_after_it_last_sent_and_gives_up_without_an_answer() -> None:
    link, transport, clock, sent_at, connack_at = await connected_link(keepalive=10)
    assert clock.armed() == [link.timer]
    assert link.timer.when() == sent_at + 10  # a period after the CONNECT went out
    clock.fire(link.timer)
    assert transport.written == PINGREQ
    assert clock.armed() == [link.timer] and link.timer.when() == connack_at + 15
    clock.fire(link.timer)  # no PINGRESP came
    assert link.closed.result() == "keep-alive: no answer from the hub"
    assert transport.closed and link.timer is None and clock.armed() == []


async def test_an_answered_ping_keeps_the_link_and_the_next_ping_is_a_period_later() -> None:
    link, transport, clock, _, _ = await connected_link(keepalive=10)
    clock.fire(link.timer)
    ping_at = clock.now
    clock.now += 0.2
    link.data_received(encode(Pingresp(), 4))
    assert clock.armed() == [link.timer]  # receiving did not re-arm it
    clock.fire(link.timer)  # the give-up time armed with the ping: the answer came
    assert not link.closed.done() and transport.written == PINGREQ
    assert link.timer.when() == ping_at + 10
    clock.fire(link.timer)
    assert transport.written == PINGREQ * 2


async def test_sending_puts_off_the_ping() -> None:
    link, transport, clock, _, connack_at = await connected_link(keepalive=10)
    clock.now = connack_at + 8
    link.data_received(encode(Publish("$iothub/other", b""), 4))
    link.send(Publish("devices/dev1/messages/events/", b""))
    clock.fire(link.timer)  # armed for a period after the CONNECT: both sides spoke since
    assert transport.written.count(PINGREQ) == 0
    assert link.timer.when() == connack_at + 18


async def test_keepalive_zero_arms_no_timer() -> None:
    link, _, clock, _, _ = await connected_link(keepalive=0)
    assert link.timer is None and clock.armed() == []
