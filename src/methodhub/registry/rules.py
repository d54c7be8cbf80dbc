"""What every registry backend checks, generates and converts the same way.

The backends (SQLite, PostgreSQL) differ in how they store and lock; what an identity looks like
when it is created or updated, which input is refused with which message, and how a stored row
becomes an :class:`Identity` live here once, so both behave identically.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Sequence
from typing import Any

from methodhub.errors import ErrorKind, HubError
from methodhub.registry.ids import validate_device_id, validate_module_id
from methodhub.registry.model import (
    SAS_AUTH,
    AccessPolicy,
    AuthType,
    DeviceAuth,
    Identity,
    Right,
    SymmetricKeys,
)
from methodhub.registry.products import (
    device_secret_error,
    generate_device_secret,
    product_device_id,
    validate_product_names,
)

STATUSES = ("enabled", "disabled")

IDENTITY_COLUMNS = (
    "device_id, module_id, primary_key, secondary_key, status, status_reason, etag, generation_id, "
    "created_at, status_updated_at, updated_at, iot_edge, auth_type, primary_thumbprint, secondary_thumbprint"
)
"""The identity columns, in the order :func:`identity_from_row` reads them."""
JOINED_IDENTITY_COLUMNS = ", ".join(f"i.{name.strip()}" for name in IDENTITY_COLUMNS.split(","))
POLICY_COLUMNS = "name, primary_key, secondary_key, rights"


def new_etag() -> str:
    return base64.b64encode(secrets.token_bytes(9)).decode()


def new_generation_id() -> str:
    return f"{time.time_ns() // 100}{secrets.randbelow(1000):03d}"


def identity_from_row(row: Sequence[Any]) -> Identity:
    """An :class:`Identity` from a row of :data:`IDENTITY_COLUMNS` (``module_id`` '' = a device)."""
    return Identity(
        device_id=row[0],
        module_id=row[1] or None,
        keys=SymmetricKeys(row[2], row[3]),
        status=row[4],
        status_reason=row[5],
        etag=row[6],
        generation_id=row[7],
        created_at=row[8],
        status_updated_at=row[9],
        updated_at=row[10],
        iot_edge=bool(row[11]),
        auth=DeviceAuth(AuthType(row[12]), row[13], row[14]) if row[12] != "sas" else SAS_AUTH,
    )


def identity_values(identity: Identity) -> tuple[Any, ...]:
    """The values of :data:`IDENTITY_COLUMNS` for ``identity`` (``iot_edge`` as a bool, the
    authentication type as its text)."""
    return (
        identity.device_id,
        identity.module_id or "",
        identity.keys.primary,
        identity.keys.secondary,
        identity.status,
        identity.status_reason,
        identity.etag,
        identity.generation_id,
        identity.created_at,
        identity.status_updated_at,
        identity.updated_at,
        identity.iot_edge,
        identity.auth.type.value,
        identity.auth.primary_thumbprint,
        identity.auth.secondary_thumbprint,
    )


THUMBPRINT_LENGTHS = {40: "SHA-1", 64: "SHA-256"}
"""Azure accepts a certificate's SHA-1 or SHA-256 thumbprint, in hex."""


def normalize_thumbprint(text: object, name: str) -> str:
    """``text`` as stored: upper-case hex, colons and spaces dropped (``ab:cd`` = ``ABCD``);
    ``INVALID_ARGUMENT`` naming ``name`` unless it is 40 (SHA-1) or 64 (SHA-256) hex digits."""
    if not isinstance(text, str):
        raise HubError(ErrorKind.INVALID_ARGUMENT, f"{name} must be a string of hex digits.")
    digits = text.replace(":", "").replace(" ", "").upper()
    if len(digits) not in THUMBPRINT_LENGTHS or any(c not in "0123456789ABCDEF" for c in digits):
        raise HubError(
            ErrorKind.INVALID_ARGUMENT,
            f"{name} must be a certificate's SHA-1 (40 hex digits) or SHA-256 (64 hex digits) "
            f"thumbprint; got {text[:80]!r}.",
        )
    return digits


def check_auth(auth: DeviceAuth | None) -> DeviceAuth | None:
    """``auth`` with its thumbprints normalized; ``INVALID_ARGUMENT`` for a combination Azure
    refuses: ``selfSigned`` needs a primary thumbprint, the other types take none."""
    if auth is None:
        return None
    if auth.type is AuthType.SELF_SIGNED:
        if auth.primary_thumbprint is None:
            raise HubError(
                ErrorKind.INVALID_ARGUMENT,
                "authentication type 'selfSigned' needs x509Thumbprint.primaryThumbprint.",
            )
        primary = normalize_thumbprint(auth.primary_thumbprint, "x509Thumbprint.primaryThumbprint")
        secondary = (
            normalize_thumbprint(auth.secondary_thumbprint, "x509Thumbprint.secondaryThumbprint")
            if auth.secondary_thumbprint is not None
            else None
        )
        return DeviceAuth(AuthType.SELF_SIGNED, primary, secondary)
    if auth.primary_thumbprint is not None or auth.secondary_thumbprint is not None:
        raise HubError(
            ErrorKind.INVALID_ARGUMENT,
            f"authentication type '{auth.type.value}' takes no x509Thumbprint "
            "(thumbprints are for 'selfSigned').",
        )
    return auth


def policy_from_row(row: Sequence[Any]) -> AccessPolicy:
    """An :class:`AccessPolicy` from a row of :data:`POLICY_COLUMNS` (rights comma-separated)."""
    rights = frozenset(Right(r) for r in row[3].split(",") if r)
    return AccessPolicy(row[0], SymmetricKeys(row[1], row[2]), rights)


