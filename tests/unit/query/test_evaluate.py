"""The reference semantics (docs/query.md, "Semantics"): three-valued conditions, typed comparisons,
IN as equalities, the functions, projections, COUNT and GROUP BY."""

from __future__ import annotations

from typing import Any

import pytest

from methodhub.query import (
    UNDEFINED,
    Comparison,
    ComparisonOp,
    Literal,
    Path,
    compare,
    evaluate,
    json_kind,
    matches,
    parse,
    parse_condition,
    project,
    resolve,
    run,
)

TWIN: dict[str, Any] = {
    "deviceId": "dev1",
    "status": "enabled",
    "version": 4,
    "tags": {"location": {"region": "US", "plant": "Redmond43"}, "floor": 3, "ok": True, "none": None},
    "properties": {
        "desired": {"x": 1, "$version": 7, "$metadata": {"$lastUpdated": "2026-11-22T10:00:00Z"}},
        "reported": {"x": 1.0, "fw": "1.2.3", "list": [1, 2], "conn": {"type": "wifi"}},
    },
}


def outcome(condition: str, document: Any = TWIN) -> bool | None:
    return evaluate(parse_condition(condition), document)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("deviceId", "dev1"),
        ("tags.location.region", "US"),
        ("properties.desired.$version", 7),
        ("properties.desired.$metadata.$lastUpdated", "2026-11-22T10:00:00Z"),
        ("tags.none", None),
        ("tags.missing", UNDEFINED),
        ("tags.floor.x", UNDEFINED),
        ("properties.reported.list.x", UNDEFINED),
        ("Tags", UNDEFINED),
    ],
)
def test_resolve(path: str, value: object) -> None:
    assert resolve(TWIN, Path(tuple(path.split(".")))) == value or value is UNDEFINED
    assert (resolve(TWIN, Path(tuple(path.split(".")))) is UNDEFINED) == (value is UNDEFINED)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("tags.floor = 3", True),
        ("tags.floor = 3.0", True),
        ("properties.desired.x = properties.reported.x", True),
        ("tags.floor != 3", False),
        ("tags.floor <> 4", True),
        ("tags.floor < 3.5", True),
        ("tags.floor >= 3", True),
        ("tags.floor > 3", False),
        ("deviceId = 'dev1'", True),
        ("deviceId = 'DEV1'", False),
        ("deviceId < 'dev2'", True),
        ("'B' < 'a'", True),
        ("'é' > 'z'", True),
        ("'😀' > '\uffff'", True),
        ("'' < 'a'", True),
        ("tags.ok = true", True),
        ("false < true", True),
        ("tags.ok > false", True),
        ("tags.none = null", True),
        ("tags.none != null", False),
        ("tags.none <= null", True),
        ("tags.none < null", False),
        ("1 = 1", True),
        ("1 = 2", False),
    ],
)
def test_comparisons_of_one_kind(condition: str, expected: bool) -> None:
    assert outcome(condition) is expected


@pytest.mark.parametrize(
    "condition",
    [
        "tags.missing = 1",
        "tags.missing != 1",
        "tags.missing = null",
        "tags.missing = tags.missing",
        "tags.floor = '3'",
        "tags.floor != '3'",
        "deviceId != 5",
        "tags.ok = 1",
        "tags.none = 0",
        "tags.none != 'x'",
        "tags.location = tags.location",
        "properties.reported.list = 1",
        "1 = '1'",
        "null = false",
    ],
)
def test_comparisons_with_undefined_or_across_kinds_are_undefined(condition: str) -> None:
    assert outcome(condition) is None
    assert not matches(parse_condition(condition), TWIN)
    assert outcome(f"NOT ({condition})") is None, "NOT undefined stays undefined"


