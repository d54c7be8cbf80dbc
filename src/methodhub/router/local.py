"""The in-process router: the default for a single node."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from methodhub.calls.model import Call, CallOutcome
from methodhub.errors import ErrorKind, HubError
from methodhub.router.base import Router
from methodhub.router.presence import CallLink, ReleasableLink


class LocalRouter(Router):
    """Routes calls to sessions held by this process.

    ``dispatch`` is a dict lookup and a direct call into the session: no tasks, no copies.
    """

    spans_nodes = False

    def __init__(self) -> None:
        self._links: dict[str, CallLink] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    # -- engine side (CallCarrier) --------------------------------------------------------------------

    def dispatch(self, call: Call, reply: asyncio.Future[CallOutcome]) -> None:
        link = self._links.get(call.target)
        if link is None:
            if not reply.done():
                reply.set_exception(HubError(ErrorKind.DEVICE_OFFLINE))
            return
        link.submit(call, reply)

    async def wait_ready(self, target: str, timeout: float) -> bool:
        if target in self._links:
            return True
        if timeout <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(target, [])
        waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(target, None)

    # -- gateway side (Presence) ----------------------------------------------------------------------

    def announce(self, target: str, link: CallLink) -> None:
        self._links[target] = link
        for waiter in self._waiters.pop(target, ()):
            if not waiter.done():
                waiter.set_result(None)

    def withdraw(self, target: str, link: CallLink) -> None:
        if self._links.get(target) is link:
            del self._links[target]

    def session_opened(self, target: str, link: ReleasableLink) -> None:
        """Nothing to do: no other node holds sessions."""

    def session_closed(self, target: str, link: ReleasableLink) -> None:
        """Nothing to do: no other node holds sessions."""

    def reachable(self, target: str) -> Awaitable[None] | None:
        return None  # calls find this node as soon as the session is announced

    def abandon(self, target: str) -> None:
        """Nothing to undo (:meth:`reachable` did nothing)."""

    async def remote_connection_state(self, target: str) -> tuple[bool, float | None]:
        return False, None  # there is no other node

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Nothing to connect to."""

    def stop_serving(self, error: HubError) -> None:
        """Nothing to do: this node carries no calls for other nodes."""

    async def stop(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        self._waiters.clear()
        self._links.clear()
