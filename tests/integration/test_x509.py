"""X.509 device authentication (issue 15) against a real hub: the registry's Azure shapes over REST,
`methodhub ca` and `device create --x509-*`, paho-mqtt devices presenting real TLS client
certificates on MQTT/TLS and MQTT over secure WebSocket, and AMQP devices (methodhub.amqp's client
role) presenting them on AMQP/TLS and AMQP over WebSocket, with no put-token."""

from __future__ import annotations

import datetime as dt
import json
import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from methodhub.auth.x509 import der_of, thumbprints
from methodhub.process.certificates import Issuer, issue, load_issuer, write_pair
from tests.amqp_support import AmqpDevice
from tests.support import HOSTNAME, Backend, HubProcess, PahoDevice, error_code, error_message, parse_cs, sign

LISTENERS = ("mqtt", "http", "mqtts", "https", "amqps")
NOT_AUTHORIZED = 5


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("x509"), listeners=LISTENERS)
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def backend(hub: HubProcess) -> Iterator[Backend]:
    backend = Backend(hub)
    yield backend
    backend.close()


def _headers(backend: Backend) -> dict[str, str]:
    return {"Authorization": backend.token}


def _dev_cert(hub: HubProcess, cn: str, out: Path, *extra: str) -> str:
    """``methodhub ca dev-cert``: writes OUT.pem and OUT-key.pem, returns the printed SHA-1 thumbprint."""
    return hub.cli("ca", "dev-cert", cn, "--out", str(out), *extra).stdout.strip()


def _pair(out: Path) -> tuple[Path, Path]:
    return Path(f"{out}.pem"), Path(f"{out}-key.pem")


def _device(hub: HubProcess, device_id: str, cert: tuple[Path, Path] | None, **kwargs: object) -> PahoDevice:
    return PahoDevice(hub, device_id, None, transport="mqtts", client_cert=cert, **kwargs)  # type: ignore[arg-type]


def _echo(device: PahoDevice) -> None:
    device.serve(lambda name, payload: (200, b'{"echo": "%s"}' % name.encode()))


def test_a_self_signed_device_connects_with_its_certificate_and_answers_calls(
    hub: HubProcess, backend: Backend, tmp_path: Path
) -> None:
    thumbprint = _dev_cert(hub, "cam-1", tmp_path / "cam-1")
    assert len(thumbprint) == 40
    printed = hub.cli("device", "create", "cam-1", "--x509-thumbprint", thumbprint.lower()).stdout.strip()
    assert printed == f"HostName={HOSTNAME};DeviceId=cam-1;x509=true"
    device = _device(hub, "cam-1", _pair(tmp_path / "cam-1")).online()
    try:
        _echo(device)
        answer = backend.invoke("cam-1", "reboot")
        assert answer.status_code == 200 and answer.json() == {"status": 200, "payload": {"echo": "reboot"}}
    finally:
        device.close()
    # the same certificate over MQTT over secure WebSocket
    over_wss = PahoDevice(hub, "cam-1", None, transport="wss", client_cert=_pair(tmp_path / "cam-1"))
    try:
        assert over_wss.connect() == 0
    finally:
        over_wss.close()


def test_a_secondary_sha256_thumbprint_with_colons_matches(hub: HubProcess, tmp_path: Path) -> None:
    cert, key = issue("cam-2")
    write_pair(cert, key, *_pair(tmp_path / "cam-2"))
    _sha1, sha256 = thumbprints(der_of(cert))
    colons = ":".join(sha256[i : i + 2] for i in range(0, 64, 2))
    other = _dev_cert(hub, "other", tmp_path / "other")
    hub.cli("device", "create", "cam-2", "--x509-thumbprint", other, "--x509-secondary", colons)
    device = _device(hub, "cam-2", _pair(tmp_path / "cam-2"))
    try:
        assert device.connect() == 0
    finally:
        device.close()


