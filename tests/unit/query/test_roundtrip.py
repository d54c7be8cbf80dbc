"""Render and parse are inverses (generated ASTs -> text -> the same AST), and the parser fails only
with QuerySyntaxError, at a position inside the text, whatever it is given."""

from __future__ import annotations

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from methodhub.query import (
    Collection,
    Literal,
    Query,
    QuerySyntaxError,
    parse,
    parse_condition,
    parse_job_condition,
    render,
    render_condition,
    render_value,
)
from methodhub.query.parser import MAX_QUERY_LENGTH
from tests.unit.query.strategies import conditions, literal_values, queries, renders_within_limit

_settings = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(queries())
def test_render_then_parse_gives_the_same_query(query: Query) -> None:
    assume(renders_within_limit(query))
    text = render(query)
    assert parse(text) == query
    assert render(parse(text)) == text


@_settings
@given(st.sampled_from(Collection), st.data())
def test_conditions_round_trip_on_their_own(collection: Collection, data: st.DataObject) -> None:
    condition = data.draw(conditions(collection))
    text = render_condition(condition)
    assume(len(text) <= MAX_QUERY_LENGTH)
    assert parse_condition(text, collection) == condition
    if collection is Collection.DEVICES:
        assert parse_job_condition(text) == condition


@_settings
@given(literal_values)
@example(1e-05)
@example(1e22)
@example(-0.0)
@example(5e-324)
@example("\\'\"")
def test_every_constant_round_trips_exactly(value: object) -> None:
    text = f"SELECT * FROM devices WHERE x = {render_value(value)}"
    assume(len(text) <= MAX_QUERY_LENGTH)
    where = parse(text).where
    assert where is not None
    right = where.right
    assert right == Literal(value)
    assert type(right.value) is type(value)


_QUERY_ALPHABET = st.sampled_from(
    list("SELECTFROMWHEREdevicesjobmodulesANDORNOTIN*.,()[]'\"\\=<>!-0x19 $_éa\t\n")
)


def _check_failure(text: str, error: QuerySyntaxError) -> None:
    assert 0 <= error.position <= len(text)
    assert error.message.startswith(f"at position {error.position}: ")
    assert error.expected


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=60), st.text(_QUERY_ALPHABET, max_size=60)))
def test_the_parser_fails_only_with_a_positioned_syntax_error(text: str) -> None:
    for parser in (parse, parse_job_condition, parse_condition):
        try:
            parser(text)
        except QuerySyntaxError as error:
            _check_failure(text, error)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queries(), st.data())
def test_damaged_queries_fail_cleanly_or_parse(query: Query, data: st.DataObject) -> None:
    text = render(query)
    assume(len(text) < MAX_QUERY_LENGTH)
    at = data.draw(st.integers(min_value=0, max_value=len(text)))
    cut = data.draw(st.integers(min_value=0, max_value=3))
    insert = data.draw(st.sampled_from(["", "(", ")", "'", '"', ",", "AND", "[", "\\", "-", ".", "$"]))
    damaged = text[:at] + insert + text[at + cut :]
    try:
        parsed = parse(damaged)
    except QuerySyntaxError as error:
        _check_failure(damaged, error)
    else:
        assert parse(render(parsed)) == parsed


def test_rendering_is_canonical() -> None:
    text = 'select * from Devices where not (a<>1 or b = "x\'y") and (c=1 and d=2) or e=1.50 and f=0x10'
    assert render(parse(text)) == (
        "SELECT * FROM devices WHERE NOT (a != 1 OR b = 'x\\'y') AND (c = 1 AND d = 2) OR e = 1.5 AND f = 16"
    )
    assert render(parse("select top 2 DEVICEID as id, tags.a from devices.modules")) == (
        "SELECT TOP 2 deviceId AS id, tags.a FROM devices.modules"
    )
    assert render_value(1e-05) == "0.00001"
    assert render_value(1e22) == "10000000000000000000000.0"
