"""The AMQP device connection (gateway/amqp_connection.py, Azure's AmqpDialect) against a real Gateway, SQLite
registry, LocalRouter and CallEngine, the device driven by a client-role AmqpConnection as the Node
SDK behaves (tests/unit/gateway/amqp_device.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

import pytest

from methodhub.amqp import (
    AMQP_HEADER,
    Accepted,
    AmqpConnection,
    AmqpValue,
    Attach,
    Begin,
    ConnectionRole,
    Detach,
    End,
    Int,
    LinkRef,
    Message,
    Open,
    Properties,
    Role,
    SaslInit,
    Source,
    Symbol,
    Target,
    decode_message,
    encode_frame,
    encode_message,
)
from methodhub.amqp.events import (
    DeliverySettled,
    LinkAttached,
    LinkDetached,
    MessageReceived,
    SessionBegun,
    SessionEnded,
)
from methodhub.calls import Call, CallOutcome
from methodhub.dialects.aliyun.mqtt import AliyunDialect
from methodhub.dialects.azure.amqp import AzureAmqpDialect
from methodhub.dialects.azure.sas import generate_sas_token
from methodhub.errors import ErrorKind, HubError
from methodhub.gateway.gateway import Gateway
from methodhub.metrics import Metrics
from methodhub.registry import Identity, SqliteRegistry
from methodhub.registry.twins import patch_twin
from methodhub.router import LocalRouter
from tests.unit.amqp.conn_support import frames as conn_frames
from tests.unit.gateway.amqp_device import AmqpDevice, sas_token
from tests.unit.gateway.azure_hub import HOST, Hub, MemoryTransport, azure_connect
from tests.unit.manual_clock import ManualClockLoop


def _ready(hub: Hub, key: str) -> bool:
    """Whether the device's session is ready for calls (announced to the router)."""
    session = hub.gateway.sessions.get(key)
    return session is not None and session.ready


async def test_a_call_is_answered_with_the_devices_status_and_payload(hub: Hub, dev1: Identity) -> None:
    device = AmqpDevice(hub)
    await device.online("dev1", dev1.keys.primary)
    assert await device.until(lambda: hub.gateway.sessions.get("dev1") is not None)
    await device.until(lambda: _ready(hub, "dev1"))
    call = hub.call("dev1", "reboot", b'{"delay": 1}')
    request = await device.request()
    rid = request.properties.correlation_id
    assert isinstance(rid, uuid.UUID)
    assert request.application_properties == {"IoThub-methodname": "reboot"}
    assert request.body == [b'{"delay": 1}']
    device.answer(rid, 201, [b'{"rebooted":true}'])
    outcome = await asyncio.wait_for(call, 30)
    assert outcome == CallOutcome(201, b'{"rebooted":true}')
    rendered = hub.metrics.render()
    assert "methodhub_amqp_connections_total 1\n" in rendered and "methodhub_amqp_connections 1\n" in rendered
    assert "methodhub_mqtt_connections_total 0\n" in rendered and "methodhub_mqtt_connections 0\n" in rendered


async def ready(hub: Hub, device: AmqpDevice, key: str = "dev1") -> None:
    await device.until(lambda: _ready(hub, key))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ([b"[1, 2]"], b"[1, 2]"),
        ([b'"text"'], b'"text"'),
        ([b"null"], b"null"),
        (None, b"null"),  # Node sends no body for an undefined payload
        ([b'{"a":', b"1}"], b'{"a":1}'),  # several data sections joined
    ],
)
async def test_payload_shapes(hub: Hub, dev1: Identity, answer: list[bytes] | None, expected: bytes) -> None:
    device = AmqpDevice(hub)
    await device.online("dev1", dev1.keys.primary)
    await ready(hub, device)
    call = hub.call("dev1", "m")
    request = await device.request()
    device.answer(request.properties.correlation_id, 200, answer)
    assert (await asyncio.wait_for(call, 30)) == CallOutcome(200, expected)


async def test_offline_before_the_methods_links_and_connect_timeout_waits_for_them(
    hub: Hub, dev1: Identity
) -> None:
    device = AmqpDevice(hub)
    await device.begin()
    answer = await device.put_token(sas_token("dev1", dev1.keys.primary), "dev1")
    assert answer.application_properties["status-code"] == 200
    with pytest.raises(HubError) as offline:
        await hub.call("dev1", "m")
    assert offline.value.kind is ErrorKind.DEVICE_OFFLINE
    waiting = hub.engine.invoke(Call("dev1", "m", b"{}", 3600, 3600))
    await asyncio.sleep(0)
    assert not waiting.done()
    await device.methods("dev1")
    request = await device.request()
    device.answer(request.properties.correlation_id, 200, [b"1"])
    assert (await asyncio.wait_for(waiting, 30)).status == 200


