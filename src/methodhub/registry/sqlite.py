"""The SQLite registry: the embedded default, one file in the data dir.

All SQL runs on one dedicated worker thread that owns the connection, so the event loop never
blocks on disk. WAL mode lets the CLI write to the same file while a hub runs; the hub sees those
writes through the change feed. Session subscription writes go through the write-behind of
:mod:`methodhub.registry.sessions`: a burst of thousands of devices subscribing becomes one
transaction every few milliseconds.

The file holds every key, so it is owner-only (0600), and so are its -wal and -shm files: SQLite
creates those with the database file's mode, which is made 0600 before SQLite opens it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from methodhub.errors import ErrorKind, HubError
from methodhub.filemodes import create_private, make_private, warn_exposed
from methodhub.query import Flavour, Query
from methodhub.registry.authorities import SqliteAuthorities
from methodhub.registry.base import LIVE_CALL_STATES, Registry
from methodhub.registry.calls import SqliteCalls
from methodhub.registry.jobs import SqliteJobs
from methodhub.registry.migrations import SQLITE_MIGRATIONS, schema_too_new
from methodhub.registry.model import (
    DEFAULT_POLICIES,
    AccessPolicy,
    Change,
    DeviceAuth,
    Identity,
    SymmetricKeys,
)
from methodhub.registry.policies import SqlitePolicies
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
from methodhub.registry.sessions import SessionChanges, SessionWriteBehind
from methodhub.registry.twin_query import twin_query_sql
from methodhub.registry.twins import Twin, check_twin_etag, empty_twin

T = TypeVar("T")

log = logging.getLogger("methodhub.registry")
SIDE_FILES = ("-wal", "-shm", "-journal")
"""The files SQLite keeps next to the database (WAL, its shared-memory index, a rollback journal)."""

NONCE_SWEEP_EVERY = 1000
"""Expired nonces are deleted on every 1000th use (and an expired one is overwritten when reused)."""
_USE_NONCE = (
    "INSERT INTO nonces (key, expires_at) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE nonces.expires_at <= ?"
)
BUSY_TIMEOUT_MS = 5000
"""How long a writer waits for another process's transaction (the CLI, say) before failing."""


