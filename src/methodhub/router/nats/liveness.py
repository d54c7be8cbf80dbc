"""Which calls between nodes are still alive: bookkeeping without I/O, clocks or asyncio.

A node that dies cannot answer for its calls. So the calling node asks (*probes*) the device's call
subject about every remote call older than :data:`PROBE_INTERVAL` once per interval; an answer
"still held" is the serving node's heartbeat for that call. A call is failed with
``DEVICE_DISCONNECTED`` when the answer is "no" or no answer came by the next check, so a dead or
unreachable node costs a caller at most about ``3 × PROBE_INTERVAL`` (3 s), not the response timeout.

:class:`Liveness` keeps the tables; the router feeds it what happened and the time (``now``, the
event loop's clock), and carries out what :meth:`Liveness.check` returns: :class:`Probe` (publish a
question) and :class:`Fail` (complete a reply with an error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

from methodhub.errors import ErrorKind, HubError
from methodhub.router.nats.wire import target_of_subject

PROBE_INTERVAL = 1.0
"""Seconds between checks of remote calls in flight (and of calls this node serves for others)."""
READY_REPROBE = 1.0
"""While a call waits for its device to connect, ask again this often (a missed readiness message,
e.g. while NATS servers of a cluster propagate interest, costs at most this long)."""
SERVE_GRACE = 2.0
"""A call this node serves for another node is forgotten this long after its response timeout (the
caller has answered it with a timeout by then)."""


class Reply(Protocol):
    """What the bookkeeping asks of a call's reply: whether someone completed it already."""

    def done(self) -> bool: ...


R = TypeVar("R", bound=Reply)


class RemoteCall(Generic[R]):
    """A call this node sent to another node, until it is answered."""

    __slots__ = ("probe", "reply", "started", "subject")

    def __init__(self, reply: R, subject: bytes, started: float) -> None:
        self.reply = reply
        self.subject = subject
        """The device's call subject: where probes about this call go."""
        self.started = started
        self.probe = 0
        """The sequence number of an unanswered probe about this call (0: none)."""


@dataclass(frozen=True, slots=True)
class Probe:
    """Ask ``subject`` whether the node serving call ``call`` still holds it; tell
    :meth:`Liveness.probe_sent` the probe's number once it is on its way."""

    call: int
    subject: bytes


@dataclass(frozen=True, slots=True)
class Fail(Generic[R]):
    """Complete ``reply`` with ``error`` (unless it was completed meanwhile)."""

    reply: R
    error: HubError


def reask_after(deadline: float, now: float, interval: float = READY_REPROBE) -> float | None:
    """How long a wait for a device to connect sleeps before asking again whether it is ready:
    until ``deadline``, at most ``interval``; None once the deadline has passed (give up)."""
    remaining = deadline - now
    if remaining <= 0:
        return None
    return min(remaining, interval)


class Liveness(Generic[R]):
    """The calls in flight between this node and others, and what to do about them as time passes.

    ``calls`` and ``serving`` are filled and emptied by the router on the call path directly (a
    dict operation each, no method call), so they are changed in place, never replaced; everything
    slower goes through the methods.
    """

    def __init__(self, probe_interval: float = PROBE_INTERVAL) -> None:
        self.probe_interval = probe_interval
        self.calls: Final[dict[int, RemoteCall[R]]] = {}
        """Calls this node sent to others, by sequence number, in the order they were sent (the
        router adds one when it sends a call and pops it when the answer comes)."""
        self.serving: Final[dict[bytes, tuple[R, float]]] = {}
        """Calls this node serves for others, by reply subject: their reply and when to forget it
        (the router adds one when a call arrives and pops it when it answers)."""
        self._probes: dict[int, int] = {}
        """Unanswered probes: probe number → call number."""
        self._ready_asks: dict[int, tuple[str, float]] = {}
        """Unanswered "is the device ready?" questions: number → (target, when asked)."""

    # -- calls this node sent ---------------------------------------------------------------------------

    def probe_sent(self, call: int, probe: int) -> None:
        """The probe :meth:`check` asked for about ``call`` went out as number ``probe``."""
        remote = self.calls.get(call)
        if remote is not None:
            remote.probe = probe
            self._probes[probe] = call

    def probe_answered(self, probe: int, held: bool) -> Fail[R] | None:
        """The answer to probe ``probe``: the serving node still ``held`` the call (a heartbeat:
        the call lives on) or not (the call fails now). Stale answers do nothing."""
        n = self._probes.pop(probe, 0)
        remote = self.calls.get(n)
        if remote is None:
            return None
        if held:
            remote.probe = 0
            return None
        return self._lose(n, remote, "the node it was connected to let it go")

    def forget_probe(self, probe: int) -> None:
        """A call with an unanswered probe was answered (the router popped it from ``calls``)."""
        self._probes.pop(probe, None)

    def drop_all(self) -> list[R]:
        """Forget every call this node sent (NATS lost, or the node stopping): their replies."""
        replies = [remote.reply for remote in self.calls.values()]
        self.calls.clear()  # in place: the router holds this table (see the class)
        self._probes.clear()
        return replies

    # -- readiness questions --------------------------------------------------------------------------

    def ready_asked(self, number: int, target: str, now: float) -> None:
        """Question ``number`` "is ``target`` ready?" went out."""
        self._ready_asks[number] = (target, now)

    def ready_answered(self, number: int) -> str | None:
        """The target question ``number`` was about, or None if it was forgotten (or unknown)."""
        asked = self._ready_asks.pop(number, None)
        return None if asked is None else asked[0]

    # -- the periodic check ---------------------------------------------------------------------------

    def check(self, now: float) -> list[Probe | Fail[R]]:
        """Once per :data:`PROBE_INTERVAL`: probe remote calls older than that, fail those whose
        previous probe went unanswered, expire served calls past their deadline, and forget
        readiness questions nobody answered."""
        actions: list[Probe | Fail[R]] = []
        oldest = now - self.probe_interval
        calls = self.calls
        for n, remote in list(calls.items()):
            if remote.reply.done():  # answered by the engine meanwhile (timeout, cancelled)
                del calls[n]
                if remote.probe:
                    self._probes.pop(remote.probe, None)
                continue
            if remote.started > oldest:
                break  # insertion order is start order: the rest are younger
            if remote.probe:  # asked a whole interval ago, no answer: its node is gone
                actions.append(self._lose(n, remote, "its hub node stopped answering"))
                continue
            actions.append(Probe(n, remote.subject))
        for reply_subject, (reply, deadline) in list(self.serving.items()):
            if deadline <= now:
                del self.serving[reply_subject]
                if not reply.done():
                    actions.append(Fail(reply, HubError(ErrorKind.CALL_TIMEOUT)))
        for number, (_target, asked) in list(self._ready_asks.items()):
            if asked > oldest:
                break
            del self._ready_asks[number]  # answered by nobody (a node was letting the device go)
        return actions

    def _lose(self, n: int, remote: RemoteCall[R], why: str) -> Fail[R]:
        """Forget call ``n``: its node no longer holds it."""
        self.calls.pop(n, None)
        if remote.probe:
            self._probes.pop(remote.probe, None)
        target = target_of_subject(remote.subject)
        error = HubError(
            ErrorKind.DEVICE_DISCONNECTED, f"Device '{target}' disconnected before it answered ({why})."
        )
        return Fail(remote.reply, error)
