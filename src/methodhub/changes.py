"""Following the registry's change feed, so edits made anywhere reach this node's caches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from methodhub.registry import Registry

log = logging.getLogger("methodhub.changes")

PRUNE_EVERY = 3600.0
KEEP_CHANGES = 24 * 3600.0


class ChangeFeedWatcher:
    """Polls ``registry.changes_since`` every ``interval`` seconds and reports each change.

    Args:
        registry: whose change feed to follow.
        interval: seconds between polls — the bound on how long a change made by another process
            (``methodhub device delete`` while the hub runs, another cluster node) takes to apply.
        on_identity: awaited with the identity key of each changed device or module.
        on_policy: called with the name of each changed access policy.
        on_twin: awaited with the identity key of each twin whose desired properties changed
            (None: twin changes are not followed here).
        on_authority: awaited with the name of each changed certificate authority (None: not
            followed).
    """

    def __init__(
        self,
        registry: Registry,
        interval: float,
        on_identity: Callable[[str], Awaitable[None]],
        on_policy: Callable[[str], None],
        on_twin: Callable[[str], Awaitable[None]] | None = None,
        on_authority: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._registry = registry
        self._interval = interval
        self._on_identity = on_identity
        self._on_policy = on_policy
        self._on_twin = on_twin
        self._on_authority = on_authority
        self._task: asyncio.Task[None] | None = None
        self._seq = 0

    async def start(self) -> None:
        self._seq = await self._registry.last_change_seq()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="methodhub-change-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def poll(self) -> int:
        """Apply every change since the last poll; returns how many there were."""
        changes, self._seq = await self._registry.changes_since(self._seq)
        for change in changes:
            if change.kind == "policy":
                self._on_policy(change.key)
            elif change.kind == "twin":
                if self._on_twin is not None:
                    await self._on_twin(change.key)
            elif change.kind == "authority":
                if self._on_authority is not None:
                    await self._on_authority(change.key)
            else:
                await self._on_identity(change.key)
        return len(changes)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_prune = loop.time() + PRUNE_EVERY
        failing = False
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.poll()
                if loop.time() >= next_prune:
                    next_prune = loop.time() + PRUNE_EVERY
                    await self._registry.prune_changes(KEEP_CHANGES)
                if failing:
                    log.info("registry change feed readable again")
                    failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning("cannot read the registry change feed (will retry): %s", exc)
                    failing = True
