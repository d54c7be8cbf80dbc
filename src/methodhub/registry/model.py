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
    """One row of the change feed: an identity (by key), a policy (by name) or a twin's desired
    properties (by identity key) changed."""

    seq: int
    kind: Literal["identity", "policy", "twin"]
    key: str


DEFAULT_POLICIES: dict[str, frozenset[Right]] = {
    "iothubowner": frozenset(Right),
    "service": frozenset({Right.SERVICE_CONNECT}),
    "device": frozenset({Right.DEVICE_CONNECT}),
    "registryRead": frozenset({Right.REGISTRY_READ}),
    "registryReadWrite": frozenset({Right.REGISTRY_READ, Right.REGISTRY_WRITE}),
}
"""Azure IoT Hub's five default policies, created on a hub's first start."""
