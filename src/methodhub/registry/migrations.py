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
    # 2: Alibaba Cloud products and the ProductKey/DeviceName/DeviceSecret of their devices. A
    # product device is an identity (deleted with it); module_id is always '' (devices only).
    """
    CREATE TABLE products (
        product_key TEXT PRIMARY KEY,
        created_at REAL NOT NULL
    );
    CREATE TABLE product_devices (
        device_id TEXT PRIMARY KEY,
        module_id TEXT NOT NULL DEFAULT '' CHECK (module_id = ''),
        product_key TEXT NOT NULL REFERENCES products (product_key),
        device_name TEXT NOT NULL,
        device_secret TEXT NOT NULL,
        UNIQUE (product_key, device_name),
        FOREIGN KEY (device_id, module_id) REFERENCES identities (device_id, module_id) ON DELETE CASCADE
    );
    """,
    # 3: hub-wide settings every node and CLI shares (the hub's hostname).
    """
    CREATE TABLE settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # 4: signature nonces of signed API requests (Alibaba's POP API), shared by every process that
    # uses this registry (`--workers N`), until their request's timestamp leaves the window.
    """
    CREATE TABLE nonces (
        key TEXT PRIMARY KEY,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX nonces_expiry ON nonces (expires_at);
    """,
    # 5: device and module twins (registry.twins): a row once the twin first changes, deleted with
    # its identity. ``document`` is JSON: tags, desired, reported and their metadata.
    """
    CREATE TABLE twins (
        device_id TEXT NOT NULL,
        module_id TEXT NOT NULL DEFAULT '',
        document TEXT NOT NULL,
        version INTEGER NOT NULL,
        desired_version INTEGER NOT NULL,
        reported_version INTEGER NOT NULL,
        etag TEXT NOT NULL,
        PRIMARY KEY (device_id, module_id),
        FOREIGN KEY (device_id, module_id) REFERENCES identities (device_id, module_id) ON DELETE CASCADE
    ) WITHOUT ROWID;
    """,
    # 6: queued (durable) calls (calls.queued, registry.calls). Not tied to the identity: a call
    # to a device deleted meanwhile expires.
    """
    CREATE TABLE calls (
        call_id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL,
        module_id TEXT NOT NULL DEFAULT '',
        method TEXT NOT NULL,
        payload BLOB NOT NULL,
        response_timeout REAL NOT NULL,
        attempts INTEGER NOT NULL,
        created_time REAL NOT NULL,
        expires_time REAL NOT NULL,
        state TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        delivered_time REAL,
        completed_time REAL,
        outcome_status INTEGER,
        outcome_payload BLOB,
        error_code TEXT,
        error_message TEXT,
        idempotency_key TEXT UNIQUE,
        request_hash TEXT NOT NULL,
        job_id TEXT,
        owner TEXT,
        lease_until REAL,
        target TEXT NOT NULL
    );
    CREATE INDEX calls_target ON calls (target, state, created_time, call_id);
    CREATE INDEX calls_created ON calls (created_time, call_id);
    CREATE INDEX calls_due ON calls (state, expires_time);
    CREATE INDEX calls_job ON calls (job_id) WHERE job_id IS NOT NULL;
    """,
    # 7: jobs (calls.jobs, registry.jobs); their per-device results are calls with their job_id.
    """
    CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        query_condition TEXT NOT NULL,
        request TEXT NOT NULL,
        created_time REAL NOT NULL,
        start_time REAL NOT NULL,
        max_execution REAL NOT NULL,
        status TEXT NOT NULL,
        end_time REAL,
        failure_reason TEXT,
        device_count INTEGER NOT NULL,
        owner TEXT
    );
    CREATE INDEX jobs_due ON jobs (status, start_time);
    CREATE INDEX jobs_created ON jobs (created_time);
    """,
    # 8: a product's thing models (TSL, Alibaba's JSON text as given), one per module:
    # function_block_id '' is the default module. Kept with the product (a product row is made
    # for a TSL set before the product's first device).
    """
    CREATE TABLE product_tsl (
        product_key TEXT NOT NULL REFERENCES products (product_key),
        function_block_id TEXT NOT NULL DEFAULT '',
        tsl TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (product_key, function_block_id)
    ) WITHOUT ROWID;
    """,
    # 9: call history (calls.history): every call's front door, caller, sizes, latency and the
    # request id its front door answered with; synchronous calls are stored as ended calls.
    """
    ALTER TABLE calls ADD COLUMN front_door TEXT;
    ALTER TABLE calls ADD COLUMN caller TEXT;
    ALTER TABLE calls ADD COLUMN request_size INTEGER;
    ALTER TABLE calls ADD COLUMN response_size INTEGER;
    ALTER TABLE calls ADD COLUMN latency_ms REAL;
    ALTER TABLE calls ADD COLUMN tracking_id TEXT;
    CREATE INDEX calls_ended ON calls (completed_time) WHERE job_id IS NULL;
    """,
    # 10: the call history's records in pages (registry.history): one row per batch written, its
    # records in one blob; synchronous calls recorded before stay rows of calls.
    """
    CREATE TABLE call_history (
        page_id INTEGER PRIMARY KEY,
        first_created REAL NOT NULL,
        last_created REAL NOT NULL,
        last_completed REAL NOT NULL,
        first_id TEXT NOT NULL,
        last_id TEXT NOT NULL,
        records INTEGER NOT NULL,
        targets TEXT NOT NULL,
        rows BLOB NOT NULL
    );
    CREATE INDEX call_history_created ON call_history (last_created);
    """,
    # 11: X.509 authentication (issue 15): an identity's authentication type ('sas', 'selfSigned',
    # 'certificateAuthority') and its thumbprints (upper-case hex), and the hub's certificate
    # authorities (PEM; verified once their proof of possession was checked).
    """
    ALTER TABLE identities ADD COLUMN auth_type TEXT NOT NULL DEFAULT 'sas';
    ALTER TABLE identities ADD COLUMN primary_thumbprint TEXT;
    ALTER TABLE identities ADD COLUMN secondary_thumbprint TEXT;
    CREATE TABLE certificate_authorities (
        name TEXT PRIMARY KEY,
        certificate TEXT NOT NULL,
        thumbprint TEXT NOT NULL,
        verification_code TEXT NOT NULL,
        verified INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
]

