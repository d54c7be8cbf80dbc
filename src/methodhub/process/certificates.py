"""Making X.509 certificates for devices and CAs: what ``methodhub ca dev-cert`` writes for the tour and
the tests (self-signed device certificates, CA-issued ones, CA certificates, proof-of-possession
certificates). ECDSA P-256 keys, SHA-256 signatures, as :mod:`methodhub.process.tls`."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from methodhub.filemodes import PRIVATE_FILE

DEVICE_VALIDITY = dt.timedelta(days=365)
ISSUER_KEYS = (
    ec.EllipticCurvePrivateKey,
    rsa.RSAPrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
)
BACKDATE = dt.timedelta(minutes=5)
"""Certificates start a little in the past, so a device whose clock lags still accepts them."""


@dataclass(frozen=True, slots=True)
class Issuer:
    """Who signs: a CA's certificate and private key."""

    certificate: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes


def issue(
    common_name: str,
    issuer: Issuer | None = None,
    *,
    ca: bool = False,
    not_before: dt.datetime | None = None,
    validity: dt.timedelta = DEVICE_VALIDITY,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new key and a certificate for it with subject CN ``common_name``: self-signed if
    ``issuer`` is None, else signed by it; a CA certificate (may sign others) if ``ca``, else a
    TLS client certificate. Valid from ``not_before`` (default: a few minutes ago) for ``validity``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = not_before or dt.datetime.now(dt.UTC) - BACKDATE
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.certificate.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + validity)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    certificate = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    return certificate, key


def load_issuer(certificate_pem: bytes, key_pem: bytes) -> Issuer:
    """An :class:`Issuer` from PEM texts; ValueError if they cannot be read or do not match."""
    certificate = x509.load_pem_x509_certificate(certificate_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ISSUER_KEYS):
        raise ValueError("the key cannot sign certificates")
    public = key.public_key()
    if public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ValueError("the key is not the certificate's")
    return Issuer(certificate, key)


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def write_pair(
    certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey, cert_path: Path, key_path: Path
) -> None:
    """Write the certificate (PEM, 0644) and its unencrypted key (PEM PKCS#8, owner-only)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), PRIVATE_FILE)
        f.write(pem)
    cert_path.write_bytes(certificate_pem(certificate))
