"""Queued calls end to end (``/calls``): a real hub process, devices on paho-mqtt, calls made with
httpx as a backend makes them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Backend, HubProcess, PahoDevice

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path / "data").start()
    yield hub
    hub.stop()


def _calls(backend: Backend, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return backend.http.request(method, f"/calls{path}", headers={"Authorization": backend.token}, **kwargs)


def _answer_next(device: PahoDevice, status: int, payload: bytes, timeout: float = 20) -> tuple[str, bytes]:
    topic, body = device.requests.get(timeout=timeout)
    rid = topic.rpartition("$rid=")[2]
    device.client.publish(f"$iothub/methods/res/{status}/?$rid={rid}", payload, qos=1)
    return topic, body


def test_a_call_waits_for_the_device_survives_a_restart_and_is_delivered(tmp_path: Path) -> None:
    data = tmp_path / "data"
    hub = HubProcess(data).start()
    try:
        key = hub.create_device("sleepy")
        backend = Backend(hub)
        created = _calls(
            backend, "POST", "", json={"deviceId": "sleepy", "methodName": "wake", "payload": {"n": 1}}
        )
        assert created.status_code == 202, created.text
        call = created.json()
        assert call["state"] == "queued" and created.headers["location"] == f"/calls/{call['callId']}"
        backend.close()
        assert hub.stop() == 0
        ports = ["--mqtt-port", str(hub.ports["mqtt"]), "--http-port", str(hub.ports["http"])]
        hub = HubProcess(data, args=ports).start()  # the call is stored: it outlives the process
        backend = Backend(hub)
        device = PahoDevice(hub, "sleepy", key).online()
        topic, body = _answer_next(device, 200, b'{"awake":true}')
        assert "/wake/" in topic and body == b'{"n":1}'
        done = _calls(backend, "GET", f"/{call['callId']}", params={"waitSeconds": 20}).json()
        assert done["state"] == "succeeded" and done["outcome"] == {"status": 200, "payload": {"awake": True}}
        assert done["deliveredTime"] and done["completedTime"] and done["attempt"] == 1
        listed = _calls(backend, "GET", "", params={"deviceId": "sleepy"}).json()
        assert [c["callId"] for c in listed["calls"]] == [call["callId"]]
        device.client.disconnect()
        backend.close()
    finally:
        hub.stop()


def test_idempotency_cancel_and_errors(hub: HubProcess) -> None:
    hub.create_device("dev1")
    backend = Backend(hub)
    body = {"deviceId": "dev1", "methodName": "m", "idempotencyKey": "order-7", "expiresInSeconds": 600}
    first = _calls(backend, "POST", "", json=body)
    again = _calls(backend, "POST", "", json=body)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["callId"] == first.json()["callId"]
    other = _calls(backend, "POST", "", json={**body, "methodName": "n"})
    assert other.status_code == 409
    call_id = first.json()["callId"]
    cancelled = _calls(backend, "DELETE", f"/{call_id}")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert _calls(backend, "DELETE", f"/{call_id}").status_code == 409
    for bad in (
        {"deviceId": "dev1"},
        {"deviceId": "dev1", "methodName": "m", "attempts": 0},
        {"deviceId": "dev1", "methodName": "m", "responseTimeoutInSeconds": 1},
        {"deviceId": "dev1", "methodName": "m", "expiresInSeconds": 10**9},
    ):
        response = _calls(backend, "POST", "", json=bad)
        assert response.status_code == 400, (bad, response.text)
    assert _calls(backend, "POST", "", json={"deviceId": "ghost", "methodName": "m"}).status_code == 404
    assert _calls(backend, "GET", "/nope").status_code == 404
    assert _calls(backend, "GET", "", params={"state": "weird"}).status_code == 400
    unauthorized = backend.http.get("/calls")
    assert unauthorized.status_code == 401
    backend.close()


def test_an_online_device_gets_the_call_at_once_and_a_timeout_is_retried(hub: HubProcess) -> None:
    key = hub.create_device("dev2")
    device = PahoDevice(hub, "dev2", key).online()
    backend = Backend(hub)
    created = _calls(
        backend,
        "POST",
        "",
        json={"deviceId": "dev2", "methodName": "m", "responseTimeoutInSeconds": 5, "attempts": 2},
    ).json()
    device.requests.get(timeout=20)  # the first attempt: not answered, it times out after 5 s
    _answer_next(device, 201, b"null")  # the second attempt
    done = _calls(backend, "GET", f"/{created['callId']}", params={"waitSeconds": 20}).json()
    assert (done["state"], done["attempt"], done["outcome"]["status"]) == ("succeeded", 2, 201)
    device.client.disconnect()
    backend.close()


def test_the_cli_queues_shows_lists_and_cancels(hub: HubProcess) -> None:
    key = hub.create_device("pump-17")
    queued = hub.cli("invoke", "pump-17", "reboot", "--payload", '{"delay":5}', "--queue", "--expires", "1h")
    call_id = queued.stdout.strip()
    assert len(call_id) == 24, queued
    shown = json.loads(hub.cli("call", "show", call_id).stdout)
    assert (shown["state"], shown["methodName"], shown["deviceId"]) == ("queued", "reboot", "pump-17")
    listed = json.loads(hub.cli("call", "list", "--state", "queued").stdout)
    assert [c["callId"] for c in listed] == [call_id]
    device = PahoDevice(hub, "pump-17", key).online()
    _answer_next(device, 200, b'{"ok":true}')
    done = json.loads(hub.cli("call", "show", call_id, "--wait", "20").stdout)
    assert done["state"] == "succeeded" and done["outcome"]["payload"] == {"ok": True}
    refused = hub.cli("call", "cancel", call_id, check=False)
    assert refused.returncode == 1 and "only a queued call can be cancelled" in refused.stderr
    assert "Traceback" not in refused.stderr
    unknown = hub.cli("invoke", "nobody", "x", "--queue", check=False)
    assert unknown.returncode == 1 and "not registered" in unknown.stderr
    bad = hub.cli("invoke", "pump-17", "x", "--queue", "--expires", "1x", check=False)
    assert bad.returncode == 2 and "is not a duration" in bad.stderr
    # a reader that goes away early is no error (`methodhub call list | head -1`)
    piped = subprocess.run(
        f"{sys.executable} -m methodhub --data-dir {hub.data_dir} call list | head -1",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
    )
    assert piped.stdout.strip() == "[" and "Traceback" not in piped.stderr and "bug" not in piped.stderr
    device.client.disconnect()


def test_the_longest_expiry_is_the_operators(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data", args=["--max-queued-call-expiry", "1h"]).start()
    try:
        hub.create_device("dev1")
        backend = Backend(hub)
        body = {"deviceId": "dev1", "methodName": "m"}
        too_long = _calls(backend, "POST", "", json={**body, "expiresInSeconds": 7200})
        assert too_long.status_code == 400 and "3600" in too_long.text
        assert _calls(backend, "POST", "", json={**body, "expiresInSeconds": 3600}).status_code == 202
        default = _calls(backend, "POST", "", json=body)  # the default (a day) is cut to the maximum
        assert default.status_code == 202
        record = default.json()
        created, expires = (
            datetime.fromisoformat(record[k].replace("Z", "+00:00")) for k in ("createdTime", "expiresTime")
        )
        assert (expires - created).total_seconds() == pytest.approx(3600, abs=1)
        backend.close()
    finally:
        hub.stop()
