"""Fixtures of the in-memory Azure hub (tests/unit/gateway/azure_hub.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from methodhub.registry import Identity, SqliteRegistry
from tests.unit.gateway.azure_hub import Hub


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[SqliteRegistry]:
    reg = SqliteRegistry(tmp_path / "registry.db")
    await reg.open()
    yield reg
    await reg.close()


@pytest.fixture
async def hub(registry: SqliteRegistry) -> AsyncIterator[Hub]:
    node = Hub(registry)
    yield node
    await node.close()


@pytest.fixture
async def dev1(registry: SqliteRegistry) -> Identity:
    return await registry.create_identity("dev1")
