"""The PostgreSQL translation: its text and parameters, then run for real (the session's throw-away
server, tests/servers.py) against the in-memory evaluator, like the SQLite cross-check."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings

from methodhub.query import Flavour, Query, parse, run, to_sql, where_sql
from tests.unit.query.strategies import pool_queries, random_twins, row_multiset, twin_documents
from tests.unit.query.test_sql_sqlite import USER_TEXT

DOCUMENTS = random_twins(seed=34, count=300)

# --- the SQL text and parameters -------------------------------------------------------------------


def test_comparison_sql_and_parameters() -> None:
    sql = to_sql(parse("SELECT * FROM devices WHERE tags.a.b < 'x'"), Flavour.POSTGRESQL)
    assert sql.where == (
        "(CASE WHEN jsonb_typeof((doc #> $1::text[])) = 'string' "
        'THEN (doc #>> $1::text[]) COLLATE "C" < $2::text END)'
    )
    assert sql.params == (["tags", "a", "b"], "x")
    assert sql.columns == ("doc::text",)
    sql = to_sql(parse("SELECT * FROM devices WHERE version >= 1.5 AND tags.ok != true"), Flavour.POSTGRESQL)
    assert sql.params == (["version"], "1.5", ["tags", "ok"], "true")
    assert "(doc #> $1::text[]) >= $2::jsonb" in sql.where
    assert "jsonb_typeof((doc #> $3::text[])) = 'boolean'" in sql.where


def test_null_and_constant_comparisons_need_no_parameters() -> None:
    assert where_sql(parse("SELECT * FROM devices WHERE x = null").where, Flavour.POSTGRESQL) == (
        "(CASE WHEN jsonb_typeof((doc #> $1::text[])) = 'null' THEN TRUE END)",
        (["x"],),
    )
    assert where_sql(parse("SELECT * FROM devices WHERE 1 = 1").where, Flavour.POSTGRESQL) == ("TRUE", ())
    assert where_sql(parse("SELECT * FROM devices WHERE 1 = 'a'").where, Flavour.POSTGRESQL) == (
        "NULL::boolean",
        (),
    )
    assert where_sql(None, Flavour.POSTGRESQL) == ("TRUE", ())


def test_in_lists_bind_one_array_per_kind() -> None:
    sql = to_sql(parse("SELECT * FROM devices WHERE x IN ['a', 'b', 1, 2.5, null]"), Flavour.POSTGRESQL)
    assert sql.params == (["x"], ["a", "b"], ["1", "2.5"])
    assert "(doc #>> $1::text[]) = ANY($2::text[])" in sql.where
    assert "(doc #> $1::text[]) = ANY($3::jsonb[])" in sql.where


def test_user_text_is_bound_never_written_into_the_postgres_sql() -> None:
    sql = to_sql(parse(USER_TEXT), Flavour.POSTGRESQL)
    statement = sql.statement("twins")
    for user_text in ("drop-table", "DROP TABLE", "zz", "%_", "it's", "qq", "ww", "4242", "12345"):
        assert user_text not in statement
    assert "x'); DROP TABLE twins; --" in sql.params
    assert ["tags", "drop-table"] in sql.params


def test_placeholders_start_at_first_param() -> None:
    where, params = where_sql(
        parse("SELECT * FROM devices WHERE x = 'a'").where, Flavour.POSTGRESQL, "t.doc", 3
    )
    assert "$3" in where and "$4" in where and "$1" not in where and "$2" not in where
    assert "t.doc #>" in where
    assert params == (["x"], "a")


def test_grouping_shows_text_of_the_grouped_jsonb() -> None:
    sql = to_sql(parse("SELECT tags.a, COUNT() AS n FROM devices GROUP BY tags.a"), Flavour.POSTGRESQL)
    assert sql.columns == ("(doc #> $1::text[])::text", "COUNT(*)")
    assert sql.group_by == ("(doc #> $1::text[])",)
    assert sql.row(('"x"', 3)) == {"a": "x", "n": 3}
    assert sql.row((None, 1)) == {"n": 1}


# --- run on a real PostgreSQL --------------------------------------------------------------------------


@dataclass
class Database:
    loop: asyncio.AbstractEventLoop
    conn: asyncpg.Connection

    def fetch(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.loop.run_until_complete(self.conn.fetch(statement, *params))]

    def execute(self, statement: str, *params: object) -> None:
        self.loop.run_until_complete(self.conn.execute(statement, *params))


@pytest.fixture(scope="module")
def database(postgres_url: str) -> Iterator[Database]:
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(postgres_url))
    db = Database(loop, conn)
    db.execute("CREATE TEMP TABLE twins (id serial PRIMARY KEY, doc jsonb NOT NULL)")
    db.execute("CREATE TEMP TABLE t (doc jsonb NOT NULL)")
    db.execute("INSERT INTO twins (doc) SELECT unnest($1::jsonb[])", [json.dumps(d) for d in DOCUMENTS])
    yield db
    loop.run_until_complete(conn.close())
    loop.close()


def sql_rows(db: Database, query: Query, table: str = "twins") -> list[Any]:
    sql = to_sql(query, Flavour.POSTGRESQL)
    return [sql.row(r) for r in db.fetch(sql.statement(table), *sql.params)]


def check_same_rows(db: Database, query: Query, documents: list[Any], table: str = "twins") -> None:
    expected = run(Query(query.select, query.from_, query.where, query.group_by), documents)
    got = sql_rows(db, query, table)
    if query.top is None:
        assert row_multiset(got) == row_multiset(expected)
    else:
        assert len(got) == min(query.top, len(expected))
        remaining = row_multiset(expected)
        for row in row_multiset(got):
            remaining.remove(row)


def test_the_server_answers_like_the_evaluator_on_fixed_queries(database: Database) -> None:
    for text in [
        "SELECT * FROM devices WHERE tags.a = 1",
        "SELECT deviceId, tags.s AS s FROM devices WHERE STARTSWITH(tags.s, 'a') OR ENDSWITH(tags.b, 'b')",
        "SELECT tags.a, COUNT() AS n FROM devices GROUP BY tags.a",
        "SELECT COUNT() AS n FROM devices WHERE NOT (tags.a IN [1, 'a', null])",
    ]:
        query = parse(text)
        assert run(query, DOCUMENTS), f"{text} selects something"
        check_same_rows(database, query, DOCUMENTS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool_queries)
@example(parse("SELECT * FROM devices WHERE version = 9007199254740993"))
@example(parse("SELECT * FROM devices WHERE version > 9007199254740992.0"))
@example(parse("SELECT * FROM devices WHERE tags.a < tags.b"))
@example(parse("SELECT * FROM devices WHERE tags.s > 'B' AND tags.s < 'é'"))
@example(parse("SELECT tags.a AS x, tags.b.s FROM devices WHERE tags.a NIN [1, 'a', null, true]"))
def test_postgres_selects_what_the_evaluator_selects(database: Database, query: Query) -> None:
    check_same_rows(database, query, DOCUMENTS)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(twin_documents, pool_queries)
def test_postgres_agrees_on_generated_document_sets(
    database: Database, documents: list[Any], query: Query
) -> None:
    database.execute("TRUNCATE t")
    database.execute("INSERT INTO t (doc) SELECT unnest($1::jsonb[])", [json.dumps(d) for d in documents])
    check_same_rows(database, query, documents, table="t")


def test_a_long_chain_and_deep_nesting_run(database: Database) -> None:
    check_same_rows(
        database,
        parse("SELECT * FROM devices WHERE " + " OR ".join(["a=1"] * 1100 + ["tags.a=1"])),
        DOCUMENTS,
    )
    condition = "tags.a = 1"
    for i in range(16):
        condition = f"NOT (({condition}) OR tags.b = {i})"
    check_same_rows(database, parse(f"SELECT * FROM devices WHERE {condition}"), DOCUMENTS)


@pytest.fixture(scope="module")
def icu_database(database: Database, postgres_url: str) -> Iterator[Database]:
    """A database whose default collation is ICU's en-US, where 'B' > 'a' (most servers run with a
    linguistic locale; the session's server is initdb --locale=C)."""
    name = f"query_icu_{os.getpid()}"
    database.execute(
        f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE "
        f"'en-US' LOCALE 'C'"
    )
    conn = database.loop.run_until_complete(asyncpg.connect(postgres_url.rsplit("/", 1)[0] + f"/{name}"))
    db = Database(database.loop, conn)
    db.execute("CREATE TABLE twins (id serial PRIMARY KEY, doc jsonb NOT NULL)")
    db.execute("INSERT INTO twins (doc) SELECT unnest($1::jsonb[])", [json.dumps(d) for d in DOCUMENTS])
    yield db
    database.loop.run_until_complete(conn.close())
    database.execute(f"DROP DATABASE {name}")


