"""Calls across the nodes of a cluster: two ``methodhub serve --nats`` processes, one nats-server.

A device connects to one node, the backend calls another; the answer, the errors and the timing
must be those of a single node.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster.conftest import Cluster, echo, in_thread, make_cluster, wait_for
from tests.servers import NatsServer
from tests.support import error_code, error_message, wait_until_stored


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, nats: NatsServer) -> Iterator[Cluster]:
    cluster = make_cluster(tmp_path_factory.mktemp("cluster"), nats, nodes=2)
    yield cluster
    cluster.stop()


def test_a_call_on_one_node_reaches_a_device_on_another(cluster: Cluster, device_id: str) -> None:
    a, b = cluster.nodes
    key = cluster.create_device(device_id)
    device = cluster.device(b, device_id, key).online()
    device.serve(echo)
    try:
        for node in (a, b, a):  # across nodes, locally, and across again
            backend = cluster.backend(node)
            response = backend.invoke(device_id, "reboot", {"delay": 5}, responseTimeoutInSeconds=10)
            backend.close()
            assert response.status_code == 200, response.text
            assert response.json() == {"status": 200, "payload": {"echo": {"delay": 5}}}
    finally:
        device.close()


def test_device_status_and_payload_pass_through_unchanged(cluster: Cluster, device_id: str) -> None:
    a, b = cluster.nodes
    key = cluster.create_device(device_id)
    device = cluster.device(b, device_id, key).online()
    device.serve(lambda name, payload: (503, b'{"why":"busy","n":[1,2.5,"\\u00e9"]}'))
    backend = cluster.backend(a)
    try:
        response = backend.invoke(device_id, "m", "x" * 20_000)
        assert response.status_code == 200
        assert response.json() == {"status": 503, "payload": {"why": "busy", "n": [1, 2.5, "é"]}}
    finally:
        backend.close()
        device.close()


def test_offline_is_known_at_once_on_every_node(cluster: Cluster, device_id: str) -> None:
    """NATS answers "no responders" for a device nobody holds, and the node fails the call with it.

    No clock: the other outcomes are told apart by what they say. With a connect timeout of 0 the
    engine waits for nothing, so a 404103 saying "... is not online." can only come from that first
    delivery being refused; had "no responders" been missed, the call would have stayed in flight
    until a probe failed it (404104, "... stopped answering" / "... let it go") or its response
    timeout did (504101).
    """
    cluster.create_device(device_id)
    for node in cluster.nodes:
        backend = cluster.backend(node)
        response = backend.invoke(device_id, "reboot", connectTimeoutInSeconds=0, responseTimeoutInSeconds=30)
        backend.close()
        assert response.status_code == 404, response.text
        assert error_code(response) == 404103, response.text
        assert error_message(response) == (  # Azure's words, then the engine's: it waited 0 s
            f"Timed out waiting for device to connect. Device '{device_id}' is not online."
        ), response.text
    backend = cluster.backend(cluster.nodes[0])
    try:
        assert error_code(backend.invoke(f"{device_id}-unknown", "reboot")) == 404001
    finally:
        backend.close()


def test_a_call_waits_for_a_device_connecting_to_another_node(cluster: Cluster, device_id: str) -> None:
    a, b = cluster.nodes
    key = cluster.create_device(device_id)
    backend = cluster.backend(a)
    started = time.monotonic()
    thread, out = in_thread(lambda: backend.invoke(device_id, "wake", {"n": 1}, connectTimeoutInSeconds=15))
    time.sleep(1.0)
    device = cluster.device(b, device_id, key).online()
    device.serve(echo)
    try:
        thread.join(30)
        elapsed = time.monotonic() - started
        assert not thread.is_alive()
        response = out[0]
        assert isinstance(response, httpx.Response), response
        # answered by the device, not failed by the connect timeout (404103): the wait ended when it came
        assert response.status_code == 200, response.text
        assert response.json()["payload"] == {"echo": {"n": 1}}
        assert elapsed >= 1.0, f"answered after {elapsed:.2f} s, before the device connected"
    finally:
        backend.close()
        device.close()


def test_connect_timeout_expires_across_nodes(cluster: Cluster, device_id: str) -> None:
    cluster.create_device(device_id)
    backend = cluster.backend(cluster.nodes[0])
    try:
        started = time.monotonic()
        response = backend.invoke(device_id, "wake", connectTimeoutInSeconds=2, responseTimeoutInSeconds=30)
        elapsed = time.monotonic() - started
        assert error_code(response) == 404103  # the connect timeout, not the response timeout (504101)
        assert elapsed >= 1.9, elapsed  # it waited the connect timeout
    finally:
        backend.close()


def test_takeover_across_nodes_keeps_persisted_subscriptions(cluster: Cluster, device_id: str) -> None:
    """The device moves from node A to node B without subscribing again (Azure's SDKs rely on
    CleanSession=0 subscriptions); A drops its stale connection, calls reach the device on B."""
    a, b = cluster.nodes
    key = cluster.create_device(device_id)
    first = cluster.device(a, device_id, key).online()
    answered_by_first: list[bytes] = []
    first.serve(lambda name, payload: (answered_by_first.append(payload), echo(name, payload))[1])
    backend = cluster.backend(b)
    try:
        assert backend.invoke(device_id, "where", {"node": "a"}).status_code == 200
        assert len(answered_by_first) == 1
        wait_until_stored(cluster.registry, device_id)  # A writes the subscription in the background
        second = cluster.device(b, device_id, key)
        assert second.connect() == 0  # no SUBSCRIBE: the stored session makes it ready on B
        first.disconnects.get(timeout=5)  # node A closed the old connection (taken over)
        first.client.loop_stop()  # paho would reconnect to A and take the session back
        second.serve(echo)
        for node in (a, b):
            caller = cluster.backend(node)
            response = caller.invoke(device_id, "where", {"node": "b"}, responseTimeoutInSeconds=10)
            caller.close()
            assert response.status_code == 200, response.text
            assert response.json()["payload"] == {"echo": {"node": "b"}}
        assert len(answered_by_first) == 1  # nothing went to the stale connection
        second.close()
    finally:
        backend.close()
        first.client.loop_stop()


def test_device_leaving_mid_call_is_reported_across_nodes_at_once(cluster: Cluster, device_id: str) -> None:
    a, b = cluster.nodes
    key = cluster.create_device(device_id)
    device = cluster.device(b, device_id, key).online()
    backend = cluster.backend(a)
    thread, out = in_thread(lambda: backend.invoke(device_id, "slow", responseTimeoutInSeconds=30))
    try:
        device.next_request(timeout=10)
        device.close()
        thread.join(40)  # a hang guard past the call's own 30 s response timeout
        assert not thread.is_alive()
        # Node B's notice ("connection lost", its session's words), not the calling node's probe
        # finding out a second or two later ("the node it was connected to let it go" or "its hub
        # node stopped answering"), nor the response timeout (504101).
        assert error_code(out[0]) == 404104, out[0].text
        assert error_message(out[0]) == (
            f"Device '{device_id}' disconnected before it answered (connection lost)."
        ), out[0].text
    finally:
        backend.close()


def test_response_timeout_across_nodes(cluster: Cluster, device_id: str) -> None:
    a, b = cluster.nodes
    key = cluster.create_device(device_id)
    device = cluster.device(b, device_id, key).online()
    backend = cluster.backend(a)
    try:
        started = time.monotonic()
        response = backend.invoke(device_id, "never", responseTimeoutInSeconds=5)
        elapsed = time.monotonic() - started
        assert response.status_code == 504
        # the device is alive: probes keep the call going (a failed probe would answer 404104 earlier)
        assert error_code(response) == 504101
        assert elapsed >= 4.9, elapsed  # it waited the response timeout
        device.next_request(timeout=1)  # it was delivered
    finally:
        backend.close()
        device.close()


def test_a_registry_change_made_on_one_node_reaches_the_others(cluster: Cluster, device_id: str) -> None:
    a, b = cluster.nodes
    key = cluster.create_device(device_id)
    device = cluster.device(b, device_id, key).online()
    backend = cluster.backend(a)
    try:
        response = backend.http.delete(
            f"/devices/{device_id}?api-version=2021-04-12",
            headers={"Authorization": backend.token, "If-Match": "*"},
        )
        assert response.status_code in (200, 204), response.text
        device.disconnects.get(timeout=5)  # node B dropped the deleted device's connection
        assert error_code(backend.invoke(device_id, "reboot")) == 404001
    finally:
        backend.close()
        device.client.loop_stop()


def test_every_node_serves_the_same_registry(cluster: Cluster, device_id: str) -> None:
    a, b = cluster.nodes
    backend = cluster.backend(a)
    try:
        created = backend.http.put(
            f"/devices/{device_id}?api-version=2021-04-12",
            json={"deviceId": device_id},
            headers={"Authorization": backend.token},
        )
        assert created.status_code == 200, created.text
        key = created.json()["authentication"]["symmetricKey"]["primaryKey"]
    finally:
        backend.close()
    device = cluster.device(b, device_id, key).online()  # node B authenticates it at once
    device.serve(echo)
    backend = cluster.backend(b)
    try:
        response = backend.invoke(device_id, "hi")
        assert response.status_code == 200
        shown = backend.http.get(f"/devices/{device_id}", headers={"Authorization": backend.token})
        assert json.loads(shown.text)["deviceId"] == device_id
    finally:
        backend.close()
        device.close()


def test_cluster_nodes_say_so_in_hub_json(cluster: Cluster) -> None:
    info = json.loads((Path(cluster.nodes[0].data_dir) / "hub.json").read_text())
    assert info["nats"] == cluster.nats.url


def test_connection_state_in_the_registry_is_the_clusters(cluster: Cluster, device_id: str) -> None:
    """GET /devices/{id} on any node says Connected while the device is connected to another one."""
    a, b = cluster.nodes
    key = cluster.create_device(device_id)
    backend = cluster.backend(a)
    try:

        def state() -> dict:
            response = backend.http.get(
                f"/devices/{device_id}?api-version=2021-04-12", headers={"Authorization": backend.token}
            )
            assert response.status_code == 200, response.text
            return response.json()

        assert state()["connectionState"] == "Disconnected"
        device = cluster.device(b, device_id, key).online()
        try:
            seen = state()
            assert seen["connectionState"] == "Connected"
            assert seen["connectionStateUpdatedTime"].startswith(time.strftime("%Y-%m-%d", time.gmtime()))
            listed = backend.http.get(
                "/devices?api-version=2021-04-12", headers={"Authorization": backend.token}
            )
            mine = [d for d in listed.json() if d["deviceId"] == device_id]
            assert mine and mine[0]["connectionState"] == "Connected"
        finally:
            device.close()
        wait_for(lambda: state()["connectionState"] == "Disconnected", 5, "the device to be disconnected")
    finally:
        backend.close()


def test_alibaba_device_status_is_the_clusters(cluster: Cluster) -> None:
    """Alibaba's status actions on one node see a device connected to another (aliyun-python-sdk-iot)."""
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkiot.request.v20180120.BatchGetDeviceStateRequest import BatchGetDeviceStateRequest
    from aliyunsdkiot.request.v20180120.GetDeviceStatusRequest import GetDeviceStatusRequest
    from aliyunsdkiot.request.v20180120.QueryDeviceStatisticsRequest import QueryDeviceStatisticsRequest

    from tests.integration.aliyun.support import REGION, PahoAliyunDevice, call, device_login
    from tests.support import parse_cs

    a, b = cluster.nodes
    pk = "a1Cluster"
    secrets = {}
    for name in ("on-dev", "off-dev"):
        lines = cluster.cli("device", "create", "--product", pk, name).stdout.strip().splitlines()
        secrets[name] = dict(line.split("=", 1) for line in lines)["DeviceSecret"]
    key = parse_cs(cluster.cli("connection-string", "--policy", "iothubowner").stdout)["SharedAccessKey"]
    client = AcsClient("iothubowner", key, REGION, timeout=15)
    client.add_endpoint(REGION, "Iot", f"127.0.0.1:{a.ports['http']}")

    def status(name: str) -> str:
        request = GetDeviceStatusRequest()
        request.set_ProductKey(pk)
        request.set_DeviceName(name)
        return str(call(client, request)["Data"]["Status"])

    wait_for(lambda: status("off-dev") == "OFFLINE", 5, "node a to see the new devices")
    device = PahoAliyunDevice(b, *device_login(pk, "on-dev", secrets["on-dev"], extra=",_ss=1"))
    assert device.connect() == 0
    try:
        assert status("on-dev") == "ONLINE"
        batch = BatchGetDeviceStateRequest()
        batch.set_ProductKey(pk)
        batch.set_DeviceNames(["on-dev", "off-dev"])
        entries = call(client, batch)["DeviceStatusList"]["DeviceStatus"]
        assert [e["Status"] for e in entries] == ["ONLINE", "OFFLINE"] and "LastOnlineTime" in entries[0]
        statistics = QueryDeviceStatisticsRequest()
        statistics.set_ProductKey(pk)
        assert call(client, statistics)["Data"] == {"deviceCount": 2, "activeCount": 2, "onlineCount": 1}
    finally:
        device.close()
    wait_for(lambda: status("on-dev") == "OFFLINE", 5, "the device to be disconnected")
