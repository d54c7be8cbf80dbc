"""The one SAS check for Azure devices, whatever carries the token (azure-direct-methods-wire.md §1.4).

MQTT sends the token as the CONNECT password (:mod:`methodhub.dialects.azure.mqtt`), AMQP in a CBS
put-token (:mod:`methodhub.dialects.azure.amqp`); both ask :func:`verify_device_token` whether it
proves the identity it claims, and word the refusal in their own protocol's terms.

The token must be for this hub (``sr`` host, with or without a port) and for the identity: its own
resource, or — signed with a shared access policy holding DeviceConnect (``skn``) — the hub, all
devices, or the module's device. The identity must be registered, its device enabled, and the
signature must match one of the identity's (or the policy's) two keys.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509

from methodhub.auth.x509 import (
    CertificateError,
    CertificateRefused,
    ClientCertificate,
    check_issued,
    check_thumbprint,
    load_certificate,
)
from methodhub.calls.model import identity_key
from methodhub.config import TokenPolicy
from methodhub.dialects.azure.sas import DEFAULT_TOKEN_POLICY, SasToken
from methodhub.gateway.auth import host_matches
from methodhub.registry import AccessPolicy, AuthType, CertificateAuthority, Identity, Right


class DeviceKeys(Protocol):
    """What the check reads of the registry (a :class:`~methodhub.registry.Registry` is one)."""

    async def get_identity(self, device_id: str, module_id: str | None = None) -> Identity | None: ...

    async def get_policy(self, name: str) -> AccessPolicy | None: ...

    async def list_authorities(self) -> list[CertificateAuthority]: ...


@dataclass(frozen=True, slots=True)
class VerifiedDevice:
    """Who a token proved to be.

    Attributes:
        device_id / module_id: the identity.
        key: ``identity_key(device_id, module_id)``.
        expires_at: the token's expiry, epoch seconds.
        key_name: the policy that signed it (``skn``), or None for the identity's own key.
    """

    device_id: str
    module_id: str | None
    key: str
    expires_at: float
    key_name: str | None


class TokenRefused(Exception):
    """The token does not prove the identity (``reason`` says why, for the device's operator).

    ``cause`` is one of ``"resource"`` (for another hub or identity), ``"expired"``, ``"lifetime"``
    (expires further ahead than the hub's :class:`~methodhub.config.TokenPolicy` allows),
    ``"unavailable"`` (the registry could not be read: not the device's fault), ``"unknown"`` (not
    registered), ``"disabled"``, ``"policy"`` (no such policy, or it lacks DeviceConnect),
    ``"signature"`` (no key matches), ``"x509"`` (the identity authenticates with a certificate, or
    the certificate does not prove it).
    """

    def __init__(self, cause: str, reason: str) -> None:
        super().__init__(reason)
        self.cause = cause
        self.reason = reason


def check_resource(token: SasToken, device_id: str, module_id: str | None, hostname: str) -> None:
    """Raise :class:`TokenRefused` (``"resource"``) unless ``token`` is for this hub and identity."""
    host, _, path = token.resource_decoded.partition("/")
    path = "/" + path.rstrip("/") if path else ""
    own = f"/devices/{device_id}" + (f"/modules/{module_id}" if module_id else "")
    allowed = {own}
    if token.key_name:  # a policy token may cover the whole hub or all devices
        allowed |= {"", "/devices", f"/devices/{device_id}"}
    if not host_matches(host, hostname) or path not in allowed:
        raise TokenRefused(
            "resource", f"the SAS token is for '{token.resource_decoded}', not for '{hostname}{own}'"
        )


async def verify_device_token(
    token: SasToken,
    device_id: str,
    module_id: str | None,
    registry: DeviceKeys,
    hostname: str,
    now: float,
    token_policy: TokenPolicy = DEFAULT_TOKEN_POLICY,
) -> VerifiedDevice:
    """What ``token`` proves about ``device_id``/``module_id`` on hub ``hostname`` at ``now``.

    Raises:
        TokenRefused: it proves nothing (see its ``cause``); checked in this order: resource,
            expiry and lifetime (the token policy), registry reachable, identity registered, device
            enabled, policy, signature.
    """
    check_resource(token, device_id, module_id, hostname)
    _check_times(token, now, token_policy)
    key = identity_key(device_id, module_id)
    try:
        identity = await registry.get_identity(device_id, module_id)
        device = identity if not module_id or identity is None else await registry.get_identity(device_id)
        policy = await registry.get_policy(token.key_name) if token.key_name else None
    except Exception as exc:
        raise TokenRefused("unavailable", f"the registry is unavailable: {exc}") from None
    if identity is None:
        raise TokenRefused("unknown", f"'{key}' is not registered on this hub")
    if device is None or device.status != "enabled":
        raise TokenRefused("disabled", f"device '{device_id}' is disabled")
    if identity.auth.is_x509:
        raise TokenRefused(
            "x509",
            f"'{key}' authenticates with an X.509 certificate ({identity.auth.type.value}), not a SAS "
            "token; connect over TLS with its certificate and no password",
        )
    if token.key_name:
        if policy is None or Right.DEVICE_CONNECT not in policy.rights:
            raise TokenRefused("policy", f"policy '{token.key_name}' does not exist or lacks DeviceConnect")
        keys = policy.keys
    else:
        keys = identity.keys
    if not (token.verify(keys.primary) or token.verify(keys.secondary)):
        raise TokenRefused("signature", f"the SAS token's signature does not match the keys of '{key}'")
    expires_at = token.expiry + token_policy.clock_skew
    return VerifiedDevice(device_id, module_id, key, expires_at, token.key_name)


def _check_times(token: SasToken, now: float, policy: TokenPolicy) -> None:
    refusal = token.lifetime_refusal(now, policy)
    if refusal is not None:
        cause = "expired" if token.is_expired(now, policy.clock_skew) else "lifetime"
        raise TokenRefused(cause, f"{refusal}; generate a new one")


async def verify_hub_token(
    token: SasToken,
    registry: DeviceKeys,
    hostname: str,
    now: float,
    policy: TokenPolicy = DEFAULT_TOKEN_POLICY,
) -> float:
    """The expiry of a hub-wide ``token`` (``sr`` = the hub, or its ``/devices``), signed with a
    shared access policy (``skn``) that holds DeviceConnect: what a gateway or the C# SDK with a
    policy key presents once for every device it carries. Each device it then names is checked
    with :func:`verify_device_token` (registered, enabled) before it may attach a link.

    Raises:
        TokenRefused: it proves nothing (``resource``, ``expired``, ``unavailable``, ``policy``,
            ``signature``).
    """
    host, _, path = token.resource_decoded.partition("/")
    if not token.key_name or not host_matches(host, hostname) or path.rstrip("/") not in ("", "devices"):
        raise TokenRefused(
            "resource",
            f"a hub-wide SAS token must be for '{hostname}' and signed with a shared access policy "
            f"(skn); this one is for '{token.resource_decoded}'" + ("" if token.key_name else " with no skn"),
        )
    _check_times(token, now, policy)
    try:
        access = await registry.get_policy(token.key_name)
    except Exception as exc:
        raise TokenRefused("unavailable", f"the registry is unavailable: {exc}") from None
    if access is None or Right.DEVICE_CONNECT not in access.rights:
        raise TokenRefused("policy", f"policy '{token.key_name}' does not exist or lacks DeviceConnect")
    if not (token.verify(access.keys.primary) or token.verify(access.keys.secondary)):
        raise TokenRefused(
            "signature", f"the SAS token's signature does not match the keys of '{token.key_name}'"
        )
    return token.expiry + policy.clock_skew


async def verify_device_certificate(
    client: ClientCertificate, device_id: str, module_id: str | None, registry: DeviceKeys, now: float
) -> VerifiedDevice:
    """What the TLS client certificate ``client`` proves about ``device_id``/``module_id`` at
    ``now``: the identity must be registered with X.509 authentication, its device enabled, and the
    certificate must match (:mod:`methodhub.auth.x509`: a registered thumbprint for
    ``selfSigned``; for ``certificateAuthority`` the identity as CN and a chain to a verified
    registered CA). ``expires_at`` is the certificate's expiry.

    Raises:
        TokenRefused: ``unavailable``, ``unknown``, ``disabled`` or ``x509`` (the reason says which
            check failed).
    """
    key = identity_key(device_id, module_id)
    try:
        identity = await registry.get_identity(device_id, module_id)
        device = identity if not module_id or identity is None else await registry.get_identity(device_id)
    except Exception as exc:
        raise TokenRefused("unavailable", f"the registry is unavailable: {exc}") from None
    if identity is None:
        raise TokenRefused("unknown", f"'{key}' is not registered on this hub")
    if device is None or device.status != "enabled":
        raise TokenRefused("disabled", f"device '{device_id}' is disabled")
    auth = identity.auth
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    try:
        if auth.type is AuthType.SELF_SIGNED:
            certificate = check_thumbprint(
                client, (auth.primary_thumbprint, auth.secondary_thumbprint), moment
            )
        elif auth.type is AuthType.CERTIFICATE_AUTHORITY:
            try:
                registered = await registry.list_authorities()
            except Exception as exc:
                raise TokenRefused("unavailable", f"the registry is unavailable: {exc}") from None
            certificate, _ca = check_issued(client, key, _verified(registered), moment)
        else:
            raise TokenRefused(
                "x509",
                f"'{key}' authenticates with SAS tokens, not a certificate; send a SAS token as the password",
            )
    except CertificateRefused as refused:
        raise TokenRefused(
            "x509", f"the client certificate does not prove '{key}': {refused.reason}"
        ) from None
    return VerifiedDevice(device_id, module_id, key, certificate.not_valid_after_utc.timestamp(), None)


def _verified(authorities: list[CertificateAuthority]) -> list[tuple[str, x509.Certificate]]:
    loaded: list[tuple[str, x509.Certificate]] = []
    for authority in authorities:
        if not authority.verified:
            continue
        certificate = _parsed(authority.certificate)
        if certificate is not None:  # an unreadable row (stored by hand?) proves nothing
            loaded.append((authority.name, certificate))
    return loaded


@functools.lru_cache(maxsize=64)
def _parsed(pem: str) -> x509.Certificate | None:
    """A registered CA's certificate, parsed once (a CA-authenticated connect reads them all)."""
    try:
        return load_certificate(pem.encode())
    except CertificateError:
        return None
