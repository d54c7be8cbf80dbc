"""Each event-loop iteration's output in one burst (issue 16, lever 1).

A connection does not write to its transport as it produces bytes: it appends them to its own
:class:`Burst`, and the first append of an iteration registers the burst with the loop's
:class:`Flusher`, which writes every registered burst in one callback (one ``loop.call_soon`` per
iteration for all the connections that wrote, not one per connection). Each connection then makes
one ``transport.write`` per iteration, and the peers (the backend's HTTP clients, the devices) are
woken once for all the messages of a turn instead of once per message: on the benchmark the device
farm slept 0.8 times per call before, 0.08 after.

Rules a connection keeps with it (the tests in tests/unit/test_burst.py hold them):

* **every** write of the connection goes through its burst, so none overtakes one queued before it;
  a connection that hands its transport to someone else (an HTTP upgrade) or half-closes it
  (``write_eof``) calls :meth:`Burst.flush` first;
* closing flushes first (:meth:`Burst.flush`, then ``transport.close()``); aborting drops what is
  queued (:meth:`Burst.discard`), as ``transport.abort()`` drops the transport's buffer;
* flow control still applies: once :data:`BURST_LIMIT` bytes are queued, the burst is written at
  once, so a big output reaches the transport (and its ``pause_writing``) as soon as before, and
  :attr:`Burst.size` lets a connection count its queued bytes against a buffer limit (the devices'
  4 MiB) before they reach the transport.

When the burst is written: ``call_soon`` from the iteration's first write, so the write runs on the
next pass over the ready queue — on uvloop after the I/O callbacks of the same poll (every
``data_received`` of one ``epoll_wait`` batch), on asyncio's own loop after the callbacks already
queued. Writes made by callbacks that run after the flusher in that pass start the next burst.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

__all__ = ["BURST_LIMIT", "Burst", "Flusher", "flusher_for"]

log = logging.getLogger("methodhub.burst")

BURST_LIMIT = 64 * 1024
"""Bytes a connection queues in one iteration before they are written at once: the default high-water
mark of asyncio's and uvloop's transports, so the transport's flow control (``pause_writing``) sees
a big output as early as it did when every write went straight through."""


class Burst:
    """One connection's output of the current iteration: written in one ``transport.write``.

    Attributes:
        transport: where the bytes go; None drops them (the connection is gone).
        size: bytes queued and not yet written.
    """

    __slots__ = ("_chunks", "_due", "_flusher", "size", "transport")

    def __init__(self, flusher: Flusher) -> None:
        self._flusher = flusher
        self._chunks: list[bytes] = []
        self._due = False
        self.size = 0
        self.transport: asyncio.WriteTransport | None = None

    def write(self, data: bytes) -> None:
        """Queue ``data`` behind what is queued; written at the end of the iteration (or now, once
        :data:`BURST_LIMIT` bytes are queued)."""
        self._chunks.append(data)
        self.size += len(data)
        if not self._due:
            self._due = True
            self._flusher.add(self)
        if self.size >= BURST_LIMIT:
            self.flush()

    def flush(self) -> None:
        """Write what is queued now, in one ``transport.write`` (before a close, a ``write_eof``, a
        hand-over of the transport)."""
        chunks = self._chunks
        if not chunks:
            return
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.size = 0
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def discard(self) -> None:
        """Drop what is queued (the connection is aborted or lost)."""
        self._chunks.clear()
        self.size = 0

    def due(self) -> None:
        """The flusher's call: the iteration's burst."""
        self._due = False
        self.flush()


class Flusher:
    """The bursts of one event loop that have bytes queued: all written in one loop callback."""

    __slots__ = ("_due", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # a strong one would keep the loop alive in _flushers
        self._due: list[Burst] = []

    def add(self, burst: Burst) -> None:
        """Write ``burst`` in this iteration's flush (scheduled by the first burst added)."""
        due = self._due
        due.append(burst)
        if len(due) == 1:
            loop = self._loop()
            if loop is None:
                raise RuntimeError("the event loop is gone")
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        due, self._due = self._due, []
        for burst in due:
            try:
                burst.due()
            except Exception:  # one connection's broken transport must not keep the others' bytes
                log.warning("writing a connection's output failed", exc_info=True)
                burst.discard()


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Flusher] = weakref.WeakKeyDictionary()


def flusher_for(loop: asyncio.AbstractEventLoop) -> Flusher:
    """The :class:`Flusher` of ``loop`` (made on first use; asked once per connection)."""
    flusher = _flushers.get(loop)
    if flusher is None:
        flusher = _flushers[loop] = Flusher(loop)
    return flusher