class SqliteRegistry(SqliteAuthorities, SqliteCalls, SqliteJobs, SqlitePolicies, Registry):
    """:class:`Registry` on a SQLite file. See the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="methodhub-sqlite")
        self._db: sqlite3.Connection | None = None
        self._session_writes = SessionWriteBehind(
            self._write_sessions, log, is_open=lambda: self._db is not None
        )
        self._nonce_uses = 0
        self._reads: list[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]] = []

    # -- plumbing -------------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        kind = "write" if fn == self._transaction else "read"
        return await self._timed(kind, asyncio.get_running_loop().run_in_executor(self._executor, fn, *args))

    def _read(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run a short read on the database thread, batched with the reads of this loop iteration.

        A burst of device connections asks for thousands of identities and sessions at once; one
        hop to the database thread and back per *batch* instead of per read (each hop costs more
        loop time than the indexed lookup itself) is what keeps connects/s up.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._reads.append((fn, args, future))
        if len(self._reads) == 1:
            loop.call_soon(self._submit_reads, loop)
        return future

    def _submit_reads(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._reads = self._reads, []
        started = time.perf_counter()

        def run() -> None:
            results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
            for fn, args, future in batch:
                try:
                    results.append((future, fn(*args), None))
                except Exception as exc:
                    results.append((future, None, exc))
            loop.call_soon_threadsafe(self._deliver_reads, results, started)

        try:
            self._executor.submit(run)
        except RuntimeError as exc:  # the executor is shut down: the registry is closed
            _deliver_reads(
                [(f, None, HubError(ErrorKind.SERVICE_UNAVAILABLE, str(exc))) for _, _, f in batch]
            )

    def _deliver_reads(
        self, results: list[tuple[asyncio.Future[Any], Any, BaseException | None]], started: float
    ) -> None:
        _deliver_reads(results)
        if self.timed is not None:  # one observation per batch of reads
            self.timed("read", started)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise HubError(ErrorKind.SERVICE_UNAVAILABLE, "The registry is not open.")
        return self._db

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._make_files_private()
            db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
        except (OSError, sqlite3.Error) as exc:
            raise HubError(
                ErrorKind.SERVICE_UNAVAILABLE, f"Cannot open the registry {self.path}: {exc}."
            ) from exc
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        self._db = db
        self._transaction(self._migrate)

    def _make_files_private(self) -> None:
        """A new database file is created 0600; an existing one (and its side files) made so."""
        create_private(self.path)
        files = [self.path, *(self.path.with_name(self.path.name + suffix) for suffix in SIDE_FILES)]
        warn_exposed([exposed for path in files if (exposed := make_private(path)) is not None], log)

    def _migrate(self, db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        if version > len(SQLITE_MIGRATIONS):
            raise schema_too_new(str(self.path), version, len(SQLITE_MIGRATIONS))
        for script in SQLITE_MIGRATIONS[version:]:
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
        if row is None:
            db.execute("INSERT INTO schema_version VALUES (?)", (len(SQLITE_MIGRATIONS),))
        else:
            db.execute("UPDATE schema_version SET version = ?", (len(SQLITE_MIGRATIONS),))

    async def close(self) -> None:
        if self._db is None:
            return
        await self._session_writes.flush()
        self._session_writes.close()
        await self._run(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @staticmethod
    def _record(db: sqlite3.Connection, kind: str, key: str) -> None:
        db.execute("INSERT INTO changes (kind, key, at) VALUES (?, ?, ?)", (kind, key, time.time()))

    # -- identities -----------------------------------------------------------------------------------

    async def get_identity(self, device_id: str, module_id: str | None = None) -> Identity | None:
        return await self._read(self._get, device_id, module_id or "")

    def _get(self, device_id: str, module_id: str) -> Identity | None:
        row = (
            self._conn()
            .execute(
                f"SELECT {IDENTITY_COLUMNS} FROM identities WHERE device_id = ? AND module_id = ?",
                (device_id, module_id),
            )
            .fetchone()
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
        await self._run(self._transaction, lambda db: self._insert(db, identity))
        return identity

    def _insert(self, db: sqlite3.Connection, identity: Identity) -> None:
        module_id = identity.module_id or ""
        if module_id and self._get(identity.device_id, "") is None:
            raise missing(identity.device_id, "")
        values = list(identity_values(identity))
        values[11] = int(identity.iot_edge)
        try:
            db.execute(
                f"INSERT INTO identities ({IDENTITY_COLUMNS}) VALUES ({', '.join('?' * len(values))})", values
            )
        except sqlite3.IntegrityError:
            raise already_exists(identity) from None
        self._record(db, "identity", identity.key)

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

        def update(db: sqlite3.Connection) -> Identity:
            current = self._get(device_id, module_id or "")
            if current is None:
                raise missing(device_id, module_id or "")
            check_etag(etag, current, show_current=True)
            apply_update(current, keys=keys, status=status, status_reason=status_reason, auth=auth)
            db.execute(
                "UPDATE identities SET primary_key = ?, secondary_key = ?, status = ?, status_reason = ?, "
                "etag = ?, status_updated_at = ?, updated_at = ?, auth_type = ?, primary_thumbprint = ?, "
                "secondary_thumbprint = ? WHERE device_id = ? AND module_id = ?",
                (
                    current.keys.primary,
                    current.keys.secondary,
                    current.status,
                    current.status_reason,
                    current.etag,
                    current.status_updated_at,
                    current.updated_at,
                    current.auth.type.value,
                    current.auth.primary_thumbprint,
                    current.auth.secondary_thumbprint,
                    device_id,
                    module_id or "",
                ),
            )
            self._record(db, "identity", current.key)
            return current

        return await self._run(self._transaction, update)

    async def delete_identity(
        self, device_id: str, module_id: str | None = None, *, etag: str | None = None
    ) -> None:
        def delete(db: sqlite3.Connection) -> None:
            current = self._get(device_id, module_id or "")
            if current is None:
                raise missing(device_id, module_id or "")
            check_etag(etag, current)
            if module_id:
                db.execute(
                    "DELETE FROM identities WHERE device_id = ? AND module_id = ?", (device_id, module_id)
                )
                db.execute("DELETE FROM sessions WHERE client_id = ?", (current.key,))
                self._record(db, "identity", current.key)
                return
            modules = [
                row[0]
                for row in db.execute(
                    "SELECT module_id FROM identities WHERE device_id = ? AND module_id != ''", (device_id,)
                )
            ]
            db.execute("DELETE FROM identities WHERE device_id = ?", (device_id,))
            db.execute(
                "DELETE FROM sessions WHERE client_id = ? OR substr(client_id, 1, ?) = ?",
                (device_id, len(device_id) + 1, device_id + "/"),
            )
            for module in modules:
                self._record(db, "identity", key_of(device_id, module))
            self._record(db, "identity", device_id)

        # Queued session changes of the identity (and its modules) are dropped once the DELETE
        # has removed their rows; none is written meanwhile, so none outlives the identity.
        await self._session_writes.forget_identity(
            key_of(device_id, module_id or ""), lambda: self._run(self._transaction, delete)
        )

    async def list_identities(
        self, device_id: str | None = None, *, limit: int = 1000, after: str | None = None
    ) -> list[Identity]:
        def query() -> list[Identity]:
            db = self._conn()
            if device_id is None:
                rows = db.execute(
                    f"SELECT {IDENTITY_COLUMNS} FROM identities WHERE module_id = '' AND device_id > ? "
                    "ORDER BY device_id LIMIT ?",
                    (after or "", limit),
                )
            else:
                rows = db.execute(
                    f"SELECT {IDENTITY_COLUMNS} FROM identities WHERE device_id = ? AND module_id != '' "
                    "AND module_id > ? ORDER BY module_id LIMIT ?",
                    (device_id, after or "", limit),
                )
            return [identity_from_row(row) for row in rows]

        return await self._run(query)

    async def count_devices(self) -> int:
        return await self._run(
            lambda: self._conn().execute("SELECT count(*) FROM identities WHERE module_id = ''").fetchone()[0]
        )

    # -- twins --------------------------------------------------------------------------------------

    async def get_twin(self, device_id: str, module_id: str | None = None) -> Twin | None:
        return await self._read(self._twin, device_id, module_id or "")

    def _twin(self, device_id: str, module_id: str) -> Twin | None:
        row = (
            self._conn()
            .execute(
                "SELECT i.created_at, t.document, t.version, t.desired_version, t.reported_version, "
                "t.etag FROM identities i LEFT JOIN twins t "
                "ON t.device_id = i.device_id AND t.module_id = i.module_id "
                "WHERE i.device_id = ? AND i.module_id = ?",
                (device_id, module_id),
            )
            .fetchone()
        )
        if row is None:
            return None
        if row[1] is None:
            return empty_twin(device_id, module_id or None, row[0])
        return Twin.from_document(device_id, module_id or None, json.loads(row[1]), *row[2:])

    async def query_twins(
        self, query: Query, *, offset: int = 0, limit: int = 100, after: tuple[str, str] | None = None
    ) -> list[Any]:
        sql, text, params = twin_query_sql(query, Flavour.SQLITE, offset, limit, after)

        def run() -> list[Any]:
            return [sql.row(row) for row in self._conn().execute(text, params)]

        result: list[Any] = await self._read(run)
        return result

    async def update_twin(
        self,
        device_id: str,
        module_id: str | None,
        change: Callable[[Twin], Twin],
        *,
        etag: str | None = None,
    ) -> Twin:
        def update(db: sqlite3.Connection) -> Twin:
            current = self._twin(device_id, module_id or "")
            if current is None:
                raise missing(device_id, module_id or "")
            check_twin_etag(etag, current)
            new = change(current)
            db.execute(
                "INSERT INTO twins (device_id, module_id, document, version, desired_version, "
                "reported_version, etag) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, module_id) "
                "DO UPDATE SET document = excluded.document, version = excluded.version, "
                "desired_version = excluded.desired_version, reported_version = excluded.reported_version, "
                "etag = excluded.etag",
                (
                    device_id,
                    module_id or "",
                    json.dumps(new.document(), separators=(",", ":")),
                    new.version,
                    new.desired_version,
                    new.reported_version,
                    new.etag,
                ),
            )
            if new.desired_version != current.desired_version:
                self._record(db, "twin", new.key)
            return new

        return await self._run(self._transaction, update)

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
        now = identity.created_at

        def insert(db: sqlite3.Connection) -> None:
            self._insert(db, identity)
            db.execute(
                "INSERT INTO products (product_key, created_at) VALUES (?, ?) "
                "ON CONFLICT (product_key) DO NOTHING",
                (product_key, now),
            )
            db.execute(
                "INSERT INTO product_devices (device_id, product_key, device_name, device_secret) "
                "VALUES (?, ?, ?, ?)",
                (identity.device_id, product_key, device_name, secret),
            )

        await self._run(self._transaction, insert)
        return ProductDevice(identity, product_key, device_name, secret)

    async def get_product_device(self, product_key: str, device_name: str) -> ProductDevice | None:
        return await self._run(
            self._product_device, "p.product_key = ? AND p.device_name = ?", product_key, device_name
        )

    async def find_product_device(self, device_id: str) -> ProductDevice | None:
        return await self._run(self._product_device, "p.device_id = ?", device_id)

    async def list_product_devices(
        self, product_key: str, *, limit: int = 100, offset: int = 0
    ) -> list[ProductDevice]:
        def query() -> list[ProductDevice]:
            rows = self._conn().execute(
                f"SELECT {JOINED_IDENTITY_COLUMNS}, p.product_key, p.device_name, p.device_secret "
                "FROM product_devices p JOIN identities i ON i.device_id = p.device_id AND i.module_id = '' "
                "WHERE p.product_key = ? ORDER BY i.created_at DESC, p.device_id DESC LIMIT ? OFFSET ?",
                (product_key, limit, offset),
            )
            return [ProductDevice(identity_from_row(row[:-3]), row[-3], row[-2], row[-1]) for row in rows]

        return await self._run(query)

    async def count_product_devices(self, product_key: str) -> int:
        return await self._run(
            lambda: (
                self._conn()
                .execute("SELECT count(*) FROM product_devices WHERE product_key = ?", (product_key,))
                .fetchone()[0]
            )
        )

    async def set_product_tsl(self, product_key: str, tsl: str, function_block_id: str = "") -> None:
        validate_product_key(product_key)
        now = time.time()

        def upsert(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO products (product_key, created_at) VALUES (?, ?) "
                "ON CONFLICT (product_key) DO NOTHING",
                (product_key, now),
            )
            db.execute(
                "INSERT INTO product_tsl (product_key, function_block_id, tsl, updated_at) "
                "VALUES (?, ?, ?, ?) "
                "ON CONFLICT (product_key, function_block_id) DO UPDATE SET tsl = excluded.tsl, "
                "updated_at = excluded.updated_at",
                (product_key, function_block_id, tsl, now),
            )

        await self._run(self._transaction, upsert)

    async def get_product_tsl(self, product_key: str, function_block_id: str = "") -> str | None:
        def query() -> str | None:
            row = (
                self._conn()
                .execute(
                    "SELECT tsl FROM product_tsl WHERE product_key = ? AND function_block_id = ?",
                    (product_key, function_block_id),
                )
                .fetchone()
            )
            return None if row is None else str(row[0])

        return await self._run(query)

    def _product_device(self, where: str, *args: str) -> ProductDevice | None:
        row = (
            self._conn()
            .execute(
                f"SELECT {JOINED_IDENTITY_COLUMNS}, p.product_key, p.device_name, p.device_secret "
                "FROM product_devices p JOIN identities i ON i.device_id = p.device_id AND i.module_id = '' "
                f"WHERE {where}",
                args,
            )
            .fetchone()
        )
        if row is None:
            return None
        return ProductDevice(identity_from_row(row[:-3]), row[-3], row[-2], row[-1])

    # -- policies -------------------------------------------------------------------------------------

    async def get_policy(self, name: str) -> AccessPolicy | None:
        def query() -> AccessPolicy | None:
            row = (
                self._conn()
                .execute(f"SELECT {POLICY_COLUMNS} FROM policies WHERE name = ?", (name,))
                .fetchone()
            )
            return policy_from_row(row) if row else None

        return await self._read(query)

    async def list_policies(self) -> list[AccessPolicy]:
        def query() -> list[AccessPolicy]:
            rows = self._conn().execute(f"SELECT {POLICY_COLUMNS} FROM policies ORDER BY name")
            return [policy_from_row(row) for row in rows]

        return await self._run(query)

    async def ensure_default_policies(self) -> bool:
        def ensure(db: sqlite3.Connection) -> bool:
            if db.execute("SELECT count(*) FROM policies").fetchone()[0]:
                return False
            for name, rights in DEFAULT_POLICIES.items():
                keys = SymmetricKeys.generate()
                db.execute(
                    "INSERT INTO policies (name, primary_key, secondary_key, rights) VALUES (?, ?, ?, ?)",
                    (name, keys.primary, keys.secondary, rights_text(rights)),
                )
                self._record(db, "policy", name)
            return True

        return await self._run(self._transaction, ensure)

    # -- change feed ------------------------------------------------------------------------------------

    async def changes_since(self, seq: int) -> tuple[list[Change], int]:
        def query() -> tuple[list[Change], int]:
            rows = self._conn().execute(
                "SELECT seq, kind, key FROM changes WHERE seq > ? ORDER BY seq", (seq,)
            )
            changes = [Change(row[0], row[1], row[2]) for row in rows]
            return changes, (changes[-1].seq if changes else seq)

        return await self._run(query)

    async def last_change_seq(self) -> int:
        return await self._run(
            lambda: self._conn().execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0]
        )

    async def prune_changes(self, keep_seconds: float) -> None:
        await self._run(
            lambda: self._conn().execute("DELETE FROM changes WHERE at < ?", (time.time() - keep_seconds,))
        )

    # -- persisted sessions -----------------------------------------------------------------------------

    async def load_session(self, client_id: str) -> dict[str, int] | None:
        unsaved, subscriptions = self._session_writes.unsaved(client_id)
        if unsaved:
            return subscriptions

        def query() -> dict[str, int] | None:
            row = (
                self._conn()
                .execute("SELECT subscriptions FROM sessions WHERE client_id = ?", (client_id,))
                .fetchone()
            )
            return json.loads(row[0]) if row else None

        return await self._read(query)

    def save_session(self, client_id: str, subscriptions: Mapping[str, int]) -> None:
        self._session_writes.save(client_id, subscriptions)

    def delete_session(self, client_id: str) -> None:
        self._session_writes.delete(client_id)

    async def flush_sessions(self) -> None:
        await self._session_writes.flush()

    async def _write_sessions(self, changes: SessionChanges) -> None:
        """One batch of the write-behind, in one transaction."""
        now = time.time()

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO sessions (client_id, subscriptions, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (client_id) DO UPDATE SET subscriptions = excluded.subscriptions, "
                "updated_at = excluded.updated_at",
                [(cid, json.dumps(subs), now) for cid, subs in changes.items() if subs is not None],
            )
            db.executemany(
                "DELETE FROM sessions WHERE client_id = ?",
                [(cid,) for cid, subs in changes.items() if subs is None],
            )

        await self._run(self._transaction, write)

    async def live_call_states(self) -> dict[str, int]:
        def query() -> dict[str, int]:
            rows = self._conn().execute(LIVE_CALL_STATES)
            return {row[0]: int(row[1]) for row in rows}

        states: dict[str, int] = await self._read(query)
        return states

    # -- settings ---------------------------------------------------------------------------------------

    async def get_setting(self, name: str) -> str | None:
        def query() -> str | None:
            row = self._conn().execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
            return row[0] if row else None

        return await self._run(query)

    async def use_nonce(self, key: str, expires_at: float, now: float) -> bool:
        self._nonce_uses += 1
        sweep = self._nonce_uses % NONCE_SWEEP_EVERY == 1

        def use(db: sqlite3.Connection) -> bool:
            if sweep:
                db.execute("DELETE FROM nonces WHERE expires_at <= ?", (now,))
            cursor = db.execute(_USE_NONCE, (key, expires_at, now))
            return cursor.rowcount == 1

        return await self._run(self._transaction, use)

    async def set_setting(self, name: str, value: str) -> None:
        await self._run(
            self._transaction,
            lambda db: db.execute(
                "INSERT INTO settings (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            ),
        )


def _deliver_reads(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, value, error in results:
        if future.done():  # the reader gave up (cancelled)
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