POSTGRES_MIGRATIONS: list[str] = [
    # 1: identities, policies, persisted sessions, change feed. Ids and names are COLLATE "C" so that
    # ORDER BY and `>` compare code points, as SQLite does: list_identities(after=...) pages alike.
    # changes.at is the database server's clock, so every node prunes by the same clock.
    """
    CREATE TABLE identities (
        device_id TEXT COLLATE "C" NOT NULL,
        module_id TEXT COLLATE "C" NOT NULL DEFAULT '',
        primary_key TEXT NOT NULL,
        secondary_key TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'enabled',
        status_reason TEXT,
        etag TEXT NOT NULL,
        generation_id TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        status_updated_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        iot_edge BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (device_id, module_id)
    );
    CREATE TABLE policies (
        name TEXT COLLATE "C" PRIMARY KEY,
        primary_key TEXT NOT NULL,
        secondary_key TEXT NOT NULL,
        rights TEXT NOT NULL
    );
    CREATE TABLE sessions (
        client_id TEXT COLLATE "C" PRIMARY KEY,
        subscriptions TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE changes (
        seq BIGSERIAL PRIMARY KEY,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL DEFAULT extract(epoch FROM clock_timestamp())
    );
    CREATE INDEX changes_at ON changes (at);
    """,
    # 2: Alibaba Cloud products and their devices (see SQLITE_MIGRATIONS[1]).
    """
    CREATE TABLE products (
        product_key TEXT COLLATE "C" PRIMARY KEY,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE product_devices (
        device_id TEXT COLLATE "C" PRIMARY KEY,
        module_id TEXT COLLATE "C" NOT NULL DEFAULT '' CHECK (module_id = ''),
        product_key TEXT COLLATE "C" NOT NULL REFERENCES products (product_key),
        device_name TEXT COLLATE "C" NOT NULL,
        device_secret TEXT NOT NULL,
        UNIQUE (product_key, device_name),
        FOREIGN KEY (device_id, module_id) REFERENCES identities (device_id, module_id) ON DELETE CASCADE
    );
    """,
    # 3: hub-wide settings every node and CLI shares (the hub's hostname).
    """
    CREATE TABLE settings (
        name TEXT COLLATE "C" PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # signature nonces of signed API requests, shared by every node (see SQLITE_MIGRATIONS[3]).
    """
    CREATE TABLE nonces (
        key TEXT COLLATE "C" PRIMARY KEY,
        expires_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX nonces_expiry ON nonces (expires_at);
    """,
    # device and module twins (see SQLITE_MIGRATIONS[4]); ``document`` is jsonb, for queries.
    """
    CREATE TABLE twins (
        device_id TEXT COLLATE "C" NOT NULL,
        module_id TEXT COLLATE "C" NOT NULL DEFAULT '',
        document JSONB NOT NULL,
        version BIGINT NOT NULL,
        desired_version BIGINT NOT NULL,
        reported_version BIGINT NOT NULL,
        etag TEXT NOT NULL,
        PRIMARY KEY (device_id, module_id),
        FOREIGN KEY (device_id, module_id) REFERENCES identities (device_id, module_id) ON DELETE CASCADE
    );
    """,
    # queued calls (see SQLITE_MIGRATIONS[5]).
    """
    CREATE TABLE calls (
        call_id TEXT COLLATE "C" PRIMARY KEY,
        device_id TEXT COLLATE "C" NOT NULL,
        module_id TEXT COLLATE "C" NOT NULL DEFAULT '',
        method TEXT NOT NULL,
        payload BYTEA NOT NULL,
        response_timeout DOUBLE PRECISION NOT NULL,
        attempts INTEGER NOT NULL,
        created_time DOUBLE PRECISION NOT NULL,
        expires_time DOUBLE PRECISION NOT NULL,
        state TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        delivered_time DOUBLE PRECISION,
        completed_time DOUBLE PRECISION,
        outcome_status INTEGER,
        outcome_payload BYTEA,
        error_code TEXT,
        error_message TEXT,
        idempotency_key TEXT COLLATE "C" UNIQUE,
        request_hash TEXT NOT NULL,
        job_id TEXT COLLATE "C",
        owner TEXT,
        lease_until DOUBLE PRECISION,
        target TEXT COLLATE "C" NOT NULL
    );
    CREATE INDEX calls_target ON calls (target, state, created_time, call_id);
    CREATE INDEX calls_created ON calls (created_time, call_id);
    CREATE INDEX calls_due ON calls (state, expires_time);
    CREATE INDEX calls_job ON calls (job_id) WHERE job_id IS NOT NULL;
    """,
    # jobs (see SQLITE_MIGRATIONS[6]).
    """
    CREATE TABLE jobs (
        job_id TEXT COLLATE "C" PRIMARY KEY,
        type TEXT NOT NULL,
        query_condition TEXT NOT NULL,
        request TEXT NOT NULL,
        created_time DOUBLE PRECISION NOT NULL,
        start_time DOUBLE PRECISION NOT NULL,
        max_execution DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL,
        end_time DOUBLE PRECISION,
        failure_reason TEXT,
        device_count INTEGER NOT NULL,
        owner TEXT
    );
    CREATE INDEX jobs_due ON jobs (status, start_time);
    CREATE INDEX jobs_created ON jobs (created_time);
    """,
    # a product's thing models (see SQLITE_MIGRATIONS[7]).
    """
    CREATE TABLE product_tsl (
        product_key TEXT COLLATE "C" NOT NULL REFERENCES products (product_key),
        function_block_id TEXT COLLATE "C" NOT NULL DEFAULT '',
        tsl TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (product_key, function_block_id)
    );
    """,
    # call history (see SQLITE_MIGRATIONS[8]).
    """
    ALTER TABLE calls ADD COLUMN front_door TEXT;
    ALTER TABLE calls ADD COLUMN caller TEXT;
    ALTER TABLE calls ADD COLUMN request_size INTEGER;
    ALTER TABLE calls ADD COLUMN response_size INTEGER;
    ALTER TABLE calls ADD COLUMN latency_ms DOUBLE PRECISION;
    ALTER TABLE calls ADD COLUMN tracking_id TEXT;
    CREATE INDEX calls_ended ON calls (completed_time) WHERE job_id IS NULL;
    """,
    # call history pages (see SQLITE_MIGRATIONS[9]).
    """
    CREATE TABLE call_history (
        page_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        first_created DOUBLE PRECISION NOT NULL,
        last_created DOUBLE PRECISION NOT NULL,
        last_completed DOUBLE PRECISION NOT NULL,
        first_id TEXT COLLATE "C" NOT NULL,
        last_id TEXT COLLATE "C" NOT NULL,
        records INTEGER NOT NULL,
        targets TEXT COLLATE "C" NOT NULL,
        rows BYTEA NOT NULL
    );
    CREATE INDEX call_history_created ON call_history (last_created);
    """,
    # X.509 authentication (see SQLITE_MIGRATIONS[10]).
    """
    ALTER TABLE identities ADD COLUMN auth_type TEXT NOT NULL DEFAULT 'sas';
    ALTER TABLE identities ADD COLUMN primary_thumbprint TEXT;
    ALTER TABLE identities ADD COLUMN secondary_thumbprint TEXT;
    CREATE TABLE certificate_authorities (
        name TEXT COLLATE "C" PRIMARY KEY,
        certificate TEXT NOT NULL,
        thumbprint TEXT NOT NULL,
        verification_code TEXT NOT NULL,
        verified BOOLEAN NOT NULL DEFAULT FALSE,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    );
    """,
]


class SchemaTooNew(RuntimeError):
    """The database was written by a newer methodhub than this one."""


def schema_too_new(where: str, version: int, known: int) -> SchemaTooNew:
    """The error every backend raises for a schema newer than ``known`` (its number of migrations)."""
    return SchemaTooNew(
        f"{where} has registry schema version {version}, newer than this methodhub knows "
        f"({known}); upgrade methodhub to use it."
    )
