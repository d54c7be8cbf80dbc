"""Queued calls in a cluster: three nodes sharing NATS and one registry. Each call is delivered by
exactly one node; an attempt whose node dies is settled by another node and retried."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import Cluster, make_cluster, wait_for
from tests.servers import NatsServer

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cluster(tmp_path: Path, nats: NatsServer) -> Iterator[Cluster]:
    cluster = make_cluster(tmp_path / "cluster", nats, 3)
    yield cluster
    cluster.stop()


def _post(cluster: Cluster, node: Any, **body: Any) -> dict[str, Any]:
    backend = cluster.backend(node)
    try:
        response = backend.http.post("/calls", json=body, headers={"Authorization": backend.token})
        assert response.status_code == 202, response.text
        return dict(response.json())
    finally:
        backend.close()


def _get(cluster: Cluster, node: Any, call_id: str, wait: float = 0) -> dict[str, Any]:
    backend = cluster.backend(node)
    try:
        response = backend.http.get(
            f"/calls/{call_id}", params={"waitSeconds": wait}, headers={"Authorization": backend.token}
        )
        return dict(response.json())
    finally:
        backend.close()


def test_each_call_is_delivered_once_in_order_whichever_node_made_it(
    cluster: Cluster, device_id: str
) -> None:
    a, b, c = cluster.nodes
    key = cluster.create_device(device_id)
    calls = [
        _post(cluster, (a, c)[n % 2], deviceId=device_id, methodName="step", payload={"n": n})
        for n in range(12)
    ]
    device = cluster.device(b, device_id, key).online()
    seen: list[int] = []
    while len(seen) < 12:
        topic, payload = device.requests.get(timeout=30)
        seen.append(json.loads(payload)["n"])
        device.client.publish(f"$iothub/methods/res/200/?$rid={topic.rpartition('$rid=')[2]}", b"null", qos=1)
    assert seen == list(range(12))  # creation order, each once
    for call in calls:
        done = _get(cluster, a, call["callId"], wait=20)
        assert (done["state"], done["attempt"]) == ("succeeded", 1), done
    assert device.requests.empty()
    device.client.disconnect()


def test_an_attempt_whose_node_dies_is_retried_by_another_node(cluster: Cluster, device_id: str) -> None:
    """kill -9 of the node sending the attempt: the attempt's lease (response timeout + 10 s) runs
    out, another node's sweep queues the call again (one attempt left), and it is delivered."""
    a, b, c = cluster.nodes
    key = cluster.create_device(device_id)
    device = cluster.device(b, device_id, key).online()
    call = _post(cluster, a, deviceId=device_id, methodName="once", responseTimeoutInSeconds=5, attempts=2)
    device.requests.get(timeout=30)  # the first attempt: not answered
    sent = wait_for(lambda: (r := _get(cluster, c, call["callId"]))["state"] == "sent" and r, 10, "sent")
    owner = next(
        node
        for node in cluster.nodes
        if sent["node"] and node.data_dir.name in {"node0", "node1", "node2"} and _owns(node, sent["node"])
    )
    assert owner.proc is not None
    owner.proc.send_signal(signal.SIGKILL)
    survivors = [node for node in cluster.nodes if node is not owner]
    if owner is b:  # the device's node: the device moves to a surviving node
        device.client.loop_stop()
        device = cluster.device(survivors[0], device_id, key).online()
    topic, _ = device.requests.get(timeout=60)  # the second attempt, after the lease ran out
    device.client.publish(f"$iothub/methods/res/200/?$rid={topic.rpartition('$rid=')[2]}", b'"ok"', qos=1)
    done = _get(cluster, survivors[0], call["callId"], wait=30)
    assert (done["state"], done["attempt"], done["outcome"]["payload"]) == ("succeeded", 2, "ok"), done
    device.client.loop_stop()


def _owns(node: Any, name: str) -> bool:
    """Whether ``node`` runs under the node name ``name`` (host-pid-random): its pid is in it."""
    return node.proc is not None and f"-{node.proc.pid}-" in name
