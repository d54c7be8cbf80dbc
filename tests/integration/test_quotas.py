"""Quotas and the token policy on a running hub (``serve`` flags and ``methodhub.toml``), seen by
plain HTTP clients and paho-mqtt: Azure's 429 ThrottlingException with Retry-After, the native
/calls API's, MQTT CONNACK 3 / 0x9F over the connect rate, tokens beyond the lifetime refused."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import pytest

from tests.support import HOSTNAME, Backend, HubProcess, PahoDevice, error_code, sign

SLOW = "0.2"
"""Each limited rate: one request, then one per 5 s (the bucket holds one: --quota-burst 1)."""


@pytest.fixture(scope="module")
def calls_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    data_dir = tmp_path_factory.mktemp("quota-calls")
    (data_dir / "methodhub.toml").write_text(
        f"[quotas]\nmethod_calls_per_policy_per_second = {SLOW}\nburst_seconds = 1\n"
        '[tokens]\nmax_lifetime = "1d"\n'
    )
    hub = HubProcess(data_dir, args=["--max-registry-ops-per-second", SLOW]).start()
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def connect_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(
        tmp_path_factory.mktemp("quota-connects"),
        args=["--max-connects-per-second", SLOW, "--quota-burst", "1"],
    ).start()
    yield hub
    hub.stop()


def _inner(response: httpx.Response) -> dict[str, object]:
    return json.loads(response.json()["Message"])  # type: ignore[no-any-return]


def test_a_policy_over_its_call_rate_gets_429_with_retry_after_and_others_do_not(
    calls_hub: HubProcess,
) -> None:
    calls_hub.create_device("quiet")  # registered, never connected: each call ends 404103 at once
    owner, service = Backend(calls_hub), Backend(calls_hub, "service")
    try:
        assert error_code(owner.invoke("quiet")) == 404103
        throttled = owner.invoke("quiet")
        assert throttled.status_code == 429
        assert throttled.headers["iothub-errorcode"] == "ThrottlingException"
        assert 1 <= int(throttled.headers["retry-after"]) <= 5
        inner = _inner(throttled)
        assert inner["errorCode"] == 429001
        assert "Policy 'iothubowner' made more than 0.2 calls per second" in str(inner["message"])
        assert error_code(service.invoke("quiet")) == 404103  # its own bucket
        assert calls_hub.metric('methodhub_throttled_total{limit="method_calls_per_policy"}') >= 1
        time.sleep(float(throttled.headers["retry-after"]))
        assert error_code(owner.invoke("quiet")) == 404103  # after Retry-After it goes through
    finally:
        owner.close()
        service.close()


def test_the_native_calls_api_counts_against_the_call_rate(calls_hub: HubProcess) -> None:
    calls_hub.create_device("queued-quiet")
    calls_hub.cli("policy", "create", "queuer", "--rights", "ServiceConnect")  # a bucket of its own
    backend = Backend(calls_hub, "queuer")
    body = {"deviceId": "queued-quiet", "methodName": "m", "expiresInSeconds": 60}
    try:
        first = backend.http.post("/calls", json=body, headers={"Authorization": backend.token})
        second = backend.http.post("/calls", json=body, headers={"Authorization": backend.token})
    finally:
        backend.close()
    assert first.status_code == 202, first.text
    assert second.status_code == 429
    assert "retry-after" in second.headers
    assert _inner(second)["errorCode"] == 429001


def test_registry_operations_over_the_rate_get_429(calls_hub: HubProcess) -> None:
    calls_hub.create_device("reg-1")
    backend = Backend(calls_hub)
    try:
        answers = [
            backend.http.get("/devices/reg-1", headers={"Authorization": backend.token}) for _ in range(2)
        ]
        twin = backend.http.get("/twins/reg-1", headers={"Authorization": backend.token})
    finally:
        backend.close()
    assert answers[0].status_code == 200
    assert answers[1].status_code == 429
    assert answers[1].headers["iothub-errorcode"] == "ThrottlingException"
    assert twin.status_code == 200  # twins are not identity registry operations (Azure counts them apart)


def test_tokens_beyond_the_max_lifetime_are_refused(calls_hub: HubProcess) -> None:
    key = calls_hub.create_device("long-lived")
    password = sign(f"{HOSTNAME}/devices/long-lived", key, int(time.time()) + 2 * 86400)
    device = PahoDevice(calls_hub, "long-lived", None, password=password)
    try:
        assert device.connect() == 5  # not authorized
    finally:
        device.close()
    ok = PahoDevice(calls_hub, "long-lived", key)  # PahoDevice signs for an hour
    try:
        assert ok.connect() == 0
    finally:
        ok.close()
    backend = Backend(calls_hub)
    try:
        response = backend.invoke("long-lived", token=calls_hub.service_token(ttl=30 * 86400))
    finally:
        backend.close()
    assert response.status_code == 401
    assert "accepts tokens valid for at most 86400 s" in _inner(response)["message"]  # type: ignore[operator]


def test_mqtt_connects_over_the_rate_are_refused_with_3_and_0x9f(connect_hub: HubProcess) -> None:
    key = connect_hub.create_device("burst")
    first = PahoDevice(connect_hub, "burst", key)
    v311 = PahoDevice(connect_hub, "burst", key)
    v5 = PahoDevice(connect_hub, "burst", key, protocol=paho.MQTTv5)
    try:
        assert first.connect() == 0
        assert v311.connect() == 3  # server unavailable
        assert v5.connect() == 0x9F  # connection rate exceeded
        assert connect_hub.metric('methodhub_throttled_total{limit="device_connects"}') == 2
        assert first.client.is_connected()
    finally:
        for device in (first, v311, v5):
            device.close()


def test_a_running_hub_says_nothing_changed_without_quotas(tmp_path: Path) -> None:
    """No file, no flags: 64 in flight and no rate limit, as before quotas existed."""
    hub = HubProcess(tmp_path / "plain").start()
    try:
        hub.create_device("free")
        backend = Backend(hub)
        try:
            codes = {error_code(backend.invoke("free")) for _ in range(30)}
        finally:
            backend.close()
        assert codes == {404103}
        assert hub.metric("methodhub_throttled_total") == 0
    finally:
        hub.stop()
