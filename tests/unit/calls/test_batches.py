"""Batches (calls/batches.py): many delivery tasks' claims and settles in one store call each."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from methodhub.calls.batches import Batches
from methodhub.errors import ErrorKind, HubError


class Store:
    """Records each batch it is given; answers each item doubled, or fails the batches asked to."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.fail: set[int] = set()

    async def run(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        if len(self.batches) in self.fail:
            raise HubError(ErrorKind.SERVICE_UNAVAILABLE, "down")
        await asyncio.sleep(0)
        return [item * 2 for item in items]


async def test_items_submitted_together_go_in_one_batch_each_with_its_result() -> None:
    store = Store()
    batches: Batches[int, int] = Batches(store.run, delay=0)
    assert await asyncio.gather(*(batches.submit(n) for n in range(5))) == [0, 2, 4, 6, 8]
    assert store.batches == [[0, 1, 2, 3, 4]]
    assert await batches.submit(7) == 14  # later: a batch of its own
    assert store.batches[1:] == [[7]]


async def test_a_full_batch_goes_at_once_and_the_rest_follows() -> None:
    store = Store()
    batches: Batches[int, int] = Batches(store.run, delay=3600, max_batch=2)
    results = await asyncio.wait_for(asyncio.gather(*(batches.submit(n) for n in range(5))), 5)
    assert results == [0, 2, 4, 6, 8]  # no waiting for the hour's delay: each batch was full or queued
    assert store.batches == [[0, 1], [2, 3], [4]]


async def test_a_batch_the_store_refuses_fails_each_of_its_items_only() -> None:
    store = Store()
    store.fail = {1}
    batches: Batches[int, int] = Batches(store.run, delay=0)
    results = await asyncio.gather(*(batches.submit(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(r, HubError) and r.kind is ErrorKind.SERVICE_UNAVAILABLE for r in results)
    assert await batches.submit(4) == 8


async def test_flush_runs_what_is_queued_without_waiting_even_if_its_submitter_was_cancelled() -> None:
    store = Store()
    batches: Batches[int, int] = Batches(store.run, delay=3600)
    waiting = asyncio.ensure_future(batches.submit(1))
    cancelled = asyncio.ensure_future(batches.submit(2))
    await asyncio.sleep(0)
    cancelled.cancel()
    assert batches.queued == 2 and store.batches == []
    await asyncio.wait_for(batches.flush(), 5)
    assert store.batches == [[1, 2]] and batches.queued == 0  # the cancelled one's item is written too
    assert await waiting == 2
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await batches.flush()  # nothing queued: returns
    assert store.batches == [[1, 2]]


async def test_a_claim_whose_awaiter_was_cancelled_before_its_batch_ran_is_dropped() -> None:
    store = Store()
    batches: Batches[int, int] = Batches(store.run, delay=3600, keep_cancelled=False)
    kept = asyncio.ensure_future(batches.submit(1))
    dropped = asyncio.ensure_future(batches.submit(2))
    await asyncio.sleep(0)
    dropped.cancel()
    await asyncio.wait_for(batches.flush(), 5)
    assert store.batches == [[1]] and await kept == 2  # nobody waits for 2's claim: not made
    alone = asyncio.ensure_future(batches.submit(3))
    await asyncio.sleep(0)
    alone.cancel()
    await asyncio.wait_for(batches.flush(), 5)
    assert store.batches == [[1]]  # a batch of cancelled items only: nothing goes to the store
