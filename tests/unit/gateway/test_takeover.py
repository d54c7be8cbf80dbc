"""Session takeover without sockets: a second connection of one identity takes its session over.

In-memory DeviceConnections with the real Azure dialect, SQLite registry, CallEngine and LocalRouter
(tests/unit/gateway/azure_hub.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from methodhub.dialects.azure.topics import parse_request_topic, response_topic
from methodhub.errors import ErrorKind, HubError
from methodhub.mqtt import Disconnect, Publish, Suback
from methodhub.registry import Identity, SqliteRegistry
from methodhub.router import LocalRouter
from tests.unit.gateway.azure_hub import Device, Hub, azure_connect

METHODS = "$iothub/methods/POST/#"


async def rid_of_request(device: Device, method: str) -> str:
    packet = await device.next_packet()
    assert isinstance(packet, Publish), packet
    parsed = parse_request_topic(packet.topic)
    assert parsed is not None and parsed[0] == method, packet.topic
    return parsed[1]


async def settle() -> None:
    """Let scheduled callbacks (a closed transport's connection_lost, the engine's reply) run."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_second_v5_connection_takes_over_and_the_first_hears_0x8e(hub: Hub, dev1: Identity) -> None:
    first = hub.device(level=5)
    await first.online(azure_connect("dev1", dev1.keys.primary, level=5), METHODS)
    second = hub.device(level=5)
    await second.online(azure_connect("dev1", dev1.keys.primary, level=5), METHODS)
    assert await first.next_packet() == Disconnect(reason_code=0x8E)
    await first.closed()
    session = hub.gateway.sessions.get("dev1")
    assert session is not None and session.channel is second.protocol
    assert hub.gateway.connections == {second.protocol}
    assert len(hub.gateway.sessions) == 1

    result = hub.call("dev1", "m")
    rid = await rid_of_request(second, "m")
    assert first.received() == []
    second.answer(response_topic(200, rid), b"{}")
    assert (await result).status == 200


async def test_a_v311_connection_taken_over_is_closed_without_a_packet(hub: Hub, dev1: Identity) -> None:
    first = hub.device()
    await first.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    second = hub.device()
    await second.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    await first.closed()
    assert first.received() == []  # MQTT 3.1.1 has no server DISCONNECT
    assert not second.transport.closed
    assert await hub.callable("dev1")


async def test_a_persistent_session_taken_over_keeps_its_subscriptions(hub: Hub, dev1: Identity) -> None:
    first = hub.device()
    await first.online(azure_connect("dev1", dev1.keys.primary, clean=False), METHODS)
    second = hub.device()
    connack = await second.online(azure_connect("dev1", dev1.keys.primary, clean=False))  # no SUBSCRIBE
    assert connack.session_present is True
    await first.closed()
    assert await hub.callable("dev1")
    result = hub.call("dev1", "m")
    second.answer(response_topic(204, await rid_of_request(second, "m")), b"")
    assert (await result).status == 204


async def test_a_clean_session_taken_over_starts_without_subscriptions(hub: Hub, dev1: Identity) -> None:
    first = hub.device()
    await first.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    second = hub.device()
    connack = await second.online(azure_connect("dev1", dev1.keys.primary))
    assert connack.session_present is False
    await first.closed()
    assert not await hub.callable("dev1")  # the new session has not subscribed yet
    with pytest.raises(HubError) as raised:
        await hub.call("dev1", "m")
    assert raised.value.kind is ErrorKind.DEVICE_OFFLINE


async def test_a_call_pending_on_the_old_connection_is_answered_on_the_new_one(
    hub: Hub, dev1: Identity
) -> None:
    """paho re-sends an un-acknowledged response after reconnecting with CleanSession=0."""
    first = hub.device()
    await first.online(azure_connect("dev1", dev1.keys.primary, clean=False), METHODS)
    result = hub.call("dev1", "m")
    rid = await rid_of_request(first, "m")
    second = hub.device()
    await second.online(azure_connect("dev1", dev1.keys.primary, clean=False))
    await first.closed()
    await settle()
    assert not result.done()  # the old connection's end did not fail it
    second.answer(response_topic(200, rid), b'"late"')
    assert (await result).payload == b'"late"'
    assert hub.metrics.stray_responses.get() == 0


