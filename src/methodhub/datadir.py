"""The hub's data directory: where the registry lives and where a running hub says where it is.

Layout::

    DIR/registry.db     the SQLite registry (devices, keys, policies, sessions)
    DIR/settings.json   what ``serve`` was last told that other commands need (the hostname)
    DIR/hub.json        written by a running hub: pid and the addresses it actually bound
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV_DATA_DIR = "METHODHUB_DATA_DIR"
RUNTIME_FILE = "hub.json"
SETTINGS_FILE = "settings.json"


def default_data_dir() -> Path:
    """``$METHODHUB_DATA_DIR``, else ``$XDG_DATA_HOME/methodhub``, else ``~/.local/share/methodhub``."""
    if env := os.environ.get(ENV_DATA_DIR):
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "methodhub"


def ensure_data_dir(path: Path) -> bool:
    """Create ``path`` (mode 0700: it holds keys) if needed. Returns True if it was created."""
    if path.is_dir():
        return False
    path.mkdir(parents=True, mode=0o700)
    return True


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