async def test_a_drop_mid_call_fails_it_at_once(hub: Hub, dev1: Identity) -> None:
    device = AmqpDevice(hub)
    await device.online("dev1", dev1.keys.primary)
    await ready(hub, device)
    call = hub.call("dev1", "m")
    await device.request()
    device.transport.close()
    with pytest.raises(HubError) as gone:
        await asyncio.wait_for(call, 30)
    assert gone.value.kind is ErrorKind.DEVICE_DISCONNECTED


async def test_a_second_amqp_connection_takes_over_and_the_old_connection_is_dropped(
    hub: Hub, dev1: Identity
) -> None:
    """The old connection carries nothing else: TCP is dropped at once (no detach first, no AMQP
    close), which the Node SDK reports as a disconnect — as MQTT's takeover closes the connection."""
    old = AmqpDevice(hub)
    await old.online("dev1", dev1.keys.primary)
    await ready(hub, old)
    new = AmqpDevice(hub)
    await new.online("dev1", dev1.keys.primary)
    await old.closed()
    await ready(hub, new)
    call = hub.call("dev1", "m")
    request = await new.request()
    new.answer(request.properties.correlation_id, 200, [b"2"])
    assert (await asyncio.wait_for(call, 30)).payload == b"2"


async def test_mqtt_then_amqp_then_mqtt_of_one_device_take_each_other_over(hub: Hub, dev1: Identity) -> None:
    mqtt = hub.device()
    await mqtt.online(azure_connect("dev1", dev1.keys.primary), "$iothub/methods/POST/#")
    amqp = AmqpDevice(hub)
    await amqp.online("dev1", dev1.keys.primary)
    await mqtt.closed()
    await ready(hub, amqp)
    session = hub.gateway.sessions.get("dev1")
    assert (
        session is not None
        and session.channel is not None
        and type(session.channel).__name__ == "AmqpMethodsChannel"
    )
    again = hub.device()
    await again.online(azure_connect("dev1", dev1.keys.primary, clean=False), "$iothub/methods/POST/#")
    await amqp.closed()  # alone on its connection: TCP dropped
    assert hub.gateway.sessions.get("dev1").channel is again.protocol


async def test_a_bad_token_gets_401_and_no_session(hub: Hub, dev1: Identity) -> None:
    device = AmqpDevice(hub)
    await device.begin()
    answer = await device.put_token(sas_token("dev1", "d3JvbmcgdGhlIGtleSBpcyB3cm9uZyB3cm9uZw=="), "dev1")
    assert answer.application_properties["status-code"] == 401
    assert answer.properties.correlation_id == "token-1"
    ref, _ = await device.attach("s", sender=True, address="/devices/dev1/methods/devicebound")
    detached = await device.detached(ref)
    assert detached.error is not None and detached.error.condition == "amqp:unauthorized-access"
    assert hub.gateway.sessions.get("dev1") is None
    assert not device.transport.closed  # the device closes by itself (wire doc §7.2)
    # counted as AMQP's, not as an MQTT CONNECT refusal
    assert hub.metrics.amqp_auth_refused.get("put_token") == 1
    assert hub.metrics.connects_refused.get("bad_credentials") == 0


async def test_an_unknown_address_is_refused_and_events_and_twin_links_are_accepted(
    hub: Hub, dev1: Identity
) -> None:
    device = AmqpDevice(hub)
    await device.online("dev1", dev1.keys.primary)
    events, _ = await device.attach("e", sender=True, address="/devices/dev1/messages/events")
    twin_in, _ = await device.attach("t", sender=False, address="/devices/dev1/twin", credit=10)
    twin_out, _ = await device.attach("u", sender=True, address="/devices/dev1/twin")
    device.amqp.send_message(events, encode_message(Message(body=[b"hi"])), b"e1")
    settled = await device.until(lambda: device.take(DeliverySettled, events))
    assert isinstance(settled[0].state, Accepted)
    bad, _ = await device.attach("x", sender=True, address="/devices/dev1/nowhere")
    detached = await device.detached(bad)
    assert detached.error is not None and detached.error.condition == "amqp:not-found"
    assert not device.take(LinkDetached, twin_in) and not device.take(LinkDetached, twin_out)


async def test_shutdown_detaches_every_link_detach_forced_and_drops_tcp(hub: Hub, dev1: Identity) -> None:
    device = AmqpDevice(hub)
    await device.online("dev1", dev1.keys.primary)
    await ready(hub, device)
    device.protocol.shutdown()
    await device.closed()
    device.pump()
    errors = {e.link: e.error.condition for e in device.take(LinkDetached) if e.error is not None}
    assert set(errors) == {device.cbs_out, device.cbs_in, device.responses, device.requests}
    assert set(errors.values()) == {"amqp:link:detach-forced"}
    assert hub.gateway.sessions.get("dev1") is None


