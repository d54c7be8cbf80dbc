"""Registry contract: queued calls (calls/queued.py; every backend in conftest.BACKENDS)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from methodhub.calls.queued import CallState, QueuedCall, new_call_id
from methodhub.registry import Registry

T0 = 1_800_000_000.0


def _call(device_id: str = "dev1", n: int = 0, **fields: object) -> QueuedCall:
    base = QueuedCall(
        call_id=f"c{n:04d}-{new_call_id()}",
        device_id=device_id,
        module_id=None,
        method="reboot",
        payload=b'{"delay":1}',
        response_timeout=30.0,
        attempts=1,
        created_time=T0 + n,
        expires_time=T0 + 3600,
        request_hash="h",
    )
    return replace(base, **fields)  # type: ignore[arg-type]


async def test_create_get_and_idempotency(registry: Registry, other: Registry) -> None:
    call = _call(idempotency_key="k1")
    stored, created = await registry.create_call(call)
    assert created and stored == call
    assert await other.get_call(call.call_id) == call
    again, created = await other.create_call(_call(n=1, idempotency_key="k1"))
    assert not created and again == call
    assert await registry.get_call("nope") is None
    _, created = await registry.create_call(_call(n=2))  # no key: always a new call
    _, created_too = await registry.create_call(_call(n=3))
    assert created and created_too


async def test_claims_go_oldest_first_one_at_a_time_per_device(registry: Registry, other: Registry) -> None:
    for n in (2, 0, 1):
        await registry.create_call(_call(n=n))
    await registry.create_call(_call("dev2", n=5))
    first = await registry.claim_call("dev1", "node-a", T0 + 10, lease=5)
    assert first is not None and first.created_time == T0 and first.state is CallState.SENT
    assert (first.attempt, first.owner, first.lease_until) == (1, "node-a", T0 + 10 + 30 + 5)
    assert await other.claim_call("dev1", "node-b", T0 + 10, lease=5) is None  # one sent at a time
    assert (await other.claim_call("dev2", "node-b", T0 + 10, lease=5)) is not None  # another device
    done = first.finished(CallState.SUCCEEDED, T0 + 11, status=200, payload=b"{}")
    assert await registry.update_call(done, CallState.SENT, owner="node-a")
    assert not await registry.update_call(done, CallState.SENT, owner="node-a")  # no longer sent
    second = await other.claim_call("dev1", "node-b", T0 + 12, lease=5)
    assert second is not None and second.created_time == T0 + 1
    assert (await registry.get_call(first.call_id)) == done


async def test_concurrent_claims_hand_out_each_call_once(registry: Registry, other: Registry) -> None:
    await registry.create_call(_call(n=0))
    claims = await asyncio.gather(
        *(r.claim_call("dev1", f"node-{n}", T0 + 1, lease=5) for n, r in enumerate([registry, other] * 4))
    )
    assert len([c for c in claims if c is not None]) == 1


async def test_expired_calls_are_not_claimed_and_are_due(registry: Registry) -> None:
    await registry.create_call(_call(n=0, expires_time=T0 + 5))
    assert await registry.claim_call("dev1", "a", T0 + 6, lease=5) is None
    due = await registry.due_calls(T0 + 6)
    assert [c.state for c in due] == [CallState.QUEUED]
    assert await registry.queued_targets() == ["dev1"]


async def test_a_sent_call_past_its_lease_is_due(registry: Registry) -> None:
    await registry.create_call(_call(n=0))
    sent = await registry.claim_call("dev1", "a", T0, lease=5)
    assert sent is not None
    assert await registry.due_calls(T0 + 30) == []
    assert [c.call_id for c in await registry.due_calls(T0 + 36)] == [sent.call_id]


async def test_list_newest_first_with_filters_and_pages(registry: Registry) -> None:
    for n in range(5):
        await registry.create_call(
            _call("dev1" if n % 2 == 0 else "dev2", n=n, job_id="j1" if n < 2 else None)
        )
    everything = await registry.list_calls()
    assert [c.created_time for c in everything] == [T0 + n for n in (4, 3, 2, 1, 0)]
    assert [c.device_id for c in await registry.list_calls(device_id="dev2")] == ["dev2", "dev2"]
    assert len(await registry.list_calls(job_id="j1")) == 2
    assert len(await registry.list_calls(state=CallState.QUEUED)) == 5
    page = await registry.list_calls(limit=2)
    rest = await registry.list_calls(limit=10, before=(page[-1].created_time, page[-1].call_id))
    assert [c.call_id for c in page + rest] == [c.call_id for c in everything]


async def test_create_calls_stores_a_page_in_one_go_but_only_for_registered_identities(
    registry: Registry, other: Registry
) -> None:
    await registry.create_identity("dev1")
    await registry.create_identity("dev2")
    await registry.create_identity("dev2", "mod")
    batch = [_call("dev1", n=0), _call("ghost", n=1), _call("dev2", n=2), _call("dev2", n=3, module_id="mod")]
    batch.append(_call("dev1", n=4, module_id="nomod"))
    stored = await registry.create_calls(batch)
    assert [c.call_id for c in stored] == [batch[0].call_id, batch[2].call_id, batch[3].call_id]
    for call in stored:
        assert await other.get_call(call.call_id) == call
    assert await other.get_call(batch[1].call_id) is None  # its device is not registered
    assert await other.get_call(batch[4].call_id) is None
    assert await registry.create_calls([]) == []
    claimed = await other.claim_call("dev2/mod", "a", T0 + 1, lease=5)
    assert claimed is not None and claimed.call_id == batch[3].call_id


async def test_create_calls_keeps_a_claim_made_with_the_call_only_where_no_other_call_is_open(
    registry: Registry, other: Registry
) -> None:
    for device in ("free", "waiting", "busy", "twice", "after"):
        await registry.create_identity(device)
    await registry.create_call(_call("waiting", n=0))  # queued before
    await registry.create_call(_call("busy", n=1))
    assert await registry.claim_call("busy", "node-b", T0 + 2, lease=5) is not None  # sent before
    now = T0 + 10
    batch = [
        _call("free", n=10).claimed("node-a", now, 5),
        _call("waiting", n=11).claimed("node-a", now, 5),
        _call("busy", n=12).claimed("node-a", now, 5),
        _call("twice", n=13).claimed("node-a", now, 5),
        _call("twice", n=14).claimed("node-a", now, 5),  # the first of the batch is its open call
        _call("after", n=15),
        _call("after", n=16).claimed("node-a", now, 5),  # queued before it in the batch
    ]
    stored = await other.create_calls(batch)
    states = [(c.device_id, c.state, c.attempt, c.owner) for c in stored]
    sent, queued = (CallState.SENT, 1, "node-a"), (CallState.QUEUED, 0, None)
    assert states == [
        ("free", *sent),
        ("waiting", *queued),
        ("busy", *queued),
        ("twice", *sent),
        ("twice", *queued),
        ("after", *queued),
        ("after", *queued),
    ]
    for call in stored:
        assert await registry.get_call(call.call_id) == call  # stored as returned
    assert stored[0].lease_until == now + 30 + 5 and stored[0].delivered_time == now
    assert stored[1] == batch[1].unclaimed() and stored[1].delivered_time is None
    # the claimed one counts as the device's call sent: no other is claimed before it ends
    assert await registry.claim_call("twice", "node-b", now + 1, lease=5) is None


async def test_update_calls_applies_each_condition_in_one_go(registry: Registry, other: Registry) -> None:
    for device in ("dev1", "dev2", "dev3"):
        await registry.create_call(_call(device, n=0))
    sent = [await registry.claim_call(d, "node-a", T0 + 1, lease=5) for d in ("dev1", "dev2", "dev3")]
    assert all(c is not None for c in sent)
    one, two, three = (c for c in sent if c is not None)
    done = [c.finished(CallState.SUCCEEDED, T0 + 2, status=200, payload=b"{}") for c in (one, two, three)]
    results = await other.update_calls(
        [
            (done[0], CallState.SENT, "node-a"),
            (done[1], CallState.SENT, "node-b"),
            (done[2], CallState.SENT, None),
        ]
    )
    assert results == [True, False, True]  # dev2's call is node-a's, not node-b's
    assert await registry.get_call(one.call_id) == done[0]
    assert await registry.get_call(two.call_id) == two
    assert await registry.get_call(three.call_id) == done[2]
    assert await other.update_calls([(done[0], CallState.SENT, None)]) == [False]  # no longer sent
    assert await other.update_calls([]) == []


async def test_claim_calls_claims_the_next_call_of_many_targets_in_one_go(
    registry: Registry, other: Registry
) -> None:
    await registry.create_call(_call("dev1", n=1))
    await registry.create_call(_call("dev1", n=0))
    await registry.create_call(_call("dev2", n=2))
    await registry.create_call(_call("dev3", n=3))
    busy = await registry.claim_call("dev3", "node-b", T0 + 1, lease=5)
    assert busy is not None
    claimed = await other.claim_calls(["dev2", "dev1", "dev3", "nobody", "dev1"], "node-a", T0 + 1, lease=5)
    two, one, three, nobody, one_again = claimed
    assert two is not None and (two.device_id, two.state, two.owner, two.attempt) == (
        "dev2",
        CallState.SENT,
        "node-a",
        1,
    )
    assert one is not None and one.created_time == T0  # dev1's oldest
    assert (three, nobody, one_again) == (None, None, None)  # dev3 has one sent; dev1 named twice
    assert await registry.get_call(one.call_id) == one
    assert await registry.get_call(two.call_id) == two
    assert await registry.claim_calls([], "node-a", T0 + 1, lease=5) == []
