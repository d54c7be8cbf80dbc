"""The SQLite registry: the embedded default, one file in the data dir.

All SQL runs on one dedicated worker thread that owns the connection, so the event loop never
blocks on disk. WAL mode lets the CLI write to the same file while a hub runs; the hub sees those
writes through the change feed. Session subscription writes are coalesced: a burst of thousands of
devices subscribing becomes one transaction every few milliseconds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from methodhub.errors import ErrorKind, HubError
from methodhub.registry.base import Registry
from methodhub.registry.ids import validate_device_id, validate_module_id
from methodhub.registry.migrations import SQLITE_MIGRATIONS, SchemaTooNew
from methodhub.registry.model import (
    DEFAULT_POLICIES,
    AccessPolicy,
    Change,
    Identity,
    Right,
    SymmetricKeys,
)
from methodhub.registry.products import (
    ProductDevice,
    device_secret_error,
    generate_device_secret,
    product_device_id,
    validate_product_names,
)

T = TypeVar("T")

SESSION_FLUSH_DELAY = 0.005
"""Seconds session writes wait to be batched with others into one transaction."""
BUSY_TIMEOUT_MS = 5000
"""How long a writer waits for another process's transaction (the CLI, say) before failing."""
STATUSES = ("enabled", "disabled")

_IDENTITY_COLUMNS = (
    "device_id, module_id, primary_key, secondary_key, status, status_reason, etag, generation_id, "
    "created_at, status_updated_at, updated_at, iot_edge"
)
_JOINED_IDENTITY_COLUMNS = ", ".join(f"i.{name.strip()}" for name in _IDENTITY_COLUMNS.split(","))


def new_etag() -> str:
    return base64.b64encode(secrets.token_bytes(9)).decode()


def new_generation_id() -> str:
    return f"{time.time_ns() // 100}{secrets.randbelow(1000):03d}"


def _identity(row: tuple[Any, ...]) -> Identity:
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


def _check_keys(keys: SymmetricKeys | None) -> None:
    if keys is not None and not (
        SymmetricKeys.is_valid_key(keys.primary) and SymmetricKeys.is_valid_key(keys.secondary)
    ):
        raise HubError(ErrorKind.INVALID_ARGUMENT, "Symmetric keys must be base64 encoding 16 to 64 bytes.")


def _key(device_id: str, module_id: str) -> str:
    return f"{device_id}/{module_id}" if module_id else device_id


def _missing(device_id: str, module_id: str) -> HubError:
    if module_id:
        return HubError(ErrorKind.MODULE_NOT_FOUND, f"No module '{module_id}' on device '{device_id}'.")
    return HubError(ErrorKind.DEVICE_NOT_FOUND, f"No device '{device_id}' is registered.")


