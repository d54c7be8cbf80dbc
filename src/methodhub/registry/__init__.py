"""Identities, keys, access policies, persisted sessions: one interface, SQLite or PostgreSQL behind it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from methodhub.registry.base import Registry
from methodhub.registry.ids import validate_device_id, validate_module_id
from methodhub.registry.locations import is_postgres_url, redact_url
from methodhub.registry.migrations import SchemaTooNew
from methodhub.registry.model import (
    DEFAULT_POLICIES,
    AccessPolicy,
    AuthType,
    CertificateAuthority,
    Change,
    DeviceAuth,
    Identity,
    Right,
    SymmetricKeys,
)
from methodhub.registry.products import (
    ProductDevice,
    product_device_id,
    split_product_device_id,
    validate_product_key,
    validate_product_names,
)
from methodhub.registry.sqlite import SqliteRegistry

if TYPE_CHECKING:
    from methodhub.registry.postgres import PostgresRegistry


def __getattr__(name: str) -> object:
    if name == "PostgresRegistry":  # imported on first use: asyncpg takes ~0.1 s to load
        from methodhub.registry.postgres import PostgresRegistry

        return PostgresRegistry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_registry(location: str | Path) -> Registry:
    """The registry at ``location`` (not yet opened): a file path or ``sqlite:///path`` (SQLite), or
    ``postgresql://...`` / ``postgres://...`` (PostgreSQL, shared by a cluster).

    Raises:
        ValueError: an unsupported scheme.
    """
    text = str(location)
    if is_postgres_url(text):
        from methodhub.registry.postgres import PostgresRegistry

        return PostgresRegistry(text)
    if text.startswith("sqlite:///"):
        return SqliteRegistry(text[len("sqlite://") :])
    if "://" in text:
        raise ValueError(
            f"unsupported registry location {redact_url(text)!r}; "
            "use a file path, sqlite:///path or postgresql://user:password@host:port/database"
        )
    return SqliteRegistry(text)


__all__ = [
    "DEFAULT_POLICIES",
    "AccessPolicy",
    "AuthType",
    "CertificateAuthority",
    "Change",
    "DeviceAuth",
    "Identity",
    "PostgresRegistry",
    "ProductDevice",
    "Registry",
    "Right",
    "SchemaTooNew",
    "SqliteRegistry",
    "SymmetricKeys",
    "is_postgres_url",
    "open_registry",
    "product_device_id",
    "redact_url",
    "split_product_device_id",
    "validate_device_id",
    "validate_module_id",
    "validate_product_key",
    "validate_product_names",
]
