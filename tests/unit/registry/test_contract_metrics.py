"""Registry contract: what the metrics read (every backend in conftest.BACKENDS): live calls by
state, and the timing hook around each database operation."""

from __future__ import annotations

import time

from methodhub.calls.queued import CallState
from methodhub.registry import Registry
from tests.unit.registry.test_contract_calls import T0, _call


async def test_live_call_states_count_queued_and_sent_calls_only(registry: Registry) -> None:
    assert await registry.live_call_states() == {}
    for n in range(3):
        await registry.create_call(_call(n=n))
    await registry.create_call(_call("dev2", n=5))
    sent = await registry.claim_call("dev1", "node-a", T0 + 1, lease=5)
    assert sent is not None
    assert await registry.live_call_states() == {"queued": 3, "sent": 1}
    done = sent.finished(CallState.SUCCEEDED, T0 + 2, status=200, payload=b"{}")
    assert await registry.update_call(done, CallState.SENT, owner="node-a")
    assert await registry.live_call_states() == {"queued": 3}  # an ended call is not live


async def test_every_database_operation_is_timed(registry: Registry) -> None:
    seen: list[tuple[str, float]] = []
    registry.timed = lambda kind, started: seen.append((kind, time.perf_counter() - started))
    try:
        await registry.create_identity("timed-dev")
        assert await registry.get_identity("timed-dev") is not None
    finally:
        registry.timed = None
    assert {kind for kind, _ in seen} == {"read", "write"}
    assert all(0 <= elapsed < 30 for _, elapsed in seen)
