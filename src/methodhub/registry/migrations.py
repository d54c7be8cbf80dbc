"""Schema migrations, one ordered list per backend: migration N brings the schema to version N.

To change the schema, append a migration; never edit one that has shipped. ``open()`` applies the
missing ones in one transaction and refuses a database written by a newer methodhub.
"""

from __future__ import annotations

SQLITE_MIGRATIONS: list[str] = [
    # 1: identities, policies, persisted sessions, change feed
    """
    CREATE TABLE identities (
        device_id TEXT NOT NULL,
        module_id TEXT NOT NULL DEFAULT '',
        primary_key TEXT NOT NULL,
        secondary_key TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'enabled',
        status_reason TEXT,
        etag TEXT NOT NULL,
        generation_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        status_updated_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        iot_edge INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (device_id, module_id)
    ) WITHOUT ROWID;
    CREATE TABLE policies (
        name TEXT PRIMARY KEY,
        primary_key TEXT NOT NULL,
        secondary_key TEXT NOT NULL,
        rights TEXT NOT NULL
    );
    CREATE TABLE sessions (
        client_id TEXT PRIMARY KEY,
        subscriptions TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        at REAL NOT NULL
    );
    """,
]


class SchemaTooNew(RuntimeError):
    """The database was written by a newer methodhub than this one."""
