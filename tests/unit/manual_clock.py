"""An event loop whose clock and timers a test drives: time moves only when the test says so.

``ManualClockLoop(loop)`` stands in for ``loop`` where an object keeps it (``self.loop``): ``time()``
is the test's clock and ``call_at`` records a :class:`ManualTimer` that never fires by itself;
everything else (tasks, ``call_soon``, ``call_later``) is the real loop's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class ManualTimer:
    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._when = when
        self.callback = callback
        self.args = args
        self._cancelled = False

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled


class ManualClockLoop:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.now = loop.time()  # starts at the real clock: times taken before stay in the past
        self.timers: list[ManualTimer] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> ManualTimer:
        timer = ManualTimer(when, callback, args)
        self.timers.append(timer)
        return timer

    def fire(self, timer: ManualTimer | None) -> None:
        """Move the clock to ``timer``'s time (never back) and run it, as the loop would."""
        assert timer is not None and not timer.cancelled(), "no timer armed"
        self.now = max(self.now, timer.when())
        self.timers.remove(timer)  # a timer that ran is no longer armed
        timer.callback(*timer.args)

    def armed(self) -> list[ManualTimer]:
        return [timer for timer in self.timers if not timer.cancelled()]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)
