"""Device connections write each loop iteration's output in one burst (methodhub.burst, issue 16):
in order, closed after what is queued, aborted without it, and the bytes queued in the burst count
against the 4 MiB device write-buffer limit. The real Azure dialects, SQLite registry, CallEngine."""

from __future__ import annotations

import asyncio
from typing import Any

from methodhub.gateway.context import MAX_WRITE_BUFFER
from methodhub.mqtt import Disconnect, Publish, ReasonCode
from methodhub.registry import Identity
from tests.unit.gateway.amqp_device import AmqpDevice
from tests.unit.gateway.azure_hub import Device, Hub, MemoryTransport, azure_connect

METHODS = "$iothub/methods/POST/#"
PAYLOAD = b'"' + b"x" * 400 + b'"'
"""A method request of ~450 bytes on the wire (MQTT or AMQP)."""


def record(transport: MemoryTransport) -> list[str]:
    """What happens to ``transport`` from now on, in order: ``write <n bytes>``, ``close``."""
    log: list[str] = []
    write, close = transport.write, transport.close

    def recorded_write(data: Any) -> None:
        log.append(f"write {len(data)}")
        write(data)

    def recorded_close() -> None:
        log.append("close")
        close()

    transport.write = recorded_write  # type: ignore[method-assign]
    transport.close = recorded_close  # type: ignore[method-assign]
    return log


async def online(hub: Hub, dev1: Identity, level: int = 4) -> Device:
    device = hub.device(level)
    await device.online(azure_connect("dev1", dev1.keys.primary, level=level), METHODS)
    assert await hub.router.wait_ready("dev1", 5)
    device.received()  # what came so far (CONNACK, SUBACK)
    return device


def requests(device: Device) -> list[str]:
    return [p.topic.split("/")[3] for p in device.received() if isinstance(p, Publish)]


async def test_the_calls_of_one_iteration_reach_the_device_in_one_write_in_order(
    hub: Hub, dev1: Identity
) -> None:
    device = await online(hub, dev1)
    log = record(device.transport)
    for n in range(3):
        hub.call("dev1", f"m{n}", PAYLOAD)
    assert log == []  # queued in the connection's burst
    await asyncio.sleep(0)
    assert len(log) == 1 and log[0].startswith("write ")
    assert requests(device) == ["m0", "m1", "m2"]


async def test_the_write_buffer_limit_counts_the_bytes_queued_in_the_burst(hub: Hub, dev1: Identity) -> None:
    device = await online(hub, dev1, level=5)
    device.transport.get_write_buffer_size = lambda: MAX_WRITE_BUFFER - 1000  # type: ignore[method-assign]
    log = record(device.transport)
    hub.call("dev1", "m0", PAYLOAD)
    hub.call("dev1", "m1", PAYLOAD)  # ~900 bytes queued: still under the limit
    assert not device.protocol.closing and log == []
    hub.call("dev1", "m2", PAYLOAD)  # past it, though none of it reached the transport yet
    assert device.protocol.closing
    assert len(log) == 2 and log[0].startswith("write ") and log[1] == "close"  # flushed, then closed
    packets = device.received()
    assert [p.topic.split("/")[3] for p in packets if isinstance(p, Publish)] == ["m0", "m1", "m2"]
    assert packets[-1] == Disconnect(ReasonCode.ADMINISTRATIVE_ACTION)  # MQTT 5 hears why, once


async def test_a_close_writes_what_is_queued_first(hub: Hub, dev1: Identity) -> None:
    device = await online(hub, dev1, level=5)
    log = record(device.transport)
    hub.call("dev1", "m0", PAYLOAD)
    device.protocol.shutdown()
    assert len(log) == 2 and log[1] == "close"
    packets = device.received()
    assert isinstance(packets[0], Publish) and packets[1] == Disconnect(ReasonCode.SERVER_SHUTTING_DOWN)


async def test_an_abort_drops_what_is_queued(hub: Hub, dev1: Identity) -> None:
    device = await online(hub, dev1)
    log = record(device.transport)
    hub.call("dev1", "m0", PAYLOAD)
    device.protocol.abort()
    await asyncio.sleep(0)
    assert device.transport.aborted
    assert not any(entry.startswith("write") for entry in log)
    assert device.received() == []


async def test_the_amqp_write_buffer_limit_counts_the_bytes_queued_in_the_burst(
    hub: Hub, dev1: Identity
) -> None:
    device = AmqpDevice(hub)
    await device.online("dev1", dev1.keys.primary)
    await device.until(lambda: (session := hub.gateway.sessions.get("dev1")) is not None and session.ready)
    transport = device.transport
    transport.get_write_buffer_size = lambda: MAX_WRITE_BUFFER - 1000  # type: ignore[method-assign]
    log = record(transport)
    hub.call("dev1", "m0", PAYLOAD)
    assert not transport.closed and log == []  # queued, under the limit
    hub.call("dev1", "m1", PAYLOAD)
    hub.call("dev1", "m2", PAYLOAD)
    assert transport.closed
    assert len(log) == 2 and log[0].startswith("write ") and log[1] == "close"  # flushed, then closed
