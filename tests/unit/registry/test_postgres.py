"""PostgreSQL-only behaviour: URLs, schema migrations, the change feed across nodes, outages.

The contract (test_contract_*.py) already runs every registry operation against PostgreSQL; this
module covers what only a shared server has: several nodes writing at once, commit order, and the
server going away and coming back.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

import methodhub.registry.postgres as postgres_module
from methodhub.changes import ChangeFeedWatcher
from methodhub.errors import ErrorKind, HubError
from methodhub.registry import DEFAULT_POLICIES, PostgresRegistry, SchemaTooNew, SqliteRegistry, open_registry
from methodhub.registry.migrations import POSTGRES_MIGRATIONS
from methodhub.registry.postgres import redact_url
from tests.servers import PostgresServer
from tests.unit.registry.conftest import PostgresInSchema, new_schema_name
from tests.unit.registry.helpers import raises_hub_error


@pytest.fixture
def schema_url(postgres_url: str) -> str:
    """A registry URL on the session's server, in a schema of its own (created by PostgresInSchema)."""
    return f"{postgres_url}?search_path={new_schema_name()}"


def in_schema(postgres_url: str) -> PostgresInSchema:
    return PostgresInSchema(postgres_url, new_schema_name())


async def fetch(server_url: str, schema: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(server_url, server_settings={"search_path": schema})
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


@pytest.fixture
async def node_a(postgres_url: str) -> AsyncIterator[PostgresInSchema]:
    registry = in_schema(postgres_url)
    await registry.open()
    yield registry
    await registry.close()


@pytest.fixture
async def node_b(node_a: PostgresInSchema) -> AsyncIterator[PostgresInSchema]:
    """Another node on node_a's database (its own pool, as another process would have)."""
    registry = PostgresInSchema(node_a.server_url, node_a.schema)
    await registry.open()
    yield registry
    await registry.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- URLs ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_open_registry_with_a_postgres_url(scheme: str) -> None:
    registry = open_registry(f"{scheme}://hub:pw@db.example:5432/methodhub")
    assert isinstance(registry, PostgresRegistry)
    assert registry.display_url == f"{scheme}://hub@db.example:5432/methodhub"


def test_open_registry_keeps_sqlite_for_paths(tmp_path: Path) -> None:
    assert isinstance(open_registry(tmp_path / "r.db"), SqliteRegistry)
    assert isinstance(open_registry(f"sqlite://{tmp_path}/r.db"), SqliteRegistry)


def test_unsupported_scheme_error_hides_the_password() -> None:
    with pytest.raises(ValueError, match="unsupported registry location") as info:
        open_registry("mysql://root:hunter2@db/x")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@h:5432/db?sslmode=require&password=x", "postgresql://u@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://:secret@h/db", "postgresql://h/db"),
        ("postgresql://h1:5432,h2:5433/db", "postgresql://h1:5432,h2:5433/db"),
        ("postgres://u:p%40ss@[::1]:5432/db", "postgres://u@[::1]:5432/db"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_connect_timeout_in_the_url() -> None:
    registry = PostgresRegistry("postgresql://h/db?connect_timeout=2.5&search_path=hub")
    assert registry._connect_timeout == 2.5
    assert "connect_timeout" not in registry._dsn and "search_path=hub" in registry._dsn
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT, "connect_timeout"):
        PostgresRegistry("postgresql://h/db?connect_timeout=soon")


# -- opening ------------------------------------------------------------------------------------------------


async def test_unreachable_at_open_names_the_url_without_password() -> None:
    port = closed_port()
    registry = PostgresRegistry(f"postgresql://hub:s3cret@127.0.0.1:{port}/methodhub?connect_timeout=2")
    with pytest.raises(HubError) as info:
        await registry.open()
    assert info.value.kind is ErrorKind.SERVICE_UNAVAILABLE
    message = info.value.message
    assert f"postgresql://hub@127.0.0.1:{port}/methodhub" in message
    assert "s3cret" not in message
    assert "cannot reach" in message and "start PostgreSQL" in message
    await registry.close()  # harmless: it never opened


async def test_missing_database_says_to_create_it(postgres_url: str) -> None:
    registry = PostgresRegistry(postgres_url.rsplit("/", 1)[0] + "/nosuchdb")
    with raises_hub_error(ErrorKind.SERVICE_UNAVAILABLE, "createdb"):
        await registry.open()


async def test_use_before_open_says_so(schema_url: str) -> None:
    registry = PostgresRegistry(schema_url)
    with raises_hub_error(ErrorKind.SERVICE_UNAVAILABLE, "not open"):
        await registry.get_identity("dev1")
    await registry.close()


async def test_close_twice_is_harmless(node_a: PostgresInSchema) -> None:
    await node_a.close()
    await node_a.close()
    with raises_hub_error(ErrorKind.SERVICE_UNAVAILABLE, "not open"):
        await node_a.count_devices()


async def test_text_postgres_cannot_hold_is_never_found(node_a: PostgresInSchema) -> None:
    assert await node_a.get_identity("dev\x00") is None
    assert await node_a.get_identity("dev\ud800") is None
    assert await node_a.get_policy("iothubowner\x00") is None
    assert await node_a.find_product_device("a\x00") is None
    assert await node_a.load_session("c\x00") is None
    with raises_hub_error(ErrorKind.DEVICE_NOT_FOUND):
        await node_a.delete_identity("dev\x00")


# -- migrations ----------------------------------------------------------------------------------------------


async def schema_version(registry: PostgresInSchema) -> list[int]:
    return [
        r[0] for r in await fetch(registry.server_url, registry.schema, "SELECT version FROM schema_version")
    ]


async def tables(registry: PostgresInSchema) -> set[str]:
    rows = await fetch(
        registry.server_url,
        registry.schema,
        f"SELECT tablename FROM pg_tables WHERE schemaname = '{registry.schema}'",
    )
    return {r[0] for r in rows}


async def test_fresh_database_gets_the_latest_schema(node_a: PostgresInSchema) -> None:
    assert await schema_version(node_a) == [len(POSTGRES_MIGRATIONS)]
    assert {
        "identities",
        "policies",
        "sessions",
        "changes",
        "products",
        "product_devices",
        "settings",
        "schema_version",
    } <= await tables(node_a)


async def test_ids_collate_by_code_point_whatever_the_database_locale(postgres_url: str) -> None:
    """COLLATE "C" on ids: code-point order (the order SQLite pages in) even in a database whose
    default collation is ICU's en-US, which would sort '_x' < 'a' < 'b' < 'B'."""
    admin = await asyncpg.connect(postgres_url)
    database = new_schema_name()
    try:
        await admin.execute(
            f"CREATE DATABASE {database} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"
        )
    finally:
        await admin.close()
    registry = PostgresRegistry(postgres_url.rsplit("/", 1)[0] + f"/{database}")
    await registry.open()
    try:
        ids = ["b", "B", "_x", "a-1", "a.1", "A", "=", "Z", "(z)", "$", "9", "a"]
        for device_id in ids:
            await registry.create_identity(device_id)
        assert [i.device_id for i in await registry.list_identities()] == sorted(ids)
        after_z = sorted(ids)[sorted(ids).index("Z") + 1 :]
        assert [i.device_id for i in await registry.list_identities(after="Z", limit=3)] == after_z[:3]
        await registry.create_identity("a", "m_1")
        await registry.create_identity("a", "M2")
        assert [i.module_id for i in await registry.list_identities("a")] == ["M2", "m_1"]
        await registry.ensure_default_policies()
        names = [p.name for p in await registry.list_policies()]
        assert names == sorted(names)
    finally:
        await registry.close()


async def test_reopening_keeps_one_version_row(node_a: PostgresInSchema, node_b: PostgresInSchema) -> None:
    assert await schema_version(node_a) == [len(POSTGRES_MIGRATIONS)]


async def test_nodes_starting_together_migrate_once(postgres_url: str) -> None:
    schema = new_schema_name()
    nodes = [PostgresInSchema(postgres_url, schema) for _ in range(4)]
    await asyncio.gather(*(n.open() for n in nodes))
    try:
        firsts = await asyncio.gather(*(n.ensure_default_policies() for n in nodes))
        assert sorted(firsts) == [False, False, False, True]  # one node created the policies
        assert len(await nodes[0].list_policies()) == 5
        assert await schema_version(nodes[0]) == [len(POSTGRES_MIGRATIONS)]
    finally:
        await asyncio.gather(*(n.close() for n in nodes))


async def test_database_from_a_newer_methodhub_is_refused(node_a: PostgresInSchema) -> None:
    await node_a.create_identity("dev1")
    newer = len(POSTGRES_MIGRATIONS) + 1
    await fetch(node_a.server_url, node_a.schema, f"UPDATE schema_version SET version = {newer}")

    again = PostgresInSchema(node_a.server_url, node_a.schema)
    with pytest.raises(SchemaTooNew) as info:
        await again.open()
    await again.close()
    message = str(info.value)
    assert again.display_url in message
    assert f"version {newer}" in message
    assert "upgrade methodhub" in message
    assert await schema_version(node_a) == [newer]  # the database was left alone
    rows = await fetch(node_a.server_url, node_a.schema, "SELECT device_id FROM identities")
    assert [r[0] for r in rows] == ["dev1"]


async def test_new_migrations_are_applied_to_an_existing_database(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = in_schema(postgres_url)
    await first.open()
    created = await first.create_identity("dev1")
    await first.close()

    extra = "CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (42)"
    monkeypatch.setattr(postgres_module, "POSTGRES_MIGRATIONS", [*POSTGRES_MIGRATIONS, extra])
    upgraded = PostgresInSchema(first.server_url, first.schema)
    await upgraded.open()
    try:
        assert await upgraded.get_identity("dev1") == created
    finally:
        await upgraded.close()
    assert await schema_version(first) == [len(POSTGRES_MIGRATIONS) + 1]
    rows = await fetch(first.server_url, first.schema, "SELECT x FROM extra")
    assert [r[0] for r in rows] == [42]  # applied exactly once


async def test_a_failing_migration_changes_nothing(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = in_schema(postgres_url)
    await first.open()
    await first.close()

    broken = "CREATE TABLE extra (x INTEGER); THIS IS NOT SQL"
    monkeypatch.setattr(postgres_module, "POSTGRES_MIGRATIONS", [*POSTGRES_MIGRATIONS, broken])
    failing = PostgresInSchema(first.server_url, first.schema)
    with pytest.raises(asyncpg.PostgresSyntaxError):
        await failing.open()
    await failing.close()
    assert await schema_version(first) == [len(POSTGRES_MIGRATIONS)]
    assert "extra" not in await tables(first)


# -- the change feed across nodes -------------------------------------------------------------------------


async def test_a_node_sees_another_nodes_changes_through_its_watcher(
    node_a: PostgresInSchema, node_b: PostgresInSchema
) -> None:
    seen: list[str] = []
    policies: list[str] = []

    async def on_identity(key: str) -> None:
        seen.append(key)

    watcher = ChangeFeedWatcher(node_a, 0.02, on_identity, policies.append)
    await watcher.start()
    try:
        await node_b.create_identity("dev1")
        await node_b.create_identity("dev1", "m")
        await node_b.ensure_default_policies()
        await node_b.delete_identity("dev1")
        for _ in range(200):
            if len(seen) == 4 and len(policies) == 5:
                break
            await asyncio.sleep(0.01)
    finally:
        await watcher.stop()
    assert seen == ["dev1", "dev1/m", "dev1/m", "dev1"]
    assert sorted(policies) == sorted(DEFAULT_POLICIES)


async def test_a_change_committed_late_is_not_skipped(
    node_a: PostgresInSchema, node_b: PostgresInSchema
) -> None:
    """A transaction that took its seq first but commits last must still reach readers.

    A plain BIGSERIAL would fail this: 'fast' commits with a higher seq while 'slow' is in flight,
    the reader's cursor moves past 'slow', and 'slow' is never reported.
    """
    cursor = await node_a.last_change_seq()
    slow = await asyncpg.connect(node_a.server_url, server_settings={"search_path": node_a.schema})
    try:
        transaction = slow.transaction()
        await transaction.start()
        await PostgresRegistry._record(slow, "identity", ["slow"])  # holds a seq, not committed
        fast = asyncio.create_task(node_b.create_identity("fast"))
        await asyncio.sleep(0.3)
        seen, cursor = await node_a.changes_since(cursor)  # must not jump past 'slow'
        await transaction.commit()
        await fast
    finally:
        await slow.close()
    later, _ = await node_a.changes_since(cursor)
    assert [c.key for c in seen + later] == ["slow", "fast"]


async def test_concurrent_writers_lose_no_change(postgres_url: str) -> None:
    schema = new_schema_name()
    writers = [PostgresInSchema(postgres_url, schema) for _ in range(4)]
    reader = PostgresInSchema(postgres_url, schema)
    for registry in (*writers, reader):
        await registry.open()
    try:
        cursor = await reader.last_change_seq()
        seen: list[tuple[int, str]] = []
        done = asyncio.Event()

        async def read() -> None:
            nonlocal cursor
            while True:
                finished = done.is_set()
                changes, cursor = await reader.changes_since(cursor)
                seen.extend((c.seq, c.key) for c in changes)
                if finished:
                    return
                await asyncio.sleep(0.001)

        async def write(n: int, registry: PostgresRegistry) -> None:
            for i in range(15):
                await registry.create_identity(f"w{n}-{i}")
                if i % 5 == 4:
                    await registry.update_identity(f"w{n}-{i}", status="disabled")

        reading = asyncio.create_task(read())
        await asyncio.gather(*(write(n, r) for n, r in enumerate(writers)))
        done.set()
        await reading
    finally:
        for registry in (*writers, reader):
            await registry.close()
    seqs = [seq for seq, _ in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    expected = {f"w{n}-{i}" for n in range(4) for i in range(15)}
    assert {key for _, key in seen} == expected
    assert len(seen) == 60 + 12


# -- outages ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def outage_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A server of this module's own, which the tests stop and start again."""
    server = PostgresServer(tmp_path_factory.mktemp("pg-outage")).start()
    yield server
    server.destroy()


async def test_unreachable_server_gives_service_unavailable_and_recovery_is_automatic(
    outage_server: PostgresServer,
) -> None:
    schema = new_schema_name()
    registry = PostgresInSchema(outage_server.url, schema)
    await registry.open()
    identities: list[str] = []

    async def on_identity(key: str) -> None:
        identities.append(key)

    watcher = ChangeFeedWatcher(registry, 0.05, on_identity, lambda name: None)
    try:
        await registry.create_identity("dev1")
        registry.save_session("dev1", {"a": 1})
        await registry.flush_sessions()
        await watcher.start()

        outage_server.stop()
        calls = {
            "get_identity": registry.get_identity("dev1"),
            "create_identity": registry.create_identity("dev2"),
            "update_identity": registry.update_identity("dev1", status="disabled"),
            "list_identities": registry.list_identities(),
            "get_policy": registry.get_policy("iothubowner"),
            "changes_since": registry.changes_since(0),
            "find_product_device": registry.find_product_device("a1PK:dev1"),
            "get_setting": registry.get_setting("hostname"),
        }
        for name, call in calls.items():
            with pytest.raises(HubError) as info:
                await call
            assert info.value.kind is ErrorKind.SERVICE_UNAVAILABLE, name
            assert "unreachable" in info.value.message, name
        registry.save_session("dev1", {"b": 0})  # queued: it cannot be written now
        with raises_hub_error(ErrorKind.SERVICE_UNAVAILABLE, "unreachable"):
            await registry.flush_sessions()
        assert await registry.load_session("dev1") == {"b": 0}
        await asyncio.sleep(0.2)  # the watcher fails a few polls meanwhile

        outage_server.start()
        # The same object works again, without reopening.
        identity = await registry.get_identity("dev1")
        assert identity is not None and identity.status == "enabled"
        # The session write queued during the outage reaches the database by itself.
        other = PostgresInSchema(outage_server.url, schema)
        await other.open()
        try:
            for _ in range(300):
                if await other.load_session("dev1") == {"b": 0}:
                    break
                await asyncio.sleep(0.01)
            assert await other.load_session("dev1") == {"b": 0}
            # ... and the watcher follows the feed again.
            await other.create_identity("after-outage")
            for _ in range(200):
                if "after-outage" in identities:
                    break
                await asyncio.sleep(0.01)
            assert identities == ["after-outage"]
        finally:
            await other.close()
    finally:
        await watcher.stop()
        if not (outage_server.data_dir and (outage_server.data_dir / "postmaster.pid").exists()):
            outage_server.start()
        await registry.close()


async def test_close_while_unreachable_does_not_hang(outage_server: PostgresServer) -> None:
    registry = PostgresInSchema(outage_server.url, new_schema_name())
    await registry.open()
    registry.save_session("dev1", {"a": 1})
    outage_server.stop()
    try:
        await asyncio.wait_for(registry.close(), 10)
    finally:
        outage_server.start()
    with raises_hub_error(ErrorKind.SERVICE_UNAVAILABLE, "not open"):
        await registry.get_identity("dev1")