async def test_large_payloads_both_ways_are_split_and_reassembled(hub: Hub, dev1: Identity) -> None:
    device = AmqpDevice(hub)
    await device.online("dev1", dev1.keys.primary)
    await ready(hub, device)
    big = b'"' + b"x" * (128 * 1024 - 2) + b'"'
    call = hub.call("dev1", "m", big)
    request = await device.request()
    assert request.body == [big]
    device.answer(request.properties.correlation_id, 200, [big])
    assert (await asyncio.wait_for(call, 30)).payload == big


async def test_sasl_plain_authorizes_the_identity(hub: Hub, dev1: Identity) -> None:
    token = sas_token("dev1", dev1.keys.primary)
    init = SaslInit("PLAIN", b"\0dev1@sas.hub\0" + token.encode())
    device = AmqpDevice(hub, sasl_init=init)
    await device.until(lambda: device.amqp.opened)
    await device.begin()
    await device.methods("dev1")  # no put-token: PLAIN authorized dev1
    await ready(hub, device)


async def test_sasl_plain_with_a_bad_token_is_refused(hub: Hub, dev1: Identity) -> None:
    init = SaslInit("PLAIN", b"\0dev1@sas.hub\0SharedAccessSignature sr=x&sig=y&se=1")
    device = AmqpDevice(hub, sasl_init=init)
    await device.closed()
    assert not device.amqp.opened
    assert hub.metrics.amqp_auth_refused.get("sasl_plain") == 1


async def test_token_expiry_detaches_unauthorized_and_a_renewal_extends_it(hub: Hub, dev1: Identity) -> None:
    protocol = hub.gateway.amqp_protocol_for("amqps")
    clock = protocol.loop = ManualClockLoop(protocol.loop)
    protocol.wall = lambda: 1_000_000.0  # the token clock: expiries below are relative to it
    device = AmqpDevice(hub, protocol=protocol)
    await device.begin()
    key = dev1.keys.primary
    await device.put_token(sas_token("dev1", key, expiry=time.time() + 600), "dev1")
    await device.methods("dev1")
    await ready(hub, device)
    first = protocol.identities["dev1"].expiry_timer
    renewed_at = time.time() + 7200
    answer = await device.put_token(sas_token("dev1", key, expiry=renewed_at), "dev1")
    assert answer.application_properties["status-code"] == 200
    second = protocol.identities["dev1"].expiry_timer
    assert first.cancelled() and not second.cancelled()
    assert second.when() - first.when() == pytest.approx(renewed_at - (time.time() + 600), abs=5)
    clock.fire(second)
    detached = await device.detached(device.requests)
    assert detached.error is not None and detached.error.condition == "amqp:unauthorized-access"
    await device.until(lambda: hub.gateway.sessions.get("dev1") is None)


async def test_no_put_token_by_the_deadline_drops_the_connection(hub: Hub, dev1: Identity) -> None:
    protocol = hub.gateway.amqp_protocol_for("amqps")
    clock = protocol.loop = ManualClockLoop(protocol.loop)
    device = AmqpDevice(hub, protocol=protocol)
    await device.begin()
    timer = protocol.timer
    assert timer is not None and timer.when() == pytest.approx(
        clock.now + hub.gateway.context.connect_timeout
    )
    clock.fire(timer)
    await device.closed()
    assert not device.take(LinkDetached)  # TCP dropped, no AMQP close or detach
    assert hub.metrics.amqp_limits.get("connect_deadline") == 1
    assert hub.metrics.device_limits.get("connect_deadline") == 0  # MQTT's counter is MQTT's


