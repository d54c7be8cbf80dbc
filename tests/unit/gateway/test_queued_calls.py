"""Queued calls (calls/delivery.py) against the in-memory Azure hub: a real Gateway, SQLite registry,
LocalRouter and CallEngine, devices on in-memory MQTT connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from methodhub.calls.delivery import QueuedCalls
from methodhub.calls.queued import CallState
from methodhub.dialects.azure.topics import parse_request_topic, response_topic
from methodhub.errors import ErrorKind, HubError
from methodhub.mqtt import Publish
from methodhub.registry import Identity, SqliteRegistry
from tests.unit.gateway.azure_hub import Device, Hub, azure_connect

METHODS = "$iothub/methods/POST/#"


@pytest.fixture
async def queued(hub: Hub, registry: SqliteRegistry) -> AsyncIterator[QueuedCalls]:
    service = QueuedCalls(registry, hub.engine, hub.router, registry, "node-1", sweep_interval=3600)
    yield service
    await service.stop()


async def request_of(device: Device) -> tuple[str, str, bytes]:
    packet = await device.next_packet()
    assert isinstance(packet, Publish), packet
    parsed = parse_request_topic(packet.topic)
    assert parsed is not None, packet.topic
    return parsed[0], parsed[1], packet.payload


async def settled(queued: QueuedCalls, call_id: str) -> CallState:
    return (await queued.wait(call_id, 10)).state


async def test_a_call_waits_for_its_device_and_is_delivered_when_it_connects(
    hub: Hub, dev1: Identity, queued: QueuedCalls
) -> None:
    call, created = await queued.create("dev1", None, "reboot", b'{"n":1}')
    assert created and call.state is CallState.QUEUED
    await queued.sweep()  # offline: nothing happens
    assert (await queued.get(call.call_id)).state is CallState.QUEUED
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    await queued.sweep()
    method, rid, payload = await request_of(device)
    assert (method, payload) == ("reboot", b'{"n":1}')
    device.answer(response_topic(417, rid), b'{"lid":"open"}')
    done = await queued.wait(call.call_id, 10)
    assert done.state is CallState.SUCCEEDED  # the device answered, whatever its status
    assert (done.outcome_status, done.outcome_payload, done.attempt) == (417, b'{"lid":"open"}', 1)
    assert done.delivered_time is not None and done.completed_time is not None


async def test_calls_of_one_device_go_in_creation_order_one_at_a_time(
    hub: Hub, dev1: Identity, queued: QueuedCalls
) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    first, _ = await queued.create("dev1", None, "one", b"1")
    second, _ = await queued.create("dev1", None, "two", b"2")
    method, rid, _ = await request_of(device)
    assert method == "one"
    await asyncio.sleep(0.05)
    assert device.received() == []  # the second waits for the first's answer
    device.answer(response_topic(200, rid), b"null")
    method, rid, _ = await request_of(device)
    assert method == "two"
    device.answer(response_topic(200, rid), b"null")
    assert await settled(queued, first.call_id) is CallState.SUCCEEDED
    assert await settled(queued, second.call_id) is CallState.SUCCEEDED


async def test_a_timed_out_attempt_is_retried_while_attempts_remain(
    hub: Hub, dev1: Identity, queued: QueuedCalls
) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    call, _ = await queued.create("dev1", None, "slow", b"{}", response_timeout=0.2, attempts=2)
    await request_of(device)  # not answered: times out
    _, rid, _ = await request_of(device)  # the second attempt, after a sweep or at once
    device.answer(response_topic(200, rid), b'"ok"')
    done = await queued.wait(call.call_id, 10)
    assert (done.state, done.attempt, done.outcome_payload) == (CallState.SUCCEEDED, 2, b'"ok"')


async def test_attempts_used_up_is_failed_with_the_last_error(
    hub: Hub, dev1: Identity, queued: QueuedCalls
) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    call, _ = await queued.create("dev1", None, "slow", b"{}", response_timeout=0.2)
    await request_of(device)
    done = await queued.wait(call.call_id, 10)
    assert (done.state, done.error_code, done.attempt) == (CallState.FAILED, "GatewayTimeout", 1)


async def test_a_call_not_delivered_in_time_expires(dev1: Identity, queued: QueuedCalls) -> None:
    call, _ = await queued.create("dev1", None, "later", b"{}", expires=1)
    queued.clock = lambda: call.created_time + 2
    await queued.sweep()
    done = await queued.get(call.call_id)
    assert (done.state, done.error_code) == (CallState.EXPIRED, "Expired")


async def test_cancel_a_queued_call_but_not_an_ended_one(
    hub: Hub, dev1: Identity, queued: QueuedCalls
) -> None:
    call, _ = await queued.create("dev1", None, "x", b"{}")
    cancelled = await queued.cancel(call.call_id)
    assert cancelled.state is CallState.CANCELLED
    with pytest.raises(HubError) as conflict:
        await queued.cancel(call.call_id)
    assert conflict.value.kind is ErrorKind.CONFLICT
    with pytest.raises(HubError) as unknown:
        await queued.cancel("nope")
    assert unknown.value.kind is ErrorKind.CALL_NOT_FOUND


async def test_idempotency_keys_and_validation(dev1: Identity, queued: QueuedCalls) -> None:
    first, created = await queued.create("dev1", None, "x", b"{}", idempotency_key="k")
    again, created_again = await queued.create("dev1", None, "x", b"{}", idempotency_key="k")
    assert created and not created_again and again.call_id == first.call_id
    with pytest.raises(HubError) as conflict:
        await queued.create("dev1", None, "y", b"{}", idempotency_key="k")
    assert conflict.value.kind is ErrorKind.CONFLICT
    for kwargs, kind in (
        ({"attempts": 11}, ErrorKind.INVALID_ARGUMENT),
        ({"expires": 10**9}, ErrorKind.INVALID_ARGUMENT),
    ):
        with pytest.raises(HubError) as bad:
            await queued.create("dev1", None, "x", b"{}", **kwargs)  # type: ignore[arg-type]
        assert bad.value.kind is kind
    with pytest.raises(HubError) as missing:
        await queued.create("ghost", None, "x", b"{}")
    assert missing.value.kind is ErrorKind.DEVICE_NOT_FOUND


async def test_an_attempt_whose_node_is_gone_is_settled_by_the_sweep(
    dev1: Identity, queued: QueuedCalls, registry: SqliteRegistry
) -> None:
    call, _ = await queued.create("dev1", None, "x", b"{}", response_timeout=5, attempts=2)
    claimed = await registry.claim_call("dev1", "node-dead", call.created_time, lease=1)
    assert claimed is not None
    queued.clock = lambda: call.created_time + 10  # past response timeout + lease
    await queued.sweep()
    again = await queued.get(call.call_id)
    assert (again.state, again.attempt, again.owner) == (CallState.QUEUED, 1, None)  # one attempt left
    claimed = await registry.claim_call("dev1", "node-dead", call.created_time + 10, lease=1)
    assert claimed is not None and claimed.attempt == 2
    queued.clock = lambda: call.created_time + 30
    await queued.sweep()
    done = await queued.get(call.call_id)
    assert (done.state, done.error_code) == (CallState.FAILED, "NodeLost")


async def test_create_many_stores_a_page_delivers_at_once_and_skips_unregistered(
    hub: Hub, dev1: Identity, queued: QueuedCalls, registry: SqliteRegistry
) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    await registry.create_identity("dev2")  # registered, offline
    calls = await queued.create_many(
        [("dev1", None), ("ghost", None), ("dev2", None)], "reboot", b"{}", expires=60, job_id="j"
    )
    assert [c.device_id for c in calls] == ["dev1", "dev2"]  # ghost: not registered, no call
    assert await registry.list_calls(device_id="ghost") == []
    method, rid, _ = await request_of(device)  # dev1 is ready: sent at once, no sweep
    assert method == "reboot"
    device.answer(response_topic(200, rid), b"null")
    assert await settled(queued, calls[0].call_id) is CallState.SUCCEEDED
    assert (await queued.get(calls[1].call_id)).state is CallState.QUEUED
    assert all(c.job_id == "j" and c.expires_time == c.created_time + 60 for c in calls)
    with pytest.raises(HubError) as bounds:
        await queued.create_many([("dev1", None)], "x", b"{}", attempts=0)
    assert bounds.value.kind is ErrorKind.INVALID_ARGUMENT


async def test_create_many_claims_a_ready_devices_call_as_it_stores_it_and_keeps_the_order(
    hub: Hub, dev1: Identity, queued: QueuedCalls, registry: SqliteRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    claims: list[str] = []
    claim_calls = registry.claim_calls

    async def counted(targets, owner, now, lease):  # type: ignore[no-untyped-def]
        claims.extend(targets)
        return await claim_calls(targets, owner, now, lease)

    monkeypatch.setattr(registry, "claim_calls", counted)
    [first] = await queued.create_many([("dev1", None)], "first", b"{}")
    assert (first.state, first.attempt, first.owner) == (CallState.SENT, 1, "node-1")  # claimed as made
    assert await registry.get_call(first.call_id) == first
    [second] = await queued.create_many([("dev1", None)], "second", b"{}")
    assert second.state is CallState.QUEUED  # dev1 has a call sent: this one waits for it
    method, rid, _ = await request_of(device)
    assert method == "first" and claims == []  # sent with no claim of its own
    device.answer(response_topic(200, rid), b"null")
    method, rid, _ = await request_of(device)  # then the next, claimed once the first ended
    assert method == "second" and claims == ["dev1"]
    device.answer(response_topic(200, rid), b"null")
    assert await settled(queued, second.call_id) is CallState.SUCCEEDED
    assert (await queued.get(first.call_id)).state is CallState.SUCCEEDED


async def test_a_waiter_is_woken_once_the_end_is_written_and_stop_writes_what_is_pending(
    hub: Hub, dev1: Identity, registry: SqliteRegistry
) -> None:
    slow = QueuedCalls(
        registry, hub.engine, hub.router, registry, "node-1", sweep_interval=3600, settle_delay=0.2
    )
    try:
        device = hub.device()
        await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
        call, _ = await slow.create("dev1", None, "one", b"1")
        waiter = asyncio.ensure_future(slow.wait(call.call_id, 30))
        _, rid, _ = await request_of(device)
        device.answer(response_topic(200, rid), b"null")
        done = await asyncio.wait_for(waiter, 10)
        assert done.state is CallState.SUCCEEDED
        stored = await registry.get_call(call.call_id)
        assert stored is not None and stored.state is CallState.SUCCEEDED  # woken only once it was written
        # Answered but not written yet (the batch waits 0.2 s), then the node stops: stop writes it.
        second, _ = await slow.create("dev1", None, "two", b"2")
        _, rid, _ = await request_of(device)
        device.answer(response_topic(200, rid), b"null")
        for _ in range(100):
            if slow.unwritten:
                break
            await asyncio.sleep(0.001)
        before = await registry.get_call(second.call_id)
        assert before is not None and before.state is CallState.SENT  # the lag: still sent in the store
    finally:
        await slow.stop()
    after = await registry.get_call(second.call_id)
    assert after is not None and after.state is CallState.SUCCEEDED


async def test_a_device_that_looks_ready_but_cannot_take_the_call_is_tried_again_by_the_sweep_not_in_a_loop(
    registry: SqliteRegistry,
) -> None:
    """DEVICE_OFFLINE from a device the carrier says is ready (e.g. connected but not subscribed to
    the call's topic): the call stays queued, attempt not counted, and is tried again at the next
    sweep — not at once, over and over."""
    from methodhub.calls.model import Call

    tries: list[str] = []

    class Refusing:
        async def invoke(self, call: Call, front_door: str = "") -> None:
            tries.append(call.target)
            raise HubError(ErrorKind.DEVICE_OFFLINE, "not subscribed to this call's topic")

    class Ready:
        async def wait_ready(self, target: str, timeout: float) -> bool:
            return True

    await registry.create_identity("dev1")
    service = QueuedCalls(registry, Refusing(), Ready(), registry, "node-1", sweep_interval=3600)  # type: ignore[arg-type]
    try:
        call, _ = await service.create("dev1", None, "reboot", b"{}")
        [batch] = await service.create_many([("dev1", None)], "again", b"{}", job_id="j")
        await asyncio.sleep(0.3)
        assert tries == ["dev1"]  # one try, then it waits for the sweep
        stored = await service.get(call.call_id)
        assert (stored.state, stored.attempt, stored.delivered_time) == (CallState.QUEUED, 0, None)
        await service.sweep()
        await asyncio.sleep(0.3)
        assert tries == ["dev1", "dev1"]
        assert (await service.get(batch.call_id)).state is CallState.QUEUED
        assert service.job_attempts == 0
    finally:
        await service.stop()
