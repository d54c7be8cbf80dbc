"""The MQTT device connection end to end, without sockets: bytes from a client-role state machine go
into DeviceConnection.data_received, what it writes is decoded again; the real Azure dialect, a
real SQLite registry and SAS tokens, and a real CallEngine over a LocalRouter."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from methodhub.dialects.azure.topics import parse_request_topic, response_topic
from methodhub.errors import ErrorKind, HubError
from methodhub.mqtt import (
    Connack,
    Connect,
    Disconnect,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)
from methodhub.registry import Identity, SqliteRegistry, SymmetricKeys
from methodhub.registry.twins import patch_twin
from tests.unit.gateway.azure_hub import Device, Hub, azure_connect

METHODS = "$iothub/methods/POST/#"
OTHER_KEY = SymmetricKeys.generate().primary


async def request_of(device: Device) -> tuple[str, str, bytes]:
    """The next method request the device receives: (method, rid, payload)."""
    packet = await device.next_packet()
    assert isinstance(packet, Publish), packet
    assert packet.qos == 0
    parsed = parse_request_topic(packet.topic)
    assert parsed is not None, packet.topic
    return parsed[0], parsed[1], packet.payload


async def until_done(future: asyncio.Future[object]) -> None:
    """A few loop iterations: what the engine does once the session completed its reply."""
    for _ in range(5):
        if future.done():
            return
        await asyncio.sleep(0)


# -- CONNECT ---------------------------------------------------------------------------------------


async def test_connect_v311_is_accepted(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    device.send(azure_connect("dev1", dev1.keys.primary))
    connack = await device.connack()
    assert (connack.reason_code, connack.session_present, connack.properties) == (0, False, None)
    assert hub.gateway.connection_state("dev1")[0] is True
    assert hub.metrics.connections.get() == 1
    assert not await hub.callable("dev1")  # connected, not subscribed: no calls yet


async def test_connect_with_the_secondary_key_is_accepted(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    device.send(azure_connect("dev1", dev1.keys.secondary))
    assert (await device.connack()).reason_code == 0


async def test_connect_v5_gets_the_servers_capabilities(hub: Hub, dev1: Identity) -> None:
    device = hub.device(level=5)
    device.send(azure_connect("dev1", dev1.keys.primary, level=5))
    connack = await device.connack()
    assert connack.reason_code == 0
    props = connack.properties or {}
    assert props["maximum_qos"] == 1
    assert props["retain_available"] == 0
    assert props["maximum_packet_size"] == 300_000
    assert props["topic_alias_maximum"] == 0
    assert props["wildcard_subscription_available"] == 1
    assert props["subscription_identifier_available"] == 0
    assert props["shared_subscription_available"] == 0
    assert "server_keep_alive" not in props  # the client's 60 s is kept


async def test_connect_v5_without_keepalive_is_told_the_servers(hub: Hub, dev1: Identity) -> None:
    device = hub.device(level=5)
    device.send(azure_connect("dev1", dev1.keys.primary, level=5, keepalive=0))
    connack = await device.connack()
    assert (connack.properties or {})["server_keep_alive"] == 1767


@pytest.mark.parametrize("level, code", [(4, 5), (5, 0x87)])
async def test_a_bad_sas_token_is_refused_and_the_connection_closes(
    hub: Hub, dev1: Identity, level: int, code: int
) -> None:
    device = hub.device(level=level)
    device.send(azure_connect("dev1", OTHER_KEY, level=level))
    connack = await device.connack()
    assert (connack.reason_code, connack.session_present) == (code, False)
    await device.closed()
    assert device.received() == []
    assert hub.gateway.connection_state("dev1") == (False, None)
    assert len(hub.gateway.sessions) == 0
    assert hub.metrics.connects_refused.get("not_authorized") == 1
    assert device.protocol not in hub.gateway.connections


@pytest.mark.parametrize("level, code", [(4, 4), (5, 0x86)])
async def test_a_user_name_naming_another_hub_is_refused(
    hub: Hub, dev1: Identity, level: int, code: int
) -> None:
    device = hub.device(level=level)
    device.send(azure_connect("dev1", dev1.keys.primary, level=level, host="other.example"))
    assert (await device.connack()).reason_code == code
    await device.closed()


async def test_an_unknown_device_is_refused(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    device.send(azure_connect("ghost", dev1.keys.primary))
    assert (await device.connack()).reason_code == 5
    await device.closed()


@pytest.mark.parametrize("level, code", [(4, 4), (5, 0x86)])
async def test_a_user_name_no_dialect_claims_is_refused_as_bad_credentials(
    hub: Hub, level: int, code: int
) -> None:
    """A regression: the refusal named a type imported only for the type checker (a NameError, so
    the hub answered 3 'server unavailable' and logged a traceback)."""
    device = hub.device(level=level)
    device.send(Connect(client_id="dev1", username="no-dialect-has-this-shape", protocol_level=level))
    assert (await device.connack()).reason_code == code
    await device.closed()
    assert hub.metrics.connects_refused.get("bad_credentials") == 1


# -- SUBSCRIBE, readiness --------------------------------------------------------------------------


async def test_subscribing_to_methods_makes_the_session_ready(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary))
    assert not await hub.callable("dev1")
    packet_id = device.subscribe(METHODS, "$iothub/twin/res/#", qos=2)
    suback = await device.next_packet()
    assert suback == Suback(packet_id=packet_id, reason_codes=[1, 1])  # QoS 2 is granted as 1
    assert await hub.callable("dev1")
    session = hub.gateway.sessions.get("dev1")
    assert session is not None and session.ready
    assert dict(session.subscriptions) == {METHODS: 1, "$iothub/twin/res/#": 1}


@pytest.mark.parametrize("level, refused", [(4, 0x80), (5, 0x87)])
async def test_a_foreign_subscription_is_refused_and_the_rest_granted(
    hub: Hub, dev1: Identity, level: int, refused: int
) -> None:
    device = hub.device(level=level)
    await device.online(azure_connect("dev1", dev1.keys.primary, level=level))
    packet_id = device.subscribe("devices/dev2/messages/devicebound/#", METHODS)
    assert await device.next_packet() == Suback(packet_id=packet_id, reason_codes=[refused, 0])
    assert await hub.callable("dev1")
    assert not device.transport.closed


async def test_unsubscribing_from_methods_makes_the_session_not_ready(hub: Hub, dev1: Identity) -> None:
    device = hub.device(level=5)
    await device.online(azure_connect("dev1", dev1.keys.primary, level=5), METHODS)
    assert await hub.callable("dev1")
    device.send(Unsubscribe(packet_id=7, topic_filters=[METHODS, "never/subscribed"]))
    assert await device.next_packet() == Unsuback(packet_id=7, reason_codes=[0x00, 0x11])
    assert not await hub.callable("dev1")
    with pytest.raises(HubError) as raised:
        await hub.call("dev1", "reboot")
    assert raised.value.kind is ErrorKind.DEVICE_OFFLINE
    assert device.received() == []  # nothing was delivered


async def test_pingreq_gets_pingresp(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary))
    device.send(Pingreq())
    device.send(Pingreq())
    assert [await device.next_packet(), await device.next_packet()] == [Pingresp(), Pingresp()]
    assert not device.transport.closed


# -- calls -----------------------------------------------------------------------------------------


async def test_a_call_is_delivered_and_answered(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    result = hub.call("dev1", "reboot", b'{"delay":5}')
    method, rid, payload = await request_of(device)
    assert (method, payload) == ("reboot", b'{"delay":5}')
    assert rid and all(c in "0123456789abcdef" for c in rid)
    device.answer(response_topic(201, rid), b'{"rebooting":true}')
    outcome = await result
    assert (outcome.status, json.loads(outcome.payload)) == (201, {"rebooting": True})
    session = hub.gateway.sessions.get("dev1")
    assert session is not None and session.in_flight() == 0


async def test_a_qos1_answer_is_acknowledged(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    result = hub.call("dev1", "m")
    _, rid, _ = await request_of(device)
    device.answer(response_topic(200, rid), b"", qos=1)
    packet = await device.next_packet()
    assert isinstance(packet, Puback) and packet.packet_id is not None
    assert (await result).payload == b"null"  # an empty answer is JSON null


async def test_concurrent_calls_get_their_own_answers(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    first, second = hub.call("dev1", "a", b"1"), hub.call("dev1", "b", b"2")
    requests = [await request_of(device), await request_of(device)]
    assert [(m, p) for m, _, p in requests] == [("a", b"1"), ("b", b"2")]
    assert requests[0][1] != requests[1][1]
    for method, rid, _ in reversed(requests):  # answered in the other order
        device.answer(response_topic(200, rid), json.dumps(method).encode())
    assert ((await first).payload, (await second).payload) == (b'"a"', b'"b"')


async def test_a_non_json_answer_fails_the_call(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    result = hub.call("dev1", "m")
    _, rid, _ = await request_of(device)
    device.answer(response_topic(200, rid), b"not json")
    with pytest.raises(HubError) as raised:
        await result
    assert raised.value.kind is ErrorKind.INVALID_DEVICE_RESPONSE
    assert not device.transport.closed  # the device did nothing illegal on the wire


async def test_an_answer_to_no_call_is_counted_as_stray(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    device.answer(response_topic(200, "ffff"), b"{}")
    await asyncio.sleep(0)
    assert hub.metrics.stray_responses.get() == 1
    assert not device.transport.closed


async def test_a_call_to_a_method_it_did_not_subscribe_to_is_offline(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), "$iothub/methods/POST/reboot/#")
    assert await hub.callable("dev1")
    with pytest.raises(HubError) as raised:
        await hub.call("dev1", "upgrade")
    assert raised.value.kind is ErrorKind.DEVICE_OFFLINE
    result = hub.call("dev1", "reboot")
    method, rid, _ = await request_of(device)
    assert method == "reboot"
    device.answer(response_topic(200, rid), b"{}")
    assert (await result).status == 200


async def test_losing_the_connection_mid_call_fails_the_call_at_once(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    result = hub.call("dev1", "m")  # an hour to answer
    await request_of(device)
    device.protocol.connection_lost(ConnectionResetError("peer reset"))
    await until_done(result)
    assert result.done()
    with pytest.raises(HubError) as raised:
        result.result()
    assert raised.value.kind is ErrorKind.DEVICE_DISCONNECTED
    assert not await hub.callable("dev1")
    assert hub.gateway.connection_state("dev1") == (False, None)
    assert len(hub.gateway.sessions) == 0


async def test_a_device_disconnect_mid_call_fails_the_call(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    result = hub.call("dev1", "m")
    await request_of(device)
    device.send(Disconnect())
    await device.closed()
    await until_done(result)
    with pytest.raises(HubError) as raised:
        result.result()
    assert raised.value.kind is ErrorKind.DEVICE_DISCONNECTED


# -- twin, telemetry, foreign topics ---------------------------------------------------------------


async def test_twin_requests_over_mqtt_are_answered_from_the_registry(
    hub: Hub, dev1: Identity, registry: SqliteRegistry
) -> None:
    """A reported PATCH is stored and answered 204 with the new ``$version`` in the topic; GET
    gets both sides with their ``$version``; a bad patch is 400 with an IoT Hub error body."""
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), "$iothub/twin/res/#")
    device.answer("$iothub/twin/PATCH/properties/reported/?$rid=7", b'{"fw":"1.2","n":{"a":1}}')
    packet = await device.next_packet()
    assert isinstance(packet, Publish)
    assert (packet.topic, packet.payload) == ("$iothub/twin/res/204/?$rid=7&$version=2", b"")
    stored = await registry.get_twin("dev1")
    assert stored is not None and stored.reported == {"fw": "1.2", "n": {"a": 1}}
    device.answer("$iothub/twin/GET/?$rid=42", b"")
    packet = await device.next_packet()
    assert isinstance(packet, Publish) and packet.topic == "$iothub/twin/res/200/?$rid=42"
    twin = json.loads(packet.payload)
    assert twin["reported"]["fw"] == "1.2" and twin["reported"]["$version"] == 2
    assert twin["desired"]["$version"] == 1
    device.answer("$iothub/twin/PATCH/properties/reported/?$rid=8", b"[1]")
    packet = await device.next_packet()
    assert isinstance(packet, Publish) and packet.topic == "$iothub/twin/res/400/?$rid=8"
    assert json.loads(packet.payload)["errorCode"] == 400004


async def test_a_device_flooding_twin_requests_is_closed(hub: Hub, dev1: Identity) -> None:
    """More twin requests waiting for their answers than MAX_PENDING_REPLIES: the connection
    closes (the registry read of each is a task, so the number is bounded)."""
    device = hub.device(level=5)
    await device.online(azure_connect("dev1", dev1.keys.primary), "$iothub/twin/res/#")
    for n in range(40):
        device.answer(f"$iothub/twin/GET/?$rid={n}", b"")
    await device.closed()


async def test_a_twin_get_without_the_response_subscription_gets_no_answer(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    device.answer("$iothub/twin/GET/?$rid=42", b"", qos=1)
    packet = await device.next_packet()
    assert isinstance(packet, Puback)  # accepted, not answered
    assert device.received() == []
    assert not device.transport.closed


async def test_telemetry_is_accepted_and_counted(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary))
    device.answer("devices/dev1/messages/events/", b"23.5", qos=1)
    assert isinstance(await device.next_packet(), Puback)
    assert hub.metrics.telemetry.get() == 1


@pytest.mark.parametrize("topic", ["devices/dev2/messages/events/", "$iothub/methods/POST/x/?$rid=1"])
async def test_publishing_to_a_foreign_topic_closes_v5_with_not_authorized(
    hub: Hub, dev1: Identity, topic: str
) -> None:
    device = hub.device(level=5)
    await device.online(azure_connect("dev1", dev1.keys.primary, level=5), METHODS)
    device.answer(topic, b"{}")
    assert await device.next_packet() == Disconnect(reason_code=0x87)
    await device.closed()
    assert not await hub.callable("dev1")
    assert len(hub.gateway.sessions) == 0


async def test_publishing_to_a_foreign_topic_closes_v311_without_a_packet(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    device.answer("devices/dev2/messages/events/", b"{}", qos=1)
    await device.closed()
    assert device.received() == []  # no PUBACK for a refused message, no DISCONNECT in 3.1.1


async def test_a_qos2_publish_closes_v5_with_qos_not_supported(hub: Hub, dev1: Identity) -> None:
    device = hub.device(level=5)
    await device.online(azure_connect("dev1", dev1.keys.primary, level=5))
    device.answer("devices/dev1/messages/events/", b"{}", qos=2)
    assert await device.next_packet() == Disconnect(reason_code=0x9B)
    await device.closed()


async def test_what_follows_the_connect_in_one_read_is_served_after_the_connack(
    hub: Hub, dev1: Identity
) -> None:
    """A client may pipeline SUBSCRIBE and PINGREQ behind its CONNECT; they are read once the CONNECT
    is authenticated (asynchronously), at the accepted protocol level."""
    device = hub.device(level=5)
    device.protocol.data_received(
        device.mqtt.send(azure_connect("dev1", dev1.keys.primary, level=5))
        + device.mqtt.send(Subscribe(packet_id=3, subscriptions=[(METHODS, 0)]))
        + device.mqtt.send(Pingreq())
    )
    packets = [await device.next_packet() for _ in range(3)]
    assert isinstance(packets[0], Connack) and packets[0].reason_code == 0
    assert packets[1:] == [Suback(packet_id=3, reason_codes=[0]), Pingresp()]
    assert await hub.callable("dev1")


async def test_waiting_for_a_method_the_device_did_not_subscribe_to_does_not_spin(
    hub: Hub, dev1: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The device is ready (subscribed to reboot), so the router says so at once; the delivery of
    'upgrade' is refused as offline. With a connect timeout the engine waits for the device, and
    wait_ready() returns at once each time: the call was re-delivered thousands of times (11,568
    in 0.5 s, measured) until its connect timeout ran out — up to 300 s of a busy event loop."""
    from methodhub.calls import Call
    from methodhub.dialects.azure.mqtt import AzureDialect

    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), "$iothub/methods/POST/reboot/#")
    attempts = 0
    encode_call = AzureDialect.encode_call

    def counting(self: AzureDialect, *args: Any) -> tuple[str, str, bytes]:
        nonlocal attempts
        attempts += 1
        return encode_call(self, *args)

    monkeypatch.setattr(AzureDialect, "encode_call", counting)
    with pytest.raises(HubError) as raised:
        await hub.engine.invoke(Call("dev1", "upgrade", b"{}", 30, connect_timeout=0.2))
    assert raised.value.kind is ErrorKind.DEVICE_OFFLINE
    assert "has not subscribed to method 'upgrade'" in raised.value.message  # its reason
    # One now, one when the router says "ready", then backing off (0.05 s, 0.1 s, ...): before the fix,
    # thousands of deliveries in the 0.2 s.
    assert 2 <= attempts <= 4


