"""A cluster for tests: a real nats-server and several ``methodhub serve --nats`` processes.

Each node has its own data dir (as on separate machines) and all share one registry (``--registry``:
a SQLite file here, since all nodes run on this machine; PostgreSQL in test_postgres.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import NatsServer, start_nats
from tests.support import Backend, HubProcess, PahoDevice, methodhub, parse_cs, sign


@dataclass
class Cluster:
    """Nodes sharing a NATS server and a registry."""

    root: Path
    nats: NatsServer
    registry: str
    nodes: list[HubProcess] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    _token: str | None = None

    def add_node(self) -> HubProcess:
        index = len(self.nodes)
        node = HubProcess(
            self.root / f"node{index}",
            args=["--nats", self.nats.url, "--registry", self.registry, *self.extra_args],
        ).start()
        self.nodes.append(node)
        return node

    def cli(self, *args: str, **kwargs: Any) -> Any:
        return methodhub("--registry", self.registry, *args, data_dir=self.root / "cli", **kwargs)

    def create_device(self, device_id: str) -> str:
        return parse_cs(self.cli("device", "create", device_id).stdout)["SharedAccessKey"]

    def token(self) -> str:
        if self._token is None:
            cs = parse_cs(self.cli("connection-string").stdout)
            self._token = sign(
                cs["HostName"],
                cs["SharedAccessKey"],
                int(time.time()) + 3600,
                cs["SharedAccessKeyName"],
                quoted=False,
            )
        return self._token

    def backend(self, node: HubProcess) -> Backend:
        backend = Backend.__new__(Backend)
        backend.hub = node
        backend.token = self.token()
        backend.http = httpx.Client(base_url=node.http_url, timeout=60)
        return backend

    def device(self, node: HubProcess, device_id: str, key: str, **kwargs: Any) -> PahoDevice:
        return PahoDevice(node, device_id, key, **kwargs)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def echo(name: str, payload: bytes) -> tuple[int, bytes]:
    return 200, b'{"echo":' + (payload or b"null") + b"}"


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``fn`` in a thread; the list receives its result (or exception)."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:  # reported by the test
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def nats() -> Iterator[NatsServer]:
    server = start_nats()
    yield server
    server.destroy()


def make_cluster(root: Path, nats: NatsServer, nodes: int, registry: str | None = None) -> Cluster:
    root.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(root, nats, registry or str(root / "shared-registry.db"))
    try:
        for _ in range(nodes):
            cluster.add_node()
    except BaseException:
        cluster.stop()
        raise
    return cluster
