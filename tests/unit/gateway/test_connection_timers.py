"""DeviceConnection's one timer, armed from the state machine's get_timer() and run through its
handle_timer(). The connection's loop has a manual clock: time moves only when the test fires the
armed timer, so nothing depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from methodhub.config import MAX_KEEPALIVE
from methodhub.gateway.gateway import Gateway
from methodhub.mqtt import Connect, Disconnect, decode, encode
from tests.unit.gateway.test_connection import FakeDialect, MemoryTransport, make_gateway
from tests.unit.manual_clock import ManualClockLoop

PINGREQ = b"\xc0\x00"


def open_connection(gateway: Gateway) -> tuple[Any, MemoryTransport, ManualClockLoop]:
    protocol = gateway.protocol_for("mqtt")
    clock = protocol.loop = ManualClockLoop(protocol.loop)
    transport = MemoryTransport(protocol)
    protocol.connection_made(transport)
    return protocol, transport, clock


async def connected(keepalive: int, level: int = 4) -> tuple[Any, MemoryTransport, ManualClockLoop, float]:
    """A device connected over MQTT ``level``; returns the protocol, transport, clock and when the
    CONNECT was read."""
    protocol, transport, clock = open_connection(make_gateway(FakeDialect()))
    clock.now += 1.0
    read_at = clock.now
    protocol.data_received(encode(Connect("dev1", keepalive=keepalive, protocol_level=level), level))
    for _ in range(5):
        await asyncio.sleep(0)
    assert protocol.session is not None
    transport.written.clear()
    return protocol, transport, clock, read_at


async def test_after_connack_the_one_timer_is_at_one_and_a_half_keepalives_after_the_connect() -> None:
    protocol, _, clock, read_at = await connected(keepalive=10)
    assert clock.armed() == [protocol.timer]  # the CONNECT deadline's timer was replaced, not added to
    assert protocol.timer.when() == read_at + 15


async def test_packets_do_not_rearm_the_timer_and_a_silent_device_is_disconnected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    protocol, transport, clock, read_at = await connected(keepalive=10, level=5)
    armed = protocol.timer
    clock.now = read_at + 5
    protocol.data_received(PINGREQ)
    await asyncio.sleep(0)  # the PINGRESP goes out in the iteration's burst
    assert transport.written == b"\xd0\x00"
    assert protocol.timer is armed and clock.armed() == [armed]  # nothing scheduled per packet
    clock.fire(armed)  # at read_at + 15: the device spoke at read_at + 5
    assert not transport.closed
    assert clock.armed() == [protocol.timer] and protocol.timer.when() == read_at + 20
    transport.written.clear()
    with caplog.at_level(logging.INFO, logger="methodhub.gateway"):
        clock.fire(protocol.timer)
    assert transport.closed
    assert decode(transport.written[0], bytes(transport.written[2:]), 5) == Disconnect(0x8D)
    assert any("keep-alive expired (10 s × 1.5)" in r.getMessage() for r in caplog.records)
    await asyncio.sleep(0)
    assert len(protocol.ctx.sessions) == 0  # the session went with the connection


async def test_keepalive_zero_is_capped_and_the_cap_enforced() -> None:
    protocol, _, _, read_at = await connected(keepalive=0, level=5)
    assert protocol.mqtt.keepalive == MAX_KEEPALIVE
    assert protocol.timer.when() == read_at + MAX_KEEPALIVE * 1.5


async def test_no_connect_by_the_deadline_closes_without_a_word(caplog: pytest.LogCaptureFixture) -> None:
    gateway = make_gateway(FakeDialect(), connect_timeout=7.0)
    protocol, transport, clock = open_connection(gateway)
    opened_at = clock.now
    assert protocol.timer.when() == opened_at + 7
    clock.now += 3
    protocol.data_received(b"\x10")  # the first byte of a CONNECT: the deadline does not move
    assert clock.armed() == [protocol.timer] and protocol.timer.when() == opened_at + 7
    with caplog.at_level(logging.INFO, logger="methodhub.gateway"):
        clock.fire(protocol.timer)
    assert transport.closed and transport.written == b""
    assert gateway.metrics.device_limits.get("connect_deadline") == 1
    assert any("no CONNECT in time (7 s)" in r.getMessage() for r in caplog.records)


async def test_a_connect_not_answered_by_the_deadline_is_closed_and_its_authentication_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dialect = FakeDialect()
    dialect.auth_delay = 3600
    gateway = make_gateway(dialect, connect_timeout=7.0)
    protocol, transport, clock = open_connection(gateway)
    protocol.data_received(encode(Connect("dev1"), 4))
    await asyncio.sleep(0)
    with caplog.at_level(logging.INFO, logger="methodhub.gateway"):
        clock.fire(protocol.timer)
    await asyncio.sleep(0)
    assert transport.closed and transport.written == b""
    assert protocol.auth_task.cancelled()
    assert any("its CONNECT could not be answered in time" in r.getMessage() for r in caplog.records)
