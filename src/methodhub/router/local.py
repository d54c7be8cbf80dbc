"""The in-process router: the default for a single node."""

from __future__ import annotations

import asyncio

from methodhub.calls.model import Call, CallOutcome
from methodhub.errors import ErrorKind, HubError
from methodhub.router.base import CallLink, Router


class LocalRouter(Router):
    """Routes calls to sessions held by this process.

    ``dispatch`` is a dict lookup and a direct call into the session: no tasks, no copies.
    """

    def __init__(self) -> None:
        self._links: dict[str, CallLink] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

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

    def announce(self, target: str, link: CallLink) -> None:
        self._links[target] = link
        for waiter in self._waiters.pop(target, ()):
            if not waiter.done():
                waiter.set_result(None)

    def withdraw(self, target: str, link: CallLink) -> None:
        if self._links.get(target) is link:
            del self._links[target]

    def is_local(self, target: str) -> bool:
        return target in self._links

    async def stop(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        self._waiters.clear()
        self._links.clear()