async def test_a_failing_task_closes_the_connection_and_is_counted(
    hub: Hub, dev1: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = AmqpDevice(hub)
    await device.begin()

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(device.protocol, "_verify_put_token", broken)
    device.amqp.send_message(
        device.cbs_out,
        encode_message(
            Message(
                application_properties={
                    "operation": "put-token",
                    "type": "servicebus.windows.net:sastoken",
                    "name": "hub.example/devices/dev1",
                },
                body=AmqpValue("x"),
            )
        ),
        b"t",
    )
    await device.closed()
    assert device.transport.aborted
    assert hub.metrics.connection_failures.get() == 1


@pytest.mark.parametrize("amqp_dialect", [None, AzureAmqpDialect()])
async def test_listen_amqp_refuses_a_gateway_that_cannot_speak_amqp(
    registry: SqliteRegistry, amqp_dialect: AzureAmqpDialect | None
) -> None:
    """No AMQP dialect, or one whose MQTT dialect (the sessions') is missing: a clear error before
    any socket is bound."""
    gateway = Gateway(
        registry=registry,
        router=LocalRouter(),
        metrics=Metrics(),
        hostname="hub.example",
        dialects=[AliyunDialect()],
        max_packet_size=300_000,
        amqp_dialect=amqp_dialect,
    )
    with pytest.raises(RuntimeError, match="AMQP dialect"):
        await gateway.listen_amqp("127.0.0.1", 0)
    assert gateway.admissions == []


async def test_a_put_token_answer_waits_for_credit_on_the_cbs_receiver(hub: Hub, dev1: Identity) -> None:
    """The device's put-token was verified before its flow for the $cbs receiver arrived: the answer
    used to be dropped ("no credit"), and the Node SDK's open() hung for 120 s. Now it waits for the
    credit and goes out when it comes."""
    from methodhub.amqp import Properties, decode_message
    from methodhub.amqp.events import MessageReceived, SessionBegun

    device = AmqpDevice(hub)
    await device.until(lambda: device.amqp.opened)
    device.channel = device.amqp.begin_session()
    await device.until(lambda: device.take(SessionBegun))
    device.cbs_out, _ = await device.attach("rheaSender_1", sender=True, address="$cbs")
    device.cbs_in, _ = await device.attach("rheaReceiver_1", sender=False, address="$cbs", credit=0)
    request = Message(
        properties=Properties(message_id="token-1", to="$cbs", reply_to="cbs"),
        application_properties={
            "operation": "put-token",
            "type": "servicebus.windows.net:sastoken",
            "name": "localhost/devices/dev1",
        },
        body=AmqpValue(sas_token("dev1", dev1.keys.primary)),
    )
    device.amqp.send_message(device.cbs_out, encode_message(request), b"1")
    device.pump()
    for _ in range(20):  # the verification (a registry read) and the answer attempt happen meanwhile
        await asyncio.sleep(0.01)
        device.pump()
    assert device.take(MessageReceived, device.cbs_in) == []  # no credit: nothing may be sent
    device.amqp.grant_credit(device.cbs_in, 10)
    received = (await device.until(lambda: device.take(MessageReceived, device.cbs_in)))[0]
    answer = decode_message(received.payload)
    assert answer.application_properties is not None
    assert answer.application_properties["status-code"] == 200
    assert answer.properties is not None and answer.properties.correlation_id == "token-1"


async def test_a_call_made_once_the_new_connection_is_authorized_reaches_it_not_the_old_one(
    hub: Hub, dev1: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node calls open() done when its put-token is answered; a backend calling then used to reach
    the connection being replaced (the new session opened only with the methods links) and the
    call failed 404104 when the takeover came. The takeover now happens before the answer."""
    old = AmqpDevice(hub)
    await old.online("dev1", dev1.keys.primary)
    await ready(hub, old)
    # A cluster makes the device reachable on every node before its session opens: slow here.
    monkeypatch.setattr(
        hub.router, "reachable", lambda key: asyncio.ensure_future(asyncio.sleep(0.2)), raising=False
    )
    new = AmqpDevice(hub)
    await new.begin()
    answer = await new.put_token(sas_token("dev1", dev1.keys.primary), "dev1")
    assert answer.application_properties is not None and answer.application_properties["status-code"] == 200
    call = hub.engine.invoke(Call("dev1", "m", b"{}", 30, connect_timeout=30))
    await new.methods("dev1")
    request = await new.request()
    new.answer(request.properties.correlation_id, 200, [b"1"])
    assert (await asyncio.wait_for(call, 30)).payload == b"1"
    await old.closed()


def _twin_request(correlation_id: object, operation: str, resource: str | None = None) -> bytes:
    annotations = {Symbol("operation"): operation}
    if resource is not None:
        annotations[Symbol("resource")] = resource
    return encode_message(
        Message(
            message_annotations=annotations, properties=Properties(correlation_id=correlation_id), body=[b" "]
        )
    )


async def test_twin_requests_over_amqp_are_answered_from_the_registry(
    hub: Hub, dev1: Identity, registry: SqliteRegistry
) -> None:
    """Node's amqp_twin_client: a reported PATCH is stored (204 with the new ``version``), GET gets
    the twin with both sides' ``$version``, subscribing to desired-property updates (PUT) succeeds;
    each answer has the request's correlation-id (its AMQP type kept) and ``status`` an AMQP int."""
    device = AmqpDevice(hub)
    await device.online("dev1", dev1.keys.primary)
    twin_out, _ = await device.attach("twinSender", sender=True, address="/devices/dev1/twin")
    twin_in, _ = await device.attach("twinReceiver", sender=False, address="/devices/dev1/twin", credit=10)

    async def ask(cid: object, operation: str, resource: str | None = None, body: bytes = b" ") -> Message:
        annotations = {Symbol("operation"): operation}
        if resource is not None:
            annotations[Symbol("resource")] = resource
        request = Message(
            message_annotations=annotations, properties=Properties(correlation_id=cid), body=[body]
        )
        device.amqp.send_message(twin_out, encode_message(request), str(cid).encode()[:32])
        received = (await device.until(lambda: device.take(MessageReceived, twin_in)))[0]
        assert received.settled
        return decode_message(received.payload)

    patched = await ask(uuid.UUID(int=7), "PATCH", "/properties/reported", b'{"fw":"1.2"}')
    assert patched.properties.correlation_id == uuid.UUID(int=7)
    assert patched.message_annotations == {Symbol("status"): Int(204), Symbol("version"): 2}
    assert type(patched.message_annotations[Symbol("status")]) is Int and patched.body is None
    stored = await registry.get_twin("dev1")
    assert stored is not None and stored.reported == {"fw": "1.2"}
    got = await ask("c-get", "GET")
    assert got.properties.correlation_id == "c-get"
    assert got.message_annotations == {Symbol("status"): Int(200)}
    body = json.loads(b"".join(got.body))
    assert body["reported"]["fw"] == "1.2" and body["reported"]["$version"] == 2
    assert body["desired"]["$version"] == 1
    put = await ask("c-put", "PUT", "/notifications/twin/properties/desired")
    assert put.message_annotations == {Symbol("status"): Int(200)} and put.body is None
    bad = await ask("c-bad", "PATCH", "/properties/reported", b'{"bad.key":1}')
    assert bad.message_annotations == {Symbol("status"): Int(400)}
    assert json.loads(b"".join(bad.body))["errorCode"] == 400004


async def test_a_twin_answer_waits_for_the_devices_credit(hub: Hub, dev1: Identity) -> None:
    device = AmqpDevice(hub)
    await device.online("dev1", dev1.keys.primary)
    twin_out, _ = await device.attach("twinSender", sender=True, address="/devices/dev1/twin")
    twin_in, _ = await device.attach("twinReceiver", sender=False, address="/devices/dev1/twin")
    device.amqp.send_message(twin_out, _twin_request("c1", "GET"), b"t1")
    await device.until(lambda: device.take(DeliverySettled, twin_out))  # the hub has the request
    assert not device.take(MessageReceived, twin_in)
    device.amqp.grant_credit(twin_in, 1)
    received = await device.until(lambda: device.take(MessageReceived, twin_in))
    assert decode_message(received[0].payload).properties.correlation_id == "c1"


async def test_a_drain_on_the_methods_link_gives_the_credit_back(hub: Hub, dev1: Identity) -> None:
    """A receiver draining its link (proton's ``drain``, AMQP 1.0 §2.6.7): the hub sends no call
    without one to send, so it answers at once with a flow that uses up the credit."""
    device = AmqpDevice(hub)
    await device.online("dev1", dev1.keys.primary)
    assert device.requests is not None
    await device.until(lambda: device.amqp.credit(device.requests) == 1000)
    device.amqp.grant_credit(device.requests, 0, drain=True)
    await device.until(lambda: device.amqp.credit(device.requests) == 0)
    device.amqp.grant_credit(device.requests, 5)  # and calls flow again on new credit
    await ready(hub, device)
    call = hub.call("dev1", "reboot", b"{}")
    request = await device.request()
    device.answer(request.properties.correlation_id, 200, None)
    assert await asyncio.wait_for(call, 30) == CallOutcome(200, b"null")


async def test_two_identities_on_one_connection_are_two_sessions(
    hub: Hub, dev1: Identity, registry: SqliteRegistry
) -> None:
    """A multiplexing client (C#, Java): one connection, a put-token and methods links per identity.
    Each identity's calls reach its own links; a takeover of one detaches only its links
    (``detach-forced``) and the connection keeps serving the other."""
    dev2 = await registry.create_identity("dev2")
    device = AmqpDevice(hub)
    await device.begin()
    links: dict[str, tuple[LinkRef, LinkRef]] = {}
    for n, (name, identity) in enumerate((("dev1", dev1), ("dev2", dev2))):
        answer = await device.put_token(sas_token(name, identity.keys.primary), name)
        assert answer.application_properties["status-code"] == 200
        address = f"/devices/{name}/methods/devicebound"
        responses, _ = await device.attach(f"s{n}", sender=True, address=address)
        requests, _ = await device.attach(f"r{n}", sender=False, address=address, credit=10)
        links[name] = (responses, requests)
        await ready(hub, device, name)
    for name in ("dev1", "dev2"):
        responses, requests = links[name]
        call = hub.call(name, "which", b"{}")
        received = (await device.until(lambda r=requests: device.take(MessageReceived, r)))[0]
        rid = decode_message(received.payload).properties.correlation_id
        answer = Message(
            properties=Properties(correlation_id=rid),
            application_properties={"IoThub-status": Int(200)},
            body=[f'"{name}"'.encode()],
        )
        device.amqp.send_message(responses, encode_message(answer), b"a")
        device.pump()
        assert await asyncio.wait_for(call, 30) == CallOutcome(200, f'"{name}"'.encode())
    other = AmqpDevice(hub)
    await other.online("dev1", dev1.keys.primary)
    for link in links["dev1"]:
        detached = await device.detached(link)
        assert detached.error is not None and detached.error.condition == "amqp:link:detach-forced"
    assert not device.transport.closed
    assert not any(device.take(LinkDetached, link) for link in links["dev2"])
    call = hub.call("dev2", "still", b"{}")
    received = (await device.until(lambda: device.take(MessageReceived, links["dev2"][1])))[0]
    assert decode_message(received.payload).application_properties == {"IoThub-methodname": "still"}
    call.cancel()


async def test_a_hub_wide_policy_token_authorizes_each_device_a_link_names(
    hub: Hub, dev1: Identity, registry: SqliteRegistry
) -> None:
    """C# with a policy key (wire doc §2.2): one put-token with audience ``{HostName}`` and a token
    signed by a policy holding DeviceConnect; each device is then checked (registered, enabled) when
    a link names it. A device not registered gets its link refused ``amqp:unauthorized-access``,
    and the connection serves the others."""
    await registry.ensure_default_policies()
    policy = await registry.get_policy("device")
    assert policy is not None
    await registry.create_identity("dev2")
    device = AmqpDevice(hub)
    await device.begin()
    token = generate_sas_token(HOST, policy.keys.primary, int(time.time()) + 3600, key_name="device")
    answer = await device.put_token_for(HOST, token)
    assert answer.application_properties["status-code"] == 200, answer
    links: dict[str, tuple[LinkRef, LinkRef]] = {}
    for n, name in enumerate(("dev1", "dev2")):
        address = f"/devices/{name}/methods/devicebound"
        responses, _ = await device.attach(f"s{n}", sender=True, address=address)
        requests, _ = await device.attach(f"r{n}", sender=False, address=address, credit=10)
        links[name] = (responses, requests)
        await ready(hub, device, name)
    call = hub.call("dev2", "hello", b"{}")
    received = (await device.until(lambda: device.take(MessageReceived, links["dev2"][1])))[0]
    rid = decode_message(received.payload).properties.correlation_id
    reply = Message(
        properties=Properties(correlation_id=rid), application_properties={"IoThub-status": Int(200)}
    )
    device.amqp.send_message(links["dev2"][0], encode_message(reply), b"a")
    device.pump()
    assert await asyncio.wait_for(call, 30) == CallOutcome(200, b"null")
    stranger, _ = await device.attach("s9", sender=True, address="/devices/nobody/methods/devicebound")
    detached = await device.detached(stranger)
    assert detached.error is not None and detached.error.condition == "amqp:unauthorized-access"
    assert "not registered" in str(detached.error.description)
    assert hub.metrics.amqp_auth_refused.get("hub_token") == 1
    assert not device.transport.closed and _ready(hub, "dev1")


async def test_a_hub_wide_token_of_a_policy_without_device_connect_is_401(
    hub: Hub, dev1: Identity, registry: SqliteRegistry
) -> None:
    await registry.ensure_default_policies()
    policy = await registry.get_policy("service")
    assert policy is not None
    device = AmqpDevice(hub)
    await device.begin()
    token = generate_sas_token(HOST, policy.keys.primary, int(time.time()) + 3600, key_name="service")
    answer = await device.put_token_for(HOST, token)
    assert answer.application_properties["status-code"] == 401
    assert "lacks DeviceConnect" in answer.application_properties["status-description"]
    ref, _ = await device.attach("s", sender=True, address="/devices/dev1/methods/devicebound")
    detached = await device.detached(ref)
    assert detached.error is not None and detached.error.condition == "amqp:unauthorized-access"


async def test_frames_after_an_attach_being_verified_wait_for_it_in_order(
    hub: Hub, dev1: Identity, registry: SqliteRegistry
) -> None:
    """Both methods attaches in one read, the first paused for the hub-wide token's check of dev1:
    the second is served after it (not before, not lost), and the device is ready for calls."""
    await registry.ensure_default_policies()
    policy = await registry.get_policy("device")
    assert policy is not None
    device = AmqpDevice(hub)
    await device.begin()
    token = generate_sas_token(HOST, policy.keys.primary, int(time.time()) + 3600, key_name="device")
    assert (await device.put_token_for(HOST, token)).application_properties["status-code"] == 200
    assert device.channel is not None
    address = "/devices/dev1/methods/devicebound"
    sender = device.amqp.attach(device.channel, "s", sender=True, source=Source(), target=Target(address))
    receiver = device.amqp.attach(device.channel, "r", sender=False, source=Source(address), target=Target())
    device.pump()  # both attach frames reach the hub in one data_received
    answers = await device.until(
        lambda: (
            [e for e in device.events if type(e) is LinkAttached and e.link in (sender, receiver)][1:]
            and device.take(LinkAttached)
        )
    )
    assert {e.link for e in answers} == {sender, receiver}
    assert all(e.attach.source is not None or e.attach.target is not None for e in answers)  # accepted
    device.amqp.grant_credit(receiver, 5)
    await ready(hub, device)


async def test_a_detach_right_after_an_attach_being_verified_is_served_after_it(
    hub: Hub, dev1: Identity, registry: SqliteRegistry
) -> None:
    """An attach paused for the hub-wide token's check of dev1, and its detach in the same read (the
    protocol core answers both at once): the detach event is served after the attach's, in order,
    so the hub keeps no state for the link once dev1 is verified."""
    await registry.ensure_default_policies()
    policy = await registry.get_policy("device")
    assert policy is not None
    device = AmqpDevice(hub)
    await device.begin()
    token = generate_sas_token(HOST, policy.keys.primary, int(time.time()) + 3600, key_name="device")
    assert (await device.put_token_for(HOST, token)).application_properties["status-code"] == 200
    assert device.channel is not None
    address = "/devices/dev1/twin"
    link = device.amqp.attach(device.channel, "t", sender=True, source=Source(), target=Target(address))
    device.amqp.detach(link)
    device.pump()  # the attach and the detach reach the hub in one data_received
    await device.detached(link)
    await device.until(lambda: "dev1" in device.protocol.identities)  # verified meanwhile
    await device.until(lambda: not device.protocol.waiting)
    assert not device.transport.closed
    assert [ref.name for ref in device.protocol.links if ref.name == "t"] == []
    assert device.protocol.identities["dev1"].links == set()
    assert not device.take(SessionEnded)  # the session is intact: dev1's methods links work on it
    await device.methods("dev1")
    await ready(hub, device)


async def test_desired_property_changes_reach_an_amqp_device_that_asked(
    hub: Hub, dev1: Identity, registry: SqliteRegistry
) -> None:
    """Node's ``enableTwinDesiredPropertiesUpdates`` (a twin PUT of the notifications resource):
    each later change arrives on the twin receiver with no correlation-id, the patch with its
    ``$version`` as the body; after a DELETE, none."""
    device = AmqpDevice(hub)
    await device.online("dev1", dev1.keys.primary)
    twin_out, _ = await device.attach("twinSender", sender=True, address="/devices/dev1/twin")
    twin_in, _ = await device.attach("twinReceiver", sender=False, address="/devices/dev1/twin", credit=10)

    def request(cid: str, operation: str) -> bytes:
        annotations = {
            Symbol("operation"): operation,
            Symbol("resource"): "/notifications/twin/properties/desired",
        }
        return encode_message(
            Message(message_annotations=annotations, properties=Properties(correlation_id=cid))
        )

    device.amqp.send_message(twin_out, request("sub", "PUT"), b"t1")
    await device.until(lambda: device.take(MessageReceived, twin_in))  # its 200
    await registry.update_twin("dev1", None, lambda t: patch_twin(t, None, {"interval": 5}, time.time()))
    await hub.gateway.twin_changed("dev1")
    update = decode_message((await device.until(lambda: device.take(MessageReceived, twin_in)))[0].payload)
    assert update.properties is None or update.properties.correlation_id is None
    assert json.loads(b"".join(update.body)) == {"interval": 5, "$version": 2}
    device.amqp.send_message(twin_out, request("unsub", "DELETE"), b"t2")
    await device.until(lambda: device.take(MessageReceived, twin_in))
    await registry.update_twin("dev1", None, lambda t: patch_twin(t, None, {"interval": 6}, time.time()))
    await hub.gateway.twin_changed("dev1")
    await asyncio.sleep(0.05)
    device.pump()
    assert not device.take(MessageReceived, twin_in)


class UvloopTimers:
    """Stands in for the loop as uvloop (0.19 - 0.23) arms timers: ``call_at`` for a time less than
    1 ms away returns a plain ``Handle`` that runs on the next iteration and has no ``when()``;
    everything else is the real loop's."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def call_at(self, when: float, callback: Any, *args: Any) -> asyncio.Handle:
        if when - self._loop.time() < 0.001:
            return self._loop.call_soon(callback, *args)
        return self._loop.call_at(when, callback, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


async def test_a_timer_due_within_a_millisecond_works_on_uvloop(hub: Hub, dev1: Identity) -> None:
    """A device asking for a 2 ms idle-time-out makes the hub's heartbeat due within a millisecond,
    where uvloop's ``call_at`` gives a Handle without ``when()``. Found by ``python -m fuzz``: the
    hub raised AttributeError re-arming or firing that timer (the connection was closed as a failure,
    or was left with no timer at all)."""
    protocol = hub.gateway.amqp_protocol_for("amqp")
    protocol.loop = UvloopTimers(protocol.loop)
    device = AmqpDevice(hub, protocol=protocol)
    device.amqp = AmqpConnection(
        ConnectionRole.CLIENT, container_id="c", hostname="localhost", idle_timeout=0.002, sasl_init=None
    )
    await device.online("dev1", dev1.keys.primary)
    await ready(hub, device)
    heard = len(device.transport.data)
    await device.until(lambda: len(device.transport.data) > heard + 8 * 50)  # 50 empty frames more
    assert hub.metrics.connection_failures.get() == 0
    assert not device.transport.closed
    call = hub.call("dev1", "m")
    request = await device.request()
    device.answer(request.properties.correlation_id, 200, [b"1"])
    assert (await asyncio.wait_for(call, 30)).payload == b"1"


def _cbs_sender(name: str, handle: int) -> Attach:
    return Attach(name, handle, Role.SENDER, source=Source(), target=Target("$cbs"), initial_delivery_count=0)


_BEGIN = Begin(next_outgoing_id=0, incoming_window=2048, outgoing_window=2048)


@pytest.mark.parametrize(
    "again",
    [
        [Detach(0, closed=True), _cbs_sender("x", 1)],  # the link again, on a new handle
        [End(), _BEGIN, _cbs_sender("x", 0)],  # the session again, and the same link in it
    ],
    ids=["link", "session"],
)
async def test_a_link_or_session_ended_and_made_again_in_one_read_is_served(
    hub: Hub, again: list[Any]
) -> None:
    """attach, then detach (or end) and attach again under the same name, all in one read (before
    the hub's answer): the new link took the handle (or channel) the old one freed, so both had the
    same LinkRef; the hub answered the new link for the old event, then raised RuntimeError
    ("needs no answer") for the new one, logged a traceback and aborted the connection. Found by
    ``python -m fuzz``."""
    protocol = hub.gateway.amqp_protocol_for("amqp")
    transport = MemoryTransport(protocol)
    protocol.connection_made(transport)
    frames = [Open("c"), _BEGIN, _cbs_sender("x", 0), *again]
    protocol.data_received(AMQP_HEADER + b"".join(encode_frame(0, f) for f in frames))
    await asyncio.sleep(0)
    assert hub.metrics.connection_failures.get() == 0
    assert not transport.aborted and not transport.closed
    answers = [f.body for f in conn_frames(bytes(transport.data))]
    attaches = [body for body in answers if type(body) is Attach]
    assert attaches and attaches[-1].target is not None  # the new link, accepted


async def test_put_tokens_that_cannot_be_answered_are_logged_once_per_connection(
    hub: Hub, dev1: Identity, caplog: pytest.LogCaptureFixture
) -> None:
    """A device sending put-tokens with no $cbs receiver in its session: nothing can answer them;
    the hub says so once, not once per put-token (the fuzzer's log flood)."""
    device = AmqpDevice(hub)
    await device.until(lambda: device.amqp.opened)
    device.channel = device.amqp.begin_session()
    await device.until(lambda: device.take(SessionBegun))
    device.cbs_out, _ = await device.attach("cbs", sender=True, address="$cbs")
    await device.until(lambda: device.amqp.credit(device.cbs_out) > 0)
    caplog.set_level(logging.INFO, logger="methodhub.gateway")
    for n in range(5):
        request = Message(
            properties=Properties(message_id=f"t{n}"),
            application_properties={
                "operation": "put-token",
                "type": "servicebus.windows.net:sastoken",
                "name": "localhost/devices/dev1",
            },
            body=AmqpValue(sas_token("dev1", dev1.keys.primary)),
        )
        device.amqp.send_message(device.cbs_out, encode_message(request), f"{n}".encode())
    await device.until(lambda: device.protocol.unanswerable_put_tokens == 5)
    said = [r for r in caplog.records if "put-token not answered" in r.getMessage()]
    assert len(said) == 1
