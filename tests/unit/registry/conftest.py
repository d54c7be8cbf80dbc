"""The registry contract fixtures: every ``Registry`` backend runs the same tests.

To add a backend, add an entry to ``BACKENDS``: a function taking the test's ``request`` and
``tmp_path`` and returning a function that makes a new, unopened ``Registry`` on one store private
to that test (calling it twice must give two objects on the *same* store, as two processes — or two
cluster nodes — would see it). Backend-specific tests (files, migrations, outages) live in their
own modules, not in the contract.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from methodhub.registry import PostgresRegistry, Registry, SqliteRegistry

NewRegistry = Callable[[], Registry]

_schemas = itertools.count(1)


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> NewRegistry:
    return lambda: SqliteRegistry(tmp_path / "registry.db")


class PostgresInSchema(PostgresRegistry):
    """A PostgresRegistry in a schema of its own (``?search_path=``), created on first ``open()``:
    each test gets an empty store on the session's one server."""

    def __init__(self, server_url: str, schema: str) -> None:
        super().__init__(f"{server_url}?search_path={schema}")
        self.server_url = server_url
        self.schema = schema

    async def open(self) -> None:
        conn = await asyncpg.connect(self.server_url)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        except asyncpg.UniqueViolationError:  # IF NOT EXISTS races with another node opening now
            pass
        finally:
            await conn.close()
        await super().open()


def new_schema_name() -> str:
    return f"test_{os.getpid()}_{next(_schemas)}"


def _postgresql(request: pytest.FixtureRequest, tmp_path: Path) -> NewRegistry:
    server_url: str = request.getfixturevalue("postgres_url")
    schema = new_schema_name()
    return lambda: PostgresInSchema(server_url, schema)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], NewRegistry]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
}


@pytest.fixture(params=sorted(BACKENDS))
def new_registry(request: pytest.FixtureRequest, tmp_path: Path) -> NewRegistry:
    """Makes unopened ``Registry`` objects, all on this test's store."""
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture
async def registry(new_registry: NewRegistry) -> AsyncIterator[Registry]:
    """An open registry on an empty store."""
    reg = new_registry()
    await reg.open()
    yield reg
    await reg.close()


@pytest.fixture
async def other(new_registry: NewRegistry, registry: Registry) -> AsyncIterator[Registry]:
    """A second open ``Registry`` object on the same store as ``registry`` (another process, say)."""
    reg = new_registry()
    await reg.open()
    yield reg
    await reg.close()
