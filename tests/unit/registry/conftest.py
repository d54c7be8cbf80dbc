"""The registry contract fixtures: every ``Registry`` backend runs the same tests.

To add a backend, add an entry to ``BACKENDS``: a function taking the test's ``tmp_path`` and
returning a function that makes a new, unopened ``Registry`` on one store private to that test
(calling it twice must give two objects on the *same* store, as two processes would see it).
Backend-specific tests (files, migrations) live in their own modules, not in the contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from methodhub.registry import Registry, SqliteRegistry

NewRegistry = Callable[[], Registry]


def _sqlite(tmp_path: Path) -> NewRegistry:
    return lambda: SqliteRegistry(tmp_path / "registry.db")


BACKENDS: dict[str, Callable[[Path], NewRegistry]] = {
    "sqlite": _sqlite,
}


@pytest.fixture(params=sorted(BACKENDS))
def new_registry(request: pytest.FixtureRequest, tmp_path: Path) -> NewRegistry:
    """Makes unopened ``Registry`` objects, all on this test's store."""
    return BACKENDS[request.param](tmp_path)


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