def test_compare_directly() -> None:
    assert compare(ComparisonOp.EQ, UNDEFINED, UNDEFINED) is None
    assert compare(ComparisonOp.LT, 1, 2.5) is True
    assert compare(ComparisonOp.EQ, {"a": 1}, {"a": 1}) is None
    assert compare(ComparisonOp.EQ, True, 1) is None


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("tags.floor IN [1, 2, 3]", True),
        ("tags.floor IN [1, 2]", False),
        ("tags.floor NIN [1, 2]", True),
        ("tags.floor IN [3.0]", True),
        ("tags.floor IN ['a', 3]", True),
        ("tags.floor IN ['a', 4]", None),
        ("tags.floor NIN ['a', 4]", None),
        ("tags.floor IN ['3']", None),
        ("tags.missing IN [1]", None),
        ("tags.missing NIN [1]", None),
        ("tags.none IN [null]", True),
        ("tags.none IN [1, null]", True),
        ("tags.location IN ['US']", None),
        ("deviceId IN ['dev1', 'dev2']", True),
        ("deviceId NIN ['dev1', 'dev2']", False),
    ],
)
def test_in_is_a_chain_of_equalities(condition: str, expected: bool | None) -> None:
    assert outcome(condition) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("IS_DEFINED(tags.none)", True),
        ("IS_DEFINED(tags.location)", True),
        ("IS_DEFINED(tags.missing)", False),
        ("IS_DEFINED(properties.reported.list.x)", False),
        ("NOT IS_DEFINED(tags.missing)", True),
        ("STARTSWITH(properties.reported.fw, '1.2')", True),
        ("STARTSWITH(properties.reported.fw, '')", True),
        ("STARTSWITH(deviceId, 'DEV')", False),
        ("ENDSWITH(deviceId, 'v1')", True),
        ("ENDSWITH(deviceId, 'xdev1')", False),
        ("STARTSWITH(tags.floor, '3')", None),
        ("ENDSWITH(tags.missing, '')", None),
        ("NOT STARTSWITH(tags.none, 'a')", None),
    ],
)
def test_functions(condition: str, expected: bool | None) -> None:
    assert outcome(condition) is expected


T, F, U = "1 = 1", "1 = 2", "tags.missing = 1"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (f"{T} AND {T}", True),
        (f"{T} AND {F}", False),
        (f"{T} AND {U}", None),
        (f"{F} AND {U}", False),
        (f"{U} AND {F}", False),
        (f"{U} AND {U}", None),
        (f"{T} OR {U}", True),
        (f"{U} OR {T}", True),
        (f"{F} OR {U}", None),
        (f"{F} OR {F}", False),
        (f"NOT {T}", False),
        (f"NOT {F}", True),
        (f"NOT {U}", None),
        (f"NOT ({F} AND {U})", True),
        (f"NOT ({T} OR {U})", False),
    ],
)
def test_logic_is_three_valued(condition: str, expected: bool | None) -> None:
    assert outcome(condition) is expected
    assert matches(parse_condition(condition), TWIN) is (expected is True)


def test_no_where_matches_everything() -> None:
    assert matches(None, {})


def test_json_kinds() -> None:
    values: tuple[object, ...] = (None, True, 0, 1.5, "", {}, [])
    assert [json_kind(v) for v in values] == [
        "null",
        "boolean",
        "number",
        "number",
        "string",
        "object",
        "array",
    ]
    with pytest.raises(TypeError, match="not a JSON value: set"):
        json_kind(set())


def test_select_star_rows_are_the_documents() -> None:
    query = parse("SELECT * FROM devices WHERE tags.floor = 3")
    assert run(query, [TWIN, {"deviceId": "dev2"}]) == [TWIN]
    assert project(query, TWIN) is TWIN


def test_projection_rows_leave_out_undefined_values() -> None:
    query = parse(
        "SELECT DeviceId, tags.location AS loc, properties.reported.fw, tags.missing, tags.none FROM devices"
    )
    assert project(query, TWIN) == {
        "deviceId": "dev1",
        "loc": {"region": "US", "plant": "Redmond43"},
        "fw": "1.2.3",
        "none": None,
    }
    assert list(project(query, TWIN)) == ["deviceId", "loc", "fw", "none"]
    assert project(query, {"tags": 5}) == {}


def test_top_cuts_the_rows() -> None:
    docs = [{"deviceId": f"d{i}"} for i in range(5)]
    assert run(parse("SELECT TOP 2 deviceId FROM devices"), docs) == [{"deviceId": "d0"}, {"deviceId": "d1"}]
    assert run(parse("SELECT TOP 0 * FROM devices"), docs) == []
    assert len(run(parse("SELECT TOP 9 * FROM devices"), docs)) == 5


