"""Device sessions: the hub's memory of one device identity across its connections.

A :class:`DeviceSession` owns the device's subscriptions, its calls in flight (request id → the
engine's reply future), its readiness, and the :class:`~methodhub.gateway.channel.DeviceChannel`
currently carrying it. It is the :class:`~methodhub.router.presence.CallLink` the router delivers calls
to, and the :class:`~methodhub.gateway.dialect.DeviceView` a dialect sees. Everything else reads
it through properties and changes it through its methods. The :class:`SessionTable` keys sessions
by identity, so a second connection of the same device takes the session over.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from methodhub.calls.model import Call, CallOutcome
from methodhub.errors import ErrorKind, HubError
from methodhub.metrics import Metrics
from methodhub.router.presence import Presence

if TYPE_CHECKING:
    from methodhub.gateway.channel import DeviceChannel
    from methodhub.gateway.dialect import Dialect, Principal

log = logging.getLogger("methodhub.gateway")


class SessionStore(Protocol):
    """Where persistent (CleanSession=0) subscriptions are kept (the registry).

    ``save_session`` (which stores a copy) and ``delete_session`` return once the change is
    queued; ``load_session`` sees changes queued and not yet written.
    """

    async def load_session(self, client_id: str) -> dict[str, int] | None: ...

    def save_session(self, client_id: str, subscriptions: Mapping[str, int]) -> None: ...

    def delete_session(self, client_id: str) -> None: ...


class DeviceSession:
    """One device identity's session. See the module docstring."""

    __slots__ = (
        "__weakref__",
        "_channel",
        "_pending",
        "_subscriptions",
        "_table",
        "connected_since",
        "dialect",
        "dialect_state",
        "key",
        "persistent",
        "principal",
        "ready",
    )

    def __init__(
        self,
        table: SessionTable,
        principal: Principal,
        persistent: bool,
        subscriptions: dict[str, int],
    ) -> None:
        self._table = table
        self.principal = principal
        self.key = principal.key
        self.dialect: Dialect = principal.dialect
        self.persistent = persistent
        self._subscriptions = subscriptions
        self._pending: dict[str, asyncio.Future[CallOutcome]] = {}
        self._channel: DeviceChannel | None = None
        self.connected_since: float | None = None
        """Epoch seconds since a connection carries the session, or None."""
        self.ready = False
        """Whether calls can be delivered now (announced to the router)."""
        self.dialect_state: object | None = None
        """The dialect's own per-session state (see :class:`~methodhub.gateway.dialect.DeviceView`)."""

    # -- what others read -------------------------------------------------------------------------------

    @property
    def subscriptions(self) -> Mapping[str, int]:
        """Topic filter → granted QoS (change them with :meth:`update_subscriptions`)."""
        return self._subscriptions

    @property
    def channel(self) -> DeviceChannel | None:
        """The connection carrying the session now, or None."""
        return self._channel

    @property
    def max_in_flight(self) -> int:
        return self._table.max_in_flight

    def in_flight(self) -> int:
        """Calls delivered and not answered yet."""
        return len(self._pending)

    def is_pending(self, rid: str) -> bool:
        return rid in self._pending

    # -- calls (CallLink) -----------------------------------------------------------------------------

    def submit(self, call: Call, reply: asyncio.Future[CallOutcome]) -> None:
        """Deliver ``call`` on the current channel; see :class:`~methodhub.router.presence.CallLink`."""
        channel = self._channel
        if channel is None or not self.ready:
            reply.set_exception(HubError(ErrorKind.DEVICE_OFFLINE))
            return
        pending = self._pending
        if len(pending) >= self._table.max_in_flight:
            reply.set_exception(
                HubError(
                    ErrorKind.TOO_MANY_CALLS_IN_FLIGHT,
                    f"Device '{self.key}' already has {len(pending)} calls in flight; retry later.",
                )
            )
            return
        try:
            rid = channel.deliver(call, next(self._table.sequence))
        except HubError as exc:
            reply.set_exception(exc)
            return
        if self._channel is not channel:  # the channel failed while delivering and has ended
            if not reply.done():
                reply.set_exception(
                    HubError(
                        ErrorKind.DEVICE_DISCONNECTED, f"Device '{self.key}' disconnected before it answered."
                    )
                )
            return
        pending[rid] = reply
        reply.add_done_callback(lambda _reply: pending.pop(rid, None))

    def complete(self, rid: str, result: CallOutcome | HubError) -> None:
        """The device answered request ``rid``. Unknown or finished ids are dropped and counted."""
        reply = self._pending.pop(rid, None)
        if reply is None or reply.done():
            self.count_stray()
            log.debug("stray response dropped", extra={"ctx": {"device": self.key, "rid": rid}})
            return
        if isinstance(result, HubError):
            reply.set_exception(result)
        else:
            reply.set_result(result)

    def count_stray(self) -> None:
        self._table.metrics.stray_responses.inc()

    def count_telemetry(self) -> None:
        self._table.metrics.telemetry.inc()

    # -- subscriptions and readiness --------------------------------------------------------------------

    def update_subscriptions(self, granted: Mapping[str, int], removed: Iterable[str] = ()) -> bool:
        """Add (or re-grant) ``granted`` and drop ``removed``; persist (if CleanSession=0) and
        re-evaluate readiness once if anything changed. Returns whether anything changed."""
        subscriptions = self._subscriptions
        changed = False
        for topic_filter, qos in granted.items():
            if subscriptions.get(topic_filter) != qos:
                subscriptions[topic_filter] = qos
                changed = True
        for topic_filter in removed:
            if subscriptions.pop(topic_filter, None) is not None:
                changed = True
        if changed:
            if self.persistent:
                self._table.persist(self)
            self.readiness_changed()
        return changed

    def readiness_changed(self) -> None:
        """Ask the channel again whether the device can take calls; tell the router if that changed."""
        channel = self._channel
        ready = channel is not None and channel.ready_for_calls()
        if ready == self.ready:
            return
        self.ready = ready
        router = self._table.router
        if ready:
            router.announce(self.key, self)
        else:
            router.withdraw(self.key, self)

    # -- channels ---------------------------------------------------------------------------------------

    def attach(self, channel: DeviceChannel) -> None:
        """Carry this session on ``channel``; an older channel is closed (takeover).

        Calls in flight stay pending: the device may answer them on its new connection (paho
        re-sends an un-acknowledged response after reconnecting).
        """
        old = self._channel
        self._channel = channel
        self.connected_since = time.time()
        if old is not None and old is not channel:
            old.close_taken_over()
        self._table.router.session_opened(self.key, self)
        self._table.connection_changed(self.key, True)
        self.ready = False
        self.readiness_changed()

    def detach(self, channel: DeviceChannel, reason: str) -> None:
        """``channel`` ended. If it was the current one, the device is gone: calls in flight fail
        at once with ``DEVICE_DISCONNECTED`` and the session leaves the table (its subscriptions
        live on in the registry if it is persistent)."""
        if self._channel is not channel:
            return
        self._channel = None
        self.connected_since = None
        self.readiness_changed()
        # Answer the calls in flight before telling the router: in a cluster the answers to other
        # nodes then go out before (in the same write as) the device's subscription ends.
        self.fail_pending(f"Device '{self.key}' disconnected before it answered ({reason}).")
        self._table.router.session_closed(self.key, self)
        self._table.remove(self)
        if self._table.get(self.key) is None:  # not taken over by a newer session
            self._table.connection_changed(self.key, False)

    def fail_pending(self, reason: str) -> None:
        """Fail every call in flight with ``DEVICE_DISCONNECTED`` (``reason`` is its message)."""
        pending, self._pending = self._pending, {}
        for reply in pending.values():
            if not reply.done():
                reply.set_exception(HubError(ErrorKind.DEVICE_DISCONNECTED, reason))

    def hand_over(self, successor: DeviceSession) -> None:
        """A clean session replaces this one: the channel (closed when ``successor`` is attached to
        the new connection) moves to ``successor``, and this session is no longer ready."""
        successor._channel, self._channel = self._channel, None
        self.readiness_changed()

    def abandon(self) -> None:
        """The connection this session was opened for ended before carrying it (before CONNACK).

        A session some connection carries already (the one :meth:`SessionTable.open` returned for
        CleanSession=0) stays as it is. A new one leaves the table; if it took the device's older
        connection over (:meth:`hand_over`), that connection is closed as the takeover would have
        closed it: left open, it would carry no session and the device could not be called.
        """
        if self.connected_since is not None:
            return
        channel, self._channel = self._channel, None
        self._table.remove(self)
        if channel is not None:
            channel.close_taken_over()

    def release(self, reason: str) -> None:
        """The device is now ready on another cluster node
        (:class:`~methodhub.router.presence.ReleasableLink`): close its connection here, as a
        takeover on this node would."""
        channel = self._channel
        if channel is not None:
            log.debug("releasing session", extra={"ctx": {"device": self.key, "reason": reason}})
            channel.close_taken_over()


