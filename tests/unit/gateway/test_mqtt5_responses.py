"""MQTT 5 request/response on the Azure dialect, in memory: requests to an MQTT 5 connection carry a
Response Topic and the rid as Correlation Data, the device may answer there with its status in the
``status`` user property; ``$rid`` answers keep working, 3.1.1 requests are unchanged, and a device
can only ever answer its own calls."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from methodhub.dialects.azure.topics import MQTT5_RESPONSE_TOPIC, parse_request_topic, response_topic
from methodhub.errors import ErrorKind, HubError
from methodhub.mqtt import Disconnect, Puback, Publish
from methodhub.registry import Identity, SqliteRegistry
from tests.unit.gateway.azure_hub import Device, Hub, azure_connect

METHODS = "$iothub/methods/POST/#"


async def v5_device(hub: Hub, identity: Identity) -> Device:
    device = hub.device(level=5)
    await device.online(azure_connect(identity.device_id, identity.keys.primary, level=5), METHODS)
    return device


async def request_of(device: Device) -> tuple[str, Publish]:
    """The next method request the device receives: (rid from its topic, the PUBLISH)."""
    packet = await device.next_packet()
    assert isinstance(packet, Publish), packet
    parsed = parse_request_topic(packet.topic)
    assert parsed is not None, packet.topic
    return parsed[1], packet


def answer_mqtt5(
    device: Device,
    correlation: bytes | None,
    payload: bytes = b"{}",
    *,
    status: str | None = None,
    user_properties: list[tuple[str, str]] | None = None,
    qos: int = 0,
    topic: str = MQTT5_RESPONSE_TOPIC,
) -> None:
    """Answer "the MQTT 5 way": PUBLISH to the Response Topic with the Correlation Data."""
    props: dict[str, Any] = {}
    if correlation is not None:
        props["correlation_data"] = correlation
    pairs = list(user_properties or [])
    if status is not None:
        pairs.append(("status", status))
    if pairs:
        props["user_property"] = pairs
    device.send(Publish(topic, payload, qos, packet_id=77 if qos else None, properties=props or None))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_v5_request_carries_the_response_topic_and_the_rid_as_correlation_data(
    hub: Hub, dev1: Identity
) -> None:
    device = await v5_device(hub, dev1)
    hub.call("dev1", "reboot", b'{"delay":5}')
    rid, request = await request_of(device)
    assert request.payload == b'{"delay":5}' and request.qos == 0
    assert request.properties == {
        "response_topic": "$iothub/methods/response",
        "correlation_data": rid.encode("ascii"),
    }


async def test_answering_on_the_response_topic_completes_the_call_with_the_status_property(
    hub: Hub, dev1: Identity
) -> None:
    device = await v5_device(hub, dev1)
    result = hub.call("dev1", "reboot")
    rid, request = await request_of(device)
    props = request.properties or {}
    assert props["correlation_data"] == rid.encode()
    answer_mqtt5(
        device,
        props["correlation_data"],
        b'{"rebooting":true}',
        status="201",
        user_properties=[("other", "ignored")],
        qos=1,
        topic=props["response_topic"],
    )
    assert await device.next_packet() == Puback(packet_id=77)
    outcome = await result
    assert (outcome.status, json.loads(outcome.payload)) == (201, {"rebooting": True})
    session = hub.gateway.sessions.get("dev1")
    assert session is not None and session.in_flight() == 0
    assert hub.metrics.stray_responses.get() == 0


async def test_an_answer_without_a_status_property_is_200_and_an_empty_body_is_null(
    hub: Hub, dev1: Identity
) -> None:
    device = await v5_device(hub, dev1)
    result = hub.call("dev1", "m")
    rid, _ = await request_of(device)
    answer_mqtt5(device, rid.encode(), b"")
    outcome = await result
    assert (outcome.status, outcome.payload) == (200, b"null")


async def test_concurrent_v5_calls_are_told_apart_by_their_correlation_data(hub: Hub, dev1: Identity) -> None:
    device = await v5_device(hub, dev1)
    first, second = hub.call("dev1", "a"), hub.call("dev1", "b")
    (rid_a, _), (rid_b, _) = await request_of(device), await request_of(device)
    assert rid_a != rid_b
    answer_mqtt5(device, rid_b.encode(), b'"b"', status="202")
    answer_mqtt5(device, rid_a.encode(), b'"a"', status="-1")
    assert ((await first).status, (await first).payload) == (-1, b'"a"')
    assert ((await second).status, (await second).payload) == (202, b'"b"')


async def test_a_v5_device_may_still_answer_on_the_rid_topic(hub: Hub, dev1: Identity) -> None:
    device = await v5_device(hub, dev1)
    result = hub.call("dev1", "m")
    rid, _ = await request_of(device)
    device.answer(response_topic(203, rid), b"[1]")
    outcome = await result
    assert (outcome.status, outcome.payload) == (203, b"[1]")


async def test_a_v311_request_is_unchanged_on_the_wire(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    hub.call("dev1", "reboot", b'{"delay":5}')
    rid, request = await request_of(device)
    assert request.properties is None
    topic = f"$iothub/methods/POST/reboot/?$rid={rid}".encode()
    body = len(topic).to_bytes(2, "big") + topic + b'{"delay":5}'
    assert len(body) < 128  # one length byte
    assert bytes(device.transport.data).endswith(bytes((0x30, len(body))) + body)


@pytest.mark.parametrize(
    "correlation",
    [b"ffff", None, b"", b"\xff\xfe"],
    ids=["no-such-call", "no-correlation-data", "empty", "not-ascii"],
)
async def test_an_answer_matching_no_call_is_dropped_and_counted_as_stray(
    hub: Hub, dev1: Identity, correlation: bytes | None
) -> None:
    device = await v5_device(hub, dev1)
    result = hub.call("dev1", "m")
    await request_of(device)
    answer_mqtt5(device, correlation, status="200")
    await settle()
    assert hub.metrics.stray_responses.get() == 1
    assert not result.done()
    assert not device.transport.closed


async def test_a_v311_publish_to_the_response_topic_is_stray_not_fatal(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    result = hub.call("dev1", "m")
    await request_of(device)
    device.answer(MQTT5_RESPONSE_TOPIC, b"{}", qos=1)  # 3.1.1 cannot carry Correlation Data
    assert isinstance(await device.next_packet(), Puback)
    assert hub.metrics.stray_responses.get() == 1
    assert not result.done()


async def test_a_device_cannot_answer_another_devices_call(
    hub: Hub, dev1: Identity, registry: SqliteRegistry
) -> None:
    dev2 = await registry.create_identity("dev2")
    victim, intruder = await v5_device(hub, dev1), await v5_device(hub, dev2)
    result = hub.call("dev1", "m")
    rid, _ = await request_of(victim)
    answer_mqtt5(intruder, rid.encode(), b'"forged"', status="200")
    await settle()
    assert hub.metrics.stray_responses.get() == 1
    assert not result.done()
    assert not intruder.transport.closed  # its own namespace: allowed, and answers nothing
    answer_mqtt5(victim, rid.encode(), b'"real"', status="200")
    assert (await result).payload == b'"real"'


@pytest.mark.parametrize(
    "topic", ["devices/dev2/methods/response", "$iothub/methods/response/1", "$iothub/methods/responses"]
)
async def test_publishing_beside_the_response_topic_closes_the_connection(
    hub: Hub, dev1: Identity, topic: str
) -> None:
    device = await v5_device(hub, dev1)
    result = hub.call("dev1", "m")
    rid, _ = await request_of(device)
    answer_mqtt5(device, rid.encode(), status="200", topic=topic)
    assert await device.next_packet() == Disconnect(reason_code=0x87)
    await device.closed()
    with pytest.raises(HubError) as raised:
        await result
    assert raised.value.kind is ErrorKind.DEVICE_DISCONNECTED


@pytest.mark.parametrize(
    "statuses",
    [["ok"], ["2.5"], [""], ["+200"], [" 200"], ["２００"], ["2147483648"], ["-2147483649"], ["200", "200"]],
)
async def test_a_bad_status_property_fails_the_call_as_an_invalid_device_response(
    hub: Hub, dev1: Identity, statuses: list[str]
) -> None:
    device = await v5_device(hub, dev1)
    result = hub.call("dev1", "m")
    rid, _ = await request_of(device)
    answer_mqtt5(device, rid.encode(), user_properties=[("status", s) for s in statuses])
    with pytest.raises(HubError) as raised:
        await result
    assert raised.value.kind is ErrorKind.INVALID_DEVICE_RESPONSE
    assert "'status' user property" in raised.value.message
    assert not device.transport.closed  # nothing illegal on the wire


async def test_a_non_json_v5_answer_fails_the_call(hub: Hub, dev1: Identity) -> None:
    device = await v5_device(hub, dev1)
    result = hub.call("dev1", "m")
    rid, _ = await request_of(device)
    answer_mqtt5(device, rid.encode(), b"not json", status="200")
    with pytest.raises(HubError) as raised:
        await result
    assert raised.value.kind is ErrorKind.INVALID_DEVICE_RESPONSE
    assert "not JSON" in raised.value.message
