"""X.509 client certificates: what a device's certificate proves (issue 15).

The TLS listeners request a client certificate and accept any at the TLS layer
(:func:`methodhub.process.tls.request_client_certificates`: self-signed device certificates must get
through, and OpenSSL would refuse them); TLS itself proves the device holds the certificate's key
(its CertificateVerify message). What the certificate then proves is decided here, with the
``cryptography`` package, against what the registry says:

* **self-signed** (Azure ``selfSigned``): its SHA-1 or SHA-256 thumbprint (of the DER encoding, as
  Azure and ``openssl x509 -fingerprint`` compute it) is one of the identity's two; it is within its
  validity period.
* **CA-issued** (Azure ``certificateAuthority``): its subject CN is the identity (``deviceId``, or
  ``deviceId/moduleId`` for a module), it is within its validity period, and it was issued by a
  verified registered CA — directly, or through intermediates the device sent in its chain (Python
  3.13+ reports the chain; on 3.11 and 3.12 only the leaf is known, so the leaf's issuer must be a
  registered CA: register the intermediate CA, with its proof of possession).

Nothing here knows a cloud or the registry: callers pass thumbprints and CA certificates.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

MAX_CHAIN = 5
"""Intermediates followed from a leaf to a registered CA at most (Azure allows 10 in a chain; 5
levels is more than any fleet PKI we know of uses)."""


class CertificateError(ValueError):
    """A certificate (file) cannot be used; the message says why."""


class CertificateRefused(Exception):
    """The client certificate does not prove the identity; ``reason`` says why (for the log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """What a TLS connection's peer presented: its certificate (DER) and, where the runtime reports
    it, the rest of the chain it sent (DER, leaf's issuer first)."""

    der: bytes
    chain: tuple[bytes, ...] = ()

    def load(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)


def load_certificate(data: bytes, what: str = "the certificate") -> x509.Certificate:
    """A PEM (or DER) certificate; :class:`CertificateError` naming ``what`` otherwise."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CertificateError(f"{what} is not a PEM or DER X.509 certificate: {exc}") from None


def thumbprints(der: bytes) -> tuple[str, str]:
    """The SHA-1 and SHA-256 thumbprints of a DER certificate, upper-case hex without colons."""
    return hashlib.sha1(der).hexdigest().upper(), hashlib.sha256(der).hexdigest().upper()


def der_of(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def common_name(certificate: x509.Certificate) -> str | None:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        return None
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def check_validity(certificate: x509.Certificate, now: dt.datetime, what: str = "the certificate") -> None:
    """:class:`CertificateRefused` unless ``now`` is within the certificate's validity period."""
    if now < certificate.not_valid_before_utc:
        raise CertificateRefused(f"{what} is not valid before {certificate.not_valid_before_utc.isoformat()}")
    if now > certificate.not_valid_after_utc:
        raise CertificateRefused(f"{what} expired at {certificate.not_valid_after_utc.isoformat()}")


def check_thumbprint(
    client: ClientCertificate, allowed: Sequence[str | None], now: dt.datetime
) -> x509.Certificate:
    """The certificate, if its thumbprint is one of ``allowed`` (normalized hex: 40 digits compare
    with its SHA-1, 64 with its SHA-256) and it is valid at ``now``; else :class:`CertificateRefused`."""
    certificate = _load(client)
    sha1, sha256 = thumbprints(client.der)
    if not any(t is not None and t in (sha1, sha256) for t in allowed):
        raise CertificateRefused(
            f"the certificate's thumbprint (SHA-1 {sha1}, SHA-256 {sha256}) is neither of the "
            "identity's registered thumbprints"
        )
    check_validity(certificate, now)
    return certificate


def is_issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s key signed ``certificate`` and its subject is ``certificate``'s issuer."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_issued(
    client: ClientCertificate,
    expected_cn: str,
    authorities: Sequence[tuple[str, x509.Certificate]],
    now: dt.datetime,
) -> tuple[x509.Certificate, str]:
    """The certificate and the name of the registered CA it chains to, if its CN is
    ``expected_cn``, it and every certificate of the path are valid at ``now``, and the path ends
    at one of ``authorities`` (``(name, certificate)``, verified ones only); else
    :class:`CertificateRefused` saying which check failed."""
    certificate = _load(client)
    cn = common_name(certificate)
    if cn != expected_cn:
        raise CertificateRefused(f"the certificate's CN is {cn!r}, not the identity {expected_cn!r}")
    check_validity(certificate, now)
    if not authorities:
        raise CertificateRefused("no verified CA is registered on this hub")
    intermediates = [_load_der(der) for der in client.chain]
    current = certificate
    for _depth in range(MAX_CHAIN + 1):
        for name, authority in authorities:
            if is_issued_by(current, authority):
                check_validity(authority, now, f"the CA '{name}'")
                return certificate, name
        step = next((c for c in intermediates if c is not current and is_issued_by(current, c)), None)
        if step is None:
            break
        check_validity(step, now, f"the intermediate CA {common_name(step)!r}")
        current = step
    raise CertificateRefused(
        f"the certificate (issuer {certificate.issuer.rfc4514_string()!r}) was not issued by a verified "
        "CA registered on this hub"
    )


def check_proof_of_possession(authority: x509.Certificate, verification: x509.Certificate, code: str) -> None:
    """:class:`CertificateError` unless ``verification``'s CN is ``code`` and ``authority``'s key
    signed it (Azure's proof of possession of a CA)."""
    cn = common_name(verification)
    if cn != code:
        raise CertificateError(
            f"the verification certificate's CN is {cn!r}, not the verification code {code}"
        )
    if not is_issued_by(verification, authority):
        raise CertificateError(
            "the verification certificate was not signed with the CA's key (or its issuer is not the "
            "CA's subject)"
        )


def check_authority(certificate: x509.Certificate) -> None:
    """:class:`CertificateError` unless ``certificate`` may issue certificates (a CA, or one without
    basic constraints, as many older roots are)."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return
    if not constraints.ca:
        raise CertificateError("the certificate is not a CA certificate (basicConstraints CA:FALSE)")


def _load(client: ClientCertificate) -> x509.Certificate:
    try:
        return client.load()
    except ValueError as exc:
        raise CertificateRefused(f"the client certificate cannot be read: {exc}") from None


def _load_der(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CertificateRefused(f"a certificate of the client's chain cannot be read: {exc}") from None
