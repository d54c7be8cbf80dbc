"""The call history end to end: synchronous calls through the Azure REST API (httpx, a paho-mqtt
device) and Alibaba's POP API (aliyun-python-sdk-core, a Link SDK device) are listed by
``GET /calls`` with their front door, caller, status and latency; ``serve --history off`` records
none."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aliyunsdkcore.client import AcsClient

from tests.integration.aliyun.support import LinkkitDevice, call, create_product_device, rrpc_request
from tests.integration.aliyun.test_linkkit_rrpc import device_config, service_request
from tests.support import Backend, HubProcess, PahoDevice

pytestmark = pytest.mark.timeout(120)

PK = "a1LinkKit"  # the product of test_linkkit_rrpc (its devices answer the same way)
LINKKIT_DEVICE = "history-dev"


@pytest.fixture(scope="module")
def linkkit_device(aliyun_hub: HubProcess, linkkit: Path, tsl_file: str) -> Iterator[LinkkitDevice]:
    names = create_product_device(aliyun_hub, PK, LINKKIT_DEVICE)
    device = LinkkitDevice(
        linkkit, device_config(aliyun_hub, LINKKIT_DEVICE, names["DeviceSecret"], "echo", tsl=tsl_file)
    )
    try:
        device.wait_ready()
        yield device
    finally:
        device.close()


def _list(backend: Backend, **params: Any) -> httpx.Response:
    return backend.http.get("/calls", params=params, headers={"Authorization": backend.token})


def _wait_for(backend: Backend, count: int, **params: Any) -> list[dict[str, Any]]:
    """The listed calls once there are ``count`` (records are written in batches, soon after)."""
    deadline = time.monotonic() + 10
    while True:
        response = _list(backend, **params)
        assert response.status_code == 200, response.text
        calls: list[dict[str, Any]] = response.json()["calls"]
        if len(calls) >= count or time.monotonic() > deadline:
            return calls
        time.sleep(0.1)


def test_azure_and_aliyun_calls_are_listed_with_their_front_door_caller_status_and_latency(
    aliyun_hub: HubProcess, owner: AcsClient, linkkit_device: LinkkitDevice
) -> None:
    device_id = "history-azure"
    device = PahoDevice(aliyun_hub, device_id, aliyun_hub.create_device(device_id)).online()
    backend = Backend(aliyun_hub, "service")
    try:

        def slow(name: str, payload: bytes) -> tuple[int, bytes]:
            time.sleep(0.2)
            return 207, b'{"ok":true}'

        device.serve(slow)
        started = time.time()
        response = backend.invoke(device_id, "reboot", {"secret": "hunter2"})
        assert response.status_code == 200 and response.json()["status"] == 207
        rrpc = call(owner, rrpc_request(PK, LINKKIT_DEVICE, b"hello"))
        assert rrpc["RrpcCode"] == "SUCCESS"
        service = call(owner, service_request("Echo", {"n": 1}, device_name=LINKKIT_DEVICE))
        assert service["Success"] is True
        # no such device: Alibaba answers RRpc's own failures with HTTP 200, Success false
        assert call(owner, rrpc_request(PK, "nobody-here", b"x"))["Success"] is False

        (azure,) = _wait_for(backend, 1, deviceId=device_id)
        assert azure["frontDoor"] == "azure" and azure["caller"] == "service"
        assert (azure["state"], azure["attempt"], azure["methodName"]) == ("succeeded", 1, "reboot")
        assert azure["outcome"] == {"status": 207, "payload": None}  # payloads not kept by default
        assert azure["requestSize"] == len(b'{"secret":"hunter2"}') and azure["responseSize"] == 11
        assert 200 <= azure["latencyMs"] < 10_000
        assert azure["createdTime"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started - 1))

        aliyun = _wait_for(
            backend, 1, frontDoor="aliyun", deviceId=f"{PK}:{LINKKIT_DEVICE}", methodName="rrpc"
        )
        assert len(aliyun) == 1
        (record,) = aliyun
        assert (record["caller"], record["methodName"], record["state"]) == (
            "iothubowner",
            "rrpc",
            "succeeded",
        )
        assert record["trackingId"] == rrpc["RequestId"]  # the request id the POP API answered with
        assert record["outcome"]["status"] == 200 and record["responseSize"] == len(b"pong:hello")
        assert 0 < record["latencyMs"] < 10_000

        (echo,) = _wait_for(backend, 1, frontDoor="aliyun", methodName="Echo")
        assert (echo["deviceId"], echo["caller"], echo["state"]) == (
            f"{PK}:{LINKKIT_DEVICE}",
            "iothubowner",
            "succeeded",
        )
        assert echo["trackingId"] == service["RequestId"] and echo["outcome"]["status"] == 200
        assert echo["requestSize"] == len(json.dumps({"n": 1})) and echo["responseSize"] > 0  # Args as sent

        (offline,) = _wait_for(backend, 1, frontDoor="aliyun", state="failed", methodName="rrpc")
        assert (
            offline["deviceId"] == f"{PK}:nobody-here" and offline["error"]["errorCode"] == "DeviceNotFound"
        )
        assert "outcome" not in offline

        # the other filters: by status, method, time; and bad ones are precise 400s
        assert [c["deviceId"] for c in _list(backend, status=207).json()["calls"]] == [device_id]
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
        assert _list(backend, since=later).json()["calls"] == []
        assert len(_list(backend, until=later, deviceId=device_id, methodName="reboot").json()["calls"]) == 1
        for bad, word in (
            ({"frontDoor": "gcp"}, "frontDoor"),
            ({"status": "ok"}, "status"),
            ({"since": "x"}, "since"),
        ):
            refused = _list(backend, **bad)
            assert refused.status_code == 400 and word in refused.text, refused.text
    finally:
        backend.close()
        device.close()


def test_history_off_records_no_synchronous_call(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data", args=["--history", "off"]).start()
    try:
        device = PahoDevice(hub, "quiet", hub.create_device("quiet")).online()
        backend = Backend(hub)
        try:
            device.serve(lambda name, payload: (200, b"{}"))
            assert backend.invoke("quiet", "ping").status_code == 200
            queued = backend.http.post(
                "/calls",
                json={"deviceId": "quiet", "methodName": "later"},
                headers={"Authorization": backend.token},
            )
            assert queued.status_code == 202  # queued calls are stored all the same
            time.sleep(1)  # more than the history's write delay
            calls = _list(backend).json()["calls"]
            assert [(c["methodName"], c["frontDoor"], c["caller"]) for c in calls] == [
                ("later", "native", "iothubowner")
            ]
        finally:
            backend.close()
            device.close()
    finally:
        hub.stop()


def test_payloads_are_kept_with_history_payloads(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data", args=["--history", "on", "--history-payloads"]).start()
    try:
        device = PahoDevice(hub, "open", hub.create_device("open")).online()
        backend = Backend(hub)
        try:
            device.serve(lambda name, payload: (200, b'{"echo":' + payload + b"}"))
            assert backend.invoke("open", "ping", {"n": 1}).status_code == 200
            (record,) = _wait_for(backend, 1)
            assert record["outcome"] == {"status": 200, "payload": {"echo": {"n": 1}}}
        finally:
            backend.close()
            device.close()
    finally:
        hub.stop()