class SqliteRegistry(Registry):
    """:class:`Registry` on a SQLite file. See the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="methodhub-sqlite")
        self._db: sqlite3.Connection | None = None
        self._pending_sessions: dict[str, dict[str, int] | None] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None

    # -- plumbing -------------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        self._db = db
        self._transaction(self._migrate)

    def _migrate(self, db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        version = row[0] if row else 0
        if version > len(SQLITE_MIGRATIONS):
            raise SchemaTooNew(
                f"{self.path} has registry schema version {version}, newer than this methodhub knows "
                f"({len(SQLITE_MIGRATIONS)}); upgrade methodhub to use it."
            )
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
        await self.flush()
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
        return await self._run(self._get, device_id, module_id or "")

    def _get(self, device_id: str, module_id: str) -> Identity | None:
        row = (
            self._conn()
            .execute(
                f"SELECT {_IDENTITY_COLUMNS} FROM identities WHERE device_id = ? AND module_id = ?",
                (device_id, module_id),
            )
            .fetchone()
        )
        return _identity(row) if row else None

    async def create_identity(
        self,
        device_id: str,
        module_id: str | None = None,
        *,
        keys: SymmetricKeys | None = None,
        status: str = "enabled",
        status_reason: str | None = None,
        iot_edge: bool = False,
    ) -> Identity:
        validate_device_id(device_id)
        if module_id is not None:
            validate_module_id(module_id)
        if status not in STATUSES:
            raise HubError(ErrorKind.INVALID_ARGUMENT, f"status must be one of {', '.join(STATUSES)}.")
        _check_keys(keys)
        now = time.time()
        identity = Identity(
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
        await self._run(self._transaction, lambda db: self._insert(db, identity))
        return identity

    def _insert(self, db: sqlite3.Connection, identity: Identity) -> None:
        module_id = identity.module_id or ""
        if module_id and self._get(identity.device_id, "") is None:
            raise _missing(identity.device_id, "")
        try:
            db.execute(
                f"INSERT INTO identities ({_IDENTITY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    identity.device_id,
                    module_id,
                    identity.keys.primary,
                    identity.keys.secondary,
                    identity.status,
                    identity.status_reason,
                    identity.etag,
                    identity.generation_id,
                    identity.created_at,
                    identity.status_updated_at,
                    identity.updated_at,
                    int(identity.iot_edge),
                ),
            )
        except sqlite3.IntegrityError:
            if module_id:
                raise HubError(
                    ErrorKind.MODULE_ALREADY_EXISTS,
                    f"Module '{module_id}' already exists on device '{identity.device_id}'.",
                ) from None
            raise HubError(
                ErrorKind.DEVICE_ALREADY_EXISTS, f"Device '{identity.device_id}' already exists."
            ) from None
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
    ) -> Identity:
        if status is not None and status not in STATUSES:
            raise HubError(ErrorKind.INVALID_ARGUMENT, f"status must be one of {', '.join(STATUSES)}.")
        _check_keys(keys)

        def update(db: sqlite3.Connection) -> Identity:
            current = self._get(device_id, module_id or "")
            if current is None:
                raise _missing(device_id, module_id or "")
            if etag not in (None, "*") and etag != current.etag:
                raise HubError(
                    ErrorKind.PRECONDITION_FAILED,
                    f"The etag {etag!r} does not match the current version of "
                    f"'{current.key}' ({current.etag!r}).",
                )
            now = time.time()
            if keys is not None:
                current.keys = keys
            if status is not None and status != current.status and not module_id:
                current.status = status
                current.status_updated_at = now
            if status_reason is not None:
                current.status_reason = status_reason
            current.etag = new_etag()
            current.updated_at = now
            db.execute(
                "UPDATE identities SET primary_key = ?, secondary_key = ?, status = ?, status_reason = ?, "
                "etag = ?, status_updated_at = ?, updated_at = ? WHERE device_id = ? AND module_id = ?",
                (
                    current.keys.primary,
                    current.keys.secondary,
                    current.status,
                    current.status_reason,
                    current.etag,
                    current.status_updated_at,
                    current.updated_at,
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
                raise _missing(device_id, module_id or "")
            if etag not in (None, "*") and etag != current.etag:
                raise HubError(
                    ErrorKind.PRECONDITION_FAILED,
                    f"The etag {etag!r} does not match the current version of '{current.key}'.",
                )
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
                self._record(db, "identity", _key(device_id, module))
            self._record(db, "identity", device_id)

        # Write session saves made before this call first, so the DELETE below removes them too
        # (a coalesced write of a module's session must not outlive its device).
        await self.flush()
        await self._run(self._transaction, delete)
        key = _key(device_id, module_id or "")
        for client_id in [c for c in self._pending_sessions if c == key or c.startswith(key + "/")]:
            del self._pending_sessions[client_id]

    async def list_identities(
        self, device_id: str | None = None, *, limit: int = 1000, after: str | None = None
    ) -> list[Identity]:
        def query() -> list[Identity]:
            db = self._conn()
            if device_id is None:
                rows = db.execute(
                    f"SELECT {_IDENTITY_COLUMNS} FROM identities WHERE module_id = '' AND device_id > ? "
                    "ORDER BY device_id LIMIT ?",
                    (after or "", limit),
                )
            else:
                rows = db.execute(
                    f"SELECT {_IDENTITY_COLUMNS} FROM identities WHERE device_id = ? AND module_id != '' "
                    "AND module_id > ? ORDER BY module_id LIMIT ?",
                    (device_id, after or "", limit),
                )
            return [_identity(row) for row in rows]

        return await self._run(query)

    async def count_devices(self) -> int:
        return await self._run(
            lambda: self._conn().execute("SELECT count(*) FROM identities WHERE module_id = ''").fetchone()[0]
        )

    # -- Alibaba Cloud products -----------------------------------------------------------------------

    async def create_product_device(
        self,
        product_key: str,
        device_name: str,
        *,
        device_secret: str | None = None,
        status: str = "enabled",
    ) -> ProductDevice:
        validate_product_names(product_key, device_name)
        if device_secret is None:
            device_secret = generate_device_secret()
        elif (error := device_secret_error(device_secret)) is not None:
            raise HubError(ErrorKind.INVALID_ARGUMENT, error)
        if status not in STATUSES:
            raise HubError(ErrorKind.INVALID_ARGUMENT, f"status must be one of {', '.join(STATUSES)}.")
        now = time.time()
        identity = Identity(
            device_id=product_device_id(product_key, device_name),
            module_id=None,
            keys=SymmetricKeys.generate(),
            status=status,
            status_reason=None,
            etag=new_etag(),
            generation_id=new_generation_id(),
            created_at=now,
            status_updated_at=now,
            updated_at=now,
        )
        secret = device_secret

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

    def _product_device(self, where: str, *args: str) -> ProductDevice | None:
        row = (
            self._conn()
            .execute(
                f"SELECT {_JOINED_IDENTITY_COLUMNS}, p.product_key, p.device_name, p.device_secret "
                "FROM product_devices p JOIN identities i ON i.device_id = p.device_id AND i.module_id = '' "
                f"WHERE {where}",
                args,
            )
            .fetchone()
        )
        if row is None:
            return None
        return ProductDevice(_identity(row[:-3]), row[-3], row[-2], row[-1])

    # -- policies -------------------------------------------------------------------------------------

    @staticmethod
    def _policy(row: tuple[Any, ...]) -> AccessPolicy:
        rights = frozenset(Right(r) for r in row[3].split(",") if r)
        return AccessPolicy(row[0], SymmetricKeys(row[1], row[2]), rights)

    async def get_policy(self, name: str) -> AccessPolicy | None:
        def query() -> AccessPolicy | None:
            row = (
                self._conn()
                .execute(
                    "SELECT name, primary_key, secondary_key, rights FROM policies WHERE name = ?", (name,)
                )
                .fetchone()
            )
            return self._policy(row) if row else None

        return await self._run(query)

    async def list_policies(self) -> list[AccessPolicy]:
        def query() -> list[AccessPolicy]:
            rows = self._conn().execute(
                "SELECT name, primary_key, secondary_key, rights FROM policies ORDER BY name"
            )
            return [self._policy(row) for row in rows]

        return await self._run(query)

    async def ensure_default_policies(self) -> bool:
        def ensure(db: sqlite3.Connection) -> bool:
            if db.execute("SELECT count(*) FROM policies").fetchone()[0]:
                return False
            for name, rights in DEFAULT_POLICIES.items():
                keys = SymmetricKeys.generate()
                db.execute(
                    "INSERT INTO policies (name, primary_key, secondary_key, rights) VALUES (?, ?, ?, ?)",
                    (name, keys.primary, keys.secondary, ",".join(sorted(rights))),
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
        if client_id in self._pending_sessions:
            pending = self._pending_sessions[client_id]
            return dict(pending) if pending is not None else None

        def query() -> dict[str, int] | None:
            row = (
                self._conn()
                .execute("SELECT subscriptions FROM sessions WHERE client_id = ?", (client_id,))
                .fetchone()
            )
            return json.loads(row[0]) if row else None

        return await self._run(query)

    async def save_session(self, client_id: str, subscriptions: dict[str, int]) -> None:
        self._pending_sessions[client_id] = dict(subscriptions)
        self._schedule_flush()

    async def delete_session(self, client_id: str) -> None:
        self._pending_sessions[client_id] = None
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_handle is None and self._flush_task is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(SESSION_FLUSH_DELAY, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        self._flush_task = asyncio.get_running_loop().create_task(self._flush_sessions())

    async def _flush_sessions(self) -> None:
        try:
            while self._pending_sessions:
                batch, self._pending_sessions = self._pending_sessions, {}
                now = time.time()

                def write(
                    db: sqlite3.Connection, batch: dict[str, dict[str, int] | None] = batch, now: float = now
                ) -> None:
                    db.executemany(
                        "INSERT INTO sessions (client_id, subscriptions, updated_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (client_id) DO UPDATE SET subscriptions = excluded.subscriptions, "
                        "updated_at = excluded.updated_at",
                        [(cid, json.dumps(subs), now) for cid, subs in batch.items() if subs is not None],
                    )
                    db.executemany(
                        "DELETE FROM sessions WHERE client_id = ?",
                        [(cid,) for cid, subs in batch.items() if subs is None],
                    )

                try:
                    await self._run(self._transaction, write)
                except Exception:
                    for cid, subs in batch.items():  # keep them for the next attempt
                        self._pending_sessions.setdefault(cid, subs)
                    raise
        finally:
            self._flush_task = None

    async def flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._flush_task is not None:
            await self._flush_task
        if self._pending_sessions:
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_sessions())
            await self._flush_task
