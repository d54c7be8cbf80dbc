"""A hub whose registry is PostgreSQL: managed from another machine's CLI, and a database outage.

The hub runs as a user runs it (``methodhub serve --registry postgresql://...``); the CLI that
registers devices uses a data dir of its own, as it would on an operator's laptop.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import PostgresServer
from tests.support import HOSTNAME, HubProcess, PahoDevice, methodhub, parse_cs, sign, wait_until_stored

API = "api-version=2021-04-12"


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    """A server of the test's own: the test stops and restarts it."""
    server = PostgresServer(tmp_path).start()
    yield server
    server.destroy()


def service_token(connection_string: str) -> str:
    cs = parse_cs(connection_string)
    return sign(
        cs["HostName"],
        cs["SharedAccessKey"],
        int(time.time()) + 3600,
        cs["SharedAccessKeyName"],
        quoted=False,
    )


def echo(name: str, payload: bytes) -> tuple[int, bytes]:
    return 200, json.dumps({"method": name, "payload": json.loads(payload)}).encode()


def azure_error(response: httpx.Response) -> dict[str, object]:
    inner: dict[str, object] = json.loads(response.json()["Message"])
    return inner


def wait_for(condition, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_hub_on_postgres_survives_a_database_outage(tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.url
    cli_dir = tmp_path / "laptop"  # no registry.db here: everything comes from --registry
    hub = HubProcess(tmp_path / "node", args=["--registry", url]).start()
    http = httpx.Client(base_url=hub.http_url, timeout=30)
    devices: list[PahoDevice] = []
    try:
        created = methodhub("--registry", url, "device", "create", "pump-1", data_dir=cli_dir).stdout
        assert parse_cs(created)["HostName"] == HOSTNAME  # the hub's hostname, recorded in the registry
        key = parse_cs(created)["SharedAccessKey"]
        owner = methodhub("connection-string", "--registry", url, data_dir=cli_dir).stdout
        listed = methodhub("device", "list", data_dir=cli_dir, env={"METHODHUB_REGISTRY": url}).stdout
        assert listed.split()[:2] == ["pump-1", "enabled"]  # then its connection state, last activity
        assert not (cli_dir / "registry.db").exists()
        headers = {"Authorization": service_token(owner)}

        password = sign(f"{HOSTNAME}/devices/pump-1", key, int(time.time()) + 3600)
        device = PahoDevice(hub, "pump-1", None, password=password)
        devices.append(device)
        device.online()
        device.serve(echo)
        call = {"methodName": "reboot", "payload": {"delay": 5}, "responseTimeoutInSeconds": 10}
        answered = http.post(f"/twins/pump-1/methods?{API}", json=call, headers=headers)
        assert answered.status_code == 200, answered.text
        assert answered.json()["payload"] == {"method": "reboot", "payload": {"delay": 5}}
        # pump-1 leaves (its CleanSession=0 subscriptions stay in the registry); pump-2 stays online.
        device.close()
        assert wait_for(lambda: hub.metric("methodhub_sessions") == 0)
        registered = http.put(f"/devices/pump-2?{API}", json={"deviceId": "pump-2"}, headers=headers)
        assert registered.status_code == 200, registered.text
        key2 = registered.json()["authentication"]["symmetricKey"]["primaryKey"]
        online = PahoDevice(hub, "pump-2", key2, clean_session=True)
        devices.append(online)
        online.online()
        online.serve(echo)
        # pump-1's session must be in the database, not only queued in the hub, for the CONNECTs
        # below to need the database.
        assert "$iothub/methods/POST/#" in wait_until_stored(url, "pump-1")

        postgres.stop()

        # Registry reads answer 503 in Azure's error shape.
        down = http.get(f"/devices/pump-1?{API}", headers=headers)
        assert down.status_code == 503, down.text
        assert down.headers["iothub-errorcode"] == "ServiceUnavailable"
        error = azure_error(down)
        assert error["errorCode"] == 503001
        assert "unreachable" in str(error["message"])
        # A call to a device connected to the node needs no registry: it still works.
        still = http.post(f"/twins/pump-2/methods?{API}", json=call, headers=headers)
        assert still.status_code == 200, still.text
        # A call to a device that is not connected needs the registry to tell offline from unknown.
        unknown = http.post(f"/twins/nobody/methods?{API}", json=call, headers=headers)
        assert unknown.status_code == 503 and azure_error(unknown)["errorCode"] == 503001
        # CONNECTs that need the registry are refused as "server unavailable" (CONNACK 3): a new
        # token, and a token the hub has cached whose session must be loaded from the registry.
        fresh_password = sign(f"{HOSTNAME}/devices/pump-1", key, int(time.time()) + 7200)
        fresh = PahoDevice(hub, "pump-1", None, password=fresh_password)
        devices.append(fresh)
        assert fresh.connect() == 3
        cached = PahoDevice(hub, "pump-1", None, password=password)
        devices.append(cached)
        assert cached.connect() == 3

        postgres.start()

        # The hub recovers by itself.
        assert wait_for(lambda: http.get(f"/devices/pump-1?{API}", headers=headers).status_code == 200)
        back = PahoDevice(hub, "pump-1", key)
        devices.append(back)
        back.online()
        back.serve(echo)
        again = http.post(f"/twins/pump-1/methods?{API}", json=call, headers=headers)
        assert again.status_code == 200, again.text
        gone = http.post(f"/twins/nobody/methods?{API}", json=call, headers=headers)
        assert gone.status_code == 404 and azure_error(gone)["errorCode"] == 404001
        # A deletion made from the other machine reaches the node through the change feed: the
        # device's connection is closed.
        methodhub("--registry", url, "device", "delete", "pump-1", data_dir=cli_dir)
        back.disconnects.get(timeout=10)
        assert http.get(f"/devices/pump-1?{API}", headers=headers).status_code == 404
    finally:
        for paho_device in devices:
            paho_device.close()
        http.close()
        hub.stop()


def test_serve_with_an_unreachable_registry_exits_with_one_line(tmp_path: Path) -> None:
    url = "postgresql://hub:s3cret@127.0.0.1:9/methodhub?connect_timeout=3"
    result = methodhub(
        "serve", "--registry", url, "--mqtt-port", "0", "--http-port", "0", "--mqtts-port", "-1",
        "--https-port", "-1", "--amqps-port", "-1", data_dir=tmp_path / "data", check=False, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "methodhub: error: cannot reach the registry at postgresql://hub@127.0.0.1:9/methodhub"
    )
    assert "s3cret" not in result.stderr
    assert "start PostgreSQL" in lines[0]
