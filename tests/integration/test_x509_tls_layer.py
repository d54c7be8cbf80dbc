"""The TLS layer of X.509 authentication (process.tls.request_client_certificates), measured with
Python's own ssl on both ends: what OpenSSL does with CERT_OPTIONAL alone (refuses a self-signed client
certificate: why the verification callback is replaced), and that the hub's context requests a
certificate, takes any (self-signed, CA-issued, expired: the application decides) and still serves
clients that send none."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import pytest

from methodhub.process.certificates import Issuer, issue, write_pair
from methodhub.process.tls import ensure_dev_server_cert, request_client_certificates, server_context


def _handshake(server: ssl.SSLContext, ca: Path, client_cert: tuple[Path, Path] | None) -> bytes | None:
    """One TLS handshake over a socket pair; the DER certificate the server saw (None: none)."""
    a, b = socket.socketpair()
    seen: list[bytes | BaseException | None] = []

    def serve() -> None:
        try:
            with server.wrap_socket(a, server_side=True) as tls:
                seen.append(tls.getpeercert(binary_form=True))
                tls.sendall(b"k")
        except (ssl.SSLError, OSError) as exc:
            seen.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    client = ssl.create_default_context(cafile=str(ca))
    if client_cert is not None:
        client.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
    try:
        with client.wrap_socket(b, server_hostname="localhost") as tls:
            tls.recv(1)
    finally:
        thread.join(5)
    result = seen[0]
    if isinstance(result, BaseException):
        raise result
    return result


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    self_signed, key = issue("dev-1")
    write_pair(self_signed, key, tmp_path / "self.pem", tmp_path / "self-key.pem")
    ca_cert, ca_key = issue("CA", ca=True)
    leaf, leaf_key = issue("dev-2", Issuer(ca_cert, ca_key))
    write_pair(leaf, leaf_key, tmp_path / "leaf.pem", tmp_path / "leaf-key.pem")
    old, old_key = issue(
        "dev-3", not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=5), validity=dt.timedelta(days=1)
    )
    write_pair(old, old_key, tmp_path / "old.pem", tmp_path / "old-key.pem")
    for name in ("self", "leaf", "old"):
        out[name] = tmp_path / f"{name}.pem"
        out[f"{name}-key"] = tmp_path / f"{name}-key.pem"
    return out


def test_cert_optional_alone_refuses_a_self_signed_client_certificate(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    certificate = ensure_dev_server_cert(tmp_path / "data", "localhost")
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    plain.load_cert_chain(str(certificate.cert), str(certificate.key))
    plain.verify_mode = ssl.CERT_OPTIONAL
    assert certificate.ca is not None
    with pytest.raises((ssl.SSLError, OSError)):
        _handshake(plain, certificate.ca, (files["self"], files["self-key"]))


def test_the_hub_context_takes_any_client_certificate_and_none(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    certificate = ensure_dev_server_cert(tmp_path / "data", "localhost")
    context = server_context(certificate)  # request_client_certificates applied
    assert context.verify_mode is ssl.CERT_OPTIONAL
    assert certificate.ca is not None
    for name in ("self", "leaf", "old"):
        der = _handshake(context, certificate.ca, (files[name], files[f"{name}-key"]))
        assert der == ssl.PEM_cert_to_DER_cert(files[name].read_text()), name
    assert _handshake(context, certificate.ca, None) is None  # SAS devices and backends send none
    assert request_client_certificates(context) is True  # idempotent