def test_refused_unknown_thumbprint_expired_no_certificate_and_sas_for_an_x509_device(
    hub: HubProcess, tmp_path: Path
) -> None:
    registered = _dev_cert(hub, "cam-3", tmp_path / "cam-3")
    hub.cli("device", "create", "cam-3", "--x509-thumbprint", registered)
    _dev_cert(hub, "cam-3", tmp_path / "stranger")  # same CN, another certificate
    device = _device(hub, "cam-3", _pair(tmp_path / "stranger"))
    assert device.connect() == NOT_AUTHORIZED
    device.close()
    # expired: registered by its own thumbprint, yet refused
    expired, key = issue(
        "cam-4", not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=3), validity=dt.timedelta(days=1)
    )
    write_pair(expired, key, *_pair(tmp_path / "cam-4"))
    hub.cli("device", "create", "cam-4", "--x509-thumbprint", thumbprints(der_of(expired))[0])
    device = _device(hub, "cam-4", _pair(tmp_path / "cam-4"))
    assert device.connect() == NOT_AUTHORIZED
    device.close()
    # no certificate and no password
    device = _device(hub, "cam-3", None)
    assert device.connect() == 4  # bad user name or password: nothing to authenticate with
    device.close()
    # MQTT 5 hears 0x87 Not authorized
    v5 = _device(hub, "cam-3", _pair(tmp_path / "stranger"), protocol=paho.MQTTv5)
    reason_codes: queue.Queue[int] = queue.Queue()
    v5.client.on_connect = lambda client, userdata, flags, rc, properties=None: reason_codes.put(rc.value)
    v5.client.connect("localhost", hub.ports["mqtts"])
    v5.client.loop_start()
    assert reason_codes.get(timeout=10) == 0x87  # the wire's v5 reason code, not paho's v3 mapping
    v5.close()
    assert any("neither of the identity's registered thumbprints" in line for line in hub.stderr_lines)
    assert any("expired at" in line for line in hub.stderr_lines)


