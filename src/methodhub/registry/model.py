"""What the registry stores: identities (devices and modules), access policies, changes."""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from methodhub.calls.model import identity_key


class Right(StrEnum):
    """Azure IoT Hub's shared-access-policy permissions."""

    REGISTRY_READ = "RegistryRead"
    REGISTRY_WRITE = "RegistryWrite"
    SERVICE_CONNECT = "ServiceConnect"
    DEVICE_CONNECT = "DeviceConnect"


KEY_BYTES = 32
"""Azure generates 32-byte symmetric keys (44 base64 characters)."""
KEY_BYTES_RANGE = (16, 64)
"""Azure accepts keys of 16 to 64 bytes."""


@dataclass(frozen=True, slots=True)
class SymmetricKeys:
    """A primary and a secondary key, base64 text; either authenticates (for key rotation)."""

    primary: str
    secondary: str

    @classmethod
    def generate(cls) -> SymmetricKeys:
        return cls(
            base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode(),
            base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode(),
        )

    @staticmethod
    def is_valid_key(key: object) -> bool:
        """Whether ``key`` is base64 text of 16 to 64 bytes."""
        if not isinstance(key, str):
            return False
        try:
            raw = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            return False
        return KEY_BYTES_RANGE[0] <= len(raw) <= KEY_BYTES_RANGE[1]


class AuthType(StrEnum):
    """How an identity authenticates (Azure's ``authentication.type``)."""

    SAS = "sas"
    """A SAS token signed with one of its symmetric keys."""
    SELF_SIGNED = "selfSigned"
    """A client certificate whose thumbprint is one of the identity's two."""
    CERTIFICATE_AUTHORITY = "certificateAuthority"
    """A client certificate issued by a verified registered CA, its CN the identity's id."""


@dataclass(frozen=True, slots=True)
class DeviceAuth:
    """An identity's authentication: its type and, for ``selfSigned``, its X.509 thumbprints
    (upper-case hex without colons: 40 digits for SHA-1, 64 for SHA-256; see
    :func:`methodhub.registry.rules.check_auth`)."""

    type: AuthType = AuthType.SAS
    primary_thumbprint: str | None = None
    secondary_thumbprint: str | None = None

    @property
    def is_x509(self) -> bool:
        return self.type is not AuthType.SAS


SAS_AUTH = DeviceAuth()


@dataclass(slots=True)
class Identity:
    """A device (``module_id`` None) or a module of a device."""

    device_id: str
    module_id: str | None
    keys: SymmetricKeys
    status: str
    status_reason: str | None
    etag: str
    generation_id: str
    created_at: float
    status_updated_at: float
    updated_at: float
    iot_edge: bool = False
    auth: DeviceAuth = SAS_AUTH
    """How it authenticates; an X.509 identity keeps its stored ``keys`` (never shown, never
    accepted) so that switching it back to ``sas`` without keys gets fresh ones."""

    @property
    def key(self) -> str:
        """The identity key: the call target and session key (``dev`` or ``dev/mod``)."""
        return identity_key(self.device_id, self.module_id)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """A shared access policy: a name, keys, and the rights tokens signed with them carry."""

    name: str
    keys: SymmetricKeys
    rights: frozenset[Right]


@dataclass(frozen=True, slots=True)
class Change:
    """One row of the change feed: an identity (by key), a policy (by name), a twin's desired
    properties (by identity key) or a certificate authority (by name) changed."""

    seq: int
    kind: Literal["identity", "policy", "twin", "authority"]
    key: str


DEFAULT_POLICIES: dict[str, frozenset[Right]] = {
    "iothubowner": frozenset(Right),
    "service": frozenset({Right.SERVICE_CONNECT}),
    "device": frozenset({Right.DEVICE_CONNECT}),
    "registryRead": frozenset({Right.REGISTRY_READ}),
    "registryReadWrite": frozenset({Right.REGISTRY_READ, Right.REGISTRY_WRITE}),
}
"""Azure IoT Hub's five default policies, created on a hub's first start."""


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A CA registered on the hub (Azure's "CA certificates"): devices of type
    ``certificateAuthority`` authenticate with certificates it issued, once it is ``verified``
    (its owner proved possession of its key by signing a certificate whose CN is
    ``verification_code``).

    Attributes:
        name: 1 to 64 letters, digits, ``.``, ``_`` or ``-``.
        certificate: the CA certificate, PEM.
        thumbprint: its SHA-256 thumbprint, upper-case hex.
    """

    name: str
    certificate: str
    thumbprint: str
    verification_code: str
    verified: bool
    created_at: float
    updated_at: float