async def test_a_call_pending_on_the_old_connection_fails_on_a_clean_start(hub: Hub, dev1: Identity) -> None:
    first = hub.device()
    await first.online(azure_connect("dev1", dev1.keys.primary, clean=False), METHODS)
    result = hub.call("dev1", "m")
    rid = await rid_of_request(first, "m")
    second = hub.device()
    await second.online(azure_connect("dev1", dev1.keys.primary, clean=True), METHODS)
    await settle()
    assert result.done()
    with pytest.raises(HubError) as raised:
        result.result()
    assert raised.value.kind is ErrorKind.DEVICE_DISCONNECTED
    second.answer(response_topic(200, rid), b"{}")  # too late: the new session never had it
    await asyncio.sleep(0)
    assert hub.metrics.stray_responses.get() == 1


@pytest.mark.parametrize("clean", [True, False])
async def test_simultaneous_connects_of_one_identity_leave_exactly_one_connected(
    hub: Hub, dev1: Identity, clean: bool
) -> None:
    """Opening a session awaits the registry (loading a CleanSession=0 session); without the
    identity's opening lock both connections stayed connected, each with a session of its own."""
    devices = [hub.device() for _ in range(4)]
    for device in devices:  # all CONNECTs arrive before any is authenticated
        device.send(azure_connect("dev1", dev1.keys.primary, clean=clean))
    for device in devices:
        assert (await device.connack()).reason_code == 0
    await settle()
    open_ = [device for device in devices if not device.transport.closed]
    assert len(open_) == 1
    assert open_[0] is devices[-1]  # each took the session over from the one before
    session = hub.gateway.sessions.get("dev1")
    assert session is not None and session.channel is open_[0].protocol
    assert hub.gateway.connections == {open_[0].protocol}
    assert len(hub.gateway.sessions) == 1

    open_[0].subscribe(METHODS)
    assert isinstance(await open_[0].next_packet(), Suback)
    result = hub.call("dev1", "m")
    open_[0].answer(response_topic(200, await rid_of_request(open_[0], "m")), b"1")
    assert (await result).payload == b"1"


@pytest.mark.parametrize("clean", [True, False])
async def test_the_old_connections_late_close_does_not_detach_the_new_session(
    hub: Hub, dev1: Identity, clean: bool
) -> None:
    first = hub.device()
    await first.online(azure_connect("dev1", dev1.keys.primary, clean=clean), METHODS)
    first.transport.close = lambda: setattr(first.transport, "closed", True)  # type: ignore[method-assign]
    second = hub.device()
    await second.online(azure_connect("dev1", dev1.keys.primary, clean=clean), METHODS)
    assert first.transport.closed and first.protocol.closing
    assert await hub.callable("dev1")
    session = hub.gateway.sessions.get("dev1")
    assert session is not None

    first.protocol.connection_lost(None)  # the old socket ends only now
    await settle()
    assert hub.gateway.sessions.get("dev1") is session
    assert session.channel is second.protocol and session.ready
    assert await hub.callable("dev1")
    assert hub.gateway.connection_state("dev1")[0] is True
    result = hub.call("dev1", "m")
    second.answer(response_topic(200, await rid_of_request(second, "m")), b"{}")
    assert (await result).status == 200


async def test_a_persistent_session_is_restored_from_the_store_on_reconnect(
    registry: SqliteRegistry, dev1: Identity
) -> None:
    """CleanSession=0: the subscriptions are written to the registry, and a node that never saw the
    device (here: a new gateway on the same registry) restores them and says session present."""
    first_node = Hub(registry)
    device = first_node.device()
    await device.online(azure_connect("dev1", dev1.keys.primary, clean=False), METHODS, "$iothub/twin/res/#")
    device.protocol.connection_lost(None)
    await first_node.close()
    await registry.flush_sessions()
    assert await registry.load_session("dev1") == {METHODS: 0, "$iothub/twin/res/#": 0}

    node = Hub(registry)
    try:
        again = node.device()
        connack = await again.online(azure_connect("dev1", dev1.keys.primary, clean=False))
        assert connack.session_present is True
        assert await node.callable("dev1")  # ready without subscribing again
        result = node.call("dev1", "m")
        again.answer(response_topic(200, await rid_of_request(again, "m")), b"{}")
        assert (await result).status == 200
    finally:
        await node.close()


