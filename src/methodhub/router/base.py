"""How a call reaches the node that holds the device's connection.

The engine asks a :class:`Router` to *dispatch* a call and, when the device is offline, to *wait*
until it is ready; the gateway *announces* which devices are ready on this node. The engine never
learns whether the device is in this process or on another machine.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import Protocol

from methodhub.calls.model import Call, CallOutcome
from methodhub.errors import HubError


class RouterUnavailable(RuntimeError):
    """:meth:`Router.start` could not reach what carries calls between nodes (e.g. NATS); the
    message says what is missing and how to provide it."""


class CallLink(Protocol):
    """Something that can deliver a call to one connected device: the device's session."""

    def submit(self, call: Call, reply: asyncio.Future[CallOutcome]) -> None:
        """Deliver ``call`` now and complete ``reply`` with the device's answer later.

        The caller owns ``reply`` and may complete it first (timeout, cancellation); the link must
        then forget the call and drop any late answer. The link completes ``reply`` with a
        :class:`~methodhub.errors.HubError` when the device goes away before answering.
        """
        ...


class ReleasableLink(CallLink, Protocol):
    """A link that can be let go when the device's session moved to another node (clusters)."""

    def release(self, reason: str) -> None:
        """The target connected to another node: close the connection carrying it here (its calls
        in flight fail with ``DEVICE_DISCONNECTED``, as in a takeover on one node)."""
        ...


class Router(ABC):
    """Carries calls from the engine to the node holding the target's session."""

    spans_nodes: bool = False
    """Whether other nodes may hold sessions (then :meth:`remote_connection_state` is worth asking)."""

    @abstractmethod
    def dispatch(self, call: Call, reply: asyncio.Future[CallOutcome]) -> None:
        """Send ``call`` to the node holding a ready session for ``call.target``.

        Completes ``reply`` with the device's :class:`CallOutcome`, or with a
        :class:`~methodhub.errors.HubError`: ``DEVICE_OFFLINE`` when no node holds a ready session
        right now (the engine decides whether to wait), ``DEVICE_DISCONNECTED`` when the device went
        away mid-call. Never blocks; never imposes the response timeout (the engine does).
        """

    @abstractmethod
    async def wait_ready(self, target: str, timeout: float) -> bool:
        """Wait until some node announces a ready session for ``target``, at most ``timeout`` s.

        Returns True if one was announced (or already exists), False on timeout. A True answer is a
        hint, not a promise: the engine dispatches again and may find the device gone.
        """

    @abstractmethod
    def announce(self, target: str, link: CallLink) -> None:
        """Record that this node holds a ready session for ``target``; it replaces any older one.
        Called by the gateway when a session becomes ready (e.g. subscribed to method requests)."""

    @abstractmethod
    def withdraw(self, target: str, link: CallLink) -> None:
        """Forget ``link`` for ``target``, unless a newer link has replaced it meanwhile (a device
        that reconnected announces its new session before the old one finishes closing)."""

    def session_opened(self, target: str, link: CallLink) -> None:  # noqa: B027 - optional hook
        """A connection now carries ``target``'s session on this node (ready or not yet). A router
        spanning several nodes tells the others, which close their older connection of ``target``
        (:meth:`ReleasableLink.release`): MQTT's session takeover, across nodes."""

    def session_closed(self, target: str, link: CallLink) -> None:  # noqa: B027 - optional hook
        """The connection carrying ``link`` (``target``'s session) ended on this node."""

    def reachable(self, target: str) -> Awaitable[None] | None:
        """Make calls for ``target`` find this node; called before the device is told it is
        connected (CONNACK), so a backend that calls as soon as the device says "connected" does not
        see it offline. Returns something to await until the other nodes can see it, or None when
        there is nothing to wait for (one node)."""
        return None

    async def remote_connection_state(self, target: str) -> tuple[bool, float | None]:
        """Whether another node holds a connection of ``target``, and since when (epoch seconds).
        One node: never. Used for the registry's ``connectionState``, not on the call path."""
        return False, None

    def abandon(self, target: str) -> None:  # noqa: B027 - optional hook
        """Undo :meth:`reachable` for a connection that closed before carrying ``target``'s session."""

    def is_local(self, target: str) -> bool:  # pragma: no cover - trivial default
        """Whether this node itself holds a ready session for ``target``."""
        return False

    def stop_serving(self, error: HubError) -> None:  # noqa: B027 - optional hook
        """The node is stopping: calls it carries for *other* nodes end now with ``error``, and
        calls arriving from them are answered so until its devices are gone (the engine answers
        this node's own callers, :meth:`~methodhub.calls.engine.CallEngine.stop`)."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect to whatever carries calls between nodes (nothing for the local router)."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Disconnect; pending waiters are woken."""
