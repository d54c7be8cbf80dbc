"""A node's router: the engine's port, the gateway's presence, and a lifecycle.

The engine sees a router only as a :class:`~methodhub.calls.ports.CallCarrier` (*dispatch* a call,
*wait* until a device is ready); the gateway only as a :class:`~methodhub.router.presence.Presence`
(which devices this node holds and which are ready). The process that assembles a node
(:mod:`methodhub.process.hub`) sees the whole :class:`Router`: both, plus start and stop. Neither
side learns whether a device is in this process or on another machine.
"""

from __future__ import annotations

from typing import Protocol

from methodhub.calls.ports import CallCarrier
from methodhub.errors import HubError
from methodhub.router.presence import Presence


class RouterUnavailable(RuntimeError):
    """:meth:`Router.start` could not reach what carries calls between nodes (e.g. NATS); the
    message says what is missing and how to provide it."""


class Router(CallCarrier, Presence, Protocol):
    """What the process holds: a :class:`CallCarrier` for the engine and a :class:`Presence` for the
    gateway, which it starts before either uses it and stops after both are done."""

    async def start(self) -> None:
        """Connect to whatever carries calls between nodes (nothing for the local router); raises
        :class:`RouterUnavailable` when it cannot."""
        ...

    def stop_serving(self, error: HubError) -> None:
        """The node is stopping: calls it carries for *other* nodes end now with ``error``, and
        calls arriving from them are answered so until its devices are gone (the engine answers
        this node's own callers, :meth:`~methodhub.calls.engine.CallEngine.stop`)."""
        ...

    async def stop(self) -> None:
        """Disconnect; pending waiters are woken."""
        ...
