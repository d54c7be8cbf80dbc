"""The AMQP device connection (dialects/azure/amqp_connection.py) against a real Gateway, SQLite
registry, LocalRouter and CallEngine, the device driven by a client-role AmqpConnection as the Node
SDK behaves (tests/unit/gateway/amqp_device.py)."""

from __future__ import annotations

import asyncio
import uuid

from methodhub.calls import CallOutcome
from methodhub.registry import Identity
from tests.unit.gateway.amqp_device import AmqpDevice
from tests.unit.gateway.azure_hub import Hub


async def test_a_call_is_answered_with_the_devices_status_and_payload(hub: Hub, dev1: Identity) -> None:
    device = AmqpDevice(hub)
    await device.online("dev1", dev1.keys.primary)
    assert await device.until(lambda: hub.gateway.sessions.get("dev1") is not None)
    await device.until(lambda: "dev1" in hub.router._links)
    call = hub.call("dev1", "reboot", b'{"delay": 1}')
    request = await device.request()
    rid = request.properties.correlation_id
    assert isinstance(rid, uuid.UUID)
    assert request.application_properties == {"IoThub-methodname": "reboot"}
    assert request.body == [b'{"delay": 1}']
    device.answer(rid, 201, [b'{"rebooted":true}'])
    outcome = await asyncio.wait_for(call, 30)
    assert outcome == CallOutcome(201, b'{"rebooted":true}')
