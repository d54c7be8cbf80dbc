"""Devices named in Alibaba Cloud's terms: a ProductKey, a DeviceName and a DeviceSecret.

An Alibaba device is an ordinary registry identity (one device, one identity, callable through
every API) whose device id is derived from its names::

    product_device_id("a1PK", "dev1") == "a1PK:dev1"

The mapping is reversible and collision-free because a ProductKey never contains ``:`` (it is
ASCII letters and digits), and the result is a valid Azure device id (DeviceName characters are all
in Azure's set, and 32 + 1 + 32 characters fit Azure's 128). The registry also stores the names
themselves, so nothing ever has to parse an id.

The DeviceSecret is a credential of its own, not the identity's symmetric key: devices flashed for
Alibaba's cloud carry a secret Alibaba issued (32 letters and digits, not an Azure key), and
migrating them must not need new firmware, so a secret can be imported as it is. The identity's
Azure keys stay valid for Azure-dialect connections of the same device.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from methodhub.errors import ErrorKind, HubError
from methodhub.registry.model import Identity

PRODUCT_KEY_LENGTH = (1, 32)
"""Alibaba issues 11-character ProductKeys of ASCII letters and digits; we accept up to 32 so that
keys of other schemes fit, but never ``:`` (the separator in the derived device id)."""
PRODUCT_KEY_CHARACTERS = frozenset(string.ascii_letters + string.digits)

DEVICE_NAME_LENGTH = (4, 32)
"""Alibaba's rule for DeviceName: 4 to 32 characters."""
DEVICE_NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_@.:")
"""Alibaba's DeviceName characters: ASCII letters, digits and ``- _ @ . :`` — all legal in Azure
device ids and in MQTT topic levels."""

DEVICE_SECRET_LENGTH = (16, 128)
"""Imported secrets: Alibaba's are 32 characters; anything shorter than 16 is too weak to accept."""
GENERATED_SECRET_LENGTH = 32
_SECRET_ALPHABET = string.ascii_letters + string.digits

ID_SEPARATOR = ":"


@dataclass(frozen=True, slots=True)
class ProductDevice:
    """An identity's Alibaba names and credential.

    Attributes:
        identity: the registry identity (``identity.device_id == product_device_id(pk, dn)``).
        product_key / device_name: the names Alibaba's SDKs and API use.
        device_secret: the key of the device's MQTT login signature (Link SDK ``device_secret``).
    """

    identity: Identity
    product_key: str
    device_name: str
    device_secret: str

    @property
    def device_id(self) -> str:
        return self.identity.device_id


def product_device_id(product_key: str, device_name: str) -> str:
    """The methodhub device id of ``(product_key, device_name)``; see the module docstring."""
    return f"{product_key}{ID_SEPARATOR}{device_name}"


def split_product_device_id(device_id: str) -> tuple[str, str] | None:
    """``(product_key, device_name)`` if ``device_id`` has the derived shape, else None.

    A match does not mean the device is registered as an Alibaba device: ask the registry.
    """
    product_key, sep, device_name = device_id.partition(ID_SEPARATOR)
    if not sep or product_key_error(product_key) or device_name_error(device_name):
        return None
    return product_key, device_name


def product_key_error(value: object) -> str | None:
    """Why ``value`` is not a usable ProductKey, or None."""
    low, high = PRODUCT_KEY_LENGTH
    if not isinstance(value, str) or not low <= len(value) <= high:
        return f"A ProductKey has {low} to {high} characters."
    if not set(value) <= PRODUCT_KEY_CHARACTERS:
        return f"The ProductKey {value!r} must be ASCII letters and digits only."
    return None


def device_name_error(value: object) -> str | None:
    """Why ``value`` is not a usable DeviceName, or None."""
    low, high = DEVICE_NAME_LENGTH
    if not isinstance(value, str) or not low <= len(value) <= high:
        return f"A DeviceName has {low} to {high} characters."
    bad = sorted(set(value) - DEVICE_NAME_CHARACTERS)
    if bad:
        return f"The DeviceName {value!r} contains {''.join(bad)!r}; use ASCII letters, digits and - _ @ . :"
    return None


def device_secret_error(value: object) -> str | None:
    """Why ``value`` is not an acceptable DeviceSecret to import, or None."""
    low, high = DEVICE_SECRET_LENGTH
    if not isinstance(value, str) or not low <= len(value) <= high:
        return f"A DeviceSecret has {low} to {high} characters."
    if not all("!" <= char <= "~" for char in value):
        return "A DeviceSecret is printable ASCII without spaces."
    return None


def validate_product_names(product_key: object, device_name: object) -> tuple[str, str]:
    """Return the names if both are valid, else raise ``INVALID_ARGUMENT`` saying what is wrong."""
    error = product_key_error(product_key) or device_name_error(device_name)
    if error:
        raise HubError(ErrorKind.INVALID_ARGUMENT, error)
    return product_key, device_name  # type: ignore[return-value]


def validate_product_key(product_key: object) -> str:
    """Return the ProductKey if it is valid, else raise ``INVALID_ARGUMENT`` saying what is wrong."""
    error = product_key_error(product_key)
    if error:
        raise HubError(ErrorKind.INVALID_ARGUMENT, error)
    return product_key  # type: ignore[return-value]


def generate_device_secret() -> str:
    """A new DeviceSecret in Alibaba's shape: 32 ASCII letters and digits (~190 bits)."""
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(GENERATED_SECRET_LENGTH))
