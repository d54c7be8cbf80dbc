"""Device connections: authentication, topic ACLs, QoS, keep-alive, malformed input."""

from __future__ import annotations

import time

import pytest

from tests.support import (
    HOSTNAME,
    Backend,
    HubProcess,
    PahoDevice,
    RawMqtt,
    connect_packet,
    remaining_length,
    sign,
)

CONNACK_BAD_CREDENTIALS = 4
CONNACK_NOT_AUTHORIZED = 5


def _token_cases(device_id: str, key: str, other_key: str) -> dict[str, tuple[str | None, str | None, int]]:
    now = int(time.time())
    own = f"{HOSTNAME}/devices/{device_id}"
    return {
        # name: (username, password, expected CONNACK)
        "expired": (None, sign(own, key, now - 5), CONNACK_NOT_AUTHORIZED),
        "wrong-signature": (None, sign(own, other_key, now + 600), CONNACK_NOT_AUTHORIZED),
        "wrong-resource": (
            None,
            sign(f"{HOSTNAME}/devices/someone-else", key, now + 600),
            CONNACK_NOT_AUTHORIZED,
        ),
        "wrong-host-in-token": (
            None,
            sign(f"elsewhere/devices/{device_id}", key, now + 600),
            CONNACK_NOT_AUTHORIZED,
        ),
        "not-a-token": (None, "hunter2", CONNACK_BAD_CREDENTIALS),
        # issue 9: CONNACK 3 (server unavailable) before, from int() of 5,000 digits / float(10**400)
        "se-thousands-of-digits": (None, f"SharedAccessSignature sr={own}&sig=x&se={'9' * 5000}", 4),
        "se-signed-10e400": (None, sign(own, key, 10**400), CONNACK_BAD_CREDENTIALS),
        "username-for-other-device": (
            f"{HOSTNAME}/other/?api-version=2021-04-12",
            sign(own, key, now + 600),
            CONNACK_BAD_CREDENTIALS,
        ),
        "username-for-other-hub": (
            f"elsewhere/{device_id}/?api-version=2021-04-12",
            sign(own, key, now + 600),
            CONNACK_BAD_CREDENTIALS,
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "wrong-signature",
        "wrong-resource",
        "wrong-host-in-token",
        "not-a-token",
        "se-thousands-of-digits",
        "se-signed-10e400",
        "username-for-other-device",
        "username-for-other-hub",
    ],
)
def test_bad_device_credentials_are_refused(shared_hub: HubProcess, device_id: str, case: str) -> None:
    key = shared_hub.create_device(device_id)
    other_key = shared_hub.create_device(device_id + "-other")
    username, password, expected = _token_cases(device_id, key, other_key)[case]
    dev = PahoDevice(shared_hub, device_id, None, password=password, username=username)
    try:
        assert dev.connect() == expected
    finally:
        dev.client.loop_stop()


def test_unknown_device_is_refused(shared_hub: HubProcess) -> None:
    fake_key = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI="
    dev = PahoDevice(shared_hub, "never-registered", fake_key)
    try:
        assert dev.connect() == CONNACK_NOT_AUTHORIZED
    finally:
        dev.client.loop_stop()


def test_secondary_key_works(shared_hub: HubProcess, device_id: str) -> None:
    import json

    shared_hub.create_device(device_id)
    shown = json.loads(shared_hub.cli("device", "show", device_id).stdout)
    dev = PahoDevice(shared_hub, device_id, shown["secondaryKey"])
    try:
        assert dev.connect() == 0
    finally:
        dev.close()


def test_disabled_device_is_refused_and_kicked(
    shared_hub: HubProcess, backend: Backend, device_id: str
) -> None:
    key = shared_hub.create_device(device_id)
    dev = PahoDevice(shared_hub, device_id, key).online()
    etag = backend.http.get(f"/devices/{device_id}", headers={"Authorization": backend.token}).json()["etag"]
    response = backend.http.put(
        f"/devices/{device_id}",
        json={"deviceId": device_id, "status": "disabled"},
        headers={"Authorization": backend.token, "If-Match": f'"{etag}"'},
    )
    assert response.status_code == 200 and response.json()["status"] == "disabled"
    dev.disconnects.get(timeout=10)  # kicked by the registry change
    dev.client.loop_stop()
    again = PahoDevice(shared_hub, device_id, key)
    try:
        assert again.connect() == CONNACK_NOT_AUTHORIZED
    finally:
        again.client.loop_stop()


def test_deleting_a_device_from_the_cli_kicks_its_connection(shared_hub: HubProcess, device_id: str) -> None:
    dev = PahoDevice(shared_hub, device_id, shared_hub.create_device(device_id)).online()
    shared_hub.cli("device", "delete", device_id)
    dev.disconnects.get(timeout=10)
    dev.client.loop_stop()


def test_subscriptions_outside_the_namespace_are_refused(shared_hub: HubProcess, device_id: str) -> None:
    dev = PahoDevice(shared_hub, device_id, shared_hub.create_device(device_id))
    try:
        assert dev.connect() == 0
        assert dev.subscribe("devices/someone-else/messages/devicebound/#") == [0x80]
        assert dev.subscribe("#") == [0x80]
        assert dev.subscribe(f"devices/{device_id}/messages/devicebound/#") == [1]
        assert dev.subscribe("$iothub/methods/POST/#", qos=2) == [1]  # QoS 2 is granted as 1, as Azure
        assert dev.subscribe("$iothub/methods/POST/#", qos=0) == [0]
    finally:
        dev.close()