async def test_a_call_waiting_for_a_method_is_delivered_once_the_device_subscribes_to_it(
    hub: Hub, dev1: Identity
) -> None:
    """The device is connected, subscribed to another method only; it subscribes to the one called
    while the call waits (connect timeout): the call then reaches it and is answered."""
    from methodhub.calls import Call

    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), "$iothub/methods/POST/reboot/#")
    result = hub.engine.invoke(Call("dev1", "upgrade", b"{}", 30, connect_timeout=20))
    await asyncio.sleep(0.1)
    assert not result.done()  # waiting, not failed at once, not delivered
    device.subscribe("$iothub/methods/POST/upgrade/#")
    assert isinstance(await device.next_packet(), Suback)
    method, rid, _ = await request_of(device)
    assert method == "upgrade"
    device.answer(response_topic(200, rid), b'"done"')
    assert (await result).payload == b'"done"'


async def test_desired_property_changes_are_notified_to_a_subscribed_device(
    hub: Hub, dev1: Identity, registry: SqliteRegistry
) -> None:
    """The change feed reports a twin change (here: ``twin_changed`` directly); a device subscribed
    to ``$iothub/twin/PATCH/properties/desired/#`` gets each patch made since, in order."""
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), "$iothub/twin/PATCH/properties/desired/#")
    now = time.time()
    for patch in ({"interval": 30}, {"interval": None, "mode": "eco"}):
        await registry.update_twin("dev1", None, lambda t, p=patch: patch_twin(t, None, p, now))
    await hub.gateway.twin_changed("dev1")
    await hub.gateway.twin_changed("dev1")  # the second change's feed row: nothing new to send
    first, second = await device.next_packet(), await device.next_packet()
    assert isinstance(first, Publish) and isinstance(second, Publish)
    assert first.topic == "$iothub/twin/PATCH/properties/desired/?$version=2"
    assert json.loads(first.payload) == {"interval": 30, "$version": 2}
    assert second.topic == "$iothub/twin/PATCH/properties/desired/?$version=3"
    assert json.loads(second.payload) == {"interval": None, "mode": "eco", "$version": 3}
    assert device.received() == []


