"""AMQP devices end to end, without Node: ``methodhub serve --amqps-port 0`` and a device driven by
methodhub.amqp's client-role AmqpConnection (tests/amqp_support.py) over a real TLS socket, trusting
the hub's development CA, or over a WebSocket (``AMQPWSB10``) on the HTTPS port. Calls are made
through the REST API, as a backend makes them."""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from methodhub.amqp.events import LinkDetached
from tests.amqp_support import AmqpDevice
from tests.support import HOSTNAME, Backend, HubProcess, PahoDevice, error_code

pytestmark = pytest.mark.timeout(120)

LISTENERS = ("mqtt", "http", "mqtts", "https", "amqps", "amqp")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("amqp-hub"), listeners=LISTENERS).start()
    yield hub
    hub.stop()


@pytest.fixture
def backend(hub: HubProcess) -> Iterator[Backend]:
    client = Backend(hub)
    yield client
    client.close()


def _echo(name: str, payload: bytes) -> tuple[int, bytes | None]:
    return 200, payload


def _online(hub: HubProcess, device_id: str, key: str, **options: Any) -> AmqpDevice:
    device = AmqpDevice(hub, device_id, key, **options).connect()
    assert device.authenticate() == (200, "OK")
    device.enable_methods()
    return device


def _wait_for_runtime(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "hub.json"
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, "no hub.json"
        time.sleep(0.05)
    return dict(json.loads(path.read_text()))


def test_the_amqps_listener_is_logged_recorded_and_speaks_tls_with_the_dev_ca(hub: HubProcess) -> None:
    port = hub.ports["amqps"]
    assert port != 5671  # --amqps-port 0: a free port, not the default
    lines = [line for line in hub.stderr_lines if re.search(r"\bamqps listening on 127\.0\.0\.1:\d+", line)]
    assert len(lines) == 1 and lines[0].rstrip().endswith(f"127.0.0.1:{port}"), hub.stderr_lines
    assert _wait_for_runtime(hub.data_dir)["amqps"] == f"127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(hub.ca_file))  # verifies the chain and the name
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=HOSTNAME) as tls,
    ):
        tls.sendall(b"AMQP\x00\x01\x00\x00")
        assert tls.recv(8) == b"AMQP\x00\x01\x00\x00"  # the hub's header: AMQP without SASL, as Node asks


@pytest.mark.parametrize(
    "options", [{}, {"websocket": True}, {"plain": True}], ids=["amqps", "amqpws", "amqp-plain"]
)
def test_a_device_answers_a_rest_call(
    hub: HubProcess, backend: Backend, device_id: str, options: dict[str, bool]
) -> None:
    key = hub.create_device(device_id)
    device = _online(hub, device_id, key, **options).serve(
        lambda name, payload: (201, json.dumps({"method": name, "got": json.loads(payload)}).encode())
    )
    try:
        if options.get("websocket"):  # the 101 echoed the subprotocol (Node's ws aborts without it)
            assert device.stream.accepted_subprotocol == "AMQPWSB10"
        response = backend.invoke(device_id, "reboot", {"delay": 5}, responseTimeoutInSeconds=10)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": 201, "payload": {"method": "reboot", "got": {"delay": 5}}}
        assert device.requests == [("reboot", b'{"delay":5}')]
        # an answer with no body is payload null, as the Node SDK sends for `undefined`
        device_quiet = backend.invoke(device_id, "reboot", None)
        assert device_quiet.json()["status"] == 201
    finally:
        device.close()


def test_a_module_answers_module_calls_only(hub: HubProcess, backend: Backend, device_id: str) -> None:
    hub.create_device(device_id)
    created = hub.cli("device", "create", device_id, "--module", "filter").stdout.strip()
    key = dict(part.split("=", 1) for part in created.split(";"))["SharedAccessKey"]
    module = _online(hub, device_id, key, module_id="filter").serve(_echo)
    try:
        response = backend.invoke(device_id, "echo", {"to": "module"}, module_id="filter")
        assert response.json() == {"status": 200, "payload": {"to": "module"}}
        response = backend.invoke(device_id, "echo", {})
        assert response.status_code == 404 and error_code(response) == 404103
    finally:
        module.close()


@pytest.mark.parametrize("websocket", [False, True], ids=["amqps", "amqpws"])
def test_128_kb_payloads_each_way(hub: HubProcess, backend: Backend, device_id: str, websocket: bool) -> None:
    """Many AMQP frames (the hub's max-frame-size) and TLS records / WebSocket frames each way."""
    key = hub.create_device(device_id)
    big = "q" * (128 * 1024 - 2)  # the JSON string, quotes included, is exactly 128 KiB
    device = _online(hub, device_id, key, websocket=websocket).serve(
        lambda name, payload: (200, json.dumps(json.loads(payload)[::-1]).encode())
    )
    try:
        response = backend.invoke(device_id, "echo", big)
        assert response.status_code == 200, response.text[:300]
        assert response.json() == {"status": 200, "payload": big[::-1]}
        assert device.requests[0][1] == json.dumps(big).encode()
    finally:
        device.close()


