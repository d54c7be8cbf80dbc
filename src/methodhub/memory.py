"""Process memory settings for a hub: keep large payload buffers from ratcheting RSS up.

A call with a 128 KiB payload allocates several buffers of that size (the HTTP body, the parsed
payload, the MQTT packet, the device's answer). glibc serves blocks of 128 KiB or more with
``mmap`` at first, but every time such a block is freed it raises its mmap threshold (up to
32 MiB), so after the first burst these buffers come from the heap, where a burst of hundreds of
them fragments it and the memory is never given back: a hub's RSS grew from 102 to 355 MB over
five bursts of concurrent 128 KiB calls (issue 9). A fixed threshold keeps them in ``mmap`` and
so returned to the system when freed. ``python bench/memory.py`` measures it (docs/performance.md).
"""

from __future__ import annotations

import ctypes
import logging
import os

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
    if os.environ.get(ENV_SWITCH, "").lower() in ("off", "0", "no", "false"):
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if done:
        log.debug("malloc: mmap threshold fixed at %d bytes", MMAP_THRESHOLD)
    return done