async def test_a_clean_session_forgets_the_stored_one(registry: SqliteRegistry, dev1: Identity) -> None:
    first_node = Hub(registry)
    device = first_node.device()
    await device.online(azure_connect("dev1", dev1.keys.primary, clean=False), METHODS)
    device.protocol.connection_lost(None)
    clean = first_node.device()
    connack = await clean.online(azure_connect("dev1", dev1.keys.primary, clean=True))
    assert connack.session_present is False
    assert not await first_node.callable("dev1")
    await first_node.close()
    await registry.flush_sessions()
    assert await registry.load_session("dev1") is None

    node = Hub(registry)
    try:
        again = node.device()
        connack = await again.online(azure_connect("dev1", dev1.keys.primary, clean=False))
        assert connack.session_present is False
        assert not await node.callable("dev1")
    finally:
        await node.close()


async def test_a_v5_session_expiry_interval_makes_the_session_persistent(
    registry: SqliteRegistry, dev1: Identity
) -> None:
    first_node = Hub(registry)
    connect = azure_connect(
        "dev1", dev1.keys.primary, level=5, clean=False, properties={"session_expiry_interval": 3600}
    )
    device = first_node.device(level=5)
    await device.online(connect, METHODS)
    device.protocol.connection_lost(None)
    await first_node.close()
    await registry.flush_sessions()
    assert await registry.load_session("dev1") == {METHODS: 0}


class ClusterRouter(LocalRouter):
    """A LocalRouter that, like a router spanning nodes, makes a connecting device reachable before
    its CONNACK; the test decides when the other nodes "see" it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()
        self.seen: asyncio.Future[None] | None = None

    def reachable(self, target: str) -> Awaitable[None] | None:
        self.asked.set()
        return self.seen


async def test_a_takeover_that_dies_before_its_connack_leaves_the_device_callable(
    registry: SqliteRegistry, dev1: Identity
) -> None:
    """A clean session hands the older connection to the new session before its CONNACK; a new
    connection that died while the cluster made it reachable used to leave the older one open,
    carrying no session: connected, subscribed, and not callable until it reconnected."""
    router = ClusterRouter()
    node = Hub(registry, router)
    try:
        first = node.device()
        await first.online(azure_connect("dev1", dev1.keys.primary), METHODS)
        assert await node.callable("dev1")
        router.seen = asyncio.get_running_loop().create_future()
        router.asked.clear()
        second = node.device()
        second.send(azure_connect("dev1", dev1.keys.primary))  # a clean session: takes over
        await router.asked.wait()  # authenticated, waiting for the cluster to see it
        second.protocol.connection_lost(ConnectionResetError("gone before its CONNACK"))
        router.seen.set_result(None)
        await settle()
        assert second.received() == []  # it never got a CONNACK
        session = node.gateway.sessions.get("dev1")
        # Either the first connection still carries the device, or it was closed (and the device,
        # told so, reconnects): never open and uncallable, as it was.
        if first.transport.closed:
            assert session is None or session.channel is None
        else:
            assert session is not None and session.channel is first.protocol
            assert await node.callable("dev1")
            result = node.call("dev1", "m")
            first.answer(response_topic(200, await rid_of_request(first, "m")), b"{}")
            assert (await result).status == 200
    finally:
        await node.close()


async def test_a_connection_that_dies_before_its_connack_leaves_no_session(
    registry: SqliteRegistry, dev1: Identity
) -> None:
    router = ClusterRouter()
    router.seen = asyncio.get_running_loop().create_future()
    node = Hub(registry, router)
    try:
        device = node.device()
        device.send(azure_connect("dev1", dev1.keys.primary))
        await router.asked.wait()
        device.protocol.connection_lost(None)
        router.seen.set_result(None)
        await settle()
        assert device.received() == []
        assert len(node.gateway.sessions) == 0
        assert node.gateway.connection_state("dev1") == (False, None)
    finally:
        await node.close()
