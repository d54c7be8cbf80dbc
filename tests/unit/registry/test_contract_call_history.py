"""Registry contract: the call history (calls/history.py) in the calls store — its columns, the
``record_calls`` of ended synchronous calls, ``list_calls``' history filters, and pruning (every
backend in conftest.BACKENDS)."""

from __future__ import annotations

from dataclasses import replace

from methodhub.calls.queued import CallFilters, CallState, QueuedCall, new_call_id
from methodhub.registry import Registry

T0 = 1_800_000_000.0


def _ended(n: int, **fields: object) -> QueuedCall:
    """A synchronous call's record as the recorder makes it, created at T0 + n, ended 0.25 s later."""
    base = QueuedCall(
        call_id=f"h{n:04d}-{new_call_id()}",
        device_id="ghost" if n % 3 == 0 else "dev1",  # a record needs no registered identity
        module_id=None,
        method="reboot" if n % 2 else "ping",
        payload=b"",
        response_timeout=30.0,
        attempts=1,
        created_time=T0 + n,
        expires_time=T0 + n + 0.25,
        state=CallState.SUCCEEDED,
        attempt=1,
        delivered_time=T0 + n,
        completed_time=T0 + n + 0.25,
        outcome_status=200 if n % 4 else 404,
        front_door="azure" if n % 2 else "aliyun",
        caller="service",
        request_size=12,
        response_size=3,
        latency_ms=250.0,
        tracking_id=f"req-{n}",
    )
    return replace(base, **fields)  # type: ignore[arg-type]


async def test_records_are_stored_with_every_history_column(registry: Registry, other: Registry) -> None:
    calls = [_ended(n) for n in range(6)]
    calls[5] = replace(calls[5], state=CallState.FAILED, outcome_status=None, error_code="GatewayTimeout")
    await registry.record_calls(calls)
    await registry.record_calls([])
    for call in calls:
        assert await other.get_call(call.call_id) == call
    assert await other.queued_targets() == [] and await other.due_calls(T0 + 10_000) == []


async def test_a_queued_calls_end_stores_its_response_size_and_latency(registry: Registry) -> None:
    await registry.create_identity("dev1")
    call = replace(_ended(1), state=CallState.QUEUED, attempt=0, delivered_time=None, completed_time=None)
    call = replace(call, outcome_status=None, response_size=None, latency_ms=None, front_door="native")
    call = replace(call, expires_time=T0 + 9_999)
    assert (await registry.create_calls([call]))[0] == call
    claimed = await registry.claim_call("dev1", "node-a", T0 + 5, lease=5)
    assert claimed is not None
    done = claimed.finished(CallState.SUCCEEDED, T0 + 5.5, status=200, payload=b"[1,2]")
    assert await registry.update_call(done, CallState.SENT, owner="node-a")
    stored = await registry.get_call(call.call_id)
    assert stored is not None and stored == done
    assert (stored.response_size, stored.latency_ms, stored.front_door) == (5, 500.0, "native")


async def test_list_filters_by_method_front_door_time_and_status_and_pages(registry: Registry) -> None:
    await registry.record_calls([_ended(n) for n in range(20)])

    async def listed(**filters: object) -> list[int]:
        calls = await registry.list_calls(filters=CallFilters(**filters))  # type: ignore[arg-type]
        return [int(c.created_time - T0) for c in calls]

    assert await listed() == list(range(19, -1, -1))
    assert await listed(method="reboot") == [n for n in range(19, -1, -1) if n % 2]
    assert await listed(front_door="aliyun") == [n for n in range(19, -1, -1) if not n % 2]
    assert await listed(since=T0 + 5, until=T0 + 8) == [7, 6, 5]  # since inclusive, until not
    assert await listed(status=404) == [16, 12, 8, 4, 0]
    assert await listed(status=404, front_door="aliyun", since=T0 + 5) == [16, 12, 8]
    assert await listed(method="ping", status=200) == [18, 14, 10, 6, 2]
    both = await registry.list_calls(device_id="ghost", filters=CallFilters(method="reboot"))
    assert [int(c.created_time - T0) for c in both] == [15, 9, 3]
    assert await registry.list_calls(state=CallState.FAILED) == []
    page = await registry.list_calls(limit=3, filters=CallFilters(front_door="azure"))
    rest = await registry.list_calls(
        limit=10, before=(page[-1].created_time, page[-1].call_id), filters=CallFilters(front_door="azure")
    )
    assert [int(c.created_time - T0) for c in page + rest] == [n for n in range(19, -1, -1) if n % 2]


async def test_pruning_deletes_ended_calls_by_age_and_count_in_batches(registry: Registry) -> None:
    await registry.create_identity("dev1")
    await registry.record_calls([_ended(n) for n in range(10)])
    job_call = replace(
        _ended(100, device_id="dev1"), created_time=T0 - 100, job_id="j1", completed_time=T0 - 99
    )
    open_call = replace(
        _ended(101, device_id="dev1"),
        created_time=T0 - 100,
        state=CallState.QUEUED,
        attempt=0,
        completed_time=None,
        expires_time=T0 + 9_999,
    )
    await registry.record_calls([job_call, open_call])

    async def left() -> list[int]:
        return sorted(int(c.created_time - T0) for c in await registry.list_calls(limit=100))

    # by age: what ended before T0 + 3 goes (ends are at T0 + n + 0.25), a batch at a time
    assert await registry.prune_calls(T0 + 3, keep=1_000, limit=2) == 2
    assert await registry.prune_calls(T0 + 3, keep=1_000, limit=2) == 1
    assert await registry.prune_calls(T0 + 3, keep=1_000, limit=2) == 0
    assert await left() == [-100, -100, 3, 4, 5, 6, 7, 8, 9]  # a job's call and an open call stay
    # by count: only the newest 4 ended calls (no job's) stay
    assert await registry.prune_calls(T0 - 10_000, keep=4, limit=100) == 3
    assert await left() == [-100, -100, 6, 7, 8, 9]
    assert await registry.prune_calls(T0 - 10_000, keep=4, limit=100) == 0
    assert await registry.get_call(job_call.call_id) == job_call
    assert await registry.get_call(open_call.call_id) == open_call
