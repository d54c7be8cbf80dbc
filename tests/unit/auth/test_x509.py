"""What a client certificate proves (methodhub.auth.x509): thumbprints (SHA-1, SHA-256), CN, validity,
issuers (direct and through intermediates), and a CA's proof of possession."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from methodhub.auth.x509 import (
    CertificateError,
    CertificateRefused,
    ClientCertificate,
    check_authority,
    check_issued,
    check_proof_of_possession,
    check_thumbprint,
    der_of,
    load_certificate,
    thumbprints,
)
from methodhub.process.certificates import Issuer, certificate_pem
from methodhub.process.certificates import issue as _issue

NOW = dt.datetime.now(dt.UTC)


def issue(*args: object, **fields: object) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """``certificates.issue``, valid from before NOW unless told (NOW is taken at import: in a long
    run a certificate made later would start after it)."""
    fields.setdefault("not_before", NOW - dt.timedelta(minutes=5))
    return _issue(*args, **fields)  # type: ignore[arg-type]


def _client(cert: object) -> ClientCertificate:
    return ClientCertificate(der_of(cert))  # type: ignore[arg-type]


def test_thumbprints_are_the_der_hashes_in_upper_hex() -> None:
    cert, _ = issue("dev")
    der = der_of(cert)
    sha1, sha256 = thumbprints(der)
    assert sha1 == hashlib.sha1(der).hexdigest().upper() and len(sha1) == 40
    assert sha256 == hashlib.sha256(der).hexdigest().upper() and len(sha256) == 64


def test_a_self_signed_certificate_matches_its_sha1_or_sha256_thumbprint_primary_or_secondary() -> None:
    cert, _ = issue("dev")
    sha1, sha256 = thumbprints(der_of(cert))
    other1, other256 = thumbprints(der_of(issue("other")[0]))
    for allowed in ((sha1, None), (None, sha1), (sha256, other1), (other256, sha256)):
        assert check_thumbprint(_client(cert), allowed, NOW) == cert
    with pytest.raises(CertificateRefused, match="neither of the identity's registered thumbprints"):
        check_thumbprint(_client(cert), (other1, other256), NOW)
    with pytest.raises(CertificateRefused, match="neither"):
        check_thumbprint(_client(cert), (None, None), NOW)


def test_an_expired_or_not_yet_valid_self_signed_certificate_is_refused() -> None:
    expired, _ = issue("dev", not_before=NOW - dt.timedelta(days=10), validity=dt.timedelta(days=1))
    future, _ = issue("dev", not_before=NOW + dt.timedelta(days=1))
    with pytest.raises(CertificateRefused, match="expired at"):
        check_thumbprint(_client(expired), thumbprints(der_of(expired)), NOW)
    with pytest.raises(CertificateRefused, match="not valid before"):
        check_thumbprint(_client(future), thumbprints(der_of(future)), NOW)


def _ca(name: str = "Fleet CA") -> Issuer:
    cert, key = issue(name, ca=True, validity=dt.timedelta(days=30))
    return Issuer(cert, key)


def test_a_ca_issued_certificate_needs_the_identity_as_cn_and_a_registered_issuer() -> None:
    ca, other = _ca(), _ca("Other CA")
    leaf, _ = issue("pump-1", ca)
    assert check_issued(
        _client(leaf), "pump-1", [("other", other.certificate), ("fleet", ca.certificate)], NOW
    ) == (
        leaf,
        "fleet",
    )
    with pytest.raises(CertificateRefused, match="CN is 'pump-1', not the identity 'pump-2'"):
        check_issued(_client(leaf), "pump-2", [("fleet", ca.certificate)], NOW)
    with pytest.raises(CertificateRefused, match="not issued by a verified CA"):
        check_issued(_client(leaf), "pump-1", [("other", other.certificate)], NOW)
    with pytest.raises(CertificateRefused, match="no verified CA"):
        check_issued(_client(leaf), "pump-1", [], NOW)
    module, _ = issue("pump-1/agent", ca)
    assert check_issued(_client(module), "pump-1/agent", [("fleet", ca.certificate)], NOW)[1] == "fleet"


def test_a_forged_issuer_name_does_not_pass_the_signature_check() -> None:
    ca = _ca()
    impostor, impostor_key = issue("Fleet CA", ca=True)  # same subject, another key
    leaf, _ = issue("pump-1", Issuer(impostor, impostor_key))
    with pytest.raises(CertificateRefused, match="not issued by a verified CA"):
        check_issued(_client(leaf), "pump-1", [("fleet", ca.certificate)], NOW)


def test_expired_leaf_or_expired_ca_is_refused() -> None:
    ca = _ca()
    old_leaf, _ = issue("pump-1", ca, not_before=NOW - dt.timedelta(days=3), validity=dt.timedelta(days=1))
    with pytest.raises(CertificateRefused, match="expired at"):
        check_issued(_client(old_leaf), "pump-1", [("fleet", ca.certificate)], NOW)
    old_ca_cert, old_ca_key = issue(
        "Old CA", ca=True, not_before=NOW - dt.timedelta(days=3), validity=dt.timedelta(days=1)
    )
    leaf, _ = issue("pump-1", Issuer(old_ca_cert, old_ca_key))
    with pytest.raises(CertificateRefused, match="the CA 'old' expired"):
        check_issued(_client(leaf), "pump-1", [("old", old_ca_cert)], NOW)


def test_a_chain_through_an_intermediate_the_device_sent() -> None:
    root = _ca("Root")
    mid_cert, mid_key = issue("Intermediate", root, ca=True)
    leaf, _ = issue("pump-1", Issuer(mid_cert, mid_key))
    with_chain = ClientCertificate(der_of(leaf), (der_of(mid_cert),))
    assert check_issued(with_chain, "pump-1", [("root", root.certificate)], NOW)[1] == "root"
    with pytest.raises(CertificateRefused, match="not issued by a verified CA"):  # leaf alone
        check_issued(_client(leaf), "pump-1", [("root", root.certificate)], NOW)


def test_proof_of_possession_needs_the_code_as_cn_and_the_ca_key() -> None:
    ca, other = _ca(), _ca("Fleet CA")  # other: same name, other key
    good, _ = issue("CODE123", ca)
    check_proof_of_possession(ca.certificate, good, "CODE123")
    with pytest.raises(CertificateError, match="not the verification code CODE999"):
        check_proof_of_possession(ca.certificate, good, "CODE999")
    forged, _ = issue("CODE123", other)
    with pytest.raises(CertificateError, match="not signed with the CA's key"):
        check_proof_of_possession(ca.certificate, forged, "CODE123")


def test_loading_and_ca_checks() -> None:
    ca = _ca()
    assert load_certificate(certificate_pem(ca.certificate)) == ca.certificate
    assert load_certificate(der_of(ca.certificate)) == ca.certificate
    with pytest.raises(CertificateError, match=r"cert\.pem is not a PEM or DER"):
        load_certificate(b"hello", "cert.pem")
    check_authority(ca.certificate)
    with pytest.raises(CertificateError, match="not a CA certificate"):
        check_authority(issue("leaf")[0])
    with pytest.raises(CertificateRefused, match="cannot be read"):
        check_thumbprint(ClientCertificate(b"junk"), ("A" * 40,), NOW)