def test_a_wrong_key_is_put_token_401_and_the_hub_keeps_serving(
    hub: HubProcess, backend: Backend, device_id: str
) -> None:
    hub.create_device(device_id)
    wrong = AmqpDevice(hub, device_id, "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXkgISE=").connect()
    try:
        status, description = wrong.authenticate()
        assert status == 401
        assert "does not match either the primary or secondary key" in description
        response = backend.invoke(device_id, "echo", {})
        assert response.status_code == 404 and error_code(response) == 404103  # not connected
    finally:
        wrong.close()
    other = f"{device_id}-ok"
    device = _online(hub, other, hub.create_device(other)).serve(_echo)
    try:
        assert backend.invoke(other, "echo", "still").json() == {"status": 200, "payload": "still"}
    finally:
        device.close()


def test_closed_device_is_offline_and_a_drop_mid_call_is_404104_at_once(
    hub: HubProcess, backend: Backend, device_id: str
) -> None:
    key = hub.create_device(device_id)
    device = _online(hub, device_id, key).serve(_echo)
    assert backend.invoke(device_id, "echo", 1).json() == {"status": 200, "payload": 1}
    device.close()
    deadline = time.monotonic() + 10
    while (response := backend.invoke(device_id, "echo", 2)).status_code != 404:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)
    assert error_code(response) == 404103

    got_call = threading.Event()

    def never(name: str, payload: bytes) -> tuple[int, bytes | None]:
        got_call.set()
        time.sleep(30)
        return 200, payload

    dropping = _online(hub, device_id, key).serve(never)
    result: dict[str, httpx.Response] = {}
    call_backend = Backend(hub)
    thread = threading.Thread(
        target=lambda: result.setdefault(
            "r", call_backend.invoke(device_id, "slow", {}, responseTimeoutInSeconds=60)
        )
    )
    thread.start()
    assert got_call.wait(10)
    dropped = time.monotonic()
    assert dropping.stream is not None
    dropping.stream.close()  # the device vanishes: no AMQP close
    thread.join(20)
    call_backend.close()
    assert time.monotonic() - dropped < 15
    assert result["r"].status_code == 404 and error_code(result["r"]) == 404104, result["r"].text


def test_connect_timeout_waits_for_an_amqp_device(hub: HubProcess, device_id: str) -> None:
    key = hub.create_device(device_id)
    result: dict[str, httpx.Response] = {}
    call_backend = Backend(hub)
    thread = threading.Thread(
        target=lambda: result.setdefault(
            "r",
            call_backend.invoke(
                device_id, "echo", "late", connectTimeoutInSeconds=30, responseTimeoutInSeconds=10
            ),
        )
    )
    thread.start()
    time.sleep(1)
    assert thread.is_alive()  # waiting for the device, not 404103 at once
    device = _online(hub, device_id, key).serve(_echo)
    try:
        thread.join(40)
        assert result["r"].json() == {"status": 200, "payload": "late"}
    finally:
        call_backend.close()
        device.close()


@pytest.mark.parametrize("first", ["mqtt", "amqp"])
def test_a_second_connection_takes_over_across_transports(
    hub: HubProcess, backend: Backend, device_id: str, first: str
) -> None:
    """The same device on MQTT then AMQP, and AMQP then MQTT: the newer connection gets the calls;
    the older one is closed (MQTT) or its links detached with amqp:link:detach-forced (AMQP)."""
    key = hub.create_device(device_id)
    if first == "mqtt":
        old_mqtt = PahoDevice(hub, device_id, key).online()
        old_mqtt.serve(lambda name, payload: (200, b'"old"'))
        assert backend.invoke(device_id, "echo", {}).json()["payload"] == "old"
        new_amqp = _online(hub, device_id, key).serve(lambda name, payload: (200, b'"new"'))
        try:
            assert old_mqtt.disconnects.get(timeout=10) is not None  # the hub closed the MQTT connection
            for _ in range(3):
                assert backend.invoke(device_id, "echo", {}).json() == {"status": 200, "payload": "new"}
        finally:
            new_amqp.close()
            old_mqtt.close()
    else:
        old_amqp = _online(hub, device_id, key).serve(lambda name, payload: (200, b'"old"'))
        assert backend.invoke(device_id, "echo", {}).json()["payload"] == "old"
        new_mqtt = PahoDevice(hub, device_id, key).online()
        new_mqtt.serve(lambda name, payload: (200, b'"new"'))
        try:
            deadline = time.monotonic() + 10
            while not (old_amqp.ended.is_set() or _methods_detached(old_amqp)):
                assert time.monotonic() < deadline, (
                    f"the old AMQP connection was left alone: {old_amqp.events}"
                )
                time.sleep(0.05)
            for _ in range(3):
                assert backend.invoke(device_id, "echo", {}).json() == {"status": 200, "payload": "new"}
            assert len(old_amqp.requests) == 1
        finally:
            new_mqtt.close()
            old_amqp.close()


def _methods_detached(device: AmqpDevice) -> bool:
    return any(
        isinstance(e, LinkDetached) and e.link in (device.methods_in, device.methods_out)
        for e in device.events
    )


def test_amqps_port_minus_one_turns_the_listener_off(tmp_path: Path) -> None:
    hub = HubProcess(
        tmp_path / "data", listeners=("mqtt", "http", "mqtts"), args=["--amqps-port", "-1"]
    ).start()
    try:
        runtime = _wait_for_runtime(hub.data_dir)
        assert "amqps" not in runtime and "mqtts" in runtime
        assert not any("amqps listening" in line for line in hub.stderr_lines)
        assert "amqp" not in runtime  # plain AMQP is off unless --amqp-port asks for it
    finally:
        hub.stop()