def test_string_order_is_by_code_point_whatever_the_databases_collation(icu_database: Database) -> None:
    assert icu_database.fetch("SELECT 'B' > 'a', 'é' < 'z'") == [(True, True)], "the collation is linguistic"
    linguistic = icu_database.fetch("SELECT count(*) FROM twins WHERE doc #>> '{tags,s}' > 'B'")[0][0]
    query = parse("SELECT * FROM devices WHERE tags.s > 'B'")
    assert linguistic != len(run(query, DOCUMENTS)), "the plain comparison would differ"
    for text in [
        "SELECT * FROM devices WHERE tags.s > 'B'",
        "SELECT * FROM devices WHERE tags.s < 'é' AND tags.s >= 'A'",
        "SELECT * FROM devices WHERE tags.s <= tags.b",
        "SELECT deviceId FROM devices WHERE STARTSWITH(tags.s, 'a') OR ENDSWITH(tags.s, 'B')",
    ]:
        check_same_rows(icu_database, parse(text), DOCUMENTS)


def test_where_sql_with_the_callers_own_parameters(database: Database) -> None:
    query = parse("SELECT * FROM devices WHERE tags.a IN [1, 2] AND status = 'enabled'")
    where, params = where_sql(query.where, Flavour.POSTGRESQL, doc_column="twins.doc", first_param=2)
    ids = [
        r[0]
        for r in database.fetch(f"SELECT id FROM twins WHERE id > $1 AND {where} ORDER BY id", 10, *params)
    ]
    expected = [i + 1 for i, d in enumerate(DOCUMENTS) if i + 1 > 10 and run(query, [d])]
    assert ids == expected
    assert expected
