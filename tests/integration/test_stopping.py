"""Stopping the hub (SIGTERM, Ctrl-C): every waiting caller is answered at once, devices are told,
the process exits cleanly; a second signal exits at once."""

from __future__ import annotations

import json
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest

from tests.integration.aliyun.support import (
    PahoAliyunDevice,
    create_product_device,
    device_login,
    pop_client,
    rrpc_request,
)
from tests.support import HubProcess, PahoDevice, error_code

CALLS_TO_V5 = 20
CALLS_TO_V3 = 15
CALLS_WAITING_FOR_CONNECT = 10
RRPC_CALLS = 5
PK = "a1Stop"
LOG_PROBLEMS = ("Traceback", "never retrieved", "Exception in callback", "ERROR")


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def test_sigterm_answers_all_50_calls_in_flight_at_once(tmp_path: Path) -> None:
    """50 calls in flight — delivered to silent MQTT 5 and 3.1.1 devices, waiting for a device to
    connect, Alibaba RRpc — all answered with the stopping error as soon as SIGTERM arrives."""
    hub = HubProcess(tmp_path / "data").start()
    devices: list[Any] = []
    try:
        v5 = PahoDevice(hub, "silent-v5", hub.create_device("silent-v5"), protocol=paho.MQTTv5).online()
        v3 = PahoDevice(hub, "silent-v3", hub.create_device("silent-v3")).online()
        devices += [v5, v3]
        hub.create_device("not-yet-connected")
        secret = create_product_device(hub, PK, "silent-ali")["DeviceSecret"]
        ali = PahoAliyunDevice(hub, *device_login(PK, "silent-ali", secret, extra=",ext=1,_ss=1"))
        assert ali.connect() == 0
        devices.append(ali)
        token = hub.service_token()
        pop = pop_client(hub)

        def azure_call(target: str, **fields: Any) -> tuple[httpx.Response, float]:
            response = httpx.post(
                f"{hub.http_url}/twins/{target}/methods?api-version=2021-04-12",
                json={"methodName": "hang", "payload": None, "responseTimeoutInSeconds": 60, **fields},
                headers={"Authorization": token},
                timeout=30,
            )
            return response, time.monotonic()

        def rrpc_call() -> tuple[dict[str, Any], float]:
            body = pop.do_action_with_exception(rrpc_request(PK, "silent-ali", b"x", timeout_ms=8000))
            return json.loads(body), time.monotonic()

        total = CALLS_WAITING_FOR_CONNECT + CALLS_TO_V5 + CALLS_TO_V3 + RRPC_CALLS
        assert total == 50
        with ThreadPoolExecutor(total) as pool:
            waiting = [
                pool.submit(azure_call, "not-yet-connected", connectTimeoutInSeconds=60)
                for _ in range(CALLS_WAITING_FOR_CONNECT)
            ]
            delivered = [pool.submit(azure_call, "silent-v5") for _ in range(CALLS_TO_V5)]
            delivered += [pool.submit(azure_call, "silent-v3") for _ in range(CALLS_TO_V3)]
            rrpc = [pool.submit(rrpc_call) for _ in range(RRPC_CALLS)]
            wait_until(
                lambda: (
                    (v5.requests.qsize(), v3.requests.qsize(), ali.messages.qsize())
                    == (CALLS_TO_V5, CALLS_TO_V3, RRPC_CALLS)
                ),
                15,
                "every call to reach its device",
            )
            time.sleep(0.3)  # the calls waiting for a connect were sent first; let them settle
            assert not any(f.done() for f in waiting + delivered + rrpc), "a call ended before SIGTERM"
            assert hub.proc is not None
            signalled = time.monotonic()
            hub.proc.send_signal(signal.SIGTERM)
            answers = [f.result(timeout=15) for f in waiting + delivered]
            rrpc_answers = [f.result(timeout=15) for f in rrpc]
        answered_in = max(at for _, at in answers + rrpc_answers) - signalled
        print(f"\nSIGTERM with {total} calls in flight: all answered in {answered_in * 1000:.0f} ms")
        for response, _ in answers:
            assert response.status_code == 503, response.text
            assert error_code(response) == 503002
            assert response.headers["iothub-errorcode"] == "HubStopping"
        for body, _ in rrpc_answers:
            assert body["Success"] is False and body["RrpcCode"] == "UNKNOWN", body
            assert body["Code"] == "iot.system.HubStopping", body
        assert answered_in < 5  # generous: measured ~0.1 s (docs/performance.md)

        _flags, reason, _properties = v5.disconnects.get(timeout=5)
        assert int(reason.value) == 0x8B  # MQTT 5 DISCONNECT: server shutting down
        v3.disconnects.get(timeout=5)  # MQTT 3.1.1: the connection is closed
        ali.disconnects.get(timeout=5)
        assert hub.proc.wait(15) == 0
        time.sleep(0.2)  # let the pump threads read the last lines
        log = "\n".join(hub.stderr_lines)
        assert not [p for p in LOG_PROBLEMS if p in log], log
        assert "stopped" in log
    finally:
        for device in devices:
            device.client.loop_stop()
        hub.stop()


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_second_signal_exits_at_once(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    hub = HubProcess(tmp_path / "data").start()
    assert hub.proc is not None
    # A request whose body is still arriving: a clean stop gives it the HTTP shutdown grace (5 s).
    slow = socket.create_connection(("127.0.0.1", hub.ports["http"]))
    try:
        slow.sendall(
            b"POST /twins/x/methods?api-version=2021-04-12 HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        time.sleep(0.2)
        first = time.monotonic()
        hub.proc.send_signal(sig)
        wait_until(lambda: any("stopping" in line for line in hub.stderr_lines), 5, "the stop to begin")
        time.sleep(0.3)
        assert hub.proc.poll() is None, "the clean stop ended before the second signal; nothing to test"
        hub.proc.send_signal(sig)
        assert hub.proc.wait(10) == code
        assert time.monotonic() - first < 5, "it waited for the slow request's grace (5 s) after all"
        time.sleep(0.2)
        log = "\n".join(hub.stderr_lines)
        assert "exiting at once" in log and "Traceback" not in log, log
        assert not (hub.data_dir / "hub.json").exists()
    finally:
        slow.close()
        hub.stop()


def test_stop_is_clean_with_nothing_in_flight(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data").start()
    started = time.monotonic()
    assert hub.stop() == 0
    assert time.monotonic() - started < 5  # nothing to wait for: not the HTTP shutdown grace (5 s)
    time.sleep(0.2)
    assert not [p for p in LOG_PROBLEMS if p in "\n".join(hub.stderr_lines)]
