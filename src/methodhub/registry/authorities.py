"""The hub's certificate authorities (Azure's "CA certificates" with proof of possession): each
backend's statements (:class:`SqliteAuthorities`, :class:`PostgresAuthorities`, mixed into the
registries). The certificate is parsed and checked by the caller
(:mod:`methodhub.auth.x509`); here it is stored text. Every change is recorded in the change feed
(kind ``authority``), so every node re-checks the connections of devices it authenticated."""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from methodhub.errors import ErrorKind, HubError
from methodhub.registry.model import CertificateAuthority

AUTHORITY_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""The name of a registered CA: 1 to 64 letters, digits, ``.``, ``_`` or ``-``."""
AUTHORITY_COLUMNS = "name, certificate, thumbprint, verification_code, verified, created_at, updated_at"


def check_authority_name(name: str) -> None:
    if not isinstance(name, str) or not AUTHORITY_NAME.fullmatch(name):
        raise HubError(
            ErrorKind.INVALID_ARGUMENT,
            f"A CA name is 1 to 64 letters, digits, '.', '_' or '-'; {str(name)[:80]!r} is not.",
        )


def new_verification_code() -> str:
    """What the CA's owner puts in the CN of the certificate signed to prove possession (Azure's
    are 48 hex digits; a CN holds up to 64 characters)."""
    return secrets.token_hex(24).upper()


def authority_from_row(row: Sequence[Any]) -> CertificateAuthority:
    return CertificateAuthority(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6])


def _missing(name: str) -> HubError:
    return HubError(ErrorKind.NOT_FOUND, f"No CA '{name}' is registered.")


def _exists(name: str) -> HubError:
    return HubError(ErrorKind.CONFLICT, f"A CA '{name}' is registered already.")


def _new(name: str, certificate: str, thumbprint: str) -> CertificateAuthority:
    check_authority_name(name)
    now = time.time()
    return CertificateAuthority(name, certificate, thumbprint, new_verification_code(), False, now, now)


class SqliteAuthorities:
    """The SQLite statements (the registry provides ``_run``, ``_read``, ``_transaction``, ``_conn``
    and ``_record``)."""

    _run: Callable[..., Awaitable[Any]]
    _transaction: Callable[[Callable[[sqlite3.Connection], Any]], Any]
    _record: Callable[[sqlite3.Connection, str, str], None]
    _conn: Callable[[], sqlite3.Connection]

    async def add_authority(self, name: str, certificate: str, thumbprint: str) -> CertificateAuthority:
        authority = _new(name, certificate, thumbprint)

        def insert(db: sqlite3.Connection) -> None:
            try:
                db.execute(
                    f"INSERT INTO certificate_authorities ({AUTHORITY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        certificate,
                        thumbprint,
                        authority.verification_code,
                        0,
                        *([authority.created_at] * 2),
                    ),
                )
            except sqlite3.IntegrityError:
                raise _exists(name) from None
            self._record(db, "authority", name)

        await self._run(self._transaction, insert)
        return authority

    async def list_authorities(self) -> list[CertificateAuthority]:
        def query() -> list[CertificateAuthority]:
            rows = self._conn().execute(
                f"SELECT {AUTHORITY_COLUMNS} FROM certificate_authorities ORDER BY name"
            )
            return [authority_from_row(row) for row in rows]

        found: list[CertificateAuthority] = await self._run(query)
        return found

    async def set_authority_verified(self, name: str) -> CertificateAuthority:
        def update(db: sqlite3.Connection) -> CertificateAuthority:
            if (
                db.execute(
                    "UPDATE certificate_authorities SET verified = 1, updated_at = ? WHERE name = ?",
                    (time.time(), name),
                ).rowcount
                == 0
            ):
                raise _missing(name)
            self._record(db, "authority", name)
            row = db.execute(
                f"SELECT {AUTHORITY_COLUMNS} FROM certificate_authorities WHERE name = ?", (name,)
            ).fetchone()
            return authority_from_row(row)

        verified: CertificateAuthority = await self._run(self._transaction, update)
        return verified

    async def remove_authority(self, name: str) -> None:
        def delete(db: sqlite3.Connection) -> None:
            if db.execute("DELETE FROM certificate_authorities WHERE name = ?", (name,)).rowcount == 0:
                raise _missing(name)
            self._record(db, "authority", name)

        await self._run(self._transaction, delete)


class PostgresAuthorities:
    """The PostgreSQL statements (the registry provides ``_read``, ``_write`` and ``_record``)."""

    _read: Callable[..., Awaitable[Any]]
    _write: Callable[..., Awaitable[Any]]
    _record: Callable[[Any, str, list[str]], Awaitable[None]]

    async def add_authority(self, name: str, certificate: str, thumbprint: str) -> CertificateAuthority:
        authority = _new(name, certificate, thumbprint)

        async def insert(conn: Any) -> None:
            inserted = await conn.fetchval(
                f"INSERT INTO certificate_authorities ({AUTHORITY_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, FALSE, $5, $5) ON CONFLICT (name) DO NOTHING RETURNING 1",
                name,
                certificate,
                thumbprint,
                authority.verification_code,
                authority.created_at,
            )
            if inserted is None:
                raise _exists(name)
            await self._record(conn, "authority", [name])

        await self._write(insert)
        return authority

    async def list_authorities(self) -> list[CertificateAuthority]:
        rows = await self._read(
            lambda conn: conn.fetch(f"SELECT {AUTHORITY_COLUMNS} FROM certificate_authorities ORDER BY name")
        )
        return [authority_from_row(row) for row in rows]

    async def set_authority_verified(self, name: str) -> CertificateAuthority:
        async def update(conn: Any) -> CertificateAuthority:
            row = await conn.fetchrow(
                "UPDATE certificate_authorities SET verified = TRUE, updated_at = $2 WHERE name = $1 "
                f"RETURNING {AUTHORITY_COLUMNS}",
                name,
                time.time(),
            )
            if row is None:
                raise _missing(name)
            await self._record(conn, "authority", [name])
            return authority_from_row(row)

        verified: CertificateAuthority = await self._write(update)
        return verified

    async def remove_authority(self, name: str) -> None:
        async def delete(conn: Any) -> None:
            if (
                await conn.fetchval("DELETE FROM certificate_authorities WHERE name = $1 RETURNING 1", name)
                is None
            ):
                raise _missing(name)
            await self._record(conn, "authority", [name])

        await self._write(delete)
