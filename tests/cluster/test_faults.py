"""Faults in a cluster: a node killed mid-call, NATS restarting (three nodes, one nats-server)."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest

from tests.cluster.conftest import Cluster, echo, in_thread, make_cluster, wait_for
from tests.servers import NatsServer, start_nats
from tests.support import error_code, error_message


@pytest.fixture
def nats_of_its_own() -> Iterator[NatsServer]:
    server = start_nats()
    yield server
    server.destroy()


@pytest.fixture
def cluster3(tmp_path_factory: pytest.TempPathFactory, nats_of_its_own: NatsServer) -> Iterator[Cluster]:
    cluster = make_cluster(tmp_path_factory.mktemp("faults"), nats_of_its_own, nodes=3)
    yield cluster
    cluster.stop()


def test_a_node_killed_mid_call_is_noticed_quickly(cluster3: Cluster, device_id: str) -> None:
    """kill -9 of the device's node: the calling node's probe fails the call with 404104 (in about
    3 s; not by the 30 s response timeout, 504101); the device reconnects to another node and is
    callable at once.

    No clock: the probe's verdict says it found out ("... let it go" when NATS says nobody holds the
    call subject any more, "... stopped answering" when the probe went unanswered); the response
    timeout would answer 504101, and a dead node says nothing at all."""
    a, b, c = cluster3.nodes
    key = cluster3.create_device(device_id)
    device = cluster3.device(b, device_id, key).online()
    backend = cluster3.backend(a)
    thread, out = in_thread(lambda: backend.invoke(device_id, "hang", responseTimeoutInSeconds=30))
    try:
        device.next_request(timeout=10)  # delivered by node B, which now dies without a word
        assert b.proc is not None
        b.proc.send_signal(signal.SIGKILL)
        thread.join(40)  # a hang guard past the call's own 30 s response timeout
        assert not thread.is_alive(), "the call still hangs after its response timeout"
        response = out[0]
        assert isinstance(response, httpx.Response), response
        assert error_code(response) == 404104, response.text
        assert error_message(response) in (
            f"Device '{device_id}' disconnected before it answered (the node it was connected to let it go).",
            f"Device '{device_id}' disconnected before it answered (its hub node stopped answering).",
        ), response.text

        device.client.loop_stop()  # paho would retry node B; the device moves to node C
        moved = cluster3.device(c, device_id, key)
        assert moved.connect() == 0  # its subscriptions are in the shared registry: ready at once
        moved.serve(echo)
        # "at once": with a connect timeout of 0 a device that was not ready would be 404103
        response = backend.invoke(device_id, "again", {"n": 2}, connectTimeoutInSeconds=0)
        assert response.status_code == 200, response.text
        assert response.json()["payload"] == {"echo": {"n": 2}}
        moved.close()
    finally:
        backend.close()
        device.client.loop_stop()


def test_calls_resume_after_nats_restarts(cluster3: Cluster, device_id: str) -> None:
    a, b, _ = cluster3.nodes
    key = cluster3.create_device(device_id)
    local_id = f"{device_id}-local"
    local_key = cluster3.create_device(local_id)
    remote = cluster3.device(b, device_id, key).online()
    remote.serve(echo)
    local = cluster3.device(a, local_id, local_key).online()
    local.serve(echo)
    backend = cluster3.backend(a)
    try:
        assert backend.invoke(device_id, "before").status_code == 200

        cluster3.nats.stop()
        # While NATS is down: a device on the calling node still answers; one on another node
        # cannot be reached, and the node says so at once (503), rather than hanging.
        assert backend.invoke(local_id, "during").status_code == 200
        response = wait_for(
            lambda: (r := backend.invoke(device_id, "during")).status_code != 200 and r,
            30,
            "calls across nodes to fail while NATS is down",
        )
        assert response.status_code == 503, response.text  # not a 504 after the response timeout

        cluster3.nats.start()  # same port: the nodes reconnect by themselves
        wait_for(  # a hang guard: they retry every 0.5 s, for ever
            lambda: backend.invoke(device_id, "after", responseTimeoutInSeconds=5).status_code == 200,
            60,
            "calls across nodes to resume after NATS restarted",
        )
        # and a device connecting after the restart is reachable from every node
        other = cluster3.backend(b)
        assert other.invoke(local_id, "after").status_code == 200
        other.close()
    finally:
        backend.close()
        remote.close()
        local.close()


def test_a_node_stopping_answers_the_calls_it_serves_at_once(cluster3: Cluster, device_id: str) -> None:
    a, b, _ = cluster3.nodes
    key = cluster3.create_device(device_id)
    device = cluster3.device(b, device_id, key).online()
    backend = cluster3.backend(a)
    thread, out = in_thread(lambda: backend.invoke(device_id, "hang", responseTimeoutInSeconds=30))
    try:
        device.next_request(timeout=10)
        device.client.loop_stop()  # the device stays quiet; node B is stopped cleanly
        assert b.stop() == 0
        thread.join(40)  # a hang guard past the call's own 30 s response timeout
        assert not thread.is_alive()
        # B answers for itself (it is stopping), rather than leaving the calling node to find out by
        # probing (404104) or by the response timeout (504101)
        assert out[0].status_code == 503, out[0].text
        assert error_code(out[0]) == 503002, out[0].text
    finally:
        backend.close()
