"""Persisted MQTT sessions: the write-behind every registry backend puts in front of its table.

A persistent device's SUBSCRIBE (or a clean start) changes its stored session, and a burst of
thousands of devices connecting must cost neither a transaction nor a task each. So
:meth:`SessionWriteBehind.save` and :meth:`~SessionWriteBehind.delete` only record the latest
state per client id and return. :data:`FLUSH_DELAY` later one task hands everything queued by then
to the backend, which writes it in one transaction (and whatever was queued meanwhile in the next).
Until it is written, :meth:`~SessionWriteBehind.unsaved` answers for it, so a device reconnecting a
moment after subscribing finds its subscriptions.

A failed write stays queued (a newer state of the same client id queued meanwhile wins) and is
retried every :data:`RETRY_DELAY` seconds while the backend is open; the first failure of a run is
logged as a warning, the write that succeeds again as info.

The backend supplies only :data:`WriteBatch`: "write these changes in one transaction".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeAlias, TypeVar

T = TypeVar("T")

SessionChanges: TypeAlias = dict[str, dict[str, int] | None]
"""Client id → its subscriptions (filter → granted QoS) to store, or None to delete its session."""
WriteBatch: TypeAlias = Callable[[SessionChanges], Awaitable[None]]
"""The backend's "write these session changes in one transaction"; raises if it could not."""

FLUSH_DELAY = 0.005
"""Seconds a session change waits to be batched with others into one transaction."""
RETRY_DELAY = 1.0
"""Seconds between attempts to write session changes while the backend cannot write them."""


class SessionWriteBehind:
    """Queued session changes of one registry object, written in batches. See the module docstring.

    Args:
        write: writes one batch in one transaction.
        log: where write failures (and the recovery) are logged.
        is_open: whether the backend is open; failed writes are retried only while it is.
    """

    def __init__(
        self,
        write: WriteBatch,
        log: logging.Logger,
        is_open: Callable[[], bool],
        *,
        delay: float = FLUSH_DELAY,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        self._write = write
        self._log = log
        self._is_open = is_open
        self._delay = delay
        self._retry_delay = retry_delay
        self._queued: SessionChanges = {}
        self._writing: SessionChanges = {}
        """The batch the backend is writing now (still unsaved until its transaction commits)."""
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._batch_lock = asyncio.Lock()
        """Held while a batch is written and while an identity is deleted (:meth:`forget_identity`)."""
        self._failing = False

    # -- queueing -------------------------------------------------------------------------------------

    def save(self, client_id: str, subscriptions: Mapping[str, int]) -> None:
        """Queue storing a copy of ``subscriptions`` as ``client_id``'s session."""
        self._queued[client_id] = dict(subscriptions)
        self._schedule(self._delay)

    def delete(self, client_id: str) -> None:
        """Queue deleting ``client_id``'s session."""
        self._queued[client_id] = None
        self._schedule(self._delay)

    def unsaved(self, client_id: str) -> tuple[bool, dict[str, int] | None]:
        """``(True, state)`` if a change of ``client_id``'s session is not written yet (``state``: a
        copy of its subscriptions, None if it is being deleted), else ``(False, None)``: the stored
        session is the current one."""
        for changes in (self._queued, self._writing):
            if client_id in changes:
                subscriptions = changes[client_id]
                return True, (dict(subscriptions) if subscriptions is not None else None)
        return False, None

    # -- writing --------------------------------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        if self._timer is None and self._task is None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._start)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _start(self) -> asyncio.Task[None]:
        self._cancel_timer()
        task = asyncio.get_running_loop().create_task(self._write_queued())
        self._task = task
        task.add_done_callback(self._written)
        return task

    async def _write_queued(self) -> None:
        try:
            while self._queued:
                async with self._batch_lock:
                    batch, self._queued = self._queued, {}
                    self._writing = batch
                    try:
                        await self._write(batch)
                    except BaseException:
                        for client_id, subscriptions in batch.items():  # keep them for the next attempt
                            self._queued.setdefault(client_id, subscriptions)
                        raise
                    finally:
                        self._writing = {}
        finally:
            self._task = None

    def _written(self, task: asyncio.Task[None]) -> None:
        """After a run: if it failed, its changes are queued again; try again a little later."""
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            if self._failing:
                self._failing = False
                self._log.info("persisted session changes written again")
            return
        if not self._failing:
            self._failing = True
            self._log.warning("cannot write persisted session changes (will retry): %s", exc)
        if self._is_open():
            self._schedule(self._retry_delay)

    async def flush(self) -> None:
        """Write every queued change now and return when it is written.

        Raises what the backend's write raised if it could not write them (they stay queued and are
        retried in the background).
        """
        self._cancel_timer()
        running = self._task
        if running is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(running)
            self._cancel_timer()  # a failed run scheduled a retry; this call writes them now
        if self._queued and self._task is None:
            await asyncio.shield(self._start())

    async def forget_identity(self, key: str, delete: Callable[[], Awaitable[T]]) -> T:
        """Run ``delete``, the backend's transaction deleting identity ``key`` and the stored
        sessions of ``key`` and ``key/...`` (a device's modules); once it succeeded, drop the queued
        changes of those sessions. No batch is written while it runs, so a change queued before or
        during it cannot be written after it and outlive the identity."""
        async with self._batch_lock:
            result = await delete()
            prefix = key + "/"
            for client_id in [c for c in self._queued if c == key or c.startswith(prefix)]:
                del self._queued[client_id]
            return result

    def close(self) -> None:
        """Stop a scheduled retry (the backend is closing; call :meth:`flush` first)."""
        self._cancel_timer()
