"""The data dir: owner-only modes for everything that holds a secret, the lock, stale ``hub.json``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from methodhub.process import datadir
from methodhub.process.datadir import ensure_data_dir, read_runtime
from methodhub.process.tls import ensure_dev_server_cert
from methodhub.registry import SqliteRegistry


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which new files are 0644 and directories 0755."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


async def _write_a_device(path: Path) -> None:
    registry = SqliteRegistry(path)
    await registry.open()
    try:
        await registry.ensure_default_policies()
        await registry.create_identity("pump-1", None)
        for suffix in ("", "-wal", "-shm"):  # checked while open: WAL and its index exist now
            assert mode(path.with_name(path.name + suffix)) == 0o600, suffix
    finally:
        await registry.close()


def test_a_new_registry_in_an_existing_world_readable_dir_is_owner_only(
    tmp_path: Path, umask_022: None
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    asyncio.run(_write_a_device(data_dir / "registry.db"))
    assert mode(data_dir / "registry.db") == 0o600


def test_existing_world_readable_secrets_are_made_owner_only_with_one_warning(
    tmp_path: Path, umask_022: None, caplog: pytest.LogCaptureFixture
) -> None:
    """What a data dir made before the fix looks like: a 0755 dir, a 0644 registry and WAL, keys
    in a 0755 tls dir. Starting makes all of it owner-only and says so once."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    asyncio.run(_write_a_device(data_dir / "registry.db"))
    ensure_dev_server_cert(data_dir, "localhost")
    exposed = [
        data_dir / "registry.db",
        data_dir / "registry.db-wal",
        data_dir / "tls",
        data_dir / "tls" / "ca-key.pem",
        data_dir / "tls" / "server-key.pem",
    ]
    (data_dir / "registry.db-wal").write_bytes(b"")
    for path in exposed:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (data_dir / "settings.json").write_text("{}")  # no secret in it: left as it is
    with caplog.at_level(logging.WARNING, logger="methodhub"):
        assert ensure_data_dir(data_dir) is False
    assert mode(data_dir) == 0o700
    for path in exposed:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path
    assert mode(data_dir / "tls" / "ca.pem") == 0o644  # a certificate is public
    assert mode(data_dir / "settings.json") == 0o644
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert all(str(path) in warnings[0] for path in [data_dir, *exposed])
    assert "(mode 0644)" in warnings[0] and "owner-only" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="methodhub"):
        ensure_data_dir(data_dir)
    assert not caplog.records  # nothing left to say


def test_a_shared_directory_is_left_alone_and_the_warning_says_what_to_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp: taking others' permissions away would lock them out
    with caplog.at_level(logging.WARNING, logger="methodhub"):
        ensure_data_dir(shared)
    assert mode(shared) == 0o1777
    (warning,) = [r.getMessage() for r in caplog.records]
    assert f"`chmod go-rwx {shared}`" in warning and "data dir of its own" in warning


def test_a_data_dir_is_made_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        assert ensure_data_dir(tmp_path / "a" / "data") is True
    finally:
        os.umask(previous)
    assert mode(tmp_path / "a" / "data") == 0o700


def test_one_lock_per_data_dir_naming_the_holder(tmp_path: Path) -> None:
    ensure_data_dir(tmp_path)
    lock = datadir.lock_data_dir(tmp_path)
    with pytest.raises(datadir.DataDirInUse) as refused:
        datadir.lock_data_dir(tmp_path)
    assert refused.value.pid == os.getpid() and f"(pid {os.getpid()})" in str(refused.value)
    with pytest.raises(datadir.DataDirInUse):
        datadir.check_data_dir_free(tmp_path)
    lock.release()
    datadir.check_data_dir_free(tmp_path)
    datadir.lock_data_dir(tmp_path).release()
    assert mode(tmp_path / "hub.lock") == 0o600


def test_the_lock_goes_with_a_killed_process(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, pathlib; from methodhub.process.datadir import lock_data_dir; "
            f"lock = lock_data_dir(pathlib.Path({str(tmp_path)!r})); print('locked', flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(datadir.DataDirInUse) as refused:
            datadir.lock_data_dir(tmp_path)
        assert refused.value.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()
    datadir.lock_data_dir(tmp_path).release()


def test_a_runtime_record_of_a_dead_process_is_stale(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "hub.json").write_text(json.dumps({"pid": gone.pid, "http": "http://127.0.0.1:1"}))
    assert read_runtime(tmp_path) is None
    assert datadir.stale_runtime_pid(tmp_path) == gone.pid
    (tmp_path / "hub.json").write_text(json.dumps({"pid": os.getpid()}))
    assert read_runtime(tmp_path) == {"pid": os.getpid()} and datadir.stale_runtime_pid(tmp_path) is None
