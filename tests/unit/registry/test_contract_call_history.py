"""Registry contract: the call history (calls/history.py) in the calls store — its columns, the
``record_history`` of ended synchronous calls, ``list_calls``' history filters, and pruning (every
backend in conftest.BACKENDS)."""

from __future__ import annotations

from dataclasses import replace

from methodhub.calls.history import HISTORY_FIELDS, HistoryRow, history_call
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


def _rows(calls: list[QueuedCall]) -> list[HistoryRow]:
    """The history rows of ended calls (what the recorder hands the store)."""
    rows = []
    for call in calls:
        fields = {**vars_of(call), "module_id": call.module_id or "", "state": call.state.value}
        rows.append(tuple(fields[name] if name != "target" else call.target for name in HISTORY_FIELDS))
    assert [history_call(row) for row in rows] == calls  # each row stands for its call
    return rows


def vars_of(call: QueuedCall) -> dict[str, object]:
    return {name: getattr(call, name) for name in call.__dataclass_fields__}


async def test_records_are_stored_with_every_history_column(registry: Registry, other: Registry) -> None:
    calls = [_ended(n) for n in range(6)]
    calls[5] = replace(calls[5], state=CallState.FAILED, outcome_status=None, error_code="GatewayTimeout")
    await registry.record_history(_rows(calls))
    await registry.record_history([])
    for call in calls:
        assert await other.get_call(call.call_id) == call
    assert await other.queued_targets() == [] and await other.due_calls(T0 + 10_000) == []


async def test_records_keep_every_value_exactly_with_payloads_or_without(
    registry: Registry, other: Registry
) -> None:
    # Every value comes back as it went in: odd text, floats to the last bit, payloads or none.
    odd = 'quote " backslash \\ tab \t nul-free ünïcødé 🚀'
    plain = [
        _ended(
            n,
            created_time=T0 + n / 7,
            delivered_time=T0 + n / 7,
            completed_time=T0 + n / 3,
            latency_ms=0.1 + n / 9,
        )
        for n in range(4)
    ]
    plain = [replace(call, expires_time=call.completed_time) for call in plain]
    plain[1] = replace(plain[1], module_id="m/1", method=odd, error_message=odd, caller=None)
    plain[2] = replace(
        plain[2], state=CallState.FAILED, outcome_status=None, response_size=None, tracking_id=None
    )
    with_payloads = [
        replace(_ended(10 + n), payload=b'{"k":1}', outcome_payload=b"\x00\xff") for n in range(2)
    ]
    await registry.record_history(_rows(plain))
    await registry.record_history(_rows(with_payloads))
    for call in plain + with_payloads:
        assert await other.get_call(call.call_id) == call
    assert (await other.get_call(plain[1].call_id)).target == "dev1/m/1"  # type: ignore[union-attr]


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
    await registry.record_history(_rows([_ended(n) for n in range(20)]))

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


async def test_pruning_deletes_whole_pages_by_age_and_count(registry: Registry) -> None:
    await registry.create_identity("dev1")
    for first in range(0, 10, 2):  # five pages (one per batch written): records 0-1, 2-3, ... 8-9
        await registry.record_history(_rows([_ended(n) for n in (first, first + 1)]))
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
    queued_and_ended = replace(_ended(102, device_id="dev1"), created_time=T0 - 50, completed_time=T0 - 49)
    await registry.create_calls([job_call, open_call, queued_and_ended])  # rows of the table

    async def left() -> list[int]:
        return sorted(int(c.created_time - T0) for c in await registry.list_calls(limit=100))

    assert await left() == [-100, -100, -50, *range(10)]
    # by age: a page goes once its newest record ended before the cutoff (ends are at T0 + n + 0.25);
    # at most `limit` pages (and `limit` rows of the table) at a time
    assert await registry.prune_calls(T0 + 3, keep=1_000, limit=1) == 1 + 2  # the table's row, a page
    assert await registry.prune_calls(T0 + 3, keep=1_000, limit=1) == 0  # 2-3: 3 ended at 3.25
    assert await left() == [-100, -100, *range(2, 10)]  # a job's call and an open call stay
    # by count: the pages holding none of the 3 newest records go (8-9 holds two, 6-7 the third)
    assert await registry.prune_calls(T0 - 10_000, keep=3, limit=100) == 4
    assert await left() == [-100, -100, 6, 7, 8, 9]
    assert await registry.prune_calls(T0 - 10_000, keep=3, limit=100) == 0
    assert await registry.get_call(job_call.call_id) == job_call
    assert await registry.get_call(open_call.call_id) == open_call


