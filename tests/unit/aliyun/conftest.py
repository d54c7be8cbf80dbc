"""Fixtures of the Alibaba unit tests: a registry with Azure's default policies (the POP API's
credentials)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from methodhub.registry import SqliteRegistry


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[SqliteRegistry]:
    reg = SqliteRegistry(tmp_path / "registry.db")
    await reg.open()
    await reg.ensure_default_policies()
    yield reg
    await reg.close()
