"""Files that hold secrets (keys, the registry) are for their owner only: 0600, directories 0700.

:func:`create_private` makes a new file owner-only from the start; :func:`make_private` takes group
and other permissions away from an existing one and says whether it had them; :func:`warn_exposed`
logs, in one line, what was readable by others and what to run about it.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
OTHERS = 0o077
"""Group and other permission bits: none of them on a file that holds a secret."""


@dataclass(frozen=True, slots=True)
class Exposed:
    """A file or directory that group or others could read: its mode then, and whether it is fixed."""

    path: Path
    mode: int
    fixed: bool


def create_private(path: Path) -> None:
    """Create ``path`` as an empty owner-only file if it does not exist (whatever the umask)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def make_private(path: Path) -> Exposed | None:
    """Take group and other permissions away from ``path``. None if it is missing or already private.

    A shared directory (sticky bit, as /tmp) or one owned by another user is left alone: changing
    it would lock others out of what is theirs; it is reported as not fixed.
    """
    try:
        info = os.stat(path)
    except OSError:
        return None
    mode = stat.S_IMODE(info.st_mode)
    if not mode & OTHERS:
        return None
    if stat.S_ISDIR(info.st_mode) and (mode & stat.S_ISVTX or info.st_uid != os.geteuid()):
        return Exposed(path, mode, fixed=False)
    try:
        os.chmod(path, mode & ~OTHERS)
    except OSError:
        return Exposed(path, mode, fixed=False)
    return Exposed(path, mode, fixed=True)


def warn_exposed(exposed: list[Exposed], log: logging.Logger) -> None:
    """One warning line for everything in ``exposed`` (nothing if it is empty)."""
    if not exposed:
        return
    fixed = [e for e in exposed if e.fixed]
    stuck = [e for e in exposed if not e.fixed]
    parts = []
    if fixed:
        parts.append(
            f"{_names(fixed)} could be read by other users; made them owner-only (whoever could log in "
            "here may have copied the keys in them meanwhile)"
        )
    if stuck:
        command = "chmod go-rwx " + " ".join(shlex.quote(str(e.path)) for e in stuck)
        parts.append(
            f"{_names(stuck)} can be read by other users and methodhub may not change that; run "
            f"`{command}` as their owner (or use a data dir of its own, not a shared directory)"
        )
    log.warning("; ".join(parts))


def _names(exposed: list[Exposed]) -> str:
    return ", ".join(f"{e.path} (mode {e.mode:04o})" for e in exposed)