def test_count_without_group_by_is_one_row_even_for_no_documents() -> None:
    docs = [{"status": "enabled"}, {"status": "disabled"}, {"status": "enabled"}]
    assert run(parse("SELECT COUNT() AS n FROM devices WHERE status = 'enabled'"), docs) == [{"n": 2}]
    assert run(parse("SELECT COUNT() AS n FROM devices WHERE status = 'x'"), docs) == [{"n": 0}]
    assert run(parse("SELECT COUNT(), COUNT() AS all, COUNT() FROM devices"), docs) == [
        {"$1": 3, "all": 3, "$2": 3}
    ]
    with pytest.raises(ValueError, match="aggregate"):
        project(parse("SELECT COUNT() FROM devices"), {})


def test_group_by_the_docs_example() -> None:
    statuses = ["Success", "Success", "Pending", "Success", "Error", "Pending"]
    docs = [{"properties": {"reported": {"telemetryConfig": {"status": s}}}} for s in statuses]
    query = parse(
        "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices "
        "FROM devices GROUP BY properties.reported.telemetryConfig.status"
    )
    assert run(query, docs) == [
        {"status": "Success", "numberOfDevices": 3},
        {"status": "Pending", "numberOfDevices": 2},
        {"status": "Error", "numberOfDevices": 1},
    ]


def test_group_keys_are_typed_values() -> None:
    docs: list[dict[str, Any]] = [
        {"t": {"v": 1}},
        {"t": {"v": 1.0}},
        {"t": {"v": "1"}},
        {"t": {"v": True}},
        {"t": {"v": None}},
        {"t": {}},
        {"t": {"v": {"b": 1, "a": 2}}},
        {"t": {"v": {"a": 2, "b": 1}}},
        {},
    ]
    rows = run(
        parse("SELECT tags.v, COUNT() AS n FROM devices GROUP BY tags.v"),
        [{"tags": d.get("t")} for d in docs],
    )
    assert rows == [
        {"v": 1, "n": 2},
        {"v": "1", "n": 1},
        {"v": True, "n": 1},
        {"v": None, "n": 1},
        {"n": 2},
        {"v": {"b": 1, "a": 2}, "n": 2},
    ]


def test_group_by_several_paths_and_where() -> None:
    docs = [
        {"tags": {"site": "a", "kind": "x"}, "status": "enabled"},
        {"tags": {"site": "a", "kind": "y"}, "status": "enabled"},
        {"tags": {"site": "a", "kind": "x"}, "status": "enabled"},
        {"tags": {"site": "b", "kind": "x"}, "status": "disabled"},
    ]
    query = parse(
        "SELECT tags.site, tags.kind, COUNT() AS n FROM devices WHERE status = 'enabled' GROUP BY "
        "tags.site, tags.kind"
    )
    assert run(query, docs) == [{"site": "a", "kind": "x", "n": 2}, {"site": "a", "kind": "y", "n": 1}]
    query = parse("SELECT tags.site FROM devices GROUP BY tags.site")
    assert run(query, docs) == [{"site": "a"}, {"site": "b"}]


def test_job_rows_with_the_documented_created_time_alias() -> None:
    rows = [
        {
            "deviceId": "d1",
            "jobId": "j1",
            "status": "completed",
            "createdDateTimeUtc": "2026-11-22T10:00:00Z",
        },
        {"deviceId": "d2", "jobId": "j1", "status": "failed", "createdDateTimeUtc": "2015-01-01T00:00:00Z"},
        {
            "deviceId": "d3",
            "jobId": "j2",
            "status": "completed",
            "createdDateTimeUtc": "2026-11-22T10:00:00Z",
        },
    ]
    query = parse(
        "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'j1' AND devices.jobs.createdTimeUtc "
        "> '2016-09-01'"
    )
    assert run(query, rows) == [rows[0]]


def test_literal_on_the_left() -> None:
    assert evaluate(Comparison(ComparisonOp.LT, Literal(2), Path(("tags", "floor"))), TWIN) is True
    assert outcome("5 > tags.floor") is True
