"""A queued call's record (calls/queued.py): its transitions change what a call's life changes and
keep the request; the ids sort by creation."""

from __future__ import annotations

from dataclasses import fields, replace

from methodhub.calls.queued import CallState, QueuedCall, new_call_id
from methodhub.registry.calls import COLUMNS, MUTABLE

CALL = QueuedCall(
    call_id="c1",
    device_id="dev1",
    module_id="mod",
    method="reboot",
    payload=b'{"n":1}',
    response_timeout=30.0,
    attempts=3,
    created_time=100.0,
    expires_time=200.0,
    attempt=1,
    idempotency_key="k",
    request_hash="h",
    job_id="j",
)


def test_the_transitions_are_what_replace_would_make() -> None:
    claimed = CALL.claimed("node-a", 150.0, 10.0)
    assert claimed == replace(
        CALL, state=CallState.SENT, attempt=2, owner="node-a", lease_until=190.0, delivered_time=150.0
    )
    assert claimed.unclaimed() == CALL
    assert claimed.requeued() == replace(claimed, state=CallState.QUEUED, owner=None, lease_until=None)
    done = claimed.finished(CallState.SUCCEEDED, 160.0, status=417, payload=b"{}")
    assert done == replace(
        claimed,
        state=CallState.SUCCEEDED,
        completed_time=160.0,
        outcome_status=417,
        outcome_payload=b"{}",
        owner=None,
        lease_until=None,
        response_size=2,  # the answer's bytes and the attempt's milliseconds, derived
        latency_ms=10_000.0,
    )
    failed = claimed.finished(CallState.FAILED, 161.0, error=("Timeout", "late"))
    assert (failed.error_code, failed.error_message, failed.outcome_status) == ("Timeout", "late", None)
    assert (failed.response_size, failed.latency_ms) == (None, 11_000.0)


def test_moved_changes_exactly_the_columns_an_update_stores() -> None:
    names = [f.name for f in fields(QueuedCall)]
    assert set(MUTABLE) <= set(names) and set(COLUMNS) == set(names)
    # every mutable field takes the new value; every other keeps the request's
    moved = CALL.moved(CallState.FAILED, 9, 1.0, 2.0, 3, b"p", "e", "m", "o", 4.0)
    for name in names:
        assert (getattr(moved, name) != getattr(CALL, name)) == (name in MUTABLE), name


def test_call_ids_are_24_hex_digits_and_sort_in_creation_order() -> None:
    ids = [new_call_id() for _ in range(1000)]
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
