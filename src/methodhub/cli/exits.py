"""The CLI's exit codes and its one way to fail: one line on stderr (``--debug`` adds the traceback)."""

from __future__ import annotations

import sys
import traceback
from typing import NoReturn

EXIT_OK = 0
EXIT_ERROR = 1
"""Any other error; the message says what to do."""
EXIT_USAGE = 2
"""Bad arguments: an unknown option, a malformed --payload, --url or connection string."""
EXIT_OFFLINE = 3
"""``invoke``: the device is not connected."""
EXIT_TIMEOUT = 4
"""``invoke``: the device (or the hub) did not answer in time."""
EXIT_UNAVAILABLE = 5
"""No hub to talk to: none running on the data dir (or only a stale ``hub.json``), nothing at
--url, its TLS certificate not trusted, or it stopped (or answered 503) before answering."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT) during a command other than ``serve`` and ``device run`` (which stop cleanly)."""

_debug = False
"""``--debug``: errors print their traceback too."""


def set_debug(on: bool) -> None:
    """``--debug`` was given: :func:`fail` prints the traceback of the exception being handled."""
    global _debug
    _debug = on


def debugging() -> bool:
    return _debug


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """One line on stderr and exit ``code``; with ``--debug``, the exception being handled first."""
    if _debug and sys.exc_info()[1] is not None:
        traceback.print_exc()
    print(f"methodhub: error: {message}", file=sys.stderr)
    raise SystemExit(code)
