"""Registry contract: X.509 authentication of identities (selfSigned thumbprints,
certificateAuthority) and the hub's certificate authorities, on every backend in conftest.BACKENDS."""

from __future__ import annotations

from methodhub.errors import ErrorKind
from methodhub.registry import AuthType, DeviceAuth, Registry, SymmetricKeys
from tests.unit.registry.helpers import key_of, raises_hub_error

SHA1 = "ab:cd:" + "0" * 36
SHA256 = "F" * 64


async def test_a_self_signed_device_is_stored_with_normalized_thumbprints(
    registry: Registry, other: Registry
) -> None:
    created = await registry.create_identity(
        "cam-1", auth=DeviceAuth(AuthType.SELF_SIGNED, SHA1, SHA256.lower())
    )
    assert created.auth == DeviceAuth(AuthType.SELF_SIGNED, "ABCD" + "0" * 36, SHA256)
    seen = await other.get_identity("cam-1")  # another process reads what was written
    assert seen is not None and seen.auth == created.auth and seen.auth.is_x509
    listed = await other.list_identities()
    assert [i.auth for i in listed] == [created.auth]


async def test_a_ca_device_and_module_and_the_default_sas(registry: Registry, other: Registry) -> None:
    await registry.create_identity("plant", auth=DeviceAuth(AuthType.CERTIFICATE_AUTHORITY))
    await registry.create_identity("plant", "agent", auth=DeviceAuth(AuthType.SELF_SIGNED, SHA256))
    await registry.create_identity("sas-one")
    device, module, sas = (
        await other.get_identity("plant"),
        await other.get_identity("plant", "agent"),
        await other.get_identity("sas-one"),
    )
    assert device is not None and device.auth.type is AuthType.CERTIFICATE_AUTHORITY
    assert device.auth.primary_thumbprint is None
    assert module is not None and module.auth == DeviceAuth(AuthType.SELF_SIGNED, SHA256)
    assert sas is not None and sas.auth == DeviceAuth() and not sas.auth.is_x509


async def test_bad_combinations_are_refused_and_nothing_is_stored(registry: Registry) -> None:
    cases = [
        (DeviceAuth(AuthType.SELF_SIGNED), "needs x509Thumbprint.primaryThumbprint"),
        (DeviceAuth(AuthType.SELF_SIGNED, "12345"), "SHA-1 (40 hex digits)"),
        (DeviceAuth(AuthType.SELF_SIGNED, "G" * 40), "SHA-256 (64 hex digits)"),
        (DeviceAuth(AuthType.SELF_SIGNED, SHA256, "0" * 41), "secondaryThumbprint"),
        (DeviceAuth(AuthType.CERTIFICATE_AUTHORITY, SHA256), "takes no x509Thumbprint"),
        (DeviceAuth(AuthType.SAS, SHA256), "takes no x509Thumbprint"),
    ]
    for auth, message in cases:
        with raises_hub_error(ErrorKind.INVALID_ARGUMENT, message):
            await registry.create_identity("bad", auth=auth)
    keys = SymmetricKeys(key_of(32, 1), key_of(32, 2))
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT, "takes no symmetricKey"):
        await registry.create_identity("bad", keys=keys, auth=DeviceAuth(AuthType.SELF_SIGNED, SHA256))
    assert await registry.get_identity("bad") is None


async def test_switching_between_sas_and_x509(registry: Registry, other: Registry) -> None:
    sas = await registry.create_identity("flip")
    old_keys = sas.keys
    x509 = await registry.update_identity("flip", auth=DeviceAuth(AuthType.SELF_SIGNED, SHA256))
    assert x509.auth.type is AuthType.SELF_SIGNED and x509.etag != sas.etag
    stored = await other.get_identity("flip")
    assert stored is not None and stored.auth == x509.auth
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT, "authenticates with X.509"):
        await registry.update_identity("flip", keys=SymmetricKeys(key_of(32, 3), key_of(32, 4)))
    kept = await registry.update_identity("flip", status="disabled")  # no auth given: kept
    assert kept.auth == x509.auth
    back = await registry.update_identity("flip", auth=DeviceAuth())
    assert back.auth == DeviceAuth() and back.keys != old_keys  # fresh keys: the old were hidden
    stored = await other.get_identity("flip")
    assert stored is not None and stored.keys == back.keys and not stored.auth.is_x509


async def test_certificate_authorities_add_verify_list_remove(registry: Registry, other: Registry) -> None:
    start = await registry.last_change_seq()
    added = await registry.add_authority("fleet-ca", "-----BEGIN CERTIFICATE-----\n...", SHA256)
    assert not added.verified and len(added.verification_code) == 48
    assert await other.list_authorities() == [added]
    with raises_hub_error(ErrorKind.CONFLICT, "'fleet-ca' is registered already"):
        await registry.add_authority("fleet-ca", "x", SHA256)
    for bad in ("", "a b", "x" * 65):
        with raises_hub_error(ErrorKind.INVALID_ARGUMENT, "CA name"):
            await registry.add_authority(bad, "x", SHA256)
    verified = await registry.set_authority_verified("fleet-ca")
    assert verified.verified and verified.verification_code == added.verification_code
    assert [a.verified for a in await other.list_authorities()] == [True]
    with raises_hub_error(ErrorKind.NOT_FOUND, "No CA 'nope'"):
        await registry.set_authority_verified("nope")
    await registry.remove_authority("fleet-ca")
    assert await other.list_authorities() == []
    with raises_hub_error(ErrorKind.NOT_FOUND, "No CA 'fleet-ca'"):
        await registry.remove_authority("fleet-ca")
    changes, _ = await other.changes_since(start)
    assert [(c.kind, c.key) for c in changes] == [("authority", "fleet-ca")] * 3