def rights_text(rights: frozenset[Right]) -> str:
    return ",".join(sorted(rights))


def check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise HubError(ErrorKind.INVALID_ARGUMENT, f"status must be one of {', '.join(STATUSES)}.")


def check_keys(keys: SymmetricKeys | None) -> None:
    if keys is not None and not (
        SymmetricKeys.is_valid_key(keys.primary) and SymmetricKeys.is_valid_key(keys.secondary)
    ):
        raise HubError(ErrorKind.INVALID_ARGUMENT, "Symmetric keys must be base64 encoding 16 to 64 bytes.")


def key_of(device_id: str, module_id: str) -> str:
    """The identity key of a stored row (``module_id`` '' = the device)."""
    return f"{device_id}/{module_id}" if module_id else device_id


def missing(device_id: str, module_id: str) -> HubError:
    if module_id:
        return HubError(ErrorKind.MODULE_NOT_FOUND, f"No module '{module_id}' on device '{device_id}'.")
    return HubError(ErrorKind.DEVICE_NOT_FOUND, f"No device '{device_id}' is registered.")


def already_exists(identity: Identity) -> HubError:
    if identity.module_id:
        return HubError(
            ErrorKind.MODULE_ALREADY_EXISTS,
            f"Module '{identity.module_id}' already exists on device '{identity.device_id}'.",
        )
    return HubError(ErrorKind.DEVICE_ALREADY_EXISTS, f"Device '{identity.device_id}' already exists.")


def check_etag(etag: str | None, current: Identity, *, show_current: bool = False) -> None:
    """Raise ``PRECONDITION_FAILED`` unless ``etag`` is None, ``"*"`` or ``current.etag``."""
    if etag in (None, "*") or etag == current.etag:
        return
    shown = f" ({current.etag!r})" if show_current else ""
    raise HubError(
        ErrorKind.PRECONDITION_FAILED,
        f"The etag {etag!r} does not match the current version of '{current.key}'{shown}.",
    )


def new_identity(
    device_id: str,
    module_id: str | None,
    *,
    keys: SymmetricKeys | None,
    status: str,
    status_reason: str | None,
    iot_edge: bool,
    auth: DeviceAuth | None = None,
) -> Identity:
    """A validated identity to insert (keys generated if None; modules are always enabled)."""
    validate_device_id(device_id)
    if module_id is not None:
        validate_module_id(module_id)
    check_status(status)
    check_keys(keys)
    auth = check_auth(auth) or SAS_AUTH
    if auth.is_x509 and keys is not None:
        raise HubError(
            ErrorKind.INVALID_ARGUMENT, f"authentication type '{auth.type.value}' takes no symmetricKey."
        )
    now = time.time()
    return Identity(
        device_id=device_id,
        module_id=module_id or None,
        keys=keys or SymmetricKeys.generate(),
        status=status if not module_id else "enabled",
        status_reason=status_reason,
        etag=new_etag(),
        generation_id=new_generation_id(),
        created_at=now,
        status_updated_at=now,
        updated_at=now,
        iot_edge=iot_edge,
        auth=auth,
    )


def apply_update(
    current: Identity,
    *,
    keys: SymmetricKeys | None,
    status: str | None,
    status_reason: str | None,
    auth: DeviceAuth | None = None,
) -> Identity:
    """``current`` changed as ``update_identity`` asks (in place; a new etag), and returned.
    ``auth`` None keeps the authentication; an identity switched back to ``sas`` without ``keys``
    gets fresh keys (the ones it had before it was X.509 were never shown)."""
    now = time.time()
    auth = check_auth(auth)
    if auth is not None:
        if auth.is_x509 and keys is not None:
            raise HubError(
                ErrorKind.INVALID_ARGUMENT, f"authentication type '{auth.type.value}' takes no symmetricKey."
            )
        if not auth.is_x509 and current.auth.is_x509 and keys is None:
            keys = SymmetricKeys.generate()
        current.auth = auth
    elif keys is not None and current.auth.is_x509:
        raise HubError(
            ErrorKind.INVALID_ARGUMENT,
            f"'{current.key}' authenticates with X.509 ({current.auth.type.value}); "
            "set authentication.type 'sas' to give it symmetric keys.",
        )
    if keys is not None:
        current.keys = keys
    if status is not None and status != current.status and not current.module_id:
        current.status = status
        current.status_updated_at = now
    if status_reason is not None:
        current.status_reason = status_reason
    current.etag = new_etag()
    current.updated_at = now
    return current


def new_product_identity(
    product_key: str, device_name: str, device_secret: str | None, status: str
) -> tuple[Identity, str]:
    """The identity of a new Alibaba device and its DeviceSecret (generated if None), validated."""
    validate_product_names(product_key, device_name)
    if device_secret is None:
        device_secret = generate_device_secret()
    elif (error := device_secret_error(device_secret)) is not None:
        raise HubError(ErrorKind.INVALID_ARGUMENT, error)
    check_status(status)
    identity = new_identity(
        product_device_id(product_key, device_name),
        None,
        keys=None,
        status=status,
        status_reason=None,
        iot_edge=False,
    )
    return identity, device_secret


def postgres_storable(*texts: str | None) -> bool:
    """Whether PostgreSQL can hold these strings (text never contains NUL or lone surrogates).

    Nothing stored contains such characters (ids are validated), so a lookup by one finds nothing.
    """
    for text in texts:
        if text is None or (text.isascii() and "\x00" not in text):
            continue
        if "\x00" in text:
            return False
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True
