"""The CLI for daily work against a running hub: ``token``, ``device list`` with connection state,
``device enable|disable|regenerate-key``, ``policy ...``, ``calls`` (and ``--follow``), ``status``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support import HOSTNAME, HubProcess, PahoDevice, methodhub, parse_cs

API = "api-version=2021-04-12"


def _call(hub: HubProcess, token: str, device_id: str) -> httpx.Response:
    return httpx.post(
        f"{hub.http_url}/twins/{device_id}/methods?{API}",
        headers={"authorization": token},
        json={"methodName": "m", "responseTimeoutInSeconds": 5},
        timeout=20,
    )


def _eventually(check: Callable[[], bool], timeout: float = 10) -> bool:
    """Whether ``check()`` holds within ``timeout`` seconds (the hub's change feed polls twice a second)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _refused(hub: HubProcess, device_id: str, key: str) -> bool:
    dev = PahoDevice(hub, device_id, key)
    try:
        return dev.connect() != 0
    finally:
        dev.close()


def test_token_works_with_curl_style_requests(shared_hub: HubProcess, device_id: str) -> None:
    result = shared_hub.cli("token", "--ttl", "10m")
    token = result.stdout.strip()
    assert result.stdout.count("\n") == 1 and token.startswith("SharedAccessSignature sr=")
    assert "skn=iothubowner" in token and "valid until" in result.stderr
    expiry = int(token.rsplit("se=", 1)[1].split("&")[0])
    assert 590 <= expiry - time.time() <= 610
    shared_hub.create_device(device_id)
    assert "404103" in _call(shared_hub, token, device_id).text  # authorized: just offline
    forged = token.replace("sig=", "sig=A")
    assert _call(shared_hub, forged, device_id).status_code == 401
    service = shared_hub.cli("token", "--policy", "registryRead").stdout.strip()
    assert (
        httpx.get(f"{shared_hub.http_url}/devices?{API}", headers={"authorization": service}).status_code
        == 200
    )
    assert _call(shared_hub, service, device_id).status_code == 401  # RegistryRead cannot call


def test_device_token_connects_the_device(shared_hub: HubProcess, device_id: str) -> None:
    shared_hub.create_device(device_id)
    token = shared_hub.cli("token", "--device", device_id).stdout.strip()
    assert f"sr={HOSTNAME}%2Fdevices%2F{device_id}" in token and "skn=" not in token
    dev = PahoDevice(shared_hub, device_id, None, password=token)
    try:
        assert dev.connect() == 0
    finally:
        dev.close()
    device_cs = json.loads(shared_hub.cli("device", "show", device_id).stdout)["connectionString"]
    from_cs = methodhub("token", "--connection-string", device_cs, data_dir=Path("/nonexistent-data-dir"))
    dev = PahoDevice(shared_hub, device_id, None, password=from_cs.stdout.strip())
    try:
        assert dev.connect() == 0  # signed from the connection string alone: no data dir needed
    finally:
        dev.close()


def test_token_mistakes(shared_hub: HubProcess) -> None:
    unknown = shared_hub.cli("token", "--device", "nobody-here", check=False)
    assert unknown.returncode == 1 and "no device 'nobody-here'" in unknown.stderr and unknown.stdout == ""
    policy = shared_hub.cli("token", "--policy", "nope", check=False)
    assert policy.returncode == 1 and "iothubowner" in policy.stderr
    both = shared_hub.cli("token", "--policy", "service", "--device", "x", check=False)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    module = shared_hub.cli("token", "--module", "m", check=False)
    assert module.returncode == 2 and "--module needs --device" in module.stderr
    ttl = shared_hub.cli("token", "--ttl", "soon", check=False)
    assert ttl.returncode == 2 and "not a duration" in ttl.stderr
    cs = shared_hub.cli("connection-string").stdout.strip()
    device_with_service = shared_hub.cli("token", "--connection-string", cs, "--device", "x", check=False)
    assert device_with_service.returncode == 2 and "device's connection string" in device_with_service.stderr
    garbage = shared_hub.cli("token", "--connection-string", "nonsense", check=False)
    assert garbage.returncode == 2 and "Traceback" not in garbage.stderr


def test_device_list_shows_connection_state_and_last_activity(shared_hub: HubProcess, device_id: str) -> None:
    key = shared_hub.create_device(device_id)
    shared_hub.create_device(f"{device_id}-off")
    dev = PahoDevice(shared_hub, device_id, key).online()
    try:
        rows = {r["deviceId"]: r for r in json.loads(shared_hub.cli("device", "list", "--json").stdout)}
        assert rows[device_id]["connectionState"] == "Connected" and rows[device_id]["status"] == "enabled"
        assert rows[device_id]["lastActivityTime"].startswith(time.strftime("%Y-", time.gmtime()))
        assert rows[f"{device_id}-off"]["connectionState"] == "Disconnected"
        assert rows[f"{device_id}-off"]["lastActivityTime"] is None
        lines = shared_hub.cli("device", "list").stdout.splitlines()
        line = next(line for line in lines if line.split("\t")[0] == device_id)
        assert line.split("\t")[1:3] == ["enabled", "Connected"]
    finally:
        dev.close()


def test_device_list_without_a_running_hub_says_unknown(tmp_path: Path) -> None:
    methodhub("device", "create", "pump-1", data_dir=tmp_path / "d")
    listed = methodhub("device", "list", data_dir=tmp_path / "d")
    assert listed.stdout == "pump-1\tenabled\tunknown\t-\n"
    assert "connection state unknown: no hub is running" in listed.stderr
    rows = json.loads(methodhub("device", "list", "--json", data_dir=tmp_path / "d").stdout)
    assert rows == [
        {"deviceId": "pump-1", "status": "enabled", "connectionState": "unknown", "lastActivityTime": None}
    ]


def test_disable_enable_and_regenerate_key(shared_hub: HubProcess, device_id: str) -> None:
    key = shared_hub.create_device(device_id)
    shared_hub.cli("device", "disable", device_id, "--reason", "maintenance")
    shown = json.loads(shared_hub.cli("device", "show", device_id).stdout)
    assert shown["status"] == "disabled" and shown["statusReason"] == "maintenance"
    assert _eventually(lambda: _refused(shared_hub, device_id, key))  # a disabled device is refused
    shared_hub.cli("device", "enable", device_id)
    assert json.loads(shared_hub.cli("device", "show", device_id).stdout)["status"] == "enabled"
    regenerated = shared_hub.cli("device", "regenerate-key", device_id)
    new_key = parse_cs(regenerated.stdout)["SharedAccessKey"]
    assert new_key != key and "new primary key" in regenerated.stderr
    assert _eventually(lambda: _refused(shared_hub, device_id, key))  # the old key stopped working
    fresh = PahoDevice(shared_hub, device_id, new_key)
    assert fresh.connect() == 0
    fresh.close()
    secondary = shared_hub.cli("device", "regenerate-key", device_id, "--secondary")
    shown = json.loads(shared_hub.cli("device", "show", device_id).stdout)
    assert (
        shown["primaryKey"] == new_key
        and shown["secondaryKey"] == parse_cs(secondary.stdout)["SharedAccessKey"]
    )
    for command in (["enable"], ["disable"], ["regenerate-key"]):
        missing = shared_hub.cli("device", *command, "nobody-at-all", check=False)
        assert (
            missing.returncode == 1 and "device list" in missing.stderr and "Traceback" not in missing.stderr
        )


def test_custom_policy_with_chosen_rights(shared_hub: HubProcess, device_id: str) -> None:
    name = f"p-{device_id}"[:64]
    created = shared_hub.cli("policy", "create", name, "--rights", "RegistryRead,ServiceConnect")
    cs = parse_cs(created.stdout)
    assert cs["SharedAccessKeyName"] == name
    listed = {p["name"]: p for p in json.loads(shared_hub.cli("policy", "list", "--json").stdout)}
    assert listed[name] == {"name": name, "rights": ["RegistryRead", "ServiceConnect"], "builtIn": False}
    assert listed["iothubowner"]["builtIn"] is True
    assert f"{name}\tRegistryRead,ServiceConnect\tcustom" in shared_hub.cli("policy", "list").stdout
    shared_hub.create_device(device_id)
    token = shared_hub.cli("token", "--policy", name).stdout.strip()
    assert "404103" in _call(shared_hub, token, device_id).text  # ServiceConnect: may call
    create_device = httpx.put(
        f"{shared_hub.http_url}/devices/{device_id}-x?{API}", headers={"authorization": token}, json={}
    )
    assert create_device.status_code == 401  # no RegistryWrite
    shared_hub.cli("policy", "regenerate-key", name)
    assert _eventually(lambda: _call(shared_hub, token, device_id).status_code == 401)  # the old key's
    shared_hub.cli("policy", "delete", name)
    assert name not in shared_hub.cli("policy", "list").stdout


def test_policy_mistakes(shared_hub: HubProcess) -> None:
    rights = shared_hub.cli("policy", "create", "x1", "--rights", "ServiceConnect,Admin", check=False)
    assert (
        rights.returncode == 2
        and "unknown right(s) Admin" in rights.stderr
        and "DeviceConnect" in rights.stderr
    )
    name = shared_hub.cli("policy", "create", "bad name", "--rights", "ServiceConnect", check=False)
    assert name.returncode == 2 and "1 to 64 letters" in name.stderr
    taken = shared_hub.cli("policy", "create", "service", "--rights", "ServiceConnect", check=False)
    assert taken.returncode == 1 and "already exists" in taken.stderr
    built_in = shared_hub.cli("policy", "delete", "iothubowner", check=False)
    assert built_in.returncode == 1 and "built-in" in built_in.stderr
    assert "iothubowner" in shared_hub.cli("policy", "list").stdout
    for command in (["delete", "nope"], ["regenerate-key", "nope"]):
        missing = shared_hub.cli("policy", *command, check=False)
        assert missing.returncode == 1 and "'nope'" in missing.stderr and "policy list" in missing.stderr


def test_calls_lists_the_history_with_filters(shared_hub: HubProcess, device_id: str) -> None:
    shared_hub.create_device(device_id)
    first = shared_hub.cli("invoke", device_id, "reboot", "--queue").stdout.strip()
    second = shared_hub.cli("invoke", device_id, "update", "--queue").stdout.strip()
    rows = json.loads(shared_hub.cli("calls", "--device", device_id, "--json").stdout)
    assert [r["callId"] for r in rows] == [second, first]  # newest first
    only = json.loads(shared_hub.cli("calls", "--device", device_id, "--method", "reboot", "--json").stdout)
    assert [r["callId"] for r in only] == [first]  # filtered even by a hub that ignores methodName
    recent = json.loads(shared_hub.cli("calls", "--device", device_id, "--since", "1h", "--json").stdout)
    assert len(recent) == 2
    people = shared_hub.cli("calls", "--device", device_id, "--limit", "1").stdout.splitlines()
    assert len(people) == 1 and people[0].split("\t")[1:4] == [device_id, "update", "queued"]
    assert people[0].endswith(second)
    none = shared_hub.cli("calls", "--device", f"nobody-{uuid.uuid4().hex[:8]}")  # never called
    assert none.stdout == "" and "no calls" in none.stderr
    bad = shared_hub.cli("calls", "--limit", "0", check=False)
    assert bad.returncode == 2 and "--limit" in bad.stderr


def test_calls_follow_prints_new_calls_until_ctrl_c(shared_hub: HubProcess, device_id: str) -> None:
    shared_hub.create_device(device_id)
    shared_hub.cli("invoke", device_id, "older", "--queue")
    newest = shared_hub.cli("invoke", device_id, "newest", "--queue").stdout.strip()
    cmd = [sys.executable, "-m", "methodhub", "--data-dir", str(shared_hub.data_dir)]
    tail = subprocess.Popen(
        [*cmd, "calls", "--device", device_id, "--follow", "--json", "--limit", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stdout is not None
        assert json.loads(tail.stdout.readline())["callId"] == newest  # the latest --limit first
        time.sleep(1.5)
        call_id = shared_hub.cli("invoke", device_id, "reboot", "--queue").stdout.strip()
        line = json.loads(tail.stdout.readline())  # within a second or two, and not the older one
        assert line["callId"] == call_id and line["state"] == "queued"
        shared_hub.cli("call", "cancel", call_id)
        assert json.loads(tail.stdout.readline())["state"] == "cancelled"  # a change of state too
    finally:
        tail.send_signal(signal.SIGINT)
        _, err = tail.communicate(timeout=10)
    assert tail.returncode == 130 and "interrupted" in err and "Traceback" not in err


def test_status_of_the_running_hub(shared_hub: HubProcess, device_id: str) -> None:
    key = shared_hub.create_device(device_id)
    dev = PahoDevice(shared_hub, device_id, key).online()
    dev.serve(lambda name, payload: (200, b"{}"))
    token = shared_hub.service_token()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=20) as client:
            while not stop.is_set():
                client.post(
                    f"{shared_hub.http_url}/twins/{device_id}/methods?{API}",
                    headers={"authorization": token},
                    json={"methodName": "m", "responseTimeoutInSeconds": 5},
                )

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        report = json.loads(shared_hub.cli("status", "--json").stdout)
    finally:
        stop.set()
        worker.join(10)
        dev.close()
    runtime = json.loads((shared_hub.data_dir / "hub.json").read_text())
    assert report["pid"] == runtime["pid"] and report["version"]
    assert report["addresses"] == {"mqtt": runtime["mqtt"], "http": runtime["http"]}
    assert report["devicesOnline"] >= 1 and report["devices"] >= report["devicesOnline"]
    assert report["callsPerSecond"] > 0
    people = shared_hub.cli("status").stdout
    assert f"HTTP: {runtime['http']}" in people and "devices online:" in people and "calls/s:" in people


def test_status_without_a_hub_is_exit_5(tmp_path: Path) -> None:
    methodhub("connection-string", data_dir=tmp_path / "d")
    result = methodhub("status", data_dir=tmp_path / "d", check=False)
    assert result.returncode == 5 and "methodhub serve" in result.stderr and result.stdout == ""
