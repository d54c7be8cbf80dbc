"""Store work of many concurrent delivery tasks done in one transaction: :class:`Batches`.

Each attempt a node delivers costs a claim (``queued`` → ``sent``) and a settle (``sent`` → its
end, or ``queued`` again); one transaction and one hop to the store per step is most of what a
job over thousands of devices costs. So the delivery tasks hand each step to a :class:`Batches`
and await its result: ``delay`` seconds after the first item queued (or at once when
``max_batch`` are waiting), all queued items go to the store in one call (one transaction); those
queued while it runs go in the next.

- Claims (:data:`CLAIM_DELAY`, 0: the claims of one event-loop iteration — a chunk of a job kicked
  at once — go together). A claim whose delivery task was cancelled before its batch ran is not
  made (nobody would send what it claimed).
- Settles (:data:`SETTLE_DELAY`): a call's end is in the store at most about that long (plus one
  transaction) after its device answered; whoever awaits it (the delivery task, then the waiters it
  wakes) learns the result only once it is written, and a cancelled awaiter's end is written
  all the same.

A batch the store could not take fails each of its items with the store's error (a claim: the call
stays ``queued``; a settle: the call stays ``sent`` until its lease ends and the sweep settles it,
as for a node that died). :meth:`Batches.flush` runs whatever is queued now (a node's stop).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

CLAIM_DELAY = 0.0
"""Seconds a claim waits for others (0: those made in the same event-loop iteration)."""
SETTLE_DELAY = 0.02
"""Seconds an attempt's end waits to be written with others in one transaction."""
MAX_BATCH = 500
"""Items sent at once, without waiting for the delay, when so many are queued."""


def _retrieve(future: asyncio.Future[R]) -> None:
    if not future.cancelled():
        future.exception()  # an item whose awaiter was cancelled: its error is not "never retrieved"


class Batches(Generic[I, R]):
    """Items queued for ``run`` (one store call for many, one result each, in order); see the
    module docstring."""

    def __init__(
        self,
        run: Callable[[Sequence[I]], Awaitable[list[R]]],
        *,
        delay: float,
        max_batch: int = MAX_BATCH,
        name: str = "batch",
        keep_cancelled: bool = True,
    ) -> None:
        self._run = run
        self._keep_cancelled = keep_cancelled
        """Whether an item whose awaiter was cancelled before its batch ran still goes to the store
        (a settle: yes, the attempt ended; a claim: no, nobody would deliver what it claimed)."""
        self._delay = delay
        self._max_batch = max_batch
        self._name = name
        self._queued: list[tuple[I, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Items queued and not handed to the store yet."""
        return len(self._queued)

    async def submit(self, item: I) -> R:
        """``item``'s result once its batch ran; raises the store's error when the batch failed.
        Cancelling the awaiter takes the item back only without ``keep_cancelled`` and before its
        batch started."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._queued.append((item, future))
        if self._task is None:
            if len(self._queued) >= self._max_batch:
                self._start()
            elif self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(self._delay, self._start)
        return await future

    async def flush(self) -> None:
        """Run everything queued now (and wait for the batch running)."""
        while self._queued or self._task is not None:
            task = self._task or self._start()
            await asyncio.wait([task])

    def _start(self) -> asyncio.Task[None]:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = asyncio.get_running_loop().create_task(self._run_queued(), name=self._name)
        self._task = task
        return task

    async def _run_queued(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued[: self._max_batch], self._queued[self._max_batch :]
                if not self._keep_cancelled:
                    batch = [(item, future) for item, future in batch if not future.cancelled()]
                    if not batch:
                        continue
                try:
                    results = await self._run([item for item, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._task = None
            if self._queued and self._timer is None:  # cancelled with items queued: try again
                with contextlib.suppress(RuntimeError):  # the loop is closing
                    self._timer = asyncio.get_running_loop().call_later(self._delay, self._start)
