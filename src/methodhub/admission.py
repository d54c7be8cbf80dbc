"""Admission: which connections a listener keeps when it is full, whatever protocol it serves.

A listener (HTTP, MQTT, MQTT over TLS...) gives every new connection to its :class:`Admission`
with a callback that closes it, and reports what the connection becomes::

    admission = Admission("http 127.0.0.1:8080", max_connections=10_000, max_unestablished=1_000)
    if not admission.register(conn, conn.close_now, fd=sock.fileno()):
        ...close the new connection: the listener is full of busy connections
    admission.mark_established(conn)  # HTTP: a request completed; MQTT: CONNECT accepted
    admission.mark_busy(conn)         # work in progress that shedding would lose (a caller waits)
    admission.mark_idle(conn)         # nothing in progress: it may be shed again
    admission.release(conn)           # the connection is gone (any state; unknown: ignored)

The policy, in order, when a connection arrives:

1. More than ``max_unestablished`` connections that never got established (an HTTP connection that
   has not completed a request, an MQTT connection not past CONNECT): the oldest of them is shed.
2. ``max_connections`` reached: the oldest unestablished connection is shed, else the oldest idle
   one (by when it got established; a busy one passed over goes to the back of that order); if
   every connection is busy, the new one is refused.
3. The same when the process's fds near ``RLIMIT_NOFILE``: once a new connection's fd reaches the
   fd ceiling (the limit minus a reserve), the open fds are counted and the listener may hold
   only as many connections as leave the others' fds under the ceiling; shedding brings it there
   at once (an event loop accepts every pending connection before any protocol hears of one, so
   a burst overshoots). The count is repeated while the budget binds, to lift it afterwards.

So a flood of connections that never finish a request (slowloris) or never authenticate cannot
lock out a client or device that does: the newcomer always gets a slot while someone idle or
unproven can give it up. Shedding calls the connection's close callback at once and forgets the
connection (a later :meth:`release` is a no-op). :meth:`mark_busy` and :meth:`mark_idle` are one
set operation each (an HTTP connection calls them around every request its handler awaits);
registering, establishing and releasing one ordered-dict operation.

Shed and refused connections are counted and logged as one WARNING per listener at most every
:data:`WARNING_INTERVAL` seconds. :func:`log_accept_errors` does the same for ``accept()`` failing
with EMFILE/ENFILE on asyncio's event loop (uvloop's libuv drops such connections silently, so
the fd ceiling above is what warns there).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["WARNING_INTERVAL", "Admission", "count_open_fds", "default_fd_ceiling", "log_accept_errors"]

log = logging.getLogger("methodhub.admission")

WARNING_INTERVAL = 10.0
"""Seconds between two warnings of one listener (or of accept errors) while the pressure lasts."""
FD_MEASURE_INTERVAL = 0.1
"""Seconds between two counts of the process's open fds while new connections reach the ceiling."""
FD_RELAX_INTERVAL = 1.0
"""Seconds between two counts while the fd budget binds, to lift it once the pressure is gone."""

_UNSET: Any = object()


def default_fd_ceiling() -> int | None:
    """The file descriptor number from which new connections shed old ones: the soft
    ``RLIMIT_NOFILE`` minus a reserve (1/16 of it, at least 32) for the registry, logs, TLS files
    and the other listeners. None when the limit is unknown or unlimited."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    return max(1, soft - max(32, soft // 16))


def count_open_fds() -> int | None:
    """The process's open file descriptors (Linux: ``/proc/self/fd``), or None if unknown."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # listing it takes one
    except OSError:
        return None


class _RateLimitedWarning:
    """At most one WARNING per interval; what happened meanwhile is summed up in the next one."""

    __slots__ = ("_clock", "_interval", "_last", "_logger", "suppressed")

    def __init__(self, logger: logging.Logger, interval: float, clock: Callable[[], float]) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._last: float | None = None
        self.suppressed = 0

    def __call__(self, message: str, *args: object) -> None:
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            self.suppressed += 1
            return
        if self.suppressed:
            message += " (%d more such events since the last warning)"
            args = (*args, self.suppressed)
        self._logger.warning(message, *args)
        self._last = now
        self.suppressed = 0


