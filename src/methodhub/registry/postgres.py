"""The PostgreSQL registry: one database that every node of a cluster, and every CLI, shares.

``open_registry("postgresql://user:password@host:5432/db")``. Standard libpq-style URLs; query
parameters other than libpq's (``sslmode``, ``user``, ...) are server settings, e.g.
``?search_path=hub1`` keeps a hub's tables in schema ``hub1`` (create the schema first), and
``connect_timeout=S`` bounds each connection attempt (default 5 s).

Connections come from an asyncpg pool. When PostgreSQL cannot be reached (refused, reset, shut
down, too slow), every method raises ``HubError(SERVICE_UNAVAILABLE)`` — the REST APIs answer 503,
device CONNECTs get CONNACK 3 — and the pool reconnects by itself once the server is back. A
read that fails on a pooled connection the server had dropped is retried once on a fresh one; a
write is retried only if the connection failed before its COMMIT was sent (the server rolled it
back), never after, so a write is never applied twice.

**The change feed and commit order.** ``changes.seq`` comes from a sequence (BIGSERIAL), and a
sequence hands out numbers when a row is inserted, not when its transaction commits: a transaction
holding seq 7 can commit after one holding seq 8, and a node that read 8 and moved its cursor past
it would never see 7. So every transaction that records changes takes one transaction-scoped
advisory lock (:data:`CHANGE_FEED_LOCK`) immediately before it inserts them, as its last statement
before COMMIT. PostgreSQL releases the lock only after the commit is visible to others, so seqs are
handed out in commit order: whatever a reader sees is a prefix of the feed, and ``WHERE seq >
cursor`` never skips a row. The cost is that change-recording transactions (registry edits, rare
next to calls and connects) queue for one round trip each. (The alternative — reading only rows of
transactions older than the oldest one in flight, by xid — needs an xid column and a snapshot
query on every poll, and still delays every reader behind the slowest writer.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar

import asyncpg

from methodhub.errors import ErrorKind, HubError
from methodhub.query import Flavour, Query
from methodhub.registry.authorities import PostgresAuthorities
from methodhub.registry.base import LIVE_CALL_STATES, Registry
from methodhub.registry.calls import PostgresCalls
from methodhub.registry.jobs import PostgresJobs
from methodhub.registry.locations import is_postgres_url, redact_url, split_connect_timeout
from methodhub.registry.migrations import POSTGRES_MIGRATIONS, schema_too_new
from methodhub.registry.model import (
    DEFAULT_POLICIES,
    AccessPolicy,
    Change,
    DeviceAuth,
    Identity,
    SymmetricKeys,
)
from methodhub.registry.policies import PostgresPolicies
from methodhub.registry.products import ProductDevice, validate_product_key
from methodhub.registry.rules import (
    IDENTITY_COLUMNS,
    JOINED_IDENTITY_COLUMNS,
    POLICY_COLUMNS,
    already_exists,
    apply_update,
    check_etag,
    check_keys,
    check_status,
    identity_from_row,
    identity_values,
    key_of,
    missing,
    new_identity,
    new_product_identity,
    policy_from_row,
    rights_text,
)
from methodhub.registry.rules import (
    postgres_storable as _storable,
)
from methodhub.registry.sessions import SessionChanges, SessionWriteBehind
from methodhub.registry.twin_query import twin_query_sql
from methodhub.registry.twins import Twin, check_twin_etag, empty_twin

log = logging.getLogger("methodhub.registry.postgres")

T = TypeVar("T")
Connection: TypeAlias = asyncpg.Connection
Work = Callable[[Connection], Awaitable[T]]

POOL_MIN_SIZE = 0
"""No floor: asyncpg would otherwise reconnect idle slots in the background, logging every failed
attempt while the server is down; connections are made when used (and checked by open())."""
POOL_MAX_SIZE = 10
CONNECT_TIMEOUT = 5.0
"""Seconds one connection attempt may take (``connect_timeout`` in the URL overrides it)."""
COMMAND_TIMEOUT = 15.0
"""Seconds one statement may take before the server is treated as unreachable."""
ACQUIRE_TIMEOUT = 10.0
"""Seconds to wait for a pooled connection (all busy, or connecting)."""
NONCE_SWEEP_EVERY = 1000
"""Expired nonces are deleted on every 1000th use (and an expired one is overwritten when reused)."""
CHANGE_FEED_LOCK = 0x6D68_6368
"""Advisory lock key serializing change-feed inserts (see the module docstring)."""
SCHEMA_LOCK = 0x6D68_736D
"""Advisory lock key serializing schema migrations of nodes that start at the same time."""

UNREACHABLE_ERRORS: tuple[type[Exception], ...] = (
    OSError,  # refused, reset, unreachable host, DNS; TimeoutError is an OSError
    asyncpg.PostgresConnectionError,  # class 08: the connection failed or was lost
    asyncpg.OperatorInterventionError,  # class 57: shutting down, starting up, statement timeout
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.InterfaceError,  # the client side of a lost connection ("connection is closed")
)
CLOSE_ERRORS: tuple[type[Exception], ...] = (TimeoutError, *UNREACHABLE_ERRORS)
"""What closing the pool may raise when the server is gone (then the pool is terminated)."""
"""What "the registry cannot be reached right now" looks like from asyncpg."""

UNAVAILABLE_MESSAGE = "The registry is unreachable; retry later."

_IDENTITY_WHERE = "device_id = $1 AND module_id = $2"
_UPSERT_SESSIONS = (
    "INSERT INTO sessions (client_id, subscriptions, updated_at) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::float8[]) "
    "ON CONFLICT (client_id) DO UPDATE SET subscriptions = excluded.subscriptions, "
    "updated_at = excluded.updated_at"
)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class PostgresRegistry(PostgresAuthorities, PostgresCalls, PostgresJobs, PostgresPolicies, Registry):
    """:class:`Registry` on PostgreSQL (asyncpg). See the module docstring.

    Args:
        url: ``postgresql://[user[:password]@]host[:port]/database[?setting=value...]``.
        max_connections: the pool's size (connections this object may hold at once).
    """

    def __init__(self, url: str, *, max_connections: int = POOL_MAX_SIZE) -> None:
        if not is_postgres_url(url):
            raise ValueError(f"not a PostgreSQL URL: {redact_url(url)!r}; use postgresql://...")
        self.url = url
        self.display_url = redact_url(url)
        self._dsn, self._connect_timeout = split_connect_timeout(url, CONNECT_TIMEOUT)
        self._max_connections = max_connections
        self._pool: asyncpg.Pool | None = None
        self._unreachable = False
        self._session_writes = SessionWriteBehind(
            self._write_sessions, log, is_open=lambda: self._pool is not None
        )
        self._nonce_uses = 0

    # -- plumbing -------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect (raising ``SERVICE_UNAVAILABLE`` with what to do if that fails) and migrate."""
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=POOL_MIN_SIZE,
                max_size=self._max_connections,
                timeout=self._connect_timeout,
                command_timeout=COMMAND_TIMEOUT,
            )
        except Exception as exc:  # a malformed URL (no connection is made yet)
            raise self._open_error(exc) from exc
        try:
            conn = await pool.acquire(timeout=ACQUIRE_TIMEOUT)
        except Exception as exc:
            pool.terminate()
            raise self._open_error(exc) from exc
        try:
            async with conn.transaction():
                await self._migrate(conn)
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, UNREACHABLE_ERRORS):
                raise self._open_error(exc) from exc
            raise
        await pool.release(conn)
        self._pool = pool

    def _open_error(self, exc: BaseException) -> HubError:
        where = self.display_url
        if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):  # bad user or password
            what = f"PostgreSQL at {where} refused the login ({exc}); check the user and password in the URL"
        elif isinstance(exc, asyncpg.InvalidCatalogNameError):  # no such database
            what = f"PostgreSQL at {where} has no such database ({exc}); create it (createdb) first"
        elif isinstance(exc, UNREACHABLE_ERRORS):
            what = (
                f"cannot reach the registry at {where} ({_reason(exc)}); start PostgreSQL there, or "
                "point --registry / $METHODHUB_REGISTRY at a reachable server"
            )
        else:
            what = f"cannot open the registry at {where}: {_reason(exc)}"
        return HubError(ErrorKind.SERVICE_UNAVAILABLE, what)

    async def _migrate(self, conn: Connection) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = await conn.fetchval("SELECT version FROM schema_version")
        known = len(POSTGRES_MIGRATIONS)
        if version is not None and version > known:
            raise schema_too_new(self.display_url, version, known)
        for script in POSTGRES_MIGRATIONS[version or 0 :]:
            await conn.execute(script)
        if version is None:
            await conn.execute("INSERT INTO schema_version VALUES ($1)", known)
        elif version != known:
            await conn.execute("UPDATE schema_version SET version = $1", known)

    async def close(self) -> None:
        pool = self._pool
        if pool is None:
            return
        try:
            await self._session_writes.flush()
        except Exception as exc:
            log.warning("closing the registry with unwritten session changes: %s", exc)
        self._session_writes.close()
        self._pool = None
        try:
            await asyncio.wait_for(pool.close(), COMMAND_TIMEOUT)
        except CLOSE_ERRORS:
            pool.terminate()

    async def _use(self, work: Work[T], *, transaction: bool) -> T:
        """Run ``work`` on a pooled connection (in a transaction if asked); see the module docstring
        for errors and retries."""
        pool = self._pool
        if pool is None:
            raise HubError(ErrorKind.SERVICE_UNAVAILABLE, "The registry is not open.")
        for attempt in (1, 2):
            stage = "connect"
            try:
                async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                    stage = "run"
                    if not transaction:
                        result = await work(conn)
                    else:
                        async with conn.transaction():
                            result = await work(conn)
                            stage = "commit"
            except UNREACHABLE_ERRORS as exc:
                await pool.expire_connections()  # the others were probably dropped too
                if attempt == 1 and stage == "run":
                    continue
                raise self._unavailable(exc) from exc
            if self._unreachable:
                self._unreachable = False
                log.info("registry %s reachable again", self.display_url)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read(self, work: Work[T]) -> T:
        return await self._timed("read", self._use(work, transaction=False))

    async def _write(self, work: Work[T]) -> T:
        return await self._timed("write", self._use(work, transaction=True))

    def _unavailable(self, exc: BaseException) -> HubError:
        if not self._unreachable:
            self._unreachable = True
            log.warning("registry %s unreachable (will retry): %s", self.display_url, _reason(exc))
        return HubError(ErrorKind.SERVICE_UNAVAILABLE, UNAVAILABLE_MESSAGE)

    @staticmethod
    async def _record(conn: Connection, kind: str, keys: Sequence[str]) -> None:
        """Append changes to the feed: the transaction's last statement (see the module docstring)."""
        if not keys:
            return
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CHANGE_FEED_LOCK)
        await conn.execute(
            "INSERT INTO changes (kind, key) SELECT $1, k FROM unnest($2::text[]) WITH ORDINALITY AS u(k, n) "
            "ORDER BY n",
            kind,
            list(keys),
        )

    # -- identities -----------------------------------------------------------------------------------

    async def get_identity(self, device_id: str, module_id: str | None = None) -> Identity | None:
        if not _storable(device_id, module_id):
            return None
        row = await self._read(
            lambda conn: conn.fetchrow(
                f"SELECT {IDENTITY_COLUMNS} FROM identities WHERE {_IDENTITY_WHERE}",
                device_id,
                module_id or "",
            )
        )
        return identity_from_row(row) if row else None

    async def create_identity(
        self,
        device_id: str,
        module_id: str | None = None,
        *,
        keys: SymmetricKeys | None = None,
        status: str = "enabled",
        status_reason: str | None = None,
        iot_edge: bool = False,
        auth: DeviceAuth | None = None,
    ) -> Identity:
        identity = new_identity(
            device_id,
            module_id,
            keys=keys,
            status=status,
            status_reason=status_reason,
            iot_edge=iot_edge,
            auth=auth,
        )

        async def insert(conn: Connection) -> None:
            await self._insert(conn, identity)
            await self._record(conn, "identity", [identity.key])

        await self._write(insert)
        return identity

    @staticmethod
    async def _insert(conn: Connection, identity: Identity) -> None:
        if identity.module_id:
            # FOR KEY SHARE: a concurrent delete of the device waits for this transaction (or wins).
            device = await conn.fetchval(
                "SELECT 1 FROM identities WHERE device_id = $1 AND module_id = '' FOR KEY SHARE",
                identity.device_id,
            )
            if device is None:
                raise missing(identity.device_id, "")
        inserted = await conn.fetchval(
            f"INSERT INTO identities ({IDENTITY_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) "
            "ON CONFLICT (device_id, module_id) DO NOTHING RETURNING 1",
            *identity_values(identity),
        )
        if inserted is None:
            raise already_exists(identity)

    async def update_identity(
        self,
        device_id: str,
        module_id: str | None = None,
        *,
        etag: str | None = None,
        keys: SymmetricKeys | None = None,
        status: str | None = None,
        status_reason: str | None = None,
        auth: DeviceAuth | None = None,
    ) -> Identity:
        check_status(status)
        check_keys(keys)
        if not _storable(status_reason):
            raise HubError(
                ErrorKind.INVALID_ARGUMENT, "The status reason contains NUL or unpaired surrogates."
            )
        if not _storable(device_id, module_id):
            raise missing(device_id, module_id or "")

        async def update(conn: Connection) -> Identity:
            current = await self._locked(conn, device_id, module_id or "")
            check_etag(etag, current, show_current=True)
            apply_update(current, keys=keys, status=status, status_reason=status_reason, auth=auth)
            await conn.execute(
                "UPDATE identities SET primary_key = $3, secondary_key = $4, status = $5, "
                "status_reason = $6, etag = $7, status_updated_at = $8, updated_at = $9, auth_type = $10, "
                f"primary_thumbprint = $11, secondary_thumbprint = $12 WHERE {_IDENTITY_WHERE}",
                device_id,
                module_id or "",
                current.keys.primary,
                current.keys.secondary,
                current.status,
                current.status_reason,
                current.etag,
                current.status_updated_at,
                current.updated_at,
                *identity_values(current)[12:],
            )
            await self._record(conn, "identity", [current.key])
            return current

        return await self._write(update)

    @staticmethod
    async def _locked(conn: Connection, device_id: str, module_id: str) -> Identity:
        """The identity, locked for update until the transaction ends; ``*_NOT_FOUND`` if none."""
        row = await conn.fetchrow(
            f"SELECT {IDENTITY_COLUMNS} FROM identities WHERE {_IDENTITY_WHERE} FOR UPDATE",
            device_id,
            module_id,
        )
        if row is None:
            raise missing(device_id, module_id)
        return identity_from_row(row)

    async def delete_identity(
        self, device_id: str, module_id: str | None = None, *, etag: str | None = None
    ) -> None:
        if not _storable(device_id, module_id):
            raise missing(device_id, module_id or "")

        async def delete(conn: Connection) -> None:
            current = await self._locked(conn, device_id, module_id or "")
            check_etag(etag, current)
            if module_id:
                await conn.execute(f"DELETE FROM identities WHERE {_IDENTITY_WHERE}", device_id, module_id)
                await conn.execute("DELETE FROM sessions WHERE client_id = $1", current.key)
                await self._record(conn, "identity", [current.key])
                return
            deleted = await conn.fetch(
                "DELETE FROM identities WHERE device_id = $1 RETURNING module_id", device_id
            )  # product_devices rows go with it (ON DELETE CASCADE)
            await conn.execute(
                "DELETE FROM sessions WHERE client_id = $1 OR starts_with(client_id, $2)",
                device_id,
                device_id + "/",
            )
            modules = sorted(row[0] for row in deleted if row[0])
            await self._record(conn, "identity", [*(key_of(device_id, m) for m in modules), device_id])

        # Queued session changes of the identity (and its modules) are dropped once the DELETE
        # has removed their rows; none is written meanwhile, so none outlives the identity.
        await self._session_writes.forget_identity(
            key_of(device_id, module_id or ""), lambda: self._write(delete)
        )

    async def list_identities(
        self, device_id: str | None = None, *, limit: int = 1000, after: str | None = None
    ) -> list[Identity]:
        if not _storable(device_id, after):
            raise HubError(ErrorKind.INVALID_ARGUMENT, "Ids never contain NUL or unpaired surrogates.")
        if device_id is None:
            rows = await self._read(
                lambda conn: conn.fetch(
                    f"SELECT {IDENTITY_COLUMNS} FROM identities WHERE module_id = '' AND device_id > $1 "
                    "ORDER BY device_id LIMIT $2",
                    after or "",
                    limit,
                )
            )
        else:
            rows = await self._read(
                lambda conn: conn.fetch(
                    f"SELECT {IDENTITY_COLUMNS} FROM identities WHERE device_id = $1 AND module_id != '' "
                    "AND module_id > $2 ORDER BY module_id LIMIT $3",
                    device_id,
                    after or "",
                    limit,
                )
            )
        return [identity_from_row(row) for row in rows]

    async def count_devices(self) -> int:
        count: int = await self._read(
            lambda conn: conn.fetchval("SELECT count(*) FROM identities WHERE module_id = ''")
        )
        return count

    # -- twins --------------------------------------------------------------------------------------

    _TWIN_SELECT = (
        "SELECT i.created_at, t.document::text, t.version, t.desired_version, t.reported_version, t.etag "
        "FROM identities i LEFT JOIN twins t ON t.device_id = i.device_id AND t.module_id = i.module_id "
        "WHERE i.device_id = $1 AND i.module_id = $2"
    )

    @staticmethod
    def _twin_from_row(device_id: str, module_id: str, row: asyncpg.Record | None) -> Twin | None:
        if row is None:
            return None
        if row[1] is None:
            return empty_twin(device_id, module_id or None, row[0])
        return Twin.from_document(
            device_id, module_id or None, json.loads(row[1]), row[2], row[3], row[4], row[5]
        )

    async def get_twin(self, device_id: str, module_id: str | None = None) -> Twin | None:
        if not _storable(device_id, module_id):
            return None
        row = await self._read(lambda conn: conn.fetchrow(self._TWIN_SELECT, device_id, module_id or ""))
        return self._twin_from_row(device_id, module_id or "", row)

    async def query_twins(
        self, query: Query, *, offset: int = 0, limit: int = 100, after: tuple[str, str] | None = None
    ) -> list[Any]:
        sql, text, params = twin_query_sql(query, Flavour.POSTGRESQL, offset, limit, after)
        rows = await self._read(lambda conn: conn.fetch(text, *params))
        return [sql.row(tuple(row)) for row in rows]

    async def update_twin(
        self,
        device_id: str,
        module_id: str | None,
        change: Callable[[Twin], Twin],
        *,
        etag: str | None = None,
    ) -> Twin:
        if not _storable(device_id, module_id):
            raise missing(device_id, module_id or "")

        async def update(conn: Connection) -> Twin:
            await self._locked(conn, device_id, module_id or "")  # one writer per identity at a time
            row = await conn.fetchrow(self._TWIN_SELECT, device_id, module_id or "")
            current = self._twin_from_row(device_id, module_id or "", row)
            assert current is not None
            check_twin_etag(etag, current)
            new = change(current)
            await conn.execute(
                "INSERT INTO twins (device_id, module_id, document, version, desired_version, "
                "reported_version, etag) VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7) "
                "ON CONFLICT (device_id, module_id) DO UPDATE SET document = excluded.document, "
                "version = excluded.version, desired_version = excluded.desired_version, "
                "reported_version = excluded.reported_version, etag = excluded.etag",
                device_id,
                module_id or "",
                json.dumps(new.document(), separators=(",", ":")),
                new.version,
                new.desired_version,
                new.reported_version,
                new.etag,
            )
            if new.desired_version != current.desired_version:
                await self._record(conn, "twin", [new.key])
            return new

        return await self._write(update)

    # -- Alibaba Cloud products -----------------------------------------------------------------------

    async def create_product_device(
        self,
        product_key: str,
        device_name: str,
        *,
        device_secret: str | None = None,
        status: str = "enabled",
    ) -> ProductDevice:
        identity, secret = new_product_identity(product_key, device_name, device_secret, status)

        async def insert(conn: Connection) -> None:
            await self._insert(conn, identity)
            await conn.execute(
                "INSERT INTO products (product_key, created_at) VALUES ($1, $2) "
                "ON CONFLICT (product_key) DO NOTHING",
                product_key,
                identity.created_at,
            )
            await conn.execute(
                "INSERT INTO product_devices (device_id, product_key, device_name, device_secret) "
                "VALUES ($1, $2, $3, $4)",
                identity.device_id,
                product_key,
                device_name,
                secret,
            )
            await self._record(conn, "identity", [identity.key])

        await self._write(insert)
        return ProductDevice(identity, product_key, device_name, secret)

    async def get_product_device(self, product_key: str, device_name: str) -> ProductDevice | None:
        if not _storable(product_key, device_name):
            return None
        return await self._product_device(
            "p.product_key = $1 AND p.device_name = $2", product_key, device_name
        )

    async def find_product_device(self, device_id: str) -> ProductDevice | None:
        if not _storable(device_id):
            return None
        return await self._product_device("p.device_id = $1", device_id)

    async def list_product_devices(
        self, product_key: str, *, limit: int = 100, offset: int = 0
    ) -> list[ProductDevice]:
        if not _storable(product_key):
            return []
        rows = await self._read(
            lambda conn: conn.fetch(
                f"SELECT {JOINED_IDENTITY_COLUMNS}, p.product_key, p.device_name, p.device_secret "
                "FROM product_devices p JOIN identities i ON i.device_id = p.device_id AND i.module_id = '' "
                "WHERE p.product_key = $1 ORDER BY i.created_at DESC, p.device_id DESC LIMIT $2 OFFSET $3",
                product_key,
                limit,
                offset,
            )
        )
        return [ProductDevice(identity_from_row(row[:-3]), row[-3], row[-2], row[-1]) for row in rows]

    async def count_product_devices(self, product_key: str) -> int:
        if not _storable(product_key):
            return 0
        count: int = await self._read(
            lambda conn: conn.fetchval(
                "SELECT count(*) FROM product_devices WHERE product_key = $1", product_key
            )
        )
        return count

    async def set_product_tsl(self, product_key: str, tsl: str, function_block_id: str = "") -> None:
        validate_product_key(product_key)
        if not _storable(tsl, function_block_id):
            raise HubError(
                ErrorKind.INVALID_ARGUMENT, "A thing model cannot contain NUL characters or lone surrogates."
            )
        now = time.time()

        async def upsert(conn: Connection) -> None:
            await conn.execute(
                "INSERT INTO products (product_key, created_at) VALUES ($1, $2) "
                "ON CONFLICT (product_key) DO NOTHING",
                product_key,
                now,
            )
            await conn.execute(
                "INSERT INTO product_tsl (product_key, function_block_id, tsl, updated_at) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (product_key, function_block_id) "
                "DO UPDATE SET tsl = excluded.tsl, updated_at = excluded.updated_at",
                product_key,
                function_block_id,
                tsl,
                now,
            )

        await self._write(upsert)

    async def get_product_tsl(self, product_key: str, function_block_id: str = "") -> str | None:
        if not _storable(product_key, function_block_id):
            return None
        tsl: str | None = await self._read(
            lambda conn: conn.fetchval(
                "SELECT tsl FROM product_tsl WHERE product_key = $1 AND function_block_id = $2",
                product_key,
                function_block_id,
            )
        )
        return tsl

    async def _product_device(self, where: str, *args: str) -> ProductDevice | None:
        row = await self._read(
            lambda conn: conn.fetchrow(
                f"SELECT {JOINED_IDENTITY_COLUMNS}, p.product_key, p.device_name, p.device_secret "
                "FROM product_devices p JOIN identities i ON i.device_id = p.device_id AND i.module_id = '' "
                f"WHERE {where}",
                *args,
            )
        )
        if row is None:
            return None
        return ProductDevice(identity_from_row(row[:-3]), row[-3], row[-2], row[-1])

    # -- policies -------------------------------------------------------------------------------------

    async def get_policy(self, name: str) -> AccessPolicy | None:
        if not _storable(name):
            return None
        row = await self._read(
            lambda conn: conn.fetchrow(f"SELECT {POLICY_COLUMNS} FROM policies WHERE name = $1", name)
        )
        return policy_from_row(row) if row else None

    async def list_policies(self) -> list[AccessPolicy]:
        rows = await self._read(
            lambda conn: conn.fetch(f"SELECT {POLICY_COLUMNS} FROM policies ORDER BY name")
        )
        return [policy_from_row(row) for row in rows]

    async def ensure_default_policies(self) -> bool:
        async def ensure(conn: Connection) -> bool:
            # Nodes starting at once on an empty database: one creates the policies, the others wait
            # for it here and then find them.
            await conn.execute("LOCK TABLE policies IN SHARE ROW EXCLUSIVE MODE")
            if await conn.fetchval("SELECT count(*) FROM policies"):
                return False
            rows = []
            for name, rights in DEFAULT_POLICIES.items():
                keys = SymmetricKeys.generate()
                rows.append((name, keys.primary, keys.secondary, rights_text(rights)))
            await conn.executemany(f"INSERT INTO policies ({POLICY_COLUMNS}) VALUES ($1, $2, $3, $4)", rows)
            await self._record(conn, "policy", list(DEFAULT_POLICIES))
            return True

        return await self._write(ensure)

    # -- change feed ------------------------------------------------------------------------------------

    async def changes_since(self, seq: int) -> tuple[list[Change], int]:
        rows = await self._read(
            lambda conn: conn.fetch("SELECT seq, kind, key FROM changes WHERE seq > $1 ORDER BY seq", seq)
        )
        changes = [Change(row[0], row[1], row[2]) for row in rows]
        return changes, (changes[-1].seq if changes else seq)

    async def last_change_seq(self) -> int:
        seq: int = await self._read(lambda conn: conn.fetchval("SELECT coalesce(max(seq), 0) FROM changes"))
        return seq

    async def prune_changes(self, keep_seconds: float) -> None:
        await self._write(
            lambda conn: conn.execute(
                "DELETE FROM changes WHERE at < extract(epoch FROM clock_timestamp()) - $1",
                float(keep_seconds),
            )
        )

    # -- persisted sessions -----------------------------------------------------------------------------

    async def load_session(self, client_id: str) -> dict[str, int] | None:
        unsaved, subscriptions = self._session_writes.unsaved(client_id)
        if unsaved:
            return subscriptions
        if not _storable(client_id):
            return None
        text = await self._read(
            lambda conn: conn.fetchval("SELECT subscriptions FROM sessions WHERE client_id = $1", client_id)
        )
        return json.loads(text) if text is not None else None

    def save_session(self, client_id: str, subscriptions: Mapping[str, int]) -> None:
        self._session_writes.save(client_id, subscriptions)

    def delete_session(self, client_id: str) -> None:
        self._session_writes.delete(client_id)

    async def flush_sessions(self) -> None:
        """See :meth:`Registry.flush_sessions`; ``SERVICE_UNAVAILABLE`` if the server is unreachable
        (the changes stay queued and are retried in the background)."""
        await self._session_writes.flush()

    async def _write_sessions(self, changes: SessionChanges) -> None:
        """One batch of the write-behind, in one transaction."""
        await self._write(lambda conn: self._write_session_rows(conn, changes))

    @staticmethod
    async def _write_session_rows(conn: Connection, changes: SessionChanges) -> None:
        saved = [
            (cid, json.dumps(subs)) for cid, subs in changes.items() if subs is not None and _storable(cid)
        ]
        if saved:
            now = await conn.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
            await conn.execute(
                _UPSERT_SESSIONS, [c for c, _ in saved], [s for _, s in saved], [now] * len(saved)
            )
        deleted = [cid for cid, subs in changes.items() if subs is None and _storable(cid)]
        if deleted:
            await conn.execute("DELETE FROM sessions WHERE client_id = ANY($1::text[])", deleted)

    async def live_call_states(self) -> dict[str, int]:
        rows = await self._read(lambda conn: conn.fetch(LIVE_CALL_STATES))
        return {row[0]: int(row[1]) for row in rows}

    # -- settings ---------------------------------------------------------------------------------------

    async def get_setting(self, name: str) -> str | None:
        value: str | None = await self._read(
            lambda conn: conn.fetchval("SELECT value FROM settings WHERE name = $1", name)
        )
        return value

    async def use_nonce(self, key: str, expires_at: float, now: float) -> bool:
        self._nonce_uses += 1
        sweep = self._nonce_uses % NONCE_SWEEP_EVERY == 1

        async def use(conn: Connection) -> bool:
            if sweep:
                await conn.execute("DELETE FROM nonces WHERE expires_at <= $1", now)
            status = await conn.execute(
                "INSERT INTO nonces (key, expires_at) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE "
                "SET expires_at = EXCLUDED.expires_at WHERE nonces.expires_at <= $3",
                key,
                expires_at,
                now,
            )
            return status == "INSERT 0 1"

        return await self._write(use)

    async def set_setting(self, name: str, value: str) -> None:
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO settings (name, value) VALUES ($1, $2) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                name,
                value,
            )
        )