def test_sas_is_refused_once_a_device_is_x509_and_sas_devices_are_unaffected(
    hub: HubProcess, backend: Backend, tmp_path: Path
) -> None:
    key = hub.create_device("flip")
    sas = PahoDevice(hub, "flip", key, transport="mqtts")
    assert sas.connect() == 0  # SAS over TLS with no certificate: as before
    sas.close()
    with_cert = PahoDevice(hub, "flip", key, transport="mqtts", client_cert=_pair(_make(hub, tmp_path, "x")))
    assert with_cert.connect() == 0  # a SAS password wins over a certificate presented too
    with_cert.close()
    thumbprint = _dev_cert(hub, "flip", tmp_path / "flip")
    current = backend.http.get("/devices/flip", headers=_headers(backend)).json()
    body = {
        "deviceId": "flip",
        "authentication": {"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": thumbprint}},
    }
    changed = backend.http.put(
        "/devices/flip", json=body, headers={**_headers(backend), "If-Match": current["etag"]}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["authentication"] == {
        "symmetricKey": {"primaryKey": None, "secondaryKey": None},
        "x509Thumbprint": {"primaryThumbprint": thumbprint, "secondaryThumbprint": None},
        "type": "selfSigned",
    }
    time.sleep(1.0)  # the token cache hears of the change through the feed
    sas = PahoDevice(hub, "flip", key, transport="mqtts")
    assert sas.connect() == NOT_AUTHORIZED
    sas.close()
    assert any("authenticates with an X.509 certificate" in line for line in hub.stderr_lines)
    device = _device(hub, "flip", _pair(tmp_path / "flip"))
    try:
        assert device.connect() == 0
    finally:
        device.close()


def _make(hub: HubProcess, tmp_path: Path, name: str) -> Path:
    _dev_cert(hub, name, tmp_path / name)
    return tmp_path / name


def _registered_ca(hub: HubProcess, tmp_path: Path, name: str) -> Issuer:
    """A CA made, added and verified with the CLI (proof of possession included)."""
    _dev_cert(hub, name, tmp_path / name, "--is-ca")
    code = hub.cli("ca", "add", name, f"{tmp_path / name}.pem").stdout.strip()
    assert len(code) == 48
    _dev_cert(hub, code, tmp_path / f"{name}-pop", "--ca", name, "--ca-key", f"{tmp_path / name}-key.pem")
    hub.cli("ca", "verify", name, f"{tmp_path / name}-pop.pem")
    cert, key = _pair(tmp_path / name)
    return load_issuer(cert.read_bytes(), key.read_bytes())


def test_ca_issued_devices_need_a_verified_ca_their_id_as_cn_and_lose_access_when_it_goes(
    hub: HubProcess, backend: Backend, tmp_path: Path
) -> None:
    _registered_ca(hub, tmp_path, "fleet")
    ca_key = f"{tmp_path / 'fleet'}-key.pem"
    _dev_cert(hub, "pump-1", tmp_path / "pump-1", "--ca", "fleet", "--ca-key", ca_key)
    _dev_cert(hub, "pump-9", tmp_path / "wrong-cn", "--ca", f"{tmp_path / 'fleet'}.pem", "--ca-key", ca_key)
    hub.cli("device", "create", "pump-1", "--x509-ca")
    # the SDK's shape: create_device_with_certificate_authority
    created = backend.http.put(
        "/devices/pump-2",
        json={"deviceId": "pump-2", "status": "enabled", "authentication": {"type": "certificateAuthority"}},
        headers=_headers(backend),
    )
    assert created.status_code == 200 and created.json()["authentication"]["type"] == "certificateAuthority"
    wrong_cn = _device(hub, "pump-1", _pair(tmp_path / "wrong-cn"))
    assert wrong_cn.connect() == NOT_AUTHORIZED
    wrong_cn.close()
    # a CA that is added but never verified authenticates nobody
    _dev_cert(hub, "unproven", tmp_path / "unproven", "--is-ca")
    hub.cli("ca", "add", "unproven", f"{tmp_path / 'unproven'}.pem")
    _dev_cert(
        hub,
        "pump-2",
        tmp_path / "pump-2",
        "--ca",
        f"{tmp_path / 'unproven'}.pem",
        "--ca-key",
        f"{tmp_path / 'unproven'}-key.pem",
    )
    unproven = _device(hub, "pump-2", _pair(tmp_path / "pump-2"))
    assert unproven.connect() == NOT_AUTHORIZED
    unproven.close()
    device = _device(hub, "pump-1", _pair(tmp_path / "pump-1")).online()
    try:
        _echo(device)
        answer = backend.invoke("pump-1", "status")
        assert answer.json() == {"status": 200, "payload": {"echo": "status"}}
        hub.cli("ca", "remove", "fleet")
        device.disconnects.get(timeout=5)  # the live connection is re-checked and closed
    finally:
        device.close()
    again = _device(hub, "pump-1", _pair(tmp_path / "pump-1"))
    assert again.connect() == NOT_AUTHORIZED
    again.close()
    assert any("not the identity 'pump-1'" in line for line in hub.stderr_lines)
    assert any("not issued by a verified CA" in line for line in hub.stderr_lines)


def test_rest_shapes_and_bad_combinations(hub: HubProcess, backend: Backend) -> None:
    sha256 = "ab" * 32
    body = {
        "deviceId": "rest-1",
        "status": "enabled",
        "authentication": {
            "type": "selfSigned",
            "x509Thumbprint": {"primaryThumbprint": sha256, "secondaryThumbprint": None},
        },
        "capabilities": {"iotEdge": False},
    }
    created = backend.http.put("/devices/rest-1", json=body, headers=_headers(backend))
    assert created.status_code == 200
    assert created.json()["authentication"]["x509Thumbprint"]["primaryThumbprint"] == sha256.upper()
    fetched = backend.http.get("/devices/rest-1", headers=_headers(backend)).json()
    assert fetched["authentication"] == created.json()["authentication"]
    module = backend.http.put(
        "/devices/rest-1/modules/m1",
        json={"deviceId": "rest-1", "moduleId": "m1", "authentication": {"type": "certificateAuthority"}},
        headers=_headers(backend),
    )
    assert module.status_code == 200 and module.json()["authentication"]["type"] == "certificateAuthority"
    bad = [
        ({"type": "selfSigned"}, "needs x509Thumbprint.primaryThumbprint"),
        ({"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": "xyz"}}, "SHA-1 (40 hex digits)"),
        (
            {"type": "certificateAuthority", "x509Thumbprint": {"primaryThumbprint": sha256}},
            "takes no x509Thumbprint",
        ),
        ({"type": "sas", "x509Thumbprint": {"primaryThumbprint": sha256}}, "takes no x509Thumbprint"),
        (
            {
                "type": "selfSigned",
                "x509Thumbprint": {"primaryThumbprint": sha256},
                "symmetricKey": {"primaryKey": "A" * 44, "secondaryKey": "B" * 44},
            },
            "takes no symmetricKey",
        ),
        ({"type": "none"}, "'none' is not supported"),
    ]
    for authentication, message in bad:
        response = backend.http.put(
            "/devices/rest-bad", json={"authentication": authentication}, headers=_headers(backend)
        )
        assert response.status_code == 400 and error_code(response) == 400004, response.text
        assert message in error_message(response)
    assert backend.http.get("/devices/rest-bad", headers=_headers(backend)).status_code == 404


