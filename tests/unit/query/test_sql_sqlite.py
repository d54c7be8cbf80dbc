"""The SQLite translation, run for real on an in-memory database: it selects the documents and
builds the rows the in-memory evaluator does, for generated documents and generated queries."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from methodhub.query import Flavour, Query, parse, run, to_sql, where_sql
from tests.unit.query.strategies import pool_queries, random_twins, row_multiset, twin_documents

DOCUMENTS = random_twins(seed=12, count=300)


@pytest.fixture(scope="module")
def database() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE twins (id INTEGER PRIMARY KEY, doc TEXT NOT NULL)")
    db.executemany("INSERT INTO twins (doc) VALUES (?)", [(json.dumps(d),) for d in DOCUMENTS])
    yield db
    db.close()


def sql_rows(db: sqlite3.Connection, query: Query, table: str = "twins") -> list[Any]:
    sql = to_sql(query, Flavour.SQLITE)
    return [sql.row(r) for r in db.execute(sql.statement(table), sql.params)]


def check_same_rows(db: sqlite3.Connection, query: Query, documents: list[Any], table: str = "twins") -> None:
    expected = run(Query(query.select, query.from_, query.where, query.group_by), documents)
    got = sql_rows(db, query, table)
    if query.top is None:
        assert row_multiset(got) == row_multiset(expected)
    else:
        assert len(got) == min(query.top, len(expected))
        remaining = row_multiset(expected)
        for row in row_multiset(got):
            remaining.remove(row)  # each SQL row is one of the evaluator's


def test_the_documents_are_varied_enough() -> None:
    """The cross-check means something only if the generated queries select some documents and
    not others; these fixed ones must."""
    for text, low, high in [
        ("SELECT * FROM devices WHERE tags.a = 1", 5, 100),
        ("SELECT * FROM devices WHERE IS_DEFINED(tags.s)", 50, 250),
        ("SELECT * FROM devices WHERE STARTSWITH(tags.a, 'a')", 5, 100),
        ("SELECT * FROM devices WHERE NOT (properties.desired.b > 0)", 5, 200),
    ]:
        assert low <= len(run(parse(text), DOCUMENTS)) <= high, text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool_queries)
@example(parse("SELECT * FROM devices WHERE version = 9007199254740993"))
@example(parse("SELECT * FROM devices WHERE version > 9007199254740992.0"))
@example(parse("SELECT * FROM devices WHERE tags.a = tags.b"))
@example(parse("SELECT tags.a, COUNT() AS n FROM devices GROUP BY tags.a"))
@example(parse("SELECT tags.a AS x, tags.b.s FROM devices WHERE tags.a IN [1, 'a', null, true]"))
@example(parse("SELECT COUNT() FROM devices WHERE ENDSWITH(tags.s, '') OR STARTSWITH(tags.a, 'é')"))
def test_sqlite_selects_what_the_evaluator_selects(database: sqlite3.Connection, query: Query) -> None:
    check_same_rows(database, query, DOCUMENTS)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(twin_documents, pool_queries)
def test_sqlite_agrees_on_generated_document_sets(documents: list[Any], query: Query) -> None:
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE TABLE t (doc TEXT)")
        db.executemany("INSERT INTO t VALUES (?)", [(json.dumps(d),) for d in documents])
        check_same_rows(db, query, documents, table="t")
    finally:
        db.close()


def test_a_long_chain_stays_within_sqlites_expression_depth(database: sqlite3.Connection) -> None:
    """A left-deep chain of 1100 ORs is deeper than SQLite's limit of 1000; the SQL is balanced."""
    chain = " OR ".join(["a=1"] * 1100 + ["tags.a=1"])
    query = parse(f"SELECT * FROM devices WHERE {chain}")
    assert len(run(query, DOCUMENTS)) > 0
    check_same_rows(database, query, DOCUMENTS)


def test_deep_nesting_runs(database: sqlite3.Connection) -> None:
    condition = "tags.a = 1"
    for i in range(16):  # 3 levels each, and one more: 49 of MAX_NESTING (50)
        condition = f"NOT (({condition}) OR tags.b = {i})"
    check_same_rows(database, parse(f"SELECT * FROM devices WHERE {condition}"), DOCUMENTS)


