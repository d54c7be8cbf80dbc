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
from methodhub.registry.model import AccessPolicy, Identity, Right, SymmetricKeys
from methodhub.registry.products import (
    device_secret_error,
    generate_device_secret,
    product_device_id,
    validate_product_names,
)

STATUSES = ("enabled", "disabled")

IDENTITY_COLUMNS = (
    "device_id, module_id, primary_key, secondary_key, status, status_reason, etag, generation_id, "
    "created_at, status_updated_at, updated_at, iot_edge"
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
    )


def identity_values(identity: Identity) -> tuple[Any, ...]:
    """The values of :data:`IDENTITY_COLUMNS` for ``identity`` (``iot_edge`` as a bool)."""
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
    )


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
) -> Identity:
    """A validated identity to insert (keys generated if None; modules are always enabled)."""
    validate_device_id(device_id)
    if module_id is not None:
        validate_module_id(module_id)
    check_status(status)
    check_keys(keys)
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
    )


def apply_update(
    current: Identity,
    *,
    keys: SymmetricKeys | None,
    status: str | None,
    status_reason: str | None,
) -> Identity:
    """``current`` changed as ``update_identity`` asks (in place; a new etag), and returned."""
    now = time.time()
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
