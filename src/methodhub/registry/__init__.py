"""Identities, keys, access policies, persisted sessions: one interface, SQLite behind it."""

from __future__ import annotations

from pathlib import Path

from methodhub.registry.base import Registry
from methodhub.registry.ids import validate_device_id, validate_module_id
from methodhub.registry.migrations import SchemaTooNew
from methodhub.registry.model import DEFAULT_POLICIES, AccessPolicy, Change, Identity, Right, SymmetricKeys
from methodhub.registry.products import (
    ProductDevice,
    product_device_id,
    split_product_device_id,
    validate_product_names,
)
from methodhub.registry.sqlite import SqliteRegistry


def open_registry(location: str | Path) -> Registry:
    """The registry at ``location``: a file path or ``sqlite:///path`` (SQLite).

    Raises:
        ValueError: an unsupported scheme.
    """
    text = str(location)
    if text.startswith("sqlite:///"):
        return SqliteRegistry(text[len("sqlite://") :])
    if "://" in text:
        raise ValueError(f"unsupported registry location {text!r}; use a file path or sqlite:///path")
    return SqliteRegistry(text)


__all__ = [
    "DEFAULT_POLICIES",
    "AccessPolicy",
    "Change",
    "Identity",
    "ProductDevice",
    "Registry",
    "Right",
    "SchemaTooNew",
    "SqliteRegistry",
    "SymmetricKeys",
    "open_registry",
    "product_device_id",
    "split_product_device_id",
    "validate_device_id",
    "validate_module_id",
    "validate_product_names",
]