def test_where_sql_for_a_callers_own_statement(database: sqlite3.Connection) -> None:
    query = parse("SELECT * FROM devices WHERE tags.a IN [1, 2] AND status = 'enabled'")
    where, params = where_sql(query.where, Flavour.SQLITE, doc_column="twins.doc", first_param=2)
    statement = f"SELECT id FROM twins WHERE id > ?1 AND {where} ORDER BY id"
    ids = [row[0] for row in database.execute(statement, (10, *params))]
    expected = [i + 1 for i, d in enumerate(DOCUMENTS) if i + 1 > 10 and run(query, [d])]
    assert ids == expected
    assert expected, "the documents have matches"
    assert where_sql(None, Flavour.SQLITE) == ("1", ())


def test_where_params_alone_fit_the_where(database: sqlite3.Connection) -> None:
    sql = to_sql(parse("SELECT deviceId, tags.s FROM devices WHERE tags.a = 1"), Flavour.SQLITE)
    count = database.execute(f"SELECT COUNT(*) FROM twins WHERE {sql.where}", sql.where_params).fetchone()[0]
    assert count == len(run(parse("SELECT * FROM devices WHERE tags.a = 1"), DOCUMENTS))
    assert len(sql.params) > len(sql.where_params)


USER_TEXT = (
    "SELECT tags.drop-table FROM devices WHERE tags.zz = 'x\\'); DROP TABLE twins; --' "
    "OR STARTSWITH(tags.pp, '%_') OR tags.qq IN ['it\\'s', 4242] OR tags.ww > 12345.5 OR tags.bb = true"
)


def test_paths_and_values_are_bound_never_written_into_the_sql(database: sqlite3.Connection) -> None:
    sql = to_sql(parse(USER_TEXT), Flavour.SQLITE)
    statement = sql.statement("twins")
    for user_text in ("drop-table", "DROP TABLE", "zz", "%_", "it's", "qq", "ww", "4242", "12345"):
        assert user_text not in statement
    assert sql.params == (
        "x'); DROP TABLE twins; --",
        '$."tags"."zz"',
        "%_",
        '$."tags"."pp"',
        "it's",
        '$."tags"."qq"',
        4242,
        12345.5,
        '$."tags"."ww"',
        1,
        '$."tags"."bb"',
        '$."tags"."drop-table"',
    )
    assert sql.where_param_count == 11
    assert sql_rows(database, parse(USER_TEXT)) == []
    assert database.execute("SELECT COUNT(*) FROM twins").fetchone()[0] == len(DOCUMENTS)


def test_placeholders_are_numbered_from_first_param() -> None:
    sql = to_sql(
        parse("SELECT tags.a FROM devices WHERE tags.a = 'x' OR tags.b = tags.a"),
        Flavour.SQLITE,
        first_param=5,
    )
    assert sql.params == ("x", '$."tags"."a"', '$."tags"."b"')
    assert "?5" in sql.where and "?6" in sql.where and "?7" in sql.where
    assert "?4" not in sql.where and "?8" not in sql.where
    assert sql.columns == ("json_type(doc, ?6)", "json_extract(doc, ?6)"), "the WHERE's own binding of tags.a"
    with pytest.raises(ValueError, match="numbered from 1"):
        to_sql(parse("SELECT * FROM devices"), Flavour.SQLITE, first_param=0)


def test_statement_pieces() -> None:
    sql = to_sql(parse("SELECT TOP 3 tags.a AS x, COUNT() AS n FROM devices GROUP BY tags.a"), Flavour.SQLITE)
    klass = (
        "(CASE json_type(doc, ?1) WHEN 'integer' THEN 'real' WHEN 'false' THEN 'true' "
        "ELSE json_type(doc, ?1) END)"
    )
    assert sql.columns == (klass, "json_extract(doc, ?1)", "COUNT(*)")
    assert sql.group_by == (klass, "json_extract(doc, ?1)")
    assert sql.where == "1"
    assert sql.limit == 3
    assert sql.statement("twins") == (
        f"SELECT {klass}, json_extract(doc, ?1), COUNT(*) FROM twins WHERE 1 "
        f"GROUP BY {klass}, json_extract(doc, ?1) LIMIT 3"
    )
    assert sql.row(("text", "a", 4)) == {"x": "a", "n": 4}
    assert sql.row((None, None, 2)) == {"n": 2}
    assert sql.row(("true", 0, 1)) == {"x": False, "n": 1}
    assert sql.row(("object", '{"k":[1]}', 1)) == {"x": {"k": [1]}, "n": 1}