async def test_listing_merges_pages_and_the_table_in_order_with_every_filter_and_cursor(
    registry: Registry, other: Registry
) -> None:
    # Records spread over pages whose created ranges overlap (a call started early may end late),
    # devices with modules, and table rows (queued calls that ended, open ones) among them.
    import random

    rng = random.Random(7)
    await registry.create_identity("dev1")
    await registry.create_identity("dev1", "m")
    records = []
    for n in range(120):
        started = T0 + rng.uniform(0, 60)
        call = _ended(
            n,
            device_id=rng.choice(["dev1", "dev2", "ghost"]),
            module_id=rng.choice([None, None, "m"]),
            created_time=started,
            delivered_time=started,
            completed_time=started + rng.uniform(0, 20),
            state=rng.choice([CallState.SUCCEEDED, CallState.SUCCEEDED, CallState.FAILED]),
        )
        records.append(replace(call, expires_time=call.completed_time))
    records.sort(key=lambda call: call.completed_time)  # written as they end: pages overlap
    for first in range(0, 120, 25):
        await registry.record_history(_rows(records[first : first + 25]))
    table = []
    for n in range(12):
        created = T0 + rng.uniform(0, 60)
        queued = replace(
            _ended(200 + n, device_id="dev1", module_id=rng.choice([None, "m"])),
            created_time=created,
            delivered_time=created,
            front_door="native",
        )
        if n % 3 == 0:  # still open
            queued = replace(
                queued, state=CallState.QUEUED, attempt=0, completed_time=None, expires_time=T0 + 9e3
            )
        table.append(queued)
    await registry.create_calls(table)
    everything = records + table

    def expected(
        limit: int,
        device_id: str | None,
        state: CallState | None,
        filters: CallFilters | None,
        before: tuple[float, str] | None,
    ) -> list[str]:
        def ok(c: QueuedCall) -> bool:
            f = filters or CallFilters()
            return (
                (device_id is None or c.device_id == device_id)
                and (state is None or c.state is state)
                and (f.method is None or c.method == f.method)
                and (f.front_door is None or c.front_door == f.front_door)
                and (f.since is None or c.created_time >= f.since)
                and (f.until is None or c.created_time < f.until)
                and (f.status is None or c.outcome_status == f.status)
                and (before is None or (c.created_time, c.call_id) < before)
            )

        chosen = sorted(
            (c for c in everything if ok(c)), key=lambda c: (c.created_time, c.call_id), reverse=True
        )
        return [c.call_id for c in chosen[:limit]]

    cases: list[tuple[str | None, CallState | None, CallFilters | None]] = [
        (None, None, None),
        ("dev1", None, None),
        ("ghost", CallState.FAILED, None),
        (None, CallState.SUCCEEDED, CallFilters(method="reboot")),
        (None, None, CallFilters(front_door="azure", since=T0 + 10, until=T0 + 40)),
        ("dev1", None, CallFilters(status=404)),
        (None, CallState.QUEUED, None),
    ]
    for device_id, state, filters in cases:
        for limit in (1, 7, 500):
            before: tuple[float, str] | None = None
            seen: list[str] = []
            while True:  # page through it all with the cursor
                got = await other.list_calls(
                    device_id=device_id, state=state, limit=limit, before=before, filters=filters
                )
                assert [c.call_id for c in got] == expected(limit, device_id, state, filters, before)
                seen += [c.call_id for c in got]
                if len(got) < limit:
                    break
                before = (got[-1].created_time, got[-1].call_id)
            assert seen == expected(10_000, device_id, state, filters, None)
    for call in rng.sample(records, 10):  # each found by its id, exactly as recorded
        assert await other.get_call(call.call_id) == call
    assert await other.get_call("0" * 24) is None
