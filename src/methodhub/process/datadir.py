"""The hub's data directory: where the registry lives and where a running hub says where it is.

Layout::

    DIR/registry.db     the SQLite registry (devices, keys, policies, sessions), with its
                        -wal and -shm files
    DIR/tls/            the development CA and server certificate, and their keys (tls.py)
    DIR/settings.json   what ``serve`` was last told that other commands need (the hostname)
    DIR/hub.json        written by a running hub: pid and the addresses it actually bound
    DIR/hub.lock        locked (flock) by the running hub, so that a second one refuses to start

The directory and the files with secrets in it (the registry, the TLS keys) are owner-only: 0700
and 0600, made so by :func:`ensure_data_dir` whatever they were (it logs what others could read).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any

from methodhub.filemodes import PRIVATE_DIR, PRIVATE_FILE, Exposed, make_private, warn_exposed

log = logging.getLogger("methodhub.datadir")

ENV_DATA_DIR = "METHODHUB_DATA_DIR"
RUNTIME_FILE = "hub.json"
SETTINGS_FILE = "settings.json"
LOCK_FILE = "hub.lock"
REGISTRY_FILE = "registry.db"
SECRET_FILES = tuple(REGISTRY_FILE + suffix for suffix in ("", "-wal", "-shm", "-journal"))
TLS_DIR = "tls"
TLS_KEYS = "*-key.pem"
"""The private keys in ``DIR/tls`` (``ca-key.pem``, ``server-key.pem``)."""


class DataDirError(Exception):
    """The data dir cannot be used; the message says which and why."""


class DataDirInUse(DataDirError):
    """Another hub runs on this data dir (it holds ``hub.lock``)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        who = f"another hub (pid {pid})" if pid else "another hub"
        super().__init__(
            f"the data dir {path} is in use by {who}; stop that one first, or give this one a data dir "
            "of its own (--data-dir DIR)"
        )


def default_data_dir() -> Path:
    """``$METHODHUB_DATA_DIR``, else ``$XDG_DATA_HOME/methodhub``, else ``~/.local/share/methodhub``."""
    if env := os.environ.get(ENV_DATA_DIR):
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "methodhub"


def ensure_data_dir(path: Path) -> bool:
    """Create ``path`` (mode 0700: it holds keys) if needed, and make it and the secrets in it
    owner-only if they are not (one warning says what was readable by others). Returns True if it
    was created.

    Raises:
        DataDirError: it cannot be created (a file of that name, no permission).
    """
    created = False
    if not path.is_dir():
        try:
            path.mkdir(parents=True, mode=PRIVATE_DIR)
        except OSError as exc:
            raise DataDirError(f"cannot create the data dir {path}: {exc.strerror or exc}") from None
        created = True
    warn_exposed(secure_data_dir(path), log)
    return created


def secure_data_dir(path: Path) -> list[Exposed]:
    """Make the data dir and the files with secrets in it owner-only; what others could read."""
    candidates = [path, *(path / name for name in SECRET_FILES), path / TLS_DIR]
    candidates += sorted((path / TLS_DIR).glob(TLS_KEYS))
    return [exposed for candidate in candidates if (exposed := make_private(candidate)) is not None]


class DataDirLock:
    """This process's exclusive lock on a data dir (``DIR/hub.lock``); :meth:`release` it at the end.

    An ``flock`` lock: the kernel drops it when the process dies, however it dies, so a killed hub
    never leaves a stale lock. Processes forked while it is held (``serve --workers``) share it.
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def lock_data_dir(path: Path) -> DataDirLock:
    """Lock the data dir for this hub (and record its pid in the lock file).

    Raises:
        DataDirInUse: another hub holds the lock (its pid in the message).
    """
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _lock_holder(fd)
        os.close(fd)
        raise DataDirInUse(path, pid) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DataDirLock(fd)


def check_data_dir_free(path: Path) -> None:
    """Raise :class:`DataDirInUse` now if a hub runs on ``path`` (before preparing to start one)."""
    lock_data_dir(path).release()


def _lock_holder(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None


def write_runtime(path: Path, info: dict[str, Any]) -> None:
    """Record where this running hub listens (atomically, so readers never see half a file)."""
    target = path / RUNTIME_FILE
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), **info}, indent=2) + "\n")
    os.replace(tmp, target)


def remove_runtime(path: Path) -> None:
    """Forget the runtime record, if it is ours."""
    target = path / RUNTIME_FILE
    try:
        if json.loads(target.read_text()).get("pid") == os.getpid():
            target.unlink()
    except (OSError, ValueError):
        pass


def read_runtime(path: Path) -> dict[str, Any] | None:
    """The runtime record of a hub running on this data dir, or None if none is running."""
    try:
        info = json.loads((path / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return None
    pid = info.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return None
    return info


def stale_runtime_pid(path: Path) -> int | None:
    """The pid ``hub.json`` names if that process is gone (the hub was killed or crashed), else None."""
    try:
        pid = json.loads((path / RUNTIME_FILE).read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) and not _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that exited but was not reaped yet (its parent, or a container's init, has not
    waited for it): gone, though signals still find it. Linux only; elsewhere False."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rpartition(")")[2].split()[:1] == ["Z"]


def read_settings(path: Path) -> dict[str, Any]:
    """Settings recorded by ``methodhub serve`` (e.g. the hostname), or {} if none."""
    try:
        settings = json.loads((path / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return settings if isinstance(settings, dict) else {}


def write_settings(path: Path, settings: dict[str, Any]) -> None:
    target = path / SETTINGS_FILE
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(settings, indent=2) + "\n")
    os.replace(tmp, target)