async def test_a_device_not_subscribed_to_desired_changes_gets_none(
    hub: Hub, dev1: Identity, registry: SqliteRegistry
) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    await registry.update_twin("dev1", None, lambda t: patch_twin(t, None, {"x": 1}, time.time()))
    await hub.gateway.twin_changed("dev1")
    await asyncio.sleep(0.05)
    assert device.received() == []


async def test_a_timer_due_within_a_millisecond_works_on_uvloop(hub: Hub, dev1: Identity) -> None:
    """uvloop's ``call_at`` for under 1 ms ahead gives a plain Handle without ``when()`` (the AMQP
    fuzzing found it for AMQP; the MQTT connection armed its timer the same way): firing it must
    work and re-arm the next deadline."""
    from tests.unit.gateway.test_amqp_connection import UvloopTimers

    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary, keepalive=60), METHODS)
    protocol = device.protocol
    real_loop = protocol.loop
    protocol.loop = UvloopTimers(real_loop)
    errors: list[dict[str, object]] = []
    real_loop.set_exception_handler(lambda loop, context: errors.append(context))
    try:
        now = real_loop.time()  # a deadline due now, armed as _arm_timer arms it
        protocol.timer_at = now
        protocol.timer = protocol.loop.call_at(now, protocol._timer_fired)
        await asyncio.sleep(0.01)
    finally:
        real_loop.set_exception_handler(None)
    assert errors == [] and protocol.timer is not None and not device.transport.closed
