"""The CLI contract (README and scripts rely on it)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.support import HOSTNAME, HubProcess, PahoDevice, methodhub, parse_cs

SERVICE_CS = re.compile(r"HostName=[^;]+;SharedAccessKeyName=[^;]+;SharedAccessKey=[A-Za-z0-9+/=]+")
DEVICE_CS = re.compile(r"HostName=[^;]+;DeviceId=[^;]+;SharedAccessKey=[A-Za-z0-9+/=]+")


def test_first_start_prints_connection_string_and_tour_and_restart_keeps_everything(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data").start()
    try:
        deadline = time.monotonic() + 10
        while not any("Next steps" in line for line in hub.stdout_lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        out = "\n".join(hub.stdout_lines)
        printed = SERVICE_CS.search(out)
        assert printed and "Next steps" in out and "methodhub device create" in out
        assert printed.group(0) == hub.cli("connection-string").stdout.strip()
        key = hub.create_device("keeper")
        log = "\n".join(hub.stderr_lines)
        assert re.search(r"mqtt listening on 127\.0\.0\.1:\d+", log)
        assert re.search(r"http listening on 127\.0\.0\.1:\d+", log)
    finally:
        assert hub.stop() == 0
    hub.stdout_lines.clear()
    hub.start()
    try:
        time.sleep(0.3)
        assert "Next steps" not in "\n".join(hub.stdout_lines)  # only on first start
        assert printed.group(0) == hub.cli("connection-string").stdout.strip()
        dev = PahoDevice(hub, "keeper", key)
        assert dev.connect() == 0  # the device and its key survived the restart
        dev.close()
    finally:
        hub.stop()


def test_connection_string_prints_only_the_string(shared_hub: HubProcess) -> None:
    result = shared_hub.cli("connection-string")
    assert SERVICE_CS.fullmatch(result.stdout.strip())
    assert result.stdout.count("\n") == 1
    service = shared_hub.cli("connection-string", "--policy", "service").stdout.strip()
    assert parse_cs(service)["SharedAccessKeyName"] == "service"
    missing = shared_hub.cli("connection-string", "--policy", "nope", check=False)
    assert missing.returncode == 1 and missing.stdout == "" and "iothubowner" in missing.stderr


def test_device_create_list_show_delete(shared_hub: HubProcess, device_id: str) -> None:
    created = shared_hub.cli("device", "create", device_id)
    assert DEVICE_CS.fullmatch(created.stdout.strip())
    cs = parse_cs(created.stdout)
    assert cs["HostName"] == HOSTNAME and cs["DeviceId"] == device_id
    assert device_id in shared_hub.cli("device", "list").stdout.split()
    shown = json.loads(shared_hub.cli("device", "show", device_id).stdout)
    assert shown["deviceId"] == device_id and shown["primaryKey"] == cs["SharedAccessKey"]
    duplicate = shared_hub.cli("device", "create", device_id, check=False)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    shared_hub.cli("device", "delete", device_id)
    assert device_id not in shared_hub.cli("device", "list").stdout.split()
    assert shared_hub.cli("device", "show", device_id, check=False).returncode == 1


def test_data_dir_from_environment(shared_hub: HubProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "methodhub", "connection-string"],
        capture_output=True,
        text=True,
        env={**os.environ, "METHODHUB_DATA_DIR": str(shared_hub.data_dir)},
    )
    assert result.stdout == shared_hub.cli("connection-string").stdout


def test_invoke_exit_codes(shared_hub: HubProcess, device_id: str) -> None:
    key = shared_hub.create_device(device_id)
    offline = shared_hub.cli("invoke", device_id, "m", check=False)
    assert offline.returncode == 3 and "404103" in offline.stderr
    unknown = shared_hub.cli("invoke", "nobody-at-all", "m", check=False)
    assert unknown.returncode == 1 and "404001" in unknown.stderr
    dev = PahoDevice(shared_hub, device_id, key).online()
    try:
        timed_out = shared_hub.cli("invoke", device_id, "m", "--timeout", "5", check=False)
        assert timed_out.returncode == 4 and "504101" in timed_out.stderr
        dev.next_request()
        dev.serve(lambda name, payload: (207, json.dumps({"echo": json.loads(payload)}).encode()))
        ok = shared_hub.cli("invoke", device_id, "reboot", "--payload", '{"delay": 5}')
        assert ok.returncode == 0
        assert json.loads(ok.stdout) == {"status": 207, "payload": {"echo": {"delay": 5}}}
    finally:
        dev.close()
    bad = shared_hub.cli("invoke", device_id, "m", "--payload", "{nope", check=False)
    assert bad.returncode == 2


def test_invoke_with_explicit_url_and_connection_string(shared_hub: HubProcess, tmp_path: Path) -> None:
    cs = shared_hub.cli("connection-string").stdout.strip()
    result = methodhub(
        "invoke",
        "nobody",
        "m",
        data_dir=tmp_path / "empty",
        check=False,
        env={"METHODHUB_CONNECTION_STRING": cs, "METHODHUB_URL": shared_hub.http_url},
    )
    assert result.returncode == 1 and "404001" in result.stderr


def test_invoke_without_a_running_hub_says_what_to_do(tmp_path: Path) -> None:
    methodhub("connection-string", data_dir=tmp_path / "d")
    result = methodhub("invoke", "x", "m", data_dir=tmp_path / "d", check=False)
    assert result.returncode == 1 and "methodhub serve" in result.stderr


def test_device_run_simulator_answers_calls(shared_hub: HubProcess, device_id: str) -> None:
    shared_hub.create_device(device_id)
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "methodhub",
            "--data-dir",
            str(shared_hub.data_dir),
            "device",
            "run",
            device_id,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        result = shared_hub.cli("invoke", device_id, "ping", "--payload", "[1]", "--connect-timeout", "20")
        assert json.loads(result.stdout) == {"status": 200, "payload": {"method": "ping", "payload": [1]}}
    finally:
        sim.terminate()
        sim.wait(10)


def test_serve_reports_a_busy_port(shared_hub: HubProcess, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "methodhub",
            "--data-dir",
            str(tmp_path / "d"),
            "serve",
            "--mqtt-port",
            str(shared_hub.mqtt_port),
            "--http-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "--mqtt-port" in result.stderr
