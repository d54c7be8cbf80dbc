"""Custom shared access policies (as Azure IoT Hub allows: a name, two keys, chosen rights) next to the
five built-in ones: the rules, and each backend's statements (:class:`SqlitePolicies`,
:class:`PostgresPolicies`, mixed into the registries). Every change is recorded in the change feed
(kind ``policy``), so every node drops the tokens it cached for that policy."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from methodhub.errors import ErrorKind, HubError
from methodhub.registry.model import AccessPolicy, Right, SymmetricKeys
from methodhub.registry.rules import POLICY_COLUMNS, check_keys, policy_from_row, rights_text

POLICY_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""Azure's rule for a shared access policy's name: 1 to 64 letters, digits, ``.``, ``_`` or ``-``."""


def check_policy(name: str, rights: frozenset[Right] | None) -> None:
    """Raise ``INVALID_ARGUMENT`` for a name Azure would refuse, or an empty set of rights."""
    if not isinstance(name, str) or not POLICY_NAME.fullmatch(name):
        raise HubError(
            ErrorKind.INVALID_ARGUMENT,
            f"A policy name is 1 to 64 letters, digits, '.', '_' or '-'; {str(name)[:80]!r} is not.",
        )
    if rights is not None and not rights:
        names = ", ".join(r.value for r in Right)
        raise HubError(ErrorKind.INVALID_ARGUMENT, f"A policy needs at least one right: {names}.")


def parse_rights(text: str) -> frozenset[Right]:
    """``ServiceConnect,RegistryRead`` as rights (Azure's names, case-insensitive); raises
    ``INVALID_ARGUMENT`` naming the unknown ones and the valid ones."""
    by_name = {r.value.lower(): r for r in Right}
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in wanted if part.lower() not in by_name]
    if unknown or not wanted:
        names = ", ".join(r.value for r in Right)
        what = f"unknown right(s) {', '.join(unknown)}" if unknown else "no rights given"
        raise HubError(ErrorKind.INVALID_ARGUMENT, f"{what}; rights are {names} (comma-separated)")
    return frozenset(by_name[part.lower()] for part in wanted)


def _new_policy(name: str, rights: frozenset[Right], keys: SymmetricKeys | None) -> AccessPolicy:
    """The policy ``create_policy`` stores, once its arguments pass Azure's rules."""
    check_policy(name, rights)
    check_keys(keys)
    return AccessPolicy(name, keys or SymmetricKeys.generate(), frozenset(rights))


def _updated(row: Any, keys: SymmetricKeys | None, rights: frozenset[Right] | None) -> AccessPolicy:
    """The stored policy of ``row`` with ``keys`` and/or ``rights`` replaced (None keeps them)."""
    current = policy_from_row(row)
    return AccessPolicy(current.name, keys or current.keys, frozenset(rights or current.rights))


def _missing(name: str) -> HubError:
    return HubError(ErrorKind.NOT_FOUND, f"No shared access policy '{name}'.")


def _exists(name: str) -> HubError:
    return HubError(ErrorKind.CONFLICT, f"A shared access policy '{name}' already exists.")


class SqlitePolicies:
    """The SQLite statements (the registry provides ``_run``, ``_transaction`` and ``_record``)."""

    _run: Callable[..., Awaitable[Any]]
    _transaction: Callable[[Callable[[sqlite3.Connection], Any]], Any]
    _record: Callable[[sqlite3.Connection, str, str], None]

    async def create_policy(
        self, name: str, rights: frozenset[Right], keys: SymmetricKeys | None = None
    ) -> AccessPolicy:
        policy = _new_policy(name, rights, keys)

        def insert(db: sqlite3.Connection) -> AccessPolicy:
            if db.execute("SELECT 1 FROM policies WHERE name = ?", (name,)).fetchone():
                raise _exists(name)
            db.execute(
                f"INSERT INTO policies ({POLICY_COLUMNS}) VALUES (?, ?, ?, ?)",
                (name, policy.keys.primary, policy.keys.secondary, rights_text(policy.rights)),
            )
            self._record(db, "policy", name)
            return policy

        created: AccessPolicy = await self._run(self._transaction, insert)
        return created

    async def update_policy(
        self, name: str, *, keys: SymmetricKeys | None = None, rights: frozenset[Right] | None = None
    ) -> AccessPolicy:
        check_policy(name, rights)
        check_keys(keys)

        def update(db: sqlite3.Connection) -> AccessPolicy:
            row = db.execute(f"SELECT {POLICY_COLUMNS} FROM policies WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise _missing(name)
            policy = _updated(row, keys, rights)
            db.execute(
                "UPDATE policies SET primary_key = ?, secondary_key = ?, rights = ? WHERE name = ?",
                (policy.keys.primary, policy.keys.secondary, rights_text(policy.rights), name),
            )
            self._record(db, "policy", name)
            return policy

        updated: AccessPolicy = await self._run(self._transaction, update)
        return updated

    async def delete_policy(self, name: str) -> None:
        if not POLICY_NAME.fullmatch(name):
            raise _missing(name)

        def delete(db: sqlite3.Connection) -> None:
            if db.execute("DELETE FROM policies WHERE name = ?", (name,)).rowcount == 0:
                raise _missing(name)
            self._record(db, "policy", name)

        await self._run(self._transaction, delete)


class PostgresPolicies:
    """The PostgreSQL statements (the registry provides ``_write`` and ``_record``)."""

    _write: Callable[..., Awaitable[Any]]
    _record: Callable[[Any, str, list[str]], Awaitable[None]]

    async def create_policy(
        self, name: str, rights: frozenset[Right], keys: SymmetricKeys | None = None
    ) -> AccessPolicy:
        policy = _new_policy(name, rights, keys)

        async def insert(conn: Any) -> AccessPolicy:
            inserted = await conn.fetchval(
                f"INSERT INTO policies ({POLICY_COLUMNS}) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (name) DO NOTHING RETURNING name",
                name,
                policy.keys.primary,
                policy.keys.secondary,
                rights_text(policy.rights),
            )
            if inserted is None:
                raise _exists(name)
            await self._record(conn, "policy", [name])
            return policy

        created: AccessPolicy = await self._write(insert)
        return created

    async def update_policy(
        self, name: str, *, keys: SymmetricKeys | None = None, rights: frozenset[Right] | None = None
    ) -> AccessPolicy:
        check_policy(name, rights)
        check_keys(keys)

        async def update(conn: Any) -> AccessPolicy:
            sql = f"SELECT {POLICY_COLUMNS} FROM policies WHERE name = $1 FOR UPDATE"
            row = await conn.fetchrow(sql, name)
            if row is None:
                raise _missing(name)
            policy = _updated(row, keys, rights)
            await conn.execute(
                "UPDATE policies SET primary_key = $1, secondary_key = $2, rights = $3 WHERE name = $4",
                policy.keys.primary,
                policy.keys.secondary,
                rights_text(policy.rights),
                name,
            )
            await self._record(conn, "policy", [name])
            return policy

        updated: AccessPolicy = await self._write(update)
        return updated

    async def delete_policy(self, name: str) -> None:
        if not POLICY_NAME.fullmatch(name):
            raise _missing(name)

        async def delete(conn: Any) -> None:
            if await conn.fetchval("DELETE FROM policies WHERE name = $1 RETURNING name", name) is None:
                raise _missing(name)
            await self._record(conn, "policy", [name])

        await self._write(delete)
