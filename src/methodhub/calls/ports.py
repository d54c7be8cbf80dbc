"""The ports the call engine owns: what it needs from the world, said in its own terms.

The engine reaches a device through a :class:`CallCarrier` and tells an unknown device from an
offline one through an :class:`IdentityLookup`. Whoever implements them (the routers in
:mod:`methodhub.router`, the registry) depends on this module; the engine depends on nothing of
theirs.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from methodhub.calls.model import Call, CallOrigin, CallOutcome


class CallCarrier(Protocol):
    """Carries a call to the node holding a ready session for its target (this one or another)."""

    def dispatch(self, call: Call, reply: asyncio.Future[CallOutcome]) -> None:
        """Send ``call`` to the node holding a ready session for ``call.target``.

        Completes ``reply`` with the device's :class:`CallOutcome`, or with a
        :class:`~methodhub.errors.HubError`: ``DEVICE_OFFLINE`` when no node holds a ready session
        right now (the engine decides whether to wait), ``DEVICE_DISCONNECTED`` when the device went
        away mid-call. Never blocks; never imposes the response timeout (the engine does). The
        caller owns ``reply`` and may complete or cancel it first; the carrier then drops the
        device's late answer.
        """
        ...

    async def wait_ready(self, target: str, timeout: float) -> bool:
        """Wait until some node holds a ready session for ``target``, at most ``timeout`` s.

        Returns True if one appeared (or already exists), False on timeout. A True answer is a
        hint, not a promise: the engine dispatches again and may find the device gone.
        """
        ...


class IdentityLookup(Protocol):
    """The one registry question the engine asks: does this device (or module) exist?"""

    async def get_identity(self, device_id: str, module_id: str | None = None) -> Any | None: ...


class CallRecorder(Protocol):
    """Where the engine tells each ended call it ran for a front door (the call history,
    :mod:`methodhub.calls.history`). Never blocks, never raises: the call's answer does not wait."""

    def record(
        self,
        call: Call,
        origin: CallOrigin,
        started: float,
        outcome: CallOutcome | None,
        error: BaseException | None,
    ) -> None:
        """``call`` (made by ``origin``, arrived at epoch ``started``) ended with ``outcome`` or
        ``error`` (None for both: abandoned by its caller)."""
        ...
