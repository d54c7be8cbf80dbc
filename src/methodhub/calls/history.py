"""The call history: every call a front door made, stored in the calls store once it ended.

Queued and job calls are stored from the start (:mod:`methodhub.calls.delivery`); a synchronous
call (a front door's: a direct method, an RPC, a synchronous service call) is told to a
:class:`HistoryRecorder` by the engine when it ends (the engine's
:class:`~methodhub.calls.ports.CallRecorder` port) and stored as an ended call: state
``succeeded`` (the device answered, whatever its status) or ``failed`` (no answer: offline,
timeout, ...; or abandoned by its caller, ``CALLER_GONE``), attempt 1 of 1.

The write path is off the request's: :meth:`HistoryRecorder.record` makes the call's
:data:`HistoryRow` (a plain tuple: 1.5 µs), appends it to a bounded queue in memory and returns; a
writer task hands what is queued to the store in batches (one transaction each),
:data:`WRITE_DELAY` seconds after the first waits or at once when :data:`MAX_BATCH` wait. The
store keeps a batch as one page (:mod:`methodhub.registry.history`): storing each record as a row
cost more than a third of the call it recorded. When the store falls behind and
:data:`MAX_PENDING` records wait, the oldest go unwritten and are counted
(``methodhub_call_history_dropped_total``), as are those of a batch the store refused.
Unlike :class:`~methodhub.calls.batches.Batches` (whose callers await each item's result), nobody
waits for a record, so the queue can drop instead of growing.

Retention: a pruning task deletes, every :data:`PRUNE_INTERVAL` seconds, in batches, ended calls
that are no job's and ended more than ``retention`` seconds ago or beyond the ``max_records``
newest (a job's calls go with their job). Records go a page at a time: a page once its newest
record is past ``retention``, or once the ``max_records`` newest are all in newer pages (so up to
one batch more is kept). Queued calls that ended count apart: ``max_records`` of each are kept.

Payloads are not kept unless ``payloads`` is on: a method's payload often carries secrets (keys,
passwords, tokens given to a device) and the history is readable by any ServiceConnect caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from methodhub.calls.model import Call, CallOrigin, CallOutcome
from methodhub.calls.queued import CallState, QueuedCall, new_call_id
from methodhub.errors import HubError
from methodhub.metrics import Counter

log = logging.getLogger("methodhub.calls.history")

WRITE_DELAY = 0.2
"""Seconds a record waits for others to be written with them."""
MAX_BATCH = 500
"""Records written in one transaction at most (and written at once when so many wait)."""
MAX_PENDING = 50_000
"""Records waiting in memory at most; beyond, the oldest are dropped."""
RETENTION_DEFAULT = 7 * 86_400.0
"""Seconds an ended call is kept by default (7 days)."""
MAX_RECORDS_DEFAULT = 1_000_000
"""Ended calls (no job's) kept at most by default."""
PRUNE_INTERVAL = 60.0
"""Seconds between prunings."""
PRUNE_BATCH = 1000
"""Rows one pruning transaction deletes at most (it repeats while a batch was full)."""
CALLER_GONE = "CallerGone"
"""The error code of a call its caller abandoned (went away before the answer)."""
CALLER_GONE_MESSAGE = "The caller went away before the device answered."
SUCCEEDED = CallState.SUCCEEDED.value
FAILED = CallState.FAILED.value


HISTORY_FIELDS = (
    "call_id",
    "device_id",
    "module_id",
    "method",
    "payload",
    "response_timeout",
    "created_time",
    "completed_time",
    "state",
    "outcome_status",
    "outcome_payload",
    "error_code",
    "error_message",
    "front_door",
    "caller",
    "request_size",
    "response_size",
    "latency_ms",
    "tracking_id",
    "target",
)
"""A :data:`HistoryRow`'s values, in order: the fields of the :class:`QueuedCall` it stands for
(``module_id`` ``""`` for none, ``state`` its value). The rest are the same for every record:
one attempt of one (``attempts``, ``attempt`` 1), delivered when made (``delivered_time`` =
``created_time``), expired when ended (``expires_time`` = ``completed_time``), no idempotency key,
request hash, job, owner or lease."""
HistoryRow = tuple[Any, ...]
"""One ended synchronous call as the store takes it: :data:`HISTORY_FIELDS`' values. A plain tuple
(not a :class:`QueuedCall`): building one per call costs a quarter as much."""


def history_call(row: HistoryRow) -> QueuedCall:
    """The call a :data:`HistoryRow` stands for (as the store gives it back)."""
    fields = dict(zip(HISTORY_FIELDS, row, strict=True))
    del fields["target"]
    fields["module_id"] = fields["module_id"] or None
    fields["state"] = CallState(fields["state"])
    delivered, expires = fields["created_time"], fields["completed_time"]
    return QueuedCall(**fields, attempts=1, attempt=1, delivered_time=delivered, expires_time=expires)


class HistoryStore(Protocol):
    """What the recorder needs of the calls store (the registry)."""

    async def record_history(self, rows: Sequence[HistoryRow]) -> None:
        """Store ended synchronous calls, in one transaction (their identities need not be
        registered any more)."""
        ...

    async def prune_calls(self, before: float, keep: int, limit: int = 1000) -> int: ...


def error_code(error: BaseException) -> tuple[str, str]:
    """The stored ``(code, message)`` of a call's error (the error names queued calls store)."""
    if isinstance(error, HubError):
        return error.kind.spec.azure_name, error.message
    return type(error).__name__, str(error)


class HistoryRecorder:
    """The :class:`~methodhub.calls.ports.CallRecorder` of the call history (see the module).

    Args:
        store: where records go.
        payloads: keep request and response payloads (off: only their sizes).
        retention: seconds an ended call is kept; ``max_records``: how many at most.
        dropped: counts records dropped unwritten.
        clock: epoch seconds (tests).
    """

    def __init__(
        self,
        store: HistoryStore,
        *,
        payloads: bool = False,
        retention: float = RETENTION_DEFAULT,
        max_records: int = MAX_RECORDS_DEFAULT,
        max_pending: int = MAX_PENDING,
        max_batch: int = MAX_BATCH,
        write_delay: float = WRITE_DELAY,
        prune_interval: float = PRUNE_INTERVAL,
        dropped: Counter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.payloads = payloads
        self.retention = retention
        self.max_records = max_records
        self._max_pending = max_pending
        self._max_batch = max_batch
        self._delay = write_delay
        self._prune_interval = prune_interval
        self._dropped = dropped or Counter("methodhub_call_history_dropped_total", "")
        self._clock = clock
        self._pending: deque[HistoryRow] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._writer: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return len(self._pending)

    @property
    def dropped(self) -> int:
        return int(self._dropped.get())

    # -- the engine's port ---------------------------------------------------------------------------

    def record(
        self,
        call: Call,
        origin: CallOrigin,
        started: float,
        outcome: CallOutcome | None,
        error: BaseException | None,
    ) -> None:
        # Called once per call as it ends. The row holds only strings, numbers and None, so the
        # garbage collector stops tracking it at once, and the call's objects are freed now: kept
        # until written (0.2 s, thousands of calls), they would be promoted to older generations
        # and make full collections more frequent.
        now = self._clock()
        target = call.target
        device_id, _, module_id = target.partition("/")
        if outcome is not None:
            state, status, code, message = SUCCEEDED, outcome.status, None, None
            response_size: int | None = len(outcome.payload)
        else:
            state, status, response_size = FAILED, None, None
            code, message = error_code(error) if error is not None else (CALLER_GONE, CALLER_GONE_MESSAGE)
        keep = self.payloads
        self._queue(
            (
                new_call_id(),
                device_id,
                module_id,
                call.method,
                call.payload if keep else b"",
                call.response_timeout,
                started,  # created_time
                now,  # completed_time
                state,
                status,
                outcome.payload if keep and outcome is not None else None,
                code,
                message,
                origin.front_door,
                origin.caller,
                len(call.payload),  # request_size
                response_size,
                (now - started) * 1000.0,  # latency_ms
                origin.tracking_id,
                target,
            )
        )

    def _queue(self, record: HistoryRow) -> None:
        pending = self._pending
        if len(pending) >= self._max_pending:
            pending.popleft()
            self._dropped.inc()
        pending.append(record)
        if self._writer is not None:
            return
        if len(pending) >= self._max_batch:
            self._start()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a test calling record directly): written at flush
                return
            self._timer = loop.call_later(self._delay, self._start, True)

    # -- writing ----------------------------------------------------------------------------------

    def _start(self, everything: bool = False) -> asyncio.Task[None]:
        """Write the full batches waiting (``everything``: all that waits, the last batch short:
        the delay is over, or a flush)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting = len(self._pending)
        count = waiting if everything else waiting - waiting % self._max_batch
        task = asyncio.get_running_loop().create_task(self._write(count), name="call-history")
        self._writer = task
        return task

    async def _write(self, count: int) -> None:
        # Only `count` records, those waiting when it started: records made meanwhile wait for a
        # full batch or the delay. Writing them at once instead made batches of a few dozen at
        # high rates, and each batch costs a transaction (measured: 7 µs a record, not 0.8).
        try:
            while count > 0 and self._pending:
                size = min(count, self._max_batch, len(self._pending))
                count -= size
                pop = self._pending.popleft
                batch = [pop() for _ in range(size)]
                try:
                    await self.store.record_history(batch)
                except asyncio.CancelledError:
                    self._dropped.inc(amount=len(batch))
                    raise
                except Exception as exc:
                    self._dropped.inc(amount=len(batch))
                    log.warning("call history: %d records not stored: %s", len(batch), exc)
        finally:
            self._writer = None
        if len(self._pending) >= self._max_batch:
            self._start()
        elif self._pending and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._start, True)

    async def flush(self) -> None:
        """Write everything waiting now (and wait for the batch being written)."""
        while self._pending or self._writer is not None:
            task = self._writer or self._start(everything=True)
            await asyncio.wait([task])

    # -- retention ------------------------------------------------------------------------------------

    async def prune(self) -> int:
        """One pruning: delete, in batches, what retention says goes; returns how many."""
        total = 0
        while True:
            gone = await self.store.prune_calls(self._clock() - self.retention, self.max_records, PRUNE_BATCH)
            total += gone
            if gone < PRUNE_BATCH:
                return total

    async def _prune_forever(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception as exc:
                log.warning(
                    "call history: pruning failed (tried again in %g s): %s", self._prune_interval, exc
                )
            await asyncio.sleep(self._prune_interval)

    def start(self) -> None:
        """Start pruning periodically (the first at once)."""
        if self._pruner is None:
            self._pruner = asyncio.get_running_loop().create_task(self._prune_forever(), name="history-prune")

    async def stop(self) -> None:
        """Stop pruning and write what waits."""
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
            self._pruner = None
        await self.flush()