def test_publish_outside_the_namespace_closes_the_connection(shared_hub: HubProcess, device_id: str) -> None:
    dev = PahoDevice(shared_hub, device_id, shared_hub.create_device(device_id)).online()
    dev.client.publish("devices/someone-else/messages/events/", b"x", qos=1)
    dev.disconnects.get(timeout=10)
    dev.client.loop_stop()


def test_qos2_publish_closes_the_connection(shared_hub: HubProcess, device_id: str) -> None:
    dev = PahoDevice(shared_hub, device_id, shared_hub.create_device(device_id)).online()
    dev.client.publish(f"devices/{device_id}/messages/events/", b"x", qos=2)
    dev.disconnects.get(timeout=10)
    dev.client.loop_stop()


def test_telemetry_is_acknowledged(shared_hub: HubProcess, device_id: str) -> None:
    dev = PahoDevice(shared_hub, device_id, shared_hub.create_device(device_id)).online()
    try:
        info = dev.client.publish(f"devices/{device_id}/messages/events/a=b", b"{}", qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published()
    finally:
        dev.close()


def test_keepalive_is_enforced_at_one_and_a_half_times(shared_hub: HubProcess, device_id: str) -> None:
    key = shared_hub.create_device(device_id)
    raw = RawMqtt(shared_hub.mqtt_port)
    password = sign(f"{HOSTNAME}/devices/{device_id}", key, int(time.time()) + 600)
    raw.send(
        connect_packet(device_id, f"{HOSTNAME}/{device_id}/?api-version=2021-04-12", password, keepalive=1)
    )
    started = time.monotonic()
    data = raw.read_all(timeout=10)  # the hub closes a silent client (read_all fails the test if not)
    elapsed = time.monotonic() - started
    assert data == b"\x20\x02\x00\x00"  # CONNACK accepted, then nothing
    assert elapsed >= 1.2  # not before one and a half keep-alives (less the timer's slack)
    raw.close()


def test_pingreq_keeps_the_connection_alive(shared_hub: HubProcess, device_id: str) -> None:
    key = shared_hub.create_device(device_id)
    raw = RawMqtt(shared_hub.mqtt_port)
    password = sign(f"{HOSTNAME}/devices/{device_id}", key, int(time.time()) + 600)
    raw.send(
        connect_packet(device_id, f"{HOSTNAME}/{device_id}/?api-version=2021-04-12", password, keepalive=1)
    )
    raw.sock.settimeout(5)
    assert raw.sock.recv(4) == b"\x20\x02\x00\x00"
    for _ in range(4):  # 2.8 s in all, longer than 1.5 × keepalive
        time.sleep(0.7)
        raw.send(b"\xc0\x00")
        assert raw.sock.recv(2) == b"\xd0\x00"
    raw.close()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x30\x05\x00\x01a\x00\x00", id="publish-before-connect"),
        pytest.param(b"\xff\xff\xff\xff\xff", id="malformed-length"),
        pytest.param(b"\x00\x00", id="reserved-packet-type"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", id="http-on-mqtt-port"),
        pytest.param(b"\x10" + remaining_length(300 * 1024 * 1024), id="huge-declared-length"),
    ],
)
def test_malformed_input_closes_only_that_connection(
    shared_hub: HubProcess, backend: Backend, device_id: str, data: bytes
) -> None:
    healthy = PahoDevice(shared_hub, device_id, shared_hub.create_device(device_id)).online()
    healthy.serve(lambda name, payload: (200, b"true"))
    try:
        raw = RawMqtt(shared_hub.mqtt_port)
        raw.send(data)
        raw.read_all(timeout=10)  # closed by the hub
        raw.close()
        assert backend.invoke(device_id, "m").json() == {"status": 200, "payload": True}
    finally:
        healthy.close()


def test_bad_utf8_in_client_id_closes_the_connection(shared_hub: HubProcess) -> None:
    body = b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x02\xc3\x28"
    raw = RawMqtt(shared_hub.mqtt_port)
    raw.send(b"\x10" + remaining_length(len(body)) + body)
    raw.read_all(timeout=10)
    raw.close()


def test_unsupported_protocol_level_gets_connack_1(shared_hub: HubProcess) -> None:
    body = b"\x00\x04MQTT\x09\x02\x00\x3c\x00\x01x"
    raw = RawMqtt(shared_hub.mqtt_port)
    raw.send(b"\x10" + remaining_length(len(body)) + body)
    assert raw.read_all(timeout=10) == b"\x20\x02\x00\x01"
    raw.close()


def test_subscription_survives_a_hub_restart(fresh_hub: HubProcess, device_id: str) -> None:
    key = fresh_hub.create_device(device_id)
    dev = PahoDevice(fresh_hub, device_id, key).online()
    dev.close()
    fresh_hub.stop()
    fresh_hub.start()
    again = PahoDevice(fresh_hub, device_id, key)
    client = Backend(fresh_hub)
    try:
        assert again.connect() == 0  # no SUBSCRIBE, as Microsoft's SDK after a reconnect
        again.serve(lambda name, payload: (200, b'"still here"'))
        response = client.invoke(device_id, "m")
        assert response.json() == {"status": 200, "payload": "still here"}, response.text
    finally:
        again.close()
        client.close()
