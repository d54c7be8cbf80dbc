"""The CLI contract (README and scripts rely on it)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

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
    assert result.returncode == 5 and "methodhub serve" in result.stderr


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
            *("--mqtts-port", "-1", "--https-port", "-1", "--amqps-port", "-1"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "--mqtt-port" in result.stderr


# -- found by a new user: options after the command, a banner that works as printed -------------------


def _wait_for_line(lines: list[str], text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in lines:
            if text in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no line with {text!r} in:\n" + "\n".join(lines))


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The error of a failed command: one line on stderr, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_serve_takes_the_data_dir_after_the_command_and_its_banner_works_as_printed(tmp_path: Path) -> None:
    """A new user runs ``serve --data-dir DIR``, then the next steps the banner prints, verbatim, in
    another terminal (no $METHODHUB_DATA_DIR there): they act on DIR, not on a second registry."""
    data_dir = tmp_path / "my hub"
    hub = HubProcess(data_dir, data_dir_after_command=True).start()
    try:
        _wait_for_line(hub.stdout_lines, "Next steps")
        _wait_for_line(hub.stdout_lines, "See README")
        banner = "\n".join(hub.stdout_lines)
        listening = _wait_for_line(hub.stdout_lines, "Listening: ")
        assert f"MQTT 127.0.0.1:{hub.mqtt_port}, HTTP {hub.http_url}" in listening
        assert "(MQTT/TLS, AMQP/TLS, HTTPS + MQTT/AMQP over WebSocket off)" in listening
        assert "8883" not in banner and "8443" not in banner and "5671" not in banner
        assert "ca-cert" not in banner
        create = next(line for line in hub.stdout_lines if "methodhub device create" in line)
        words = shlex.split(create, comments=True)
        home = tmp_path / "home"  # where the default data dir would be
        env = {k: v for k, v in os.environ.items() if k != "METHODHUB_DATA_DIR"}
        result = subprocess.run(
            [sys.executable, "-m", *words],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "HOME": str(home), "XDG_DATA_HOME": str(home / "data")},
        )
        assert result.returncode == 0, result.stderr
        assert DEVICE_CS.fullmatch(result.stdout.strip())
        assert "pump-17" in hub.cli("device", "list").stdout.split()
        assert not home.exists()
    finally:
        assert hub.stop() == 0


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_serve_makes_an_existing_data_dir_and_its_secrets_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)  # made by the user (mkdir -p), or by a methodhub before the fix
    data_dir.chmod(0o755)
    secrets = ["registry.db", "registry.db-wal", "registry.db-shm", "tls/ca-key.pem", "tls/server-key.pem"]
    hub = HubProcess(data_dir, listeners=("mqtt", "http", "mqtts")).start()
    try:
        assert _mode(data_dir) == 0o700 and _mode(data_dir / "tls") == 0o700
        for name in secrets:
            assert _mode(data_dir / name) == 0o600, name
        warning = _wait_for_line(hub.stderr_lines, "WARNING")
        assert f"{data_dir} (mode 0755)" in warning and "owner-only" in warning
    finally:
        hub.stop()
    # what a hub before the fix left behind: a readable registry and keys
    for name in ("registry.db", "tls/ca-key.pem"):
        (data_dir / name).chmod(0o644)
    hub.stderr_lines.clear()
    hub.start()
    try:
        warnings = [line for line in hub.stderr_lines if "WARNING" in line]
        assert len(warnings) == 1
        assert f"{data_dir / 'registry.db'} (mode 0644)" in warnings[0]
        assert f"{data_dir / 'tls' / 'ca-key.pem'} (mode 0644)" in warnings[0]
        for name in secrets:
            assert _mode(data_dir / name) == 0o600, name
    finally:
        hub.stop()


def test_a_second_hub_on_the_same_data_dir_refuses_and_leaves_the_first_alone(shared_hub: HubProcess) -> None:
    record = (shared_hub.data_dir / "hub.json").read_text()
    assert shared_hub.proc is not None
    result = shared_hub.cli(
        "serve", "--mqtt-port", "0", "--http-port", "0", "--mqtts-port", "-1", "--https-port", "-1",
        "--amqps-port", "-1", check=False, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    error = _one_line_error(result)
    assert f"in use by another hub (pid {shared_hub.proc.pid})" in error and "--data-dir" in error
    assert (shared_hub.data_dir / "hub.json").read_text() == record
    assert SERVICE_CS.fullmatch(shared_hub.cli("connection-string").stdout.strip())
    assert httpx.get(f"{shared_hub.http_url}/health").status_code == 200


def test_client_commands_say_that_the_hub_was_killed(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data").start()
    hub.create_device("pump-1")
    assert hub.proc is not None
    pid = hub.proc.pid
    hub.proc.kill()  # hub.json stays behind
    hub.proc.wait()
    assert (hub.data_dir / "hub.json").exists()
    for command in (["invoke", "pump-1", "m"], ["device", "run", "pump-1"]):
        result = hub.cli(*command, check=False, timeout=30)
        assert result.returncode == 5, command
        error = _one_line_error(result)
        assert f"(pid {pid}) is not running: it was killed or crashed" in error
        assert f"methodhub serve --data-dir {hub.data_dir}" in error
    hub.start()  # the kernel dropped the dead hub's lock
    try:
        assert hub.cli("invoke", "pump-1", "m", check=False).returncode == 3
    finally:
        hub.stop()


# -- found by a new user: no tracebacks, one line and an exit code -------------------------------------


@pytest.fixture(scope="module")
def tls_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("tls-hub"), listeners=("mqtt", "http", "https")).start()
    yield hub
    hub.stop()


def test_invoke_mistakes_are_one_line_and_an_exit_code(tls_hub: HubProcess, tmp_path: Path) -> None:
    service_cs = tls_hub.cli("connection-string").stdout.strip()
    device_cs = tls_hub.cli("device", "create", "cli-mistakes").stdout.strip()
    elsewhere = tmp_path / "laptop"  # a data dir without the hub's CA

    def invoke(*args: str, data_dir: Path = tls_hub.data_dir) -> tuple[int, str]:
        result = methodhub("invoke", "nobody", "m", *args, data_dir=data_dir, check=False, timeout=60)
        return result.returncode, _one_line_error(result)

    code, error = invoke("--url", f"http://127.0.0.1:{_closed_port()}")
    assert code == 5 and "cannot reach the hub" in error
    code, error = invoke("--url", "127.0.0.1:8080")
    assert code == 2 and "http://HOST:PORT" in error
    code, error = invoke("--connection-string", "HostName=x;garbage")
    assert code == 2 and "is not a service connection string" in error
    code, error = invoke("--connection-string", device_cs)
    assert code == 2 and "SharedAccessKeyName" in error and "methodhub connection-string" in error
    # https: the data dir's development CA is trusted by default; elsewhere, --cacert
    code, error = invoke("--url", tls_hub.https_url)
    assert code == 1 and "404001" in error
    code, error = invoke("--url", tls_hub.https_url, "--connection-string", service_cs, data_dir=elsewhere)
    assert code == 5 and "is not trusted" in error and "--cacert" in error
    code, error = invoke(
        "--url", tls_hub.https_url, "--connection-string", service_cs, "--cacert", str(tls_hub.ca_file),
        data_dir=elsewhere,
    )  # fmt: skip
    assert code == 1 and "404001" in error
    code, error = invoke("--url", tls_hub.https_url, "--cacert", str(tmp_path / "none.pem"))
    assert code == 2 and "no such file" in error


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_invoke_when_the_hub_stops_during_the_call(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data").start()
    try:
        device = PahoDevice(hub, "slow", hub.create_device("slow")).online()
        call = subprocess.Popen(
            [sys.executable, "-m", "methodhub", "--data-dir", str(hub.data_dir), "invoke", "slow", "m"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        device.next_request()  # the call is in flight; the device never answers
        assert hub.proc is not None
        hub.proc.send_signal(signal.SIGTERM)
        out, err = call.communicate(timeout=30)
        result = subprocess.CompletedProcess(call.args, call.returncode, out, err)
        assert result.returncode == 5 and out == ""
        assert "hub" in _one_line_error(result)
        device.close()
    finally:
        hub.stop()


def test_device_run_stops_with_one_line_when_its_device_is_deleted(
    shared_hub: HubProcess, device_id: str
) -> None:
    shared_hub.create_device(device_id)
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "methodhub",
            "device",
            "run",
            device_id,
            "--data-dir",
            str(shared_hub.data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        shared_hub.cli("invoke", device_id, "ping", "--connect-timeout", "20")  # it is online
        shared_hub.cli("device", "delete", device_id)
        _, err = sim.communicate(timeout=30)
    finally:
        sim.kill()
        sim.wait()
    assert sim.returncode == 1
    assert "Traceback" not in err
    error = err.strip().splitlines()[-1]
    assert error.startswith("methodhub: error: the hub refused the credentials of")
    assert "deleted or disabled" in error and "methodhub device list" in error


def test_device_run_with_a_service_connection_string_is_a_usage_error(shared_hub: HubProcess) -> None:
    service_cs = shared_hub.cli("connection-string").stdout.strip()
    result = shared_hub.cli("device", "run", "x", "--connection-string", service_cs, check=False)
    assert result.returncode == 2
    assert "is not a device connection string" in _one_line_error(result)
