"""Flow control for a connection that serves a pipeline of requests: back-pressure both ways.

* Reading: the connection stops reading (``transport.pause_reading``) once :data:`MAX_PIPELINE`
  parsed requests wait to be served, and feeds big reads to the parser :data:`FEED_SLICE` bytes at
  a time, holding back (``_stash``) what follows a slice that filled the pipeline; it reads again
  once the pipeline has drained.
* Writing: asyncio calls :meth:`FlowControl.pause_writing` when the transport's buffer passes its
  high-water mark (the client does not read its responses) and :meth:`FlowControl.resume_writing`
  when it drained; while paused, the connection serves nothing more.

:class:`FlowControl` is a base class, not a helper object, as asyncio's own
``streams.FlowControlMixin`` is: the flags are slots of the connection itself, so checking them on
the per-request path costs what it did before the split (no extra object to reach through).
"""

from __future__ import annotations

import asyncio

__all__ = ["FEED_SLICE", "MAX_PIPELINE", "FlowControl"]

MAX_PIPELINE = 16
"""Parsed requests queued on one connection before we stop reading from it (RFC 9112 §9.3.2).

Deep enough to keep a pipelining client busy, small enough that one connection cannot make us hold
much more than 16 requests (plus what one parser slice, below, may complete at once)."""

FEED_SLICE = 16 * 1024
"""Bytes given to the parser at a time. httptools parses all it is given and cannot pause, so we
feed big reads in slices and stop between slices once :data:`MAX_PIPELINE` requests are queued;
one slice bounds the overshoot (a few hundred minimal requests)."""


class FlowControl(asyncio.Protocol):
    """The flow-control state and transitions of a connection protocol.

    A subclass pauses reading when it holds enough unserved work (:meth:`_pause_reading`), resumes
    when that drained (:meth:`_resume_reading`), serves nothing while :attr:`_write_paused`, and
    overrides :meth:`_writable`, called when a paused transport drained.

    Attributes:
        _transport: the connection's transport, None before ``connection_made`` and after it is
            given up (closed, or handed to another protocol).
        _read_paused: we paused reading.
        _write_paused: the transport asked us to stop writing.
        _stash: bytes received but not parsed yet, held back while the pipeline is full.
    """

    __slots__ = ("_read_paused", "_stash", "_transport", "_write_paused")

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._read_paused = False
        self._write_paused = False
        self._stash: bytes | None = None

    def pause_writing(self) -> None:
        """The transport's buffer is full: stop serving the pipeline until it drains."""
        self._write_paused = True

    def resume_writing(self) -> None:
        """The transport's buffer drained: serve the pipeline again."""
        self._write_paused = False
        if self._transport is not None:
            self._writable()

    def _writable(self) -> None:
        """The transport drained after a pause and is still ours: write what waits."""

    def _pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()
