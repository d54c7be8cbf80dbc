"""Device sessions: the hub's memory of one device identity across its MQTT connections.

A :class:`DeviceSession` holds the device's subscriptions, its calls in flight (request id → the
engine's reply future) and the connection currently carrying it. It is the
:class:`~methodhub.router.base.CallLink` the router delivers calls to. The :class:`SessionTable`
keys sessions by identity, so a second connection of the same device takes the session over.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

from methodhub.calls.model import Call, CallOutcome
from methodhub.errors import ErrorKind, HubError
from methodhub.metrics import Metrics
from methodhub.router.presence import Presence

if TYPE_CHECKING:
    from methodhub.gateway.dialect import Dialect, Principal

log = logging.getLogger("methodhub.gateway")


class SessionTransport(Protocol):
    """What a session needs from the connection carrying it."""

    def publish(self, topic: str, payload: bytes) -> None: ...

    def close_taken_over(self) -> None: ...


class SessionStore(Protocol):
    """Where persistent (CleanSession=0) subscriptions are kept (the registry)."""

    async def load_session(self, client_id: str) -> dict[str, int] | None: ...

    async def save_session(self, client_id: str, subscriptions: dict[str, int]) -> None: ...

    async def delete_session(self, client_id: str) -> None: ...


class DeviceSession:
    """One device identity's session. See the module docstring."""

    __slots__ = (
        "__weakref__",
        "connected_since",
        "connection",
        "dialect",
        "dialect_state",
        "key",
        "pending",
        "persistent",
        "principal",
        "ready",
        "subscriptions",
        "table",
    )

    def __init__(
        self,
        table: SessionTable,
        principal: Principal,
        persistent: bool,
        subscriptions: dict[str, int],
    ) -> None:
        self.table = table
        self.principal = principal
        self.key = principal.key
        self.dialect: Dialect = principal.dialect
        self.persistent = persistent
        self.subscriptions = subscriptions
        self.pending: dict[str, asyncio.Future[CallOutcome]] = {}
        self.connection: SessionTransport | None = None
        self.connected_since: float | None = None
        self.ready = False
        self.dialect_state: object | None = None

    # -- calls (CallLink) -----------------------------------------------------------------------------

    def submit(self, call: Call, reply: asyncio.Future[CallOutcome]) -> None:
        """Deliver ``call`` on the current connection; see :class:`~methodhub.router.base.CallLink`."""
        connection = self.connection
        if connection is None or not self.ready:
            reply.set_exception(HubError(ErrorKind.DEVICE_OFFLINE))
            return
        if len(self.pending) >= self.table.max_in_flight:
            reply.set_exception(
                HubError(
                    ErrorKind.TOO_MANY_CALLS_IN_FLIGHT,
                    f"Device '{self.key}' already has {len(self.pending)} calls in flight; retry later.",
                )
            )
            return
        try:
            rid, topic, payload = self.dialect.encode_call(self, call, next(self.table.sequence))
        except HubError as exc:
            reply.set_exception(exc)
            return
        self.pending[rid] = reply
        reply.add_done_callback(lambda _reply: self.pending.pop(rid, None))
        connection.publish(topic, payload)

    def complete(self, rid: str, result: CallOutcome | HubError) -> None:
        """The device answered request ``rid``. Unknown or finished ids are dropped and counted."""
        reply = self.pending.pop(rid, None)
        if reply is None or reply.done():
            self.table.metrics.stray_responses.inc()
            log.debug("stray response dropped", extra={"ctx": {"device": self.key, "rid": rid}})
            return
        if isinstance(result, HubError):
            reply.set_exception(result)
        else:
            reply.set_result(result)

    # -- subscriptions --------------------------------------------------------------------------------

    def subscriptions_changed(self) -> None:
        """Persist (if CleanSession=0) and re-evaluate readiness after SUBSCRIBE/UNSUBSCRIBE."""
        if self.persistent:
            self.table.persist(self)
        self.update_readiness()

    def update_readiness(self) -> None:
        ready = self.connection is not None and self.dialect.is_ready(self)
        if ready == self.ready:
            return
        self.ready = ready
        if ready:
            self.table.router.announce(self.key, self)
        else:
            self.table.router.withdraw(self.key, self)

    # -- connections ----------------------------------------------------------------------------------

    def attach(self, connection: SessionTransport) -> None:
        """Carry this session on ``connection``; an older connection is closed (takeover).

        Calls in flight stay pending: the device may answer them on its new connection (paho
        re-sends an un-acknowledged response after reconnecting).
        """
        old = self.connection
        self.connection = connection
        self.connected_since = time.time()
        if old is not None and old is not connection:
            old.close_taken_over()
        self.table.router.session_opened(self.key, self)
        self.ready = False
        self.update_readiness()

    def detach(self, connection: SessionTransport, reason: str) -> None:
        """``connection`` ended. If it was the current one, the device is gone: calls in flight fail
        at once with ``DEVICE_DISCONNECTED`` and the session leaves the table (its subscriptions
        live on in the registry if it is persistent)."""
        if self.connection is not connection:
            return
        self.connection = None
        self.connected_since = None
        self.update_readiness()
        self.table.router.session_closed(self.key, self)
        pending, self.pending = self.pending, {}
        for reply in pending.values():
            if not reply.done():
                reply.set_exception(
                    HubError(
                        ErrorKind.DEVICE_DISCONNECTED,
                        f"Device '{self.key}' disconnected before it answered ({reason}).",
                    )
                )
        self.table.remove(self)

    def fail_pending(self, reason: str) -> None:
        pending, self.pending = self.pending, {}
        for reply in pending.values():
            if not reply.done():
                reply.set_exception(HubError(ErrorKind.DEVICE_DISCONNECTED, reason))

    def release(self, reason: str) -> None:
        """The device is now ready on another cluster node (:class:`~methodhub.router.ReleasableLink`):
        close its connection here, as a takeover on this node would."""
        connection = self.connection
        if connection is not None:
            log.debug("releasing session", extra={"ctx": {"device": self.key, "reason": reason}})
            connection.close_taken_over()


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
        self._unsaved: dict[str, dict[str, int] | None] = {}
        self._opening: dict[str, list[object]] = {}
        self._writer: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._sessions)

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
        elif key in self._unsaved:  # written by this node a moment ago, not yet in the store
            unsaved = self._unsaved[key]
            stored = dict(unsaved) if unsaved is not None else None
        else:
            stored = await self.store.load_session(key)
        subscriptions = dict(stored or {})
        subscriptions.update(principal.dialect.initial_subscriptions(principal))
        session = DeviceSession(self, principal, persistent, subscriptions)
        if existing is not None:
            # The old connection keeps its session object until it is closed below (attach).
            session.connection = existing.connection
            existing.connection = None
            existing.update_readiness()
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
        self._write_later(session.key, dict(session.subscriptions))

    def _forget_persisted(self, key: str) -> None:
        self._write_later(key, None)

    def _write_later(self, key: str, subscriptions: dict[str, int] | None) -> None:
        """Queue a session write (None = delete); one task writes the queue, latest state per key
        wins. A burst of connecting devices costs one task, not one per device."""
        self._unsaved[key] = subscriptions
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_unsaved())

    async def _write_unsaved(self) -> None:
        try:
            while self._unsaved:
                batch, self._unsaved = self._unsaved, {}
                for key, subscriptions in batch.items():
                    try:
                        if subscriptions is None:
                            await self.store.delete_session(key)
                        else:
                            await self.store.save_session(key, subscriptions)
                    except Exception as exc:
                        log.warning("could not persist the session of %s: %s", key, exc)
        finally:
            self._writer = None

    async def drain(self) -> None:
        """Wait for pending session writes (at shutdown)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    def connection_state(self, key: str) -> tuple[bool, float | None]:
        session = self._sessions.get(key)
        if session is None or session.connection is None:
            return False, None
        return True, session.connected_since
