"""A progress bar on stderr for the CLI's longer waits, drawn only when stderr is a terminal (a script
reading stderr, or a log, gets nothing from it)."""

from __future__ import annotations

import sys
from typing import TextIO

WIDTH = 24


class Progress:
    """``label [#####.....] 40%`` redrawn in place; :meth:`close` erases it."""

    def __init__(self, label: str, total: float, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._on = self._stream.isatty()
        self._label = label
        self._total = total if total > 0 else 1.0
        self._width = 0

    def update(self, done: float) -> None:
        if not self._on:
            return
        share = min(max(done / self._total, 0.0), 1.0)
        filled = round(share * WIDTH)
        line = f"{self._label} [{'#' * filled}{'.' * (WIDTH - filled)}] {share:4.0%}"
        self._width = max(self._width, len(line))
        self._stream.write("\r" + line)
        self._stream.flush()

    def close(self) -> None:
        if self._on and self._width:
            self._stream.write("\r" + " " * self._width + "\r")
            self._stream.flush()