class SessionTable:
    """All sessions of this node, keyed by identity key.

    Args:
        router: told when sessions become ready or stop being ready.
        store: persists CleanSession=0 subscriptions.
        metrics: counts stray responses.
        max_in_flight: calls a single device may have pending at once.
    """

    def __init__(
        self, router: Presence, store: SessionStore, metrics: Metrics, max_in_flight: int = 64
    ) -> None:
        self.router = router
        self.store = store
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.sequence = itertools.count(1)
        self._sessions: dict[str, DeviceSession] = {}
        self._keys_by_device: dict[str, set[str]] = {}
        """device id → keys of the sessions of that device and its modules (registry changes name a
        device; scanning every session for each change would cost O(sessions))."""
        self._opening: dict[str, list[object]] = {}
        self.watchers: list[Callable[[str, bool], None]] = []
        """Told ``(key, connected)`` when a session gets or loses its connection (the console)."""

    def connection_changed(self, key: str, connected: bool) -> None:
        for watcher in self.watchers:
            watcher(key, connected)

    def __len__(self) -> int:
        return len(self._sessions)

    def connected_keys(self) -> list[str]:
        """The keys of the sessions that have a connection on this node now."""
        return [key for key, session in self._sessions.items() if session.channel is not None]

    @contextlib.asynccontextmanager
    async def opening(self, key: str) -> AsyncIterator[None]:
        """Held by a connection from opening ``key``'s session until it is attached (CONNACK sent).

        Opening a session awaits the registry (and, in a cluster, the router); without this, two
        simultaneous CONNECTs of one identity could each open a session and both stay connected.
        """
        entry = self._opening.get(key)
        if entry is None:
            entry = self._opening[key] = [asyncio.Lock(), 0]
        lock: asyncio.Lock = entry[0]  # type: ignore[assignment]
        entry[1] += 1  # type: ignore[operator]
        try:
            async with lock:
                yield
        finally:
            entry[1] -= 1  # type: ignore[operator]
            if not entry[1] and self._opening.get(key) is entry:
                del self._opening[key]

    def get(self, key: str) -> DeviceSession | None:
        return self._sessions.get(key)

    def sessions_of(self, device_id: str) -> list[DeviceSession]:
        """The sessions of a device and of its modules."""
        sessions = self._sessions
        return [sessions[k] for k in self._keys_by_device.get(device_id, ()) if k in sessions]

    async def open(
        self, principal: Principal, clean_start: bool, persistent: bool
    ) -> tuple[DeviceSession, bool]:
        """The session a newly authenticated connection will carry, and MQTT's session-present flag.

        ``clean_start``: discard any previous session state (MQTT 3.1.1 CleanSession=1, MQTT 5 Clean
        Start). ``persistent``: keep the state after this connection ends (CleanSession=0, or a v5
        Session Expiry Interval > 0).
        """
        key = principal.key
        existing = self._sessions.get(key)
        if existing is not None and not clean_start and existing.dialect is principal.dialect:
            existing.principal = principal
            existing.persistent = persistent
            if not persistent:
                self._forget_persisted(key)
            return existing, True
        if existing is not None:
            existing.fail_pending(f"Device '{key}' started a clean session on a new connection.")
        stored: dict[str, int] | None = None
        if clean_start:
            self._forget_persisted(key)
        else:  # a change this node queued a moment ago counts, written or not
            stored = await self.store.load_session(key)
        subscriptions = dict(stored or {})
        subscriptions.update(principal.dialect.initial_subscriptions(principal))
        session = DeviceSession(self, principal, persistent, subscriptions)
        if existing is not None:
            # Calls delivered to it while the stored session was loading fail too (the old
            # session object leaves the table: nothing would answer them).
            existing.fail_pending(f"Device '{key}' started a clean session on a new connection.")
            # The old connection keeps its session object until it is closed below (attach).
            existing.hand_over(session)
        self._sessions[key] = session
        self._keys_by_device.setdefault(principal.device_id, set()).add(key)
        if persistent and stored is None and subscriptions:
            self.persist(session)
        return session, stored is not None

    def remove(self, session: DeviceSession) -> None:
        key = session.key
        if self._sessions.get(key) is session:
            del self._sessions[key]
            device_id = session.principal.device_id
            keys = self._keys_by_device.get(device_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys_by_device[device_id]

    def persist(self, session: DeviceSession) -> None:
        """Queue storing the session's subscriptions (the store batches the writes)."""
        self.store.save_session(session.key, session.subscriptions)

    def _forget_persisted(self, key: str) -> None:
        self.store.delete_session(key)

    def connection_state(self, key: str) -> tuple[bool, float | None]:
        session = self._sessions.get(key)
        if session is None or session.channel is None:
            return False, None
        return True, session.connected_since
