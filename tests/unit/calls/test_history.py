"""The call history's recorder (calls/history.py): what a record holds, batched writes off the
request's path, bounded memory (oldest dropped and counted), pruning, and the engine's port."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from methodhub.calls import Call, CallEngine, CallOutcome
from methodhub.calls.history import CALLER_GONE, PRUNE_BATCH, HistoryRecorder, HistoryRow, history_call
from methodhub.calls.model import CallOrigin
from methodhub.calls.queued import CallState, QueuedCall
from methodhub.errors import ErrorKind, HubError
from methodhub.metrics import Metrics
from methodhub.router import LocalRouter
from tests.unit.calls.test_engine import FakeSession, Identities

ORIGIN = CallOrigin("azure", "service", "req-1")


class Store:
    """Records each batch; ``gate`` (when set) holds every write until it is set."""

    def __init__(self) -> None:
        self.batches: list[list[QueuedCall]] = []
        self.gate: asyncio.Event | None = None
        self.fail = False
        self.prunes: list[tuple[float, int, int]] = []
        self.prunable = 0

    async def record_history(self, rows: Sequence[HistoryRow]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise OSError("disk full")
        self.batches.append([history_call(row) for row in rows])

    async def prune_calls(self, before: float, keep: int, limit: int = 1000) -> int:
        self.prunes.append((before, keep, limit))
        gone = min(self.prunable, limit)
        self.prunable -= gone
        return gone

    @property
    def stored(self) -> list[QueuedCall]:
        return [call for batch in self.batches for call in batch]


def _call(n: int = 0, payload: bytes = b'{"secret":"k"}') -> Call:
    return Call(f"dev{n}/mod" if n % 2 else f"dev{n}", f"m{n}", payload, 30.0)


def _recorder(store: Store, metrics: Metrics | None = None, **options: object) -> HistoryRecorder:
    clock = iter(float(n) for n in range(1_000, 1_000_000))
    return HistoryRecorder(
        store,
        dropped=(metrics or Metrics()).history_dropped,
        clock=lambda: next(clock),
        **options,  # type: ignore[arg-type]
    )


async def test_a_record_holds_the_end_of_the_call_without_its_payloads() -> None:
    store = Store()
    recorder = _recorder(store)
    recorder.record(_call(1), ORIGIN, 999.5, CallOutcome(404, b'{"no":1}'), None)
    recorder.record(_call(2), CallOrigin("aliyun"), 999.0, None, HubError(ErrorKind.CALL_TIMEOUT, "late"))
    recorder.record(_call(4), ORIGIN, 999.0, None, None)  # abandoned by its caller
    await recorder.flush()
    answered, timed_out, abandoned = store.stored
    assert (answered.device_id, answered.module_id, answered.method) == ("dev1", "mod", "m1")
    assert answered.state is CallState.SUCCEEDED and (answered.attempt, answered.attempts) == (1, 1)
    assert (answered.front_door, answered.caller, answered.tracking_id) == ("azure", "service", "req-1")
    assert (answered.outcome_status, answered.request_size, answered.response_size) == (404, 14, 8)
    assert answered.latency_ms == 500.0 and answered.created_time == 999.5
    assert answered.payload == b"" and answered.outcome_payload is None  # sizes only
    assert answered.error_code is None
    assert timed_out.state is CallState.FAILED and timed_out.error_code == "GatewayTimeout"
    assert (timed_out.outcome_status, timed_out.response_size, timed_out.caller) == (None, None, None)
    assert abandoned.state is CallState.FAILED and abandoned.error_code == CALLER_GONE
    assert len({c.call_id for c in store.stored}) == 3


async def test_payloads_are_kept_only_when_asked() -> None:
    store = Store()
    recorder = _recorder(store, payloads=True)
    recorder.record(_call(), ORIGIN, 999.0, CallOutcome(200, b"[1]"), None)
    await recorder.flush()
    (call,) = store.stored
    assert (call.payload, call.outcome_payload) == (b'{"secret":"k"}', b"[1]")


async def test_records_are_written_in_batches_after_the_delay_without_anyone_waiting() -> None:
    store = Store()
    recorder = _recorder(store, write_delay=0.05, max_batch=4)
    for n in range(3):
        recorder.record(_call(n), ORIGIN, 999.0, CallOutcome(200, b"1"), None)  # returns at once
    assert recorder.pending == 3 and store.batches == []
    await asyncio.sleep(0.2)
    assert [len(b) for b in store.batches] == [3]  # one transaction for the three
    for n in range(10):  # a full batch goes at once, the rest in batches of at most max_batch
        recorder.record(_call(n), ORIGIN, 999.0, CallOutcome(200, b"1"), None)
    await recorder.flush()
    assert [len(b) for b in store.batches] == [3, 4, 4, 2]
    assert recorder.pending == 0 and recorder.dropped == 0


async def test_when_the_store_falls_behind_the_oldest_unwritten_records_are_dropped_and_counted() -> None:
    store = Store()
    store.gate = asyncio.Event()
    metrics = Metrics()
    recorder = _recorder(store, metrics, max_pending=3, max_batch=1)
    recorder.record(_call(0), ORIGIN, 999.0, CallOutcome(200, b"1"), None)  # a full batch: written now
    await asyncio.sleep(0)  # the writer took it and waits for the store
    for n in range(1, 7):
        recorder.record(_call(n), ORIGIN, 999.0, CallOutcome(200, b"1"), None)
    assert recorder.pending == 3 and recorder.dropped == 3  # memory bounded
    assert metrics.history_dropped.get() == 3
    assert "methodhub_call_history_dropped_total 3" in metrics.render()
    store.gate.set()
    await recorder.flush()
    assert [c.method for c in store.stored] == ["m0", "m4", "m5", "m6"]  # the newest kept


async def test_a_batch_the_store_refuses_is_counted_as_dropped() -> None:
    store = Store()
    store.fail = True
    recorder = _recorder(store)
    for n in range(5):
        recorder.record(_call(n), ORIGIN, 999.0, CallOutcome(200, b"1"), None)
    await recorder.flush()
    assert recorder.dropped == 5 and recorder.pending == 0
    store.fail = False
    recorder.record(_call(9), ORIGIN, 999.0, CallOutcome(200, b"1"), None)
    await recorder.flush()
    assert [c.method for c in store.stored] == ["m9"]  # it goes on writing


async def test_pruning_repeats_while_batches_are_full_with_the_retention_asked() -> None:
    store = Store()
    store.prunable = 2 * PRUNE_BATCH + 5
    recorder = _recorder(store, retention=3600.0, max_records=10)
    assert await recorder.prune() == 2 * PRUNE_BATCH + 5
    assert len(store.prunes) == 3
    before, keep, limit = store.prunes[0]
    assert (before, keep, limit) == (1_000.0 - 3600.0, 10, PRUNE_BATCH)
    recorder.start()  # periodic: the first pruning at once
    await asyncio.sleep(0.01)
    assert len(store.prunes) == 4
    await recorder.stop()


@pytest.fixture
def engine_parts() -> tuple[LocalRouter, CallEngine, Store, HistoryRecorder]:
    router = LocalRouter()
    store = Store()
    recorder = _recorder(store)
    return router, CallEngine(router, Identities("dev"), Metrics(), recorder), store, recorder


async def test_the_engine_records_calls_made_with_an_origin_only(engine_parts) -> None:
    router, engine, store, recorder = engine_parts
    session = FakeSession()
    router.announce("dev", session)
    first = engine.invoke(Call("dev", "ping", b"{}", 5), origin=ORIGIN)
    second = engine.invoke(Call("dev", "queued-attempt", b"{}", 5))  # a queued call's: no origin
    for _, reply in session.calls:
        reply.set_result(CallOutcome(201, b"[]"))
    assert (await first, await second) == (CallOutcome(201, b"[]"), CallOutcome(201, b"[]"))
    with pytest.raises(HubError):
        await engine.invoke(Call("ghost", "ping", b"{}", 5), origin=ORIGIN)
    await recorder.flush()
    ping, ghost = store.stored
    assert (ping.method, ping.state, ping.outcome_status) == ("ping", CallState.SUCCEEDED, 201)
    assert (ghost.device_id, ghost.state, ghost.error_code) == ("ghost", CallState.FAILED, "DeviceNotFound")


async def test_an_engine_without_a_recorder_records_nothing() -> None:
    router = LocalRouter()
    engine = CallEngine(router, Identities("dev"), Metrics())
    session = FakeSession()
    router.announce("dev", session)
    result = engine.invoke(Call("dev", "ping", b"{}", 5), origin=ORIGIN)
    session.calls[0][1].set_result(CallOutcome(200, b"1"))
    assert await result == CallOutcome(200, b"1")
    assert engine.recorder is None


async def test_a_call_refused_over_a_quota_or_while_stopping_is_recorded(engine_parts) -> None:
    from methodhub.calls.quotas import QuotaLimits, Quotas

    router, engine, store, recorder = engine_parts
    router.announce("dev", FakeSession())
    engine.quotas = Quotas(QuotaLimits(method_calls_per_second=1.0, method_calls_per_policy_per_second=None))
    made = [engine.invoke(Call("dev", f"m{n}", b"{}", 5), origin=ORIGIN) for n in range(5)]
    throttled = [call for call in made if call.done() and isinstance(call.exception(), HubError)]
    assert throttled  # the burst ran out: the rest are refused at once
    engine.stop()
    stopping = engine.invoke(Call("dev", "late", b"{}", 5), origin=ORIGIN)
    for call in [*made, stopping]:
        with pytest.raises(HubError):
            await call
    await recorder.flush()
    codes = {c.method: c.error_code for c in store.stored}
    assert len(store.stored) == 6 and codes["late"] == "HubStopping"
    assert sum(code == "ThrottlingException" for code in codes.values()) == len(throttled)


async def test_records_made_while_a_batch_is_written_wait_for_a_full_batch_or_the_delay() -> None:
    store = Store()
    store.gate = asyncio.Event()
    recorder = _recorder(store, write_delay=0.1, max_batch=4)
    for n in range(4):  # a full batch: written at once, and held by the store
        recorder.record(_call(n), ORIGIN, 999.0, CallOutcome(200, b"1"), None)
    await asyncio.sleep(0)
    for n in range(4, 6):  # made meanwhile: two, not a batch
        recorder.record(_call(n), ORIGIN, 999.0, CallOutcome(200, b"1"), None)
    store.gate.set()
    await asyncio.sleep(0.02)
    assert [len(b) for b in store.batches] == [4]  # not written in a batch of two at once
    await asyncio.sleep(0.15)
    assert [len(b) for b in store.batches] == [4, 2]  # the delay passed
    for n in range(9):  # more than two batches: two full ones at once, the last after the delay
        recorder.record(_call(n), ORIGIN, 999.0, CallOutcome(200, b"1"), None)
    await asyncio.sleep(0.02)
    assert [len(b) for b in store.batches] == [4, 2, 4, 4]
    await recorder.flush()
    assert [len(b) for b in store.batches] == [4, 2, 4, 4, 1] and recorder.pending == 0
