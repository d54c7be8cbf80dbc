"""A cluster as deployed on several machines: nodes share a PostgreSQL registry and a NATS server.

Two nodes with their own data dirs; devices registered through one node's REST API, connected to
one node, moved to the other (CleanSession=0 subscriptions live in PostgreSQL), called from both.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from tests.cluster.conftest import Cluster, echo, make_cluster
from tests.servers import NatsServer, create_database
from tests.support import error_code, wait_until_stored

_databases = itertools.count(1)


@pytest.fixture(scope="module")
def pg_cluster(
    tmp_path_factory: pytest.TempPathFactory, nats: NatsServer, postgres_url: str
) -> Iterator[Cluster]:
    url = create_database(postgres_url, f"cluster_{os.getpid()}_{next(_databases)}")
    cluster = make_cluster(tmp_path_factory.mktemp("pg-cluster"), nats, nodes=2, registry=url)
    yield cluster
    cluster.stop()


def test_calls_and_takeover_across_nodes_on_postgres(pg_cluster: Cluster, device_id: str) -> None:
    a, b = pg_cluster.nodes
    backend_a = pg_cluster.backend(a)
    backend_b = pg_cluster.backend(b)
    try:
        created = backend_a.http.put(
            f"/devices/{device_id}?api-version=2021-04-12",
            json={"deviceId": device_id},
            headers={"Authorization": backend_a.token},
        )
        assert created.status_code == 200, created.text
        key = created.json()["authentication"]["symmetricKey"]["primaryKey"]

        first = pg_cluster.device(b, device_id, key).online()  # registered on A, authenticated by B
        first.serve(echo)
        response = backend_a.invoke(device_id, "hello", {"via": "a"})
        assert response.status_code == 200, response.text
        assert response.json()["payload"] == {"echo": {"via": "a"}}

        wait_until_stored(pg_cluster.registry, device_id)  # B writes the subscription in the background
        moved = pg_cluster.device(a, device_id, key)
        assert moved.connect() == 0  # no SUBSCRIBE: the session stored in PostgreSQL is ready
        first.disconnects.get(timeout=5)  # node B let its connection go
        first.client.loop_stop()
        moved.serve(echo)
        response = backend_b.invoke(device_id, "hello", {"via": "b"})
        assert response.status_code == 200, response.text
        assert response.json()["payload"] == {"echo": {"via": "b"}}
        moved.close()

        deleted = backend_b.http.delete(
            f"/devices/{device_id}?api-version=2021-04-12",
            headers={"Authorization": backend_b.token, "If-Match": "*"},
        )
        assert deleted.status_code in (200, 204)
        assert error_code(backend_a.invoke(device_id, "hello")) == 404001
    finally:
        backend_a.close()
        backend_b.close()
