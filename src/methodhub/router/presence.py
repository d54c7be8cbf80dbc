"""The contract between the gateway and the router: presence one way, links the other.

The gateway tells the router's :class:`Presence` which devices this node holds (a connection carries
the session) and which are ready for calls; it hands over each session as a :class:`CallLink` (what
a call is delivered to) that is also a :class:`ReleasableLink` (what another node's takeover lets
go). The engine's side of the router is :class:`~methodhub.calls.ports.CallCarrier`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol

from methodhub.calls.model import Call, CallOutcome


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
    """A device's session as a router spanning several nodes needs it: it says since when the
    device is connected here, and can be let go when the device connected to another node."""

    @property
    def connected_since(self) -> float | None:
        """When the connection now carrying the session was accepted (epoch seconds, as
        :func:`time.time`), or None while none carries it. Reported to other nodes for the
        registry's ``connectionStateUpdatedTime``."""
        ...

    def release(self, reason: str) -> None:
        """The target connected to another node: close the connection carrying it here (its calls
        in flight fail with ``DEVICE_DISCONNECTED``, as in a takeover on one node)."""
        ...


class Presence(Protocol):
    """What the gateway tells the router about the devices this node holds, and asks it back."""

    spans_nodes: bool
    """Whether other nodes may hold sessions (then :meth:`remote_connection_state` is worth asking)."""

    def session_opened(self, target: str, link: ReleasableLink) -> None:
        """A connection now carries ``target``'s session on this node (ready or not yet). A router
        spanning several nodes tells the others, which close their older connection of ``target``
        (:meth:`ReleasableLink.release`): MQTT's session takeover, across nodes."""
        ...

    def session_closed(self, target: str, link: ReleasableLink) -> None:
        """The connection carrying ``link`` (``target``'s session) ended on this node."""
        ...

    def announce(self, target: str, link: CallLink) -> None:
        """Record that this node holds a ready session for ``target``; it replaces any older one.
        Called by the gateway when a session becomes ready (e.g. subscribed to method requests)."""
        ...

    def withdraw(self, target: str, link: CallLink) -> None:
        """Forget ``link`` for ``target``, unless a newer link has replaced it meanwhile (a device
        that reconnected announces its new session before the old one finishes closing)."""
        ...

    def reachable(self, target: str) -> Awaitable[None] | None:
        """Make calls for ``target`` find this node; called before the device is told it is
        connected (CONNACK), so a backend that calls as soon as the device says "connected" does not
        see it offline. Returns something to await until the other nodes can see it, or None when
        there is nothing to wait for (one node)."""
        ...

    def abandon(self, target: str) -> None:
        """Undo :meth:`reachable` for a connection that closed before carrying ``target``'s session."""
        ...

    async def remote_connection_state(self, target: str) -> tuple[bool, float | None]:
        """Whether another node holds a connection of ``target``, and since when (epoch seconds).
        One node: never. Used for the registry's ``connectionState``, not on the call path."""
        ...