def test_a_sas_token_signed_for_a_device_still_works_on_plain_mqtt(hub: HubProcess) -> None:
    key = hub.create_device("plain-sas")
    password = sign(f"{HOSTNAME}/devices/plain-sas", key, int(time.time()) + 600)
    device = PahoDevice(hub, "plain-sas", None, password=password)
    try:
        assert device.connect() == 0
    finally:
        device.close()
    assert (
        parse_cs(
            hub.cli("device", "show", "plain-sas").stdout.split('"connectionString": "')[1].split('"')[0]
        )["SharedAccessKey"]
        == key
    )


def test_device_run_with_x509_answers_calls_and_without_it_says_what_to_pass(
    hub: HubProcess, tmp_path: Path
) -> None:
    thumbprint = _dev_cert(hub, "sim-1", tmp_path / "sim-1")
    hub.cli("device", "create", "sim-1", "--x509-thumbprint", thumbprint)
    missing = hub.cli("device", "run", "sim-1", "--tls", check=False)
    assert missing.returncode == 1 and "pass --x509 CERT.pem KEY.pem" in missing.stderr
    cert, key = _pair(tmp_path / "sim-1")
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "methodhub",
            "--data-dir",
            str(hub.data_dir),
            "device",
            "run",
            "sim-1",
            "--x509",
            str(cert),
            str(key),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        result = hub.cli("invoke", "sim-1", "ping", "--payload", "[1]", "--connect-timeout", "20")
        assert json.loads(result.stdout) == {"status": 200, "payload": {"method": "ping", "payload": [1]}}
    finally:
        sim.terminate()
        sim.wait(10)
    wrong = hub.cli("device", "run", "sim-1", "--x509", str(key), str(key), check=False)
    assert wrong.returncode == 2 and "cannot use this certificate and key" in wrong.stderr


@pytest.mark.parametrize("websocket", [False, True], ids=["amqps", "amqp-wss"])
def test_an_amqp_device_authenticates_with_its_certificate_alone(
    hub: HubProcess, backend: Backend, tmp_path: Path, websocket: bool
) -> None:
    name = f"amqp-cam-{int(websocket)}"
    thumbprint = _dev_cert(hub, name, tmp_path / name)
    hub.cli("device", "create", name, "--x509-thumbprint", thumbprint)
    device = AmqpDevice(hub, name, "", websocket=websocket, client_cert=_pair(tmp_path / name)).connect()
    try:
        device.enable_methods()  # no put-token: the certificate authorizes the links
        device.serve(lambda method, payload: (200, payload))
        answer = backend.invoke(name, "echo", {"x": 1})
        assert answer.json() == {"status": 200, "payload": {"x": 1}}
    finally:
        device.close()


def test_an_amqp_device_with_a_wrong_certificate_or_a_sas_token_is_refused(
    hub: HubProcess, backend: Backend, tmp_path: Path
) -> None:
    key = hub.create_device("amqp-flip")
    current = backend.http.get("/devices/amqp-flip", headers=_headers(backend)).json()
    thumbprint = _dev_cert(hub, "amqp-flip", tmp_path / "amqp-flip")
    body = {"authentication": {"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": thumbprint}}}
    headers = {**_headers(backend), "If-Match": current["etag"]}
    assert backend.http.put("/devices/amqp-flip", json=body, headers=headers).status_code == 200
    time.sleep(1.0)  # the token cache hears of the change through the feed
    sas = AmqpDevice(hub, "amqp-flip", key).connect()
    try:
        status, description = sas.authenticate()
        assert status == 401 and "authenticates with an X.509 certificate" in description
    finally:
        sas.close()
    _dev_cert(hub, "amqp-flip", tmp_path / "stranger")
    stranger = AmqpDevice(hub, "amqp-flip", "", client_cert=_pair(tmp_path / "stranger")).connect()
    try:
        with pytest.raises(AssertionError, match="the hub refused the methods sender"):
            stranger.enable_methods(timeout=5)
    finally:
        stranger.close()
    assert any("the client certificate does not prove its identity" in line for line in hub.stderr_lines)
    assert backend.invoke("amqp-flip", "echo", {}).status_code == 404  # never connected


