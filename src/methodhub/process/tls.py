"""TLS for the hub's listeners: the operator's certificate, or a development CA made on first start.

Without ``--tls-cert/--tls-key`` the hub makes, under ``DIR/tls/``::

    ca.pem          the development CA's certificate: give it to devices and backends to trust
    ca-key.pem      its private key (mode 0600; never leaves the data dir)
    server.pem      a server certificate signed by that CA for the hub's hostname, localhost,
                    127.0.0.1 and ::1
    server-key.pem  its private key (mode 0600)

The CA is made once and kept (devices keep trusting it); the server certificate is remade when the
hostname changes or it nears expiry. ECDSA P-256 keys: every TLS 1.2 client supports them and the
handshake is several times cheaper for the server than RSA-2048.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from methodhub.filemodes import PRIVATE_FILE
from methodhub.process.datadir import TLS_DIR

log = logging.getLogger("methodhub.tls")

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"  # keys end in -key.pem: datadir.TLS_KEYS keeps them owner-only
SERVER_CERT = "server.pem"
SERVER_KEY = "server-key.pem"
CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=825)
"""The longest validity clients such as Apple's accept for a server certificate."""
RENEW_BEFORE = dt.timedelta(days=30)
ALWAYS_NAMES = ("localhost", "127.0.0.1", "::1")


class TlsSetupError(Exception):
    """The certificate or key cannot be used; the message says which file and what to do."""


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """The files a TLS listener serves: a certificate chain and its key; ``ca`` when it is ours."""

    cert: Path
    key: Path
    ca: Path | None


def ca_cert_path(data_dir: Path) -> Path:
    return data_dir / TLS_DIR / CA_CERT


def ensure_dev_ca(data_dir: Path) -> Path:
    """The development CA of this data dir, made if there is none. Returns the CA certificate's path."""
    tls_dir = data_dir / TLS_DIR
    cert_path, key_path = tls_dir / CA_CERT, tls_dir / CA_KEY
    if cert_path.exists() and key_path.exists():
        return cert_path
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "methodhub"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"methodhub development CA ({os.uname().nodename})"),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    log.info("created a development CA: %s (give it to clients to trust)", cert_path)
    return cert_path


def ensure_dev_server_cert(data_dir: Path, hostname: str) -> ServerCertificate:
    """A server certificate for ``hostname`` (+ localhost, 127.0.0.1, ::1) signed by the dev CA."""
    ca_path = ensure_dev_ca(data_dir)
    tls_dir = data_dir / TLS_DIR
    cert_path, key_path = tls_dir / SERVER_CERT, tls_dir / SERVER_KEY
    names = _unique([hostname, *ALWAYS_NAMES])
    if _server_cert_fits(cert_path, key_path, names):
        return ServerCertificate(cert_path, key_path, ca_path)
    ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
    ca_key = serialization.load_pem_private_key((tls_dir / CA_KEY).read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TlsSetupError(
            f"{tls_dir / CA_KEY} is not the EC key methodhub made; delete {tls_dir} to remake"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    log.info("created a server certificate for %s signed by the development CA", ", ".join(names))
    return ServerCertificate(cert_path, key_path, ca_path)


def server_context(certificate: ServerCertificate) -> ssl.SSLContext:
    """A server-side context: TLS 1.2 and 1.3 (Azure's device SDK speaks only 1.2)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    try:
        context.load_cert_chain(str(certificate.cert), str(certificate.key))
    except (OSError, ssl.SSLError) as exc:
        raise TlsSetupError(
            f"cannot use the certificate {certificate.cert} with the key {certificate.key}: {exc}; "
            "pass a PEM certificate (chain) with --tls-cert and its unencrypted PEM key with --tls-key"
        ) from None
    request_client_certificates(context)
    return context


_ACCEPT_ANY = None
"""The OpenSSL certificate-verification callback that accepts every chain (made once, kept alive:
OpenSSL holds a bare pointer to it)."""


def request_client_certificates(context: ssl.SSLContext) -> bool:
    """Make ``context`` (a server's) ask every client for a certificate, take any it sends and
    continue without one: X.509 devices authenticate with it in the application
    (:mod:`methodhub.auth.x509`), SAS devices and backends send none.

    Python's ``ssl`` cannot do this alone: ``CERT_NONE`` asks for no certificate; ``CERT_OPTIONAL``
    asks, but OpenSSL then aborts the handshake for any certificate that does not chain to the
    context's trust store, so every self-signed device certificate (Azure's ``selfSigned``, the
    common case) would fail. So the context is ``CERT_OPTIONAL`` and its OpenSSL chain verification
    is replaced (``SSL_CTX_set_cert_verify_callback``, through ctypes on the very libssl the
    ``_ssl`` module uses) by one that accepts the chain; the handshake still checks the client's
    CertificateVerify, i.e. that it holds the certificate's private key. The application then
    checks thumbprints, CNs, validity and issuers, against the registry as it is at that moment (a
    CA removed applies at once, which a reloaded trust store would not).

    Returns False, leaving ``context`` asking for no certificate (X.509 devices then cannot
    authenticate; logged), where this cannot be done: not CPython, a debug build, or no such
    OpenSSL symbol.
    """
    global _ACCEPT_ANY
    import ctypes
    import sys

    if sys.implementation.name != "cpython" or hasattr(sys, "gettotalrefcount"):
        log.warning("TLS client certificates are not requested: needs a release build of CPython")
        return False
    try:
        import _ssl

        libssl = ctypes.CDLL(_ssl.__file__)
        set_callback = libssl.SSL_CTX_set_cert_verify_callback
        get_mode = libssl.SSL_CTX_get_verify_mode
    except (OSError, AttributeError) as exc:
        log.warning("TLS client certificates are not requested: %s", exc)
        return False
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
    if _ACCEPT_ANY is None:
        _ACCEPT_ANY = callback_type(lambda _store, _arg: 1)
    set_callback.argtypes = [ctypes.c_void_p, callback_type, ctypes.c_void_p]
    set_callback.restype = None
    get_mode.argtypes = [ctypes.c_void_p]
    get_mode.restype = ctypes.c_int
    # A PySSLContext is PyObject_HEAD followed by its SSL_CTX pointer (Modules/_ssl.c); checked
    # below by reading the verify mode OpenSSL holds back as Python sets it.
    ssl_ctx = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    context.verify_mode = ssl.CERT_REQUIRED
    if get_mode(ssl_ctx) != 3:  # SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
        context.verify_mode = ssl.CERT_NONE
        log.warning("TLS client certificates are not requested: unexpected ssl module layout")
        return False
    context.verify_mode = ssl.CERT_OPTIONAL
    set_callback(ssl_ctx, _ACCEPT_ANY, None)
    return True


def operator_certificate(cert: Path, key: Path) -> ServerCertificate:
    for path, flag in ((cert, "--tls-cert"), (key, "--tls-key")):
        if not path.is_file():
            raise TlsSetupError(f"{flag} {path}: no such file")
    return ServerCertificate(cert, key, None)


def _server_cert_fits(cert_path: Path, key_path: Path, names: list[str]) -> bool:
    if not (cert_path.exists() and key_path.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    present = {str(v) for v in san.get_values_for_type(x509.DNSName)}
    present |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    wanted = {str(_normalise(n)) for n in names}
    return wanted <= present and cert.not_valid_after_utc - _now() > RENEW_BEFORE


def _normalise(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower()


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name.lower())


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(_normalise(name), None)
    return list(seen)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_atomic(path, pem, mode=PRIVATE_FILE)


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` as ``mode`` exactly (a leftover temporary file's mode or the umask aside)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)
    os.replace(tmp, path)
