"""Process memory settings for a hub: keep large payload buffers from ratcheting RSS up.

A call with a 128 KiB payload allocates several buffers of that size (the HTTP body, the parsed
payload, the MQTT packet, the device's answer). glibc serves blocks of 128 KiB or more with
``mmap`` at first, but every time such a block is freed it raises its mmap threshold (up to
32 MiB), so after the first burst these buffers come from the heap, where a burst of hundreds of
them fragments it and the memory is never given back: a hub's RSS grew from 102 to 355 MB over
five bursts of concurrent 128 KiB calls (issue 9). Two measures, both measured by
``python bench/memory.py`` (docs/performance.md):

* a fixed mmap threshold, so large blocks stay in ``mmap`` and go back to the system when freed
  (this lowers the peak);
* ``malloc_trim(0)`` every :data:`TRIM_INTERVAL` seconds, which gives back the free pages inside
  the heap too (glibc only returns the top of the heap by itself). It takes well under a
  millisecond on a quiet heap; with it RSS returns to the same level after every burst.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import time
from typing import Any

log = logging.getLogger("methodhub.hub")

M_MMAP_THRESHOLD = -3
"""glibc's mallopt parameter number (malloc.h)."""
MMAP_THRESHOLD = 64 * 1024
"""Blocks this large or larger are mmapped, always (setting it turns the dynamic threshold off)."""
ENV_SWITCH = "METHODHUB_MALLOC_TUNING"
"""``off`` leaves malloc as it is (the benchmark's reference run)."""


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold; True if it was set. A no-op on other C libraries, when the
    operator set ``MALLOC_MMAP_THRESHOLD_`` (glibc reads it itself), or when switched off."""
    mallopt = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if done:
        log.debug("malloc: mmap threshold fixed at %d bytes", MMAP_THRESHOLD)
    return done


TRIM_INTERVAL = 10.0
"""Seconds between two trims."""


class MemoryTrimmer:
    """Calls glibc's ``malloc_trim(0)`` every :data:`TRIM_INTERVAL` seconds on the event loop."""

    def __init__(self, interval: float = TRIM_INTERVAL) -> None:
        self.interval = interval
        self._trim = _libc_function("malloc_trim", [ctypes.c_size_t])
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._trim is not None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._run)

    def _run(self) -> None:
        assert self._trim is not None
        started = time.perf_counter()
        self._trim(0)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("malloc_trim took %.2f ms", (time.perf_counter() - started) * 1000)
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._run)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _libc_function(name: str, argtypes: list[Any]) -> Any:
    """glibc's ``name`` (returning int), or None: not glibc, or the tuning is switched off."""
    if os.environ.get(ENV_SWITCH, "").lower() in ("off", "0", "no", "false"):
        return None
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function
