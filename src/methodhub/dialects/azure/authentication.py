"""An identity's ``authentication`` object in Azure's REST shape (the registry's Device and Module):
``type`` ``sas`` (``symmetricKey``), ``selfSigned`` (``x509Thumbprint``) or
``certificateAuthority``, as ``IoTHubRegistryManager.create_device_with_sas`` /
``create_device_with_x509`` / ``create_device_with_certificate_authority`` send it (msrest omits
the fields that are None)."""

from __future__ import annotations

from typing import Any

from methodhub.errors import ErrorKind, HubError
from methodhub.registry import AuthType, DeviceAuth, Identity, SymmetricKeys

TYPES = {t.value: t for t in AuthType}


def authentication_json(identity: Identity) -> dict[str, Any]:
    """Azure's ``authentication`` of ``identity``: an X.509 identity shows null keys, a SAS one
    null thumbprints, as IoT Hub does."""
    auth = identity.auth
    x509 = auth.is_x509
    return {
        "symmetricKey": {
            "primaryKey": None if x509 else identity.keys.primary,
            "secondaryKey": None if x509 else identity.keys.secondary,
        },
        "x509Thumbprint": {
            "primaryThumbprint": auth.primary_thumbprint,
            "secondaryThumbprint": auth.secondary_thumbprint,
        },
        "type": auth.type.value,
    }


def parse_authentication(authentication: Any) -> tuple[SymmetricKeys | None, DeviceAuth | None]:
    """The keys (None: generate, or keep, them) and the authentication (None: not given — a new
    identity is SAS, an existing one keeps its own) of an Azure ``authentication`` object.

    Raises:
        HubError: ``INVALID_ARGUMENT`` for an unknown type, keys with X.509, both keys or neither,
            bad keys; thumbprints are checked by the registry
            (:func:`~methodhub.registry.rules.check_auth`).
    """
    if authentication is None:
        return None, None
    if not isinstance(authentication, dict):
        raise HubError(ErrorKind.INVALID_ARGUMENT, "authentication must be an object.")
    kind = authentication.get("type")
    if kind is None:
        kind = "sas"
    if not isinstance(kind, str) or kind not in TYPES:
        raise HubError(
            ErrorKind.INVALID_ARGUMENT,
            f"authentication type {kind!r} is not supported; use 'sas', 'selfSigned' or "
            "'certificateAuthority'.",
        )
    auth_type = TYPES[kind]
    thumbprints = _object(authentication.get("x509Thumbprint"), "authentication.x509Thumbprint")
    primary_t, secondary_t = thumbprints.get("primaryThumbprint"), thumbprints.get("secondaryThumbprint")
    keys = _keys(_object(authentication.get("symmetricKey"), "authentication.symmetricKey"))
    if auth_type is AuthType.SAS:
        if primary_t is not None or secondary_t is not None:
            raise HubError(
                ErrorKind.INVALID_ARGUMENT,
                "authentication type 'sas' takes no x509Thumbprint; use type 'selfSigned' for thumbprints.",
            )
        return keys, DeviceAuth()
    if keys is not None:
        raise HubError(ErrorKind.INVALID_ARGUMENT, f"authentication type '{kind}' takes no symmetricKey.")
    return None, DeviceAuth(auth_type, primary_t, secondary_t)


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HubError(ErrorKind.INVALID_ARGUMENT, f"{name} must be a JSON object.")
    return value


def _keys(symmetric: dict[str, Any]) -> SymmetricKeys | None:
    primary, secondary = symmetric.get("primaryKey"), symmetric.get("secondaryKey")
    if not primary and not secondary:
        return None
    if not primary or not secondary:
        raise HubError(ErrorKind.INVALID_ARGUMENT, "Give both primaryKey and secondaryKey, or neither.")
    for key in (primary, secondary):
        if not SymmetricKeys.is_valid_key(key):
            raise HubError(
                ErrorKind.INVALID_ARGUMENT, "Symmetric keys must be base64 encoding 16 to 64 bytes."
            )
    return SymmetricKeys(primary, secondary)
