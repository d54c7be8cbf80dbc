"""TLS listeners (development CA or the operator's certificate), MQTT over WebSocket, module CLI."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import Backend, HubProcess, PahoDevice, parse_cs

TLS_LISTENERS = ("mqtt", "http", "mqtts", "https")


@pytest.fixture(scope="module")
def tls_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("tls"), listeners=TLS_LISTENERS).start()
    yield hub
    hub.stop()


def _peer_certificate(port: int, ca: Path | None = None, server_name: str = "localhost") -> x509.Certificate:
    context = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _san(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    }


def test_ca_cert_prints_only_the_pem_and_it_verifies_both_tls_listeners(tls_hub: HubProcess) -> None:
    out = tls_hub.cli("ca-cert").stdout
    assert out.startswith("-----BEGIN CERTIFICATE-----") and out.strip().endswith("-----END CERTIFICATE-----")
    assert out.count("BEGIN") == 1
    assert out == tls_hub.ca_file.read_text()
    for listener in ("mqtts", "https"):
        cert = _peer_certificate(tls_hub.ports[listener], tls_hub.ca_file)  # verifies chain + hostname
        assert {"localhost", "127.0.0.1", "::1"} <= _san(cert)
    # 127.0.0.1 is in the certificate too (clients that dial the IP)
    context = ssl.create_default_context(cafile=str(tls_hub.ca_file))
    with (
        socket.create_connection(("127.0.0.1", tls_hub.ports["https"]), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1"),
    ):
        pass


def test_tls_refuses_untrusting_clients_and_speaks_tls_1_2_and_1_3(
    tls_hub: HubProcess, tmp_path: Path
) -> None:
    from methodhub.process.tls import ensure_dev_ca

    another_ca = ensure_dev_ca(tmp_path)  # a client trusting some other CA must not connect
    with pytest.raises(ssl.SSLCertVerificationError):
        _peer_certificate(tls_hub.ports["mqtts"], ca=another_ca)
    # Azure's device SDK speaks TLS 1.2 only (wire doc §1.2); newer clients get 1.3.
    for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
        context = ssl.create_default_context(cafile=str(tls_hub.ca_file))
        context.minimum_version = context.maximum_version = version
        for listener in ("mqtts", "https"):
            with (
                socket.create_connection(("127.0.0.1", tls_hub.ports[listener]), timeout=5) as sock,
                context.wrap_socket(sock, server_hostname="localhost") as tls,
            ):
                assert tls.version() == name


def test_the_tls_context_refuses_protocols_older_than_1_2(tmp_path: Path) -> None:
    from methodhub.process.tls import ensure_dev_server_cert, server_context

    context = server_context(ensure_dev_server_cert(tmp_path, "localhost"))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_plain_listeners_can_be_turned_off(tmp_path: Path) -> None:
    hub = HubProcess(
        tmp_path / "data", listeners=("mqtts", "https"), args=["--mqtt-port", "-1", "--http-port", "-1"]
    ).start()
    try:
        runtime_file = hub.data_dir / "hub.json"  # written just after the listeners are logged
        deadline = time.monotonic() + 10
        while not runtime_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        runtime = json.loads(runtime_file.read_text())
        assert set(hub.ports) == {"mqtts", "https"}
        assert "mqtt" not in runtime and "http" not in runtime and runtime["https"].startswith("https://")
    finally:
        hub.stop()


@pytest.mark.parametrize("transport", ["mqtts", "wss", "ws"])
def test_methods_over_tls_and_websocket(tls_hub: HubProcess, transport: str, device_id: str) -> None:
    key = tls_hub.create_device(device_id)
    device = PahoDevice(tls_hub, device_id, key, transport=transport).online()
    device.serve(
        lambda name, payload: (200, json.dumps({"via": transport, "got": json.loads(payload)}).encode())
    )
    backend = Backend(tls_hub, https=True)
    try:
        big = "z" * (100 * 1024)  # several WebSocket frames / TLS records each way
        response = backend.invoke(device_id, "m", {"big": big})
        assert response.status_code == 200, response.text
        assert response.json() == {"status": 200, "payload": {"via": transport, "got": {"big": big}}}
    finally:
        backend.close()
        device.close()


def test_websocket_handshake_errors_are_clear(tls_hub: HubProcess) -> None:
    url = f"{tls_hub.http_url}/$iothub/websocket"
    key = base64.b64encode(os.urandom(16)).decode()
    good = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }
    with httpx.Client(timeout=10) as http:
        plain = http.get(url)
        assert plain.status_code == 400 and plain.json()["error"] == "WebSocketHandshakeRefused"
        wrong_version = http.get(url, headers={**good, "Sec-WebSocket-Version": "8"})
        assert wrong_version.status_code == 426
        wrong_protocol = http.get(url, headers={**good, "Sec-WebSocket-Protocol": "chat, superchat"})
        assert wrong_protocol.status_code == 400 and "mqtt" in wrong_protocol.json()["message"]
        assert "AMQPWSB10" in wrong_protocol.json()["message"]
        # AMQP is TLS only here (as on Azure): not over the plain HTTP port's WebSocket
        plain_amqp = http.get(url, headers={**good, "Sec-WebSocket-Protocol": "AMQPWSB10"})
        assert plain_amqp.status_code == 400 and "HTTPS port" in plain_amqp.json()["message"]
        bad_key = http.get(url, headers={**good, "Sec-WebSocket-Key": "short"})
        assert bad_key.status_code == 400
        # Without "Connection: Upgrade" it is no upgrade at all: a clear 400 (it was a 500).
        no_connection = http.get(url, headers={k: v for k, v in good.items() if k != "Connection"})
        assert no_connection.status_code == 400, no_connection.text
        assert "Connection: Upgrade" in no_connection.json()["message"]
    # a valid handshake gets 101 with the RFC 6455 accept value and the mqtt subprotocol
    with socket.create_connection(("127.0.0.1", tls_hub.ports["http"]), timeout=5) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in good.items())
        sock.sendall(
            f"GET /$iothub/websocket HTTP/1.1\r\nHost: x\r\n"
            f"Sec-WebSocket-Protocol: mqtt\r\n{head}\r\n".encode()
        )
        answer = sock.recv(4096).decode("latin-1").lower()
    assert answer.startswith("http/1.1 101")
    import hashlib

    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    assert f"sec-websocket-accept: {accept.decode().lower()}" in answer
    assert "sec-websocket-protocol: mqtt" in answer


def test_garbage_on_a_websocket_closes_only_that_connection(tls_hub: HubProcess, device_id: str) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", tls_hub.ports["http"]), timeout=5) as sock:
        sock.sendall(
            f"GET /$iothub/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 101")
        sock.sendall(b"\x81\x05hello")  # an unmasked text frame: a protocol error from a client
        closing = sock.recv(4096)
        assert closing[:1] == b"\x88"  # a close frame
        assert int.from_bytes(closing[2:4], "big") == 1002  # protocol error
    # the hub keeps serving
    device = PahoDevice(tls_hub, device_id, tls_hub.create_device(device_id), transport="ws").online()
    device.close()


def test_restart_with_another_hostname_remakes_the_server_certificate_but_keeps_the_ca(
    tmp_path: Path,
) -> None:
    hub = HubProcess(tmp_path / "data", listeners=("mqtts",)).start()
    try:
        ca_before = hub.ca_file.read_text()
        assert "pumps.example.com" not in _san(_peer_certificate(hub.ports["mqtts"]))
    finally:
        hub.stop()
    hub = HubProcess(
        tmp_path / "data", listeners=("mqtts",), args=["--hostname", "pumps.example.com"]
    ).start()
    try:
        assert hub.ca_file.read_text() == ca_before
        cert = _peer_certificate(hub.ports["mqtts"], hub.ca_file, server_name="pumps.example.com")
        assert {"pumps.example.com", "localhost", "127.0.0.1"} <= _san(cert)
    finally:
        hub.stop()


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "op.pem", tmp_path / "op-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_operator_certificate_is_served_and_bad_files_fail_clearly(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path, "hub.operator.test")
    hub = HubProcess(
        tmp_path / "data", listeners=("https",), args=["--tls-cert", str(cert), "--tls-key", str(key)]
    ).start()
    try:
        served = _peer_certificate(hub.ports["https"], cert, server_name="hub.operator.test")
        assert _san(served) == {"hub.operator.test"}
        assert not hub.ca_file.exists()  # no development CA when the operator brings a certificate
    finally:
        hub.stop()
    # missing key file / mismatched pair: exit 1 with a message naming the file
    other_cert, _ = _self_signed(
        tmp_path / "x" if (tmp_path / "x").mkdir() is None else tmp_path, "other.test"
    )
    for args, expected in (
        (["--tls-cert", str(cert), "--tls-key", str(tmp_path / "nope.pem")], "nope.pem"),
        (["--tls-cert", str(other_cert), "--tls-key", str(key)], "cannot use the certificate"),
        (["--tls-cert", str(cert)], "--tls-key"),
    ):
        result = HubProcess(tmp_path / "data2", listeners=("https",), args=args)
        with pytest.raises(RuntimeError, match="did not start"):
            result.start(timeout=15)
        assert result.proc is not None and result.proc.returncode == 1
        assert any(expected in line for line in result.stderr_lines), result.stderr_lines


def test_module_identities_from_the_cli(tls_hub: HubProcess, device_id: str) -> None:
    tls_hub.cli("device", "create", device_id)
    cs = parse_cs(tls_hub.cli("device", "create", device_id, "--module", "edge").stdout)
    assert cs["DeviceId"] == device_id and cs["ModuleId"] == "edge" and cs["SharedAccessKey"]
    shown = json.loads(tls_hub.cli("device", "show", device_id, "--module", "edge").stdout)
    assert shown["moduleId"] == "edge" and shown["primaryKey"] == cs["SharedAccessKey"]
    assert json.loads(tls_hub.cli("device", "show", device_id).stdout)["modules"] == ["edge"]
    assert tls_hub.cli("device", "list", "--of", device_id).stdout.split("\t")[0] == "edge"

    missing = tls_hub.cli("device", "show", device_id, "--module", "nope", check=False)
    assert missing.returncode == 1 and "nope" in missing.stderr

    tls_hub.cli("device", "delete", device_id, "--module", "edge")
    assert tls_hub.cli("device", "show", device_id, "--module", "edge", check=False).returncode == 1
    assert json.loads(tls_hub.cli("device", "show", device_id).stdout)["modules"] == []
