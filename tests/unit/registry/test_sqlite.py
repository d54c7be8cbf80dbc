"""SQLite-only behaviour: the file, open_registry, schema migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import methodhub.registry.sqlite as sqlite_module
from methodhub.errors import ErrorKind
from methodhub.registry import SchemaTooNew, SqliteRegistry, open_registry
from methodhub.registry.migrations import SQLITE_MIGRATIONS
from tests.unit.registry.helpers import raises_hub_error


def schema_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT version FROM schema_version").fetchall()
    db.close()
    assert len(rows) == 1
    return rows[0][0]


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    return names


# -- open_registry -------------------------------------------------------------------------------------------


def test_open_registry_with_a_path(tmp_path: Path) -> None:
    for location in (tmp_path / "r.db", str(tmp_path / "r.db")):
        registry = open_registry(location)
        assert isinstance(registry, SqliteRegistry)
        assert registry.path == tmp_path / "r.db"


def test_open_registry_with_a_sqlite_url(tmp_path: Path) -> None:
    registry = open_registry(f"sqlite://{tmp_path}/r.db")  # tmp_path is absolute: sqlite:///...
    assert isinstance(registry, SqliteRegistry)
    assert registry.path == tmp_path / "r.db"


@pytest.mark.parametrize("location", ["mysql://x/y", "file:///tmp/r.db"])
def test_open_registry_refuses_other_schemes(location: str) -> None:
    with pytest.raises(ValueError, match="unsupported registry location"):
        open_registry(location)


# -- the file ------------------------------------------------------------------------------------------------


async def test_open_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "registry.db"
    registry = SqliteRegistry(path)
    await registry.open()
    await registry.create_identity("dev1")
    await registry.close()
    assert path.is_file()


async def test_uses_wal_so_other_processes_can_write(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "r.db")
    await registry.open()
    try:
        with sqlite3.connect(tmp_path / "r.db") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.close()
    finally:
        await registry.close()


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    first = SqliteRegistry(tmp_path / "r.db")
    await first.open()
    created = await first.create_identity("dev1")
    await first.ensure_default_policies()
    await first.close()
    second = SqliteRegistry(tmp_path / "r.db")
    await second.open()
    try:
        assert await second.get_identity("dev1") == created
        assert await second.ensure_default_policies() is False
    finally:
        await second.close()


async def test_use_before_open_says_so(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "r.db")
    with raises_hub_error(ErrorKind.SERVICE_UNAVAILABLE, "not open"):
        await registry.get_identity("dev1")
    await registry.close()  # closing an unopened registry is harmless


async def test_close_twice_is_harmless(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "r.db")
    await registry.open()
    await registry.close()
    await registry.close()


# -- migrations ----------------------------------------------------------------------------------------------


async def test_fresh_database_gets_the_latest_schema(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    registry = SqliteRegistry(path)
    await registry.open()
    await registry.close()
    assert schema_version(path) == len(SQLITE_MIGRATIONS)
    assert {"identities", "policies", "sessions", "changes"} <= tables(path)


async def test_reopening_keeps_one_version_row(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    for _ in range(2):
        registry = SqliteRegistry(path)
        await registry.open()
        await registry.close()
    assert schema_version(path) == len(SQLITE_MIGRATIONS)


async def test_database_from_a_newer_methodhub_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    registry = SqliteRegistry(path)
    await registry.open()
    await registry.create_identity("dev1")
    await registry.close()
    newer = len(SQLITE_MIGRATIONS) + 1
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = ?", (newer,))
    db.close()

    again = SqliteRegistry(path)
    with pytest.raises(SchemaTooNew) as info:
        await again.open()
    await again.close()
    message = str(info.value)
    assert str(path) in message
    assert f"version {newer}" in message
    assert "upgrade methodhub" in message
    assert schema_version(path) == newer  # the file was left alone
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT device_id FROM identities").fetchall() == [("dev1",)]
    db.close()


async def test_new_migrations_are_applied_to_an_existing_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.db"
    registry = SqliteRegistry(path)
    await registry.open()
    created = await registry.create_identity("dev1")
    await registry.close()

    extra = "CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (42)"
    monkeypatch.setattr(sqlite_module, "SQLITE_MIGRATIONS", [*SQLITE_MIGRATIONS, extra])
    upgraded = SqliteRegistry(path)
    await upgraded.open()
    try:
        assert await upgraded.get_identity("dev1") == created
    finally:
        await upgraded.close()
    assert schema_version(path) == len(SQLITE_MIGRATIONS) + 1
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT x FROM extra").fetchall() == [(42,)]  # applied exactly once
    db.close()


async def test_a_failing_migration_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.db"
    registry = SqliteRegistry(path)
    await registry.open()
    await registry.close()

    broken = "CREATE TABLE extra (x INTEGER); THIS IS NOT SQL"
    monkeypatch.setattr(sqlite_module, "SQLITE_MIGRATIONS", [*SQLITE_MIGRATIONS, broken])
    failing = SqliteRegistry(path)
    with pytest.raises(sqlite3.Error):
        await failing.open()
    await failing.close()
    assert schema_version(path) == len(SQLITE_MIGRATIONS)
    assert "extra" not in tables(path)


# -- query plans ------------------------------------------------------------------------------------------


async def test_claiming_a_call_reads_only_its_targets_calls(tmp_path: Path) -> None:
    """The claim's lookup of a target's next queued call goes through the target's index, in order:
    a plan through ``calls_due`` walks every queued call of every target (and sorts them) per claim."""
    from methodhub.registry.calls import SQLITE_NEXT_QUEUED

    registry = SqliteRegistry(tmp_path / "r.db")
    await registry.open()
    await registry.close()
    with sqlite3.connect(tmp_path / "r.db") as db:
        plan = [
            row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + SQLITE_NEXT_QUEUED, ("d", 0.0))
        ]
    db.close()
    searches = [step for step in plan if step.startswith("SEARCH")]
    assert len(searches) == 2 and not any("TEMP B-TREE" in step for step in plan), plan  # no sort
    # the call, and the check that none of the target's calls is sent: both by the target's index
    assert all(step.startswith("SEARCH calls USING") for step in searches), plan
    assert all("INDEX calls_target (target=? AND state=?" in step for step in searches), plan
