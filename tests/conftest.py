"""Shared fixtures: a hub started as a user starts it, and a backend that calls it."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import start_postgres
from tests.support import Backend, HubProcess

_ids = itertools.count(1)


@pytest.fixture(scope="session")
def shared_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """One hub for the tests that only need *a* hub (each uses its own device ids)."""
    hub = HubProcess(tmp_path_factory.mktemp("shared-hub")).start()
    yield hub
    hub.stop()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One PostgreSQL server for the session (tests/servers.py); its users keep to their own schema
    or database. Tests that stop the server start a :class:`tests.servers.PostgresServer` of their own."""
    url, stop = start_postgres(tmp_path_factory.mktemp("postgres"))
    yield url
    stop()


@pytest.fixture
def fresh_hub(tmp_path: Path) -> Iterator[HubProcess]:
    """A hub of its own, for tests that restart it or look at first-start behaviour."""
    hub = HubProcess(tmp_path / "data").start()
    yield hub
    hub.stop()


@pytest.fixture
def backend(shared_hub: HubProcess) -> Iterator[Backend]:
    client = Backend(shared_hub)
    yield client
    client.close()


@pytest.fixture
def device_id(request: pytest.FixtureRequest) -> str:
    """A device id unique within the test session."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", request.node.name)[:40]
    return f"{name}-{os.getpid()}-{next(_ids)}"