def test_the_twin_names_the_authentication(hub: HubProcess, backend: Backend) -> None:
    sha1 = "AB" * 20
    body = {"authentication": {"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": sha1}}}
    assert backend.http.put("/devices/twin-x", json=body, headers=_headers(backend)).status_code == 200
    twin = backend.http.get("/twins/twin-x", headers=_headers(backend)).json()
    assert twin["authenticationType"] == "selfSigned"
    assert twin["x509Thumbprint"] == {"primaryThumbprint": sha1, "secondaryThumbprint": None}


def test_a_changed_thumbprint_ends_the_live_connection(
    hub: HubProcess, backend: Backend, tmp_path: Path
) -> None:
    thumbprint = _dev_cert(hub, "rotating", tmp_path / "rotating")
    hub.cli("device", "create", "rotating", "--x509-thumbprint", thumbprint)
    device = _device(hub, "rotating", _pair(tmp_path / "rotating")).online()
    try:
        current = backend.http.get("/devices/rotating", headers=_headers(backend)).json()
        body = {"authentication": {"type": "selfSigned", "x509Thumbprint": {"primaryThumbprint": "0" * 64}}}
        headers = {**_headers(backend), "If-Match": current["etag"]}
        assert backend.http.put("/devices/rotating", json=body, headers=headers).status_code == 200
        device.disconnects.get(timeout=5)  # re-checked through the change feed, and closed
    finally:
        device.close()
    assert any("credentials no longer valid" in line for line in hub.stderr_lines)


def test_ca_cli_lists_and_refuses_mistakes_with_one_line(hub: HubProcess, tmp_path: Path) -> None:
    _dev_cert(hub, "list-root", tmp_path / "list-root", "--is-ca")
    code = hub.cli("ca", "add", "listed", f"{tmp_path / 'list-root'}.pem").stdout.strip()
    rows = {row["name"]: row for row in json.loads(hub.cli("ca", "list", "--json").stdout)}
    assert rows["listed"]["verified"] is False and rows["listed"]["verificationCode"] == code
    assert rows["listed"]["subject"] == "list-root" and len(rows["listed"]["thumbprint"]) == 64
    assert "listed" in hub.cli("ca", "list").stdout
    mistakes = [
        (("ca", "add", "listed", f"{tmp_path / 'list-root'}.pem"), 1, "'listed' is registered already"),
        (("ca", "add", "leaf-as-ca", _leaf(hub, tmp_path)), 2, "not a CA certificate"),
        (("ca", "add", "nofile", str(tmp_path / "missing.pem")), 2, "missing.pem"),
        (("ca", "verify", "nope", f"{tmp_path / 'list-root'}.pem"), 1, "no CA 'nope'"),
        (("ca", "verify", "listed", f"{tmp_path / 'list-root'}.pem"), 1, "not the verification code"),
        (("ca", "remove", "nope"), 1, "No CA 'nope'"),
        (("ca", "dev-cert", "x", "--ca-key", str(tmp_path / "k.pem")), 2, "--ca-key needs --ca"),
        (("ca", "dev-cert", "x", "--ca", f"{tmp_path / 'list-root'}.pem"), 2, "--ca needs --ca-key"),
        (("ca", "dev-cert", "x", "--ca", "unregistered", "--ca-key", "k.pem"), 2, "neither a registered CA"),
        (("device", "create", "both", "--x509-thumbprint", "A" * 40, "--x509-ca"), 2, "not both"),
        (("device", "create", "half", "--x509-secondary", "A" * 40), 2, "needs --x509-thumbprint"),
    ]
    for args, code_expected, message in mistakes:
        result = hub.cli(*args, check=False)
        assert result.returncode == code_expected, (args, result.stderr)
        assert message in result.stderr and result.stderr.count("\n") == 1, (args, result.stderr)


def _leaf(hub: HubProcess, tmp_path: Path) -> str:
    _dev_cert(hub, "a-leaf", tmp_path / "a-leaf")
    return f"{tmp_path / 'a-leaf'}.pem"