class Admission:
    """The admission policy of one listener (see the module docstring).

    Args:
        name: names the listener in warnings, e.g. ``"http 127.0.0.1:8080"`` (may be set later).
        max_connections: connections held at most (≥ 1).
        max_unestablished: of those, connections not yet established (≥ 1).
        fd_ceiling: a new connection whose fd is at or above this sheds an old one, as at
            ``max_connections``; default :func:`default_fd_ceiling`; None: no fd check.
        logger: where the warnings go (default ``methodhub.admission``).
        clock: seconds, for rate-limiting warnings and fd counts (default :func:`time.monotonic`).
        open_fds: counts the process's open fds, or None if it cannot (default: ``/proc/self/fd``).

    Raises:
        ValueError: a limit below 1.
    """

    def __init__(
        self,
        name: str,
        *,
        max_connections: int,
        max_unestablished: int,
        fd_ceiling: int | None = _UNSET,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
        open_fds: Callable[[], int | None] | None = None,
    ) -> None:
        for what, value in (("max_connections", max_connections), ("max_unestablished", max_unestablished)):
            if value < 1:
                raise ValueError(f"{what} must be at least 1, not {value!r}")
        self.name = name
        self.max_connections = max_connections
        self.max_unestablished = max_unestablished
        self.fd_ceiling = default_fd_ceiling() if fd_ceiling is _UNSET else fd_ceiling
        # Connection → close callback, oldest first (OrderedDict: O(1) pops at the front).
        self._unestablished: OrderedDict[Hashable, Callable[[], None]] = OrderedDict()
        self._established: OrderedDict[Hashable, Callable[[], None]] = OrderedDict()
        self._busy: set[Hashable] = set()  # established connections with work in progress
        self.shed = 0
        """Connections shed so far (closed to make room)."""
        self.refused = 0
        """New connections refused so far (every held connection was busy)."""
        self._warn = _RateLimitedWarning(logger or log, WARNING_INTERVAL, clock)
        self._clock = clock
        self._open_fds = open_fds or count_open_fds
        self._fd_cap: int | None = None  # connections the fds allow while under fd pressure
        self._fd_measured_at = -float("inf")

    # -- what listeners call -----------------------------------------------------------------------

    def register(self, conn: Hashable, close: Callable[[], None], fd: int | None = None) -> bool:
        """Admit a new connection (as unestablished), shedding others if the listener is full.

        Args:
            conn: the connection (any hashable object, compared by identity in practice).
            close: closes ``conn`` now; called at most once, when ``conn`` is shed.
            fd: the connection's file descriptor, for the fd ceiling (None: not checked).

        Returns:
            False when the listener is full of busy connections: close ``conn`` yourself (it is
            not registered).
        """
        if len(self._unestablished) >= self.max_unestablished:
            self._shed_oldest_unestablished()
            self._report(f"more than {self.max_unestablished} connections not yet established")
        cap = self.max_connections
        if fd is not None and self.fd_ceiling is not None:
            fd_cap = self._fd_cap
            if fd >= self.fd_ceiling or fd_cap is not None:
                fd_cap = self._fd_budget(fd)
            if fd_cap is not None and fd_cap < cap:
                cap = fd_cap
        count = len(self._unestablished) + len(self._established)
        if count >= cap:
            if cap == self.max_connections:
                reason = f"at the cap of {cap} connections"
            else:
                reason = f"near the file descriptor limit (room for {cap} connections; see `ulimit -n`)"
            shed = 0
            while shed <= count - cap and (self._shed_oldest_unestablished() or self._shed_oldest_idle()):
                shed += 1
            if not shed:
                self.refused += 1
                self._report(reason + ", every connection busy: a new connection was refused")
                return False
            self._report(reason)
        self._unestablished[conn] = close
        return True

    def _fd_budget(self, fd: int) -> int | None:
        """How many connections this listener may hold without taking fds past the ceiling:
        the ceiling minus the fds held by everything else (measured; other listeners too).

        Measured when a new connection's fd reaches the ceiling (at most every
        :data:`FD_MEASURE_INTERVAL` s), and while the budget binds, again every
        :data:`FD_RELAX_INTERVAL` s, so that it lifts once the pressure is gone. A fd number alone
        cannot tell: closes leave holes below the ceiling that new connections fill first.
        """
        assert self.fd_ceiling is not None
        now = self._clock()
        elapsed = now - self._fd_measured_at
        interval = FD_MEASURE_INTERVAL if fd >= self.fd_ceiling else FD_RELAX_INTERVAL
        if elapsed < interval:
            return self._fd_cap
        self._fd_measured_at = now
        open_fds = self._open_fds()
        if open_fds is None:  # unknown (no /proc, or even listing it hit the limit)
            if fd < self.fd_ceiling:
                return self._fd_cap  # no news: keep the budget
            open_fds = fd + 1  # at least: a new fd is the lowest free one
        held = len(self._unestablished) + len(self._established) + 1  # + the new one
        budget = max(1, self.fd_ceiling - max(0, open_fds - held))
        self._fd_cap = budget if budget < self.max_connections else None
        return self._fd_cap

    def mark_established(self, conn: Hashable) -> None:
        """``conn`` proved itself (a completed request, an accepted CONNECT); it starts idle."""
        close = self._unestablished.pop(conn, None)
        if close is not None:
            self._established[conn] = close

    def mark_busy(self, conn: Hashable) -> None:
        """``conn`` (established) has work in progress: it is not shed. No-op otherwise."""
        if conn in self._established:
            self._busy.add(conn)

    def mark_idle(self, conn: Hashable) -> None:
        """``conn`` has nothing in progress (any more): it may be shed."""
        self._busy.discard(conn)

    def release(self, conn: Hashable) -> None:
        """``conn`` is gone: forget it, whatever its state."""
        if self._established.pop(conn, None) is not None:
            self._busy.discard(conn)
        else:
            self._unestablished.pop(conn, None)

    # -- what operators and tests read -------------------------------------------------------------

    @property
    def count(self) -> int:
        """Connections held."""
        return len(self._unestablished) + len(self._established)

    @property
    def unestablished_count(self) -> int:
        """Connections held that are not yet established."""
        return len(self._unestablished)

    @property
    def idle_count(self) -> int:
        """Established connections with nothing in progress."""
        return len(self._established) - len(self._busy)

    @property
    def busy_count(self) -> int:
        """Established connections with work in progress."""
        return len(self._busy)

    def __contains__(self, conn: Hashable) -> bool:
        return conn in self._unestablished or conn in self._established

    # -- internals -------------------------------------------------------------------------------------

    def _shed_oldest_unestablished(self) -> bool:
        if not self._unestablished:
            return False
        self._shed(*self._unestablished.popitem(last=False))
        return True

    def _shed_oldest_idle(self) -> bool:
        established, busy = self._established, self._busy
        if len(busy) >= len(established):
            return False  # none idle
        while True:  # ends: one is idle; each busy one passed over goes to the back (amortized O(1))
            conn, close = established.popitem(last=False)
            if conn not in busy:
                self._shed(conn, close)
                return True
            established[conn] = close

    def _shed(self, conn: Hashable, close: Callable[[], None]) -> None:
        self.shed += 1
        try:
            close()
        except Exception:  # a close callback must not stop admission; say so once
            log.exception("%s: closing a shed connection failed", self.name)

    def _report(self, reason: str) -> None:
        self._warn(
            "%s: %s; shedding the oldest unestablished or idle connections (%d shed, %d refused so far). "
            "See 'Limits' in docs/operations.md.",
            self.name,
            reason,
            self.shed,
            self.refused,
        )


_ACCEPT_OUT_OF_RESOURCES = "socket.accept() out of system resource"
"""The message asyncio's event loop passes to its exception handler when accept() fails with
EMFILE, ENFILE, ENOBUFS or ENOMEM (it then retries the listener one second later)."""


def log_accept_errors(loop: asyncio.AbstractEventLoop, logger: logging.Logger | None = None) -> None:
    """Turn asyncio's "socket.accept() out of system resource" ERROR with a traceback (thousands
    per second under a fd flood) into one rate-limited WARNING; other contexts go to the handler
    that was installed before (or the default). Idempotent per loop.

    Args:
        loop: the running loop.
        logger: where the warning goes (default ``methodhub.admission``).
    """
    previous = loop.get_exception_handler()
    if getattr(previous, "_methodhub_accept_errors", False):
        return
    warn = _RateLimitedWarning(logger or log, WARNING_INTERVAL, time.monotonic)

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == _ACCEPT_OUT_OF_RESOURCES:
            exc = context.get("exception")
            warn(
                "cannot accept new connections: %s. The connections already open are still served; "
                "raise the fd limit (`ulimit -n`) or lower the connection limits (docs/operations.md, "
                "'Limits').",
                exc,
            )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler._methodhub_accept_errors = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)
