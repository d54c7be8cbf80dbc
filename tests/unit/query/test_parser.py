"""The parser: every construct of the grammar, every query the SDKs, jobs and docs send, and the
errors (position, what was expected, the sentence)."""

from __future__ import annotations

import pytest

from methodhub.query import (
    MAX_NESTING,
    MAX_QUERY_LENGTH,
    STAR,
    And,
    Collection,
    Comparison,
    ComparisonOp,
    CountProjection,
    InList,
    IsDefined,
    Literal,
    Not,
    Or,
    Path,
    PathProjection,
    Query,
    QuerySyntaxError,
    TextFunction,
    TextMatch,
    parse,
    parse_condition,
    parse_job_condition,
)


def p(dotted: str) -> Path:
    return Path(tuple(dotted.split(".")))


def eq(path: str, value: object) -> Comparison:
    return Comparison(ComparisonOp.EQ, p(path), Literal(value))


def where(text: str) -> object:
    query = parse(f"SELECT * FROM devices WHERE {text}")
    return query.where


# --- constructs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "collection"),
    [
        ("SELECT * FROM devices", Collection.DEVICES),
        ("select * from devices.modules", Collection.MODULES),
        ("SeLeCt * FrOm Devices.Jobs", Collection.JOBS),
        ("SELECT*FROM devices", Collection.DEVICES),
        ("  SELECT\n*\tFROM   devices . modules  ", Collection.MODULES),
    ],
)
def test_select_star_from_each_collection(text: str, collection: Collection) -> None:
    assert parse(text) == Query(STAR, collection)


def test_projections_with_aliases_and_count() -> None:
    query = parse("SELECT deviceId, tags.location AS loc, properties.reported.x FROM devices")
    assert query.select == (
        PathProjection(p("deviceId")),
        PathProjection(p("tags.location"), "loc"),
        PathProjection(p("properties.reported.x")),
    )
    assert parse("SELECT COUNT() AS n FROM devices").select == (CountProjection("n"),)
    assert parse("select count() from devices").select == (CountProjection(None),)


def test_top() -> None:
    assert parse("SELECT TOP 10 deviceId FROM devices").top == 10
    assert parse("SELECT top 0 * FROM devices").top == 0
    assert parse("SELECT TOP 0x10 * FROM devices").top == 16


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ("=", ComparisonOp.EQ),
        ("!=", ComparisonOp.NE),
        ("<>", ComparisonOp.NE),
        ("<", ComparisonOp.LT),
        ("<=", ComparisonOp.LE),
        (">", ComparisonOp.GT),
        (">=", ComparisonOp.GE),
    ],
)
def test_every_comparison_operator(op: str, expected: ComparisonOp) -> None:
    assert where(f"x {op} 1") == Comparison(expected, p("x"), Literal(1))
    assert where(f"x{op}1") == Comparison(expected, p("x"), Literal(1))


def test_operands_can_be_paths_or_constants_on_either_side() -> None:
    assert where("5 < x") == Comparison(ComparisonOp.LT, Literal(5), p("x"))
    assert where("a.b = c.d") == Comparison(ComparisonOp.EQ, p("a.b"), p("c.d"))
    assert where("1 = 1") == Comparison(ComparisonOp.EQ, Literal(1), Literal(1))


def test_in_and_nin() -> None:
    assert where("x IN ['a', 1, true, null]") == InList(
        p("x"), (Literal("a"), Literal(1), Literal(True), Literal(None))
    )
    assert where("x nin [2]") == InList(p("x"), (Literal(2),), negated=True)


def test_precedence_not_then_and_then_or() -> None:
    assert where("a = 1 OR b = 2 AND NOT c = 3") == Or((eq("a", 1), And((eq("b", 2), Not(eq("c", 3))))))
    assert where("(a = 1 OR b = 2) AND c = 3") == And((Or((eq("a", 1), eq("b", 2))), eq("c", 3)))
    assert where("NOT (a = 1 AND b = 2)") == Not(And((eq("a", 1), eq("b", 2))))
    assert where("NOT NOT a = 1") == Not(Not(eq("a", 1)))
    assert where("a = 1 and b = 2 and c = 3") == And((eq("a", 1), eq("b", 2), eq("c", 3)))
    assert where("a = 1 AND (b = 2 AND c = 3)") == And((eq("a", 1), And((eq("b", 2), eq("c", 3)))))
    assert where("((a = 1))") == eq("a", 1)


def test_functions_are_case_insensitive() -> None:
    assert where("is_defined(properties.reported.x)") == IsDefined(p("properties.reported.x"))
    assert where("StartsWith(deviceId, 'dev')") == TextMatch(TextFunction.STARTSWITH, p("deviceId"), "dev")
    assert where('ENDSWITH(tags.name, "-01")') == TextMatch(TextFunction.ENDSWITH, p("tags.name"), "-01")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("'abc'", "abc"),
        ('"abc"', "abc"),
        ("''", ""),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'a\"b'", 'a"b'),
        ('"a\'b"', "a'b"),
        ("'back\\\\slash'", "back\\slash"),
        ("'\\u00e9\\u00C9'", "éÉ"),
        ("'\\ud83d\\ude00'", "😀"),
        ("'😀 raw'", "😀 raw"),
        ("'\\/\\b\\f\\n\\r\\t'", "/\b\f\n\r\t"),
        ("'line\nbreak'", "line\nbreak"),
        ("5", 5),
        ("-5", -5),
        ("007", 7),
        ("1.25", 1.25),
        ("-0.5", -0.5),
        ("2.0", 2.0),
        ("0x1F", 31),
        ("0XfF", 255),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
        ("true", True),
        ("FALSE", False),
        ("Null", None),
    ],
)
def test_constants(text: str, value: object) -> None:
    condition = where(f"x = {text}")
    assert isinstance(condition, Comparison)
    assert condition.right == Literal(value)
    assert type(condition.right.value) is type(value)


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("properties.reported.firmware", ("properties", "reported", "firmware")),
        ("tags.location.region", ("tags", "location", "region")),
        ("properties.desired.$version", ("properties", "desired", "$version")),
        ("properties.desired.$metadata.$lastUpdated", ("properties", "desired", "$metadata", "$lastUpdated")),
        ("tags.serial-no", ("tags", "serial-no")),
        ("tags.from.in.count", ("tags", "from", "in", "count")),
        ("tags.Größe", ("tags", "Größe")),
        ("_x", ("_x",)),
        ("$version", ("$version",)),
        ("tags . a", ("tags", "a")),
    ],
)
def test_paths(text: str, segments: tuple[str, ...]) -> None:
    assert where(f"{text} = 1") == Comparison(ComparisonOp.EQ, Path(segments), Literal(1))


def test_top_level_system_names_match_in_any_case_deeper_segments_do_not() -> None:
    assert where("DeviceId = 'a'") == eq("deviceId", "a")
    assert where("CONNECTIONSTATE = 'Connected'") == eq("connectionState", "Connected")
    assert where("Tags.Location = 'x'") == eq("tags.Location", "x")
    assert where("properties.Reported.x = 1") == eq("properties.Reported.x", 1)
    assert where("myTag = 1") == eq("myTag", 1)


def test_group_by_one_or_several_paths() -> None:
    query = parse(
        "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices "
        "FROM devices GROUP BY properties.reported.telemetryConfig.status"
    )
    assert query.group_by == (p("properties.reported.telemetryConfig.status"),)
    assert query.select == (
        PathProjection(p("properties.reported.telemetryConfig.status"), "status"),
        CountProjection("numberOfDevices"),
    )
    query = parse("SELECT tags.a, tags.b, COUNT() FROM devices GROUP BY tags.a, tags.b")
    assert query.group_by == (p("tags.a"), p("tags.b"))
    assert parse("SELECT COUNT() AS n FROM devices GROUP BY tags.a").group_by == (p("tags.a"),)


def test_devices_jobs_prefix_and_created_time_alias() -> None:
    query = parse(
        "SELECT * FROM devices.jobs WHERE devices.jobs.deviceId = 'x' AND devices.jobs.jobType = "
        "'scheduleTwinUpdate' AND devices.jobs.status = 'completed' AND devices.jobs.createdTimeUtc "
        "> '2016-09-01'"
    )
    assert query.where == And(
        (
            eq("deviceId", "x"),
            eq("jobType", "scheduleTwinUpdate"),
            eq("status", "completed"),
            Comparison(ComparisonOp.GT, p("createdDateTimeUtc"), Literal("2016-09-01")),
        )
    )
    assert parse("SELECT * FROM devices.jobs WHERE Devices.Jobs.JobId='x'").where == eq("jobId", "x")
    assert parse("SELECT * FROM devices.jobs WHERE outcome.deviceMethodResponse.status = 200").where == eq(
        "outcome.deviceMethodResponse.status", 200
    )


def test_item_types() -> None:
    assert parse("SELECT * FROM devices").item_type == "Twin"
    assert parse("SELECT * FROM devices.modules").item_type == "Twin"
    assert parse("SELECT * FROM devices.jobs").item_type == "DeviceJob"
    assert parse("SELECT deviceId FROM devices").item_type == "Raw"
    assert parse("SELECT COUNT() FROM devices").item_type == "Raw"


# --- what the SDKs, jobs and docs send (wire reference §4.5, §1.8, §4.4) ------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "SELECT * FROM devices WHERE tags.building = '43'",
        "SELECT * FROM devices WHERE properties.reported.telemetryConfig.status = 'Pending'",
        "SELECT * FROM devices WHERE tags.location.region = 'US'",
        "SELECT * FROM devices WHERE tags.location.region = 'US' "
        "AND properties.reported.telemetryConfig.sendFrequencyInSecs >= 60",
        "SELECT * FROM devices WHERE properties.reported.connectivity IN ['wired', 'wifi']",
        "SELECT * FROM devices WHERE is_defined(properties.reported.connectivity)",
        "SELECT * FROM devices WHERE status = 'enabled' AND connectionState = 'Disconnected'",
        "SELECT DeviceId, LastActivityTime FROM devices WHERE status = 'enabled' AND connectionState "
        "= 'Disconnected'",
        "SELECT LastActivityTime FROM devices WHERE status = 'enabled'",
        "SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning' "
        "AND deviceId IN ['device1', 'device2']",
        "SELECT properties.reported.telemetryConfig.status AS status, COUNT() AS numberOfDevices "
        "FROM devices "
        "GROUP BY properties.reported.telemetryConfig.status",
        "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'job1'",
        "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'job1' AND devices.jobs.status = 'completed'",
        "SELECT * FROM devices.jobs WHERE devices.jobs.deviceId = 'x' AND devices.jobs.jobType = "
        "'scheduleTwinUpdate' AND devices.jobs.status = 'completed' AND devices.jobs.createdTimeUtc "
        "> '2016-09-01'",
        "SELECT * FROM devices.jobs WHERE jobId='x'",
        "SELECT tags.SiteId, COUNT() FROM devices WHERE tags.DeviceType = 'Application' GROUP BY tags.SiteId",
        "SELECT tags.ApplicationId, tags.SupervisorId, tags.ServerCertificate, COUNT() FROM devices "
        "GROUP BY tags.ApplicationId, tags.SupervisorId, tags.ServerCertificate",
        "SELECT * FROM devices WHERE tags.DeviceType = 'Application' AND IS_DEFINED(tags.NotSeenSince) ",
        "SELECT * FROM devices WHERE tags.DeviceType = 'Application' AND "
        "(tags.SiteId = 'site' OR tags.SupervisorId = 'sup')",
    ],
)
def test_documented_and_sent_queries_parse(text: str) -> None:
    query = parse(text)
    assert isinstance(query, Query)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("*", None),
        ("  *  ", None),
        ("deviceId = 'MyDevice1'", eq("deviceId", "MyDevice1")),
        (
            "deviceId IN ['MyDevice1','MyDevice2']",
            InList(p("deviceId"), (Literal("MyDevice1"), Literal("MyDevice2"))),
        ),
        ("deviceId IN ['MyDevice1']", InList(p("deviceId"), (Literal("MyDevice1"),))),
        ("DeviceId IN ['dev-1']", InList(p("deviceId"), (Literal("dev-1"),))),
        ("deviceId = 'job-e2e-device-123'", eq("deviceId", "job-e2e-device-123")),
    ],
)
def test_job_query_conditions(text: str, expected: object) -> None:
    assert parse_job_condition(text) == expected


def test_node_sample_unquoted_ids_are_refused_with_a_hint() -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_job_condition("deviceId IN [dev1, dev2]")
    assert caught.value.position == 13
    assert caught.value.message == (
        "at position 13: expected a constant (a quoted string, a number, true, false or null) after '[' "
        "but found 'dev1'; put names in quotes: 'dev1'"
    )


def test_parse_condition_uses_the_collection_rules() -> None:
    assert parse_condition("devices.jobs.status = 'failed'", Collection.JOBS) == eq("status", "failed")
    assert parse_condition("tags.a = 1 OR tags.b = 2") == Or((eq("tags.a", 1), eq("tags.b", 2)))


# --- errors ----------------------------------------------------------------------------------------


def error(text: str) -> QuerySyntaxError:
    with pytest.raises(QuerySyntaxError) as caught:
        parse(text)
    err = caught.value
    assert str(err) == err.message
    assert err.message.startswith(f"at position {err.position}: ")
    assert 0 <= err.position <= len(text)
    assert isinstance(err, ValueError)
    return err


def test_the_briefs_example_error() -> None:
    err = error("SELECT * FROM devices WHERE x =")
    assert (err.position, err.expected) == (31, "a value")
    assert err.message == "at position 31: expected a value after '=' but found end of query"


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("", 0, "expected SELECT but found end of query"),
        ("UPDATE devices", 0, "expected SELECT but found 'UPDATE'"),
        ("SELECT * devices", 9, "expected FROM after '*' but found 'devices'"),
        ("SELECT deviceId tags FROM devices", 16, "expected ',' or FROM after 'deviceId' but found 'tags'"),
        (
            "SELECT * FROM things",
            14,
            "expected devices, devices.modules or devices.jobs after 'FROM' but found 'things'",
        ),
        ("SELECT * FROM devices.twins", 22, "expected modules or jobs after '.' but found 'twins'"),
        ("SELECT * FROM devices WHERE", 27, "expected a condition after 'WHERE' but found end of query"),
        ("SELECT * FROM devices WHERE AND = 1", 28, "expected a condition after 'WHERE' but found 'AND'"),
        (
            "SELECT * FROM devices WHERE x",
            29,
            "expected a comparison operator (=, !=, <>, <, <=, >, >=), IN or NIN after 'x' but found "
            "end of query",
        ),
        (
            "SELECT * FROM devices WHERE 1 IN [1]",
            30,
            "expected a comparison operator (=, !=, <>, <, <=, >, >=) after '1' but found 'IN'",
        ),
        (
            "SELECT * FROM devices WHERE (x = 1",
            34,
            "expected AND, OR or ')' after '1' but found end of query",
        ),
        (
            "SELECT * FROM devices WHERE x = 1 extra",
            34,
            "expected AND, OR, GROUP BY or the end of the query after '1' but found 'extra'",
        ),
        (
            "SELECT * FROM devices extra",
            22,
            "expected WHERE, GROUP BY or the end of the query after 'devices' but found 'extra'",
        ),
        (
            "SELECT * FROM devices WHERE x IN 'a'",
            33,
            "expected '[' and a list of constants after 'IN' but found the string 'a'",
        ),
        (
            "SELECT * FROM devices WHERE x IN []",
            34,
            "expected a constant (a quoted string, a number, true, false or null) after '[' but found ']'",
        ),
        (
            "SELECT * FROM devices WHERE x IN ['a' 'b']",
            38,
            "expected ',' or ']' after the string 'a' but found the string 'b'",
        ),
        ("SELECT * FROM devices WHERE tags. = 1", 34, "expected a property name after '.' but found '='"),
        (
            "SELECT * FROM devices WHERE x = y(1)",
            32,
            "expected a value after '=' but found 'y'; y() cannot be used as a value",
        ),
        (
            "SELECT * FROM devices WHERE LOWER(deviceId) = 'a'",
            28,
            "expected a condition after 'WHERE' but found 'LOWER'; twin queries know IS_DEFINED, "
            "STARTSWITH and ENDSWITH",
        ),
        (
            "SELECT * FROM devices WHERE STARTS_WITH(deviceId, 'a')",
            28,
            "expected a condition after 'WHERE' but found 'STARTS_WITH'; write STARTSWITH "
            "(STARTS_WITH is the routing language's spelling)",
        ),
        (
            "SELECT * FROM devices WHERE STARTSWITH(deviceId, 5)",
            49,
            "expected a quoted string to compare the start or end of 'deviceId' with after ',' but "
            "found the number 5",
        ),
        (
            "SELECT * FROM devices WHERE IS_DEFINED('x')",
            39,
            "expected a property path after '(' but found the string 'x'",
        ),
        (
            "SELECT * FROM devices WHERE IS_DEFINED(x, y)",
            40,
            "expected ')' (IS_DEFINED takes one path) after 'x' but found ','",
        ),
        (
            "SELECT AVG(x) FROM devices",
            7,
            "expected a property path or COUNT() after 'SELECT' but found 'AVG'; AVG() is not "
            "supported; only COUNT() is",
        ),
        (
            "SELECT COUNT(x) FROM devices",
            13,
            "expected ')' (COUNT takes no argument) after '(' but found 'x'",
        ),
        (
            "SELECT deviceId AS FROM devices",
            19,
            "expected a name for the result property (a letter or _ first) after 'AS' but found 'FROM'",
        ),
        (
            "SELECT TOP -1 * FROM devices",
            11,
            "expected a whole number of rows after TOP but found the number -1",
        ),
        (
            "SELECT TOP 1.5 * FROM devices",
            11,
            "expected a whole number of rows after TOP but found the number 1.5",
        ),
        ("SELECT , FROM devices", 7, "expected a property path, COUNT() or * after 'SELECT' but found ','"),
        (
            "SELECT tags.a, COUNT() FROM devices GROUP tags.a",
            42,
            "expected BY after 'GROUP' but found 'tags'",
        ),
        (
            "SELECT COUNT() FROM devices GROUP BY 'a'",
            37,
            "expected a property path to group by after 'BY' but found the string 'a'",
        ),
    ],
)
def test_grammar_errors(text: str, position: int, message: str) -> None:
    err = error(text)
    assert err.position == position
    assert err.message == f"at position {position}: {message}"


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        (
            "SELECT * FROM devices WHERE x = 'abc",
            36,
            "expected ' to end the string that starts at position 32 but found end of query",
        ),
        (
            "SELECT * FROM devices WHERE x = \"abc'",
            37,
            'expected " to end the string that starts at position 32 but found end of query',
        ),
        (
            "SELECT * FROM devices WHERE x = 'a\\qb'",
            34,
            "expected one of \\' \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX but found '\\q'; write "
            "\\\\ for a backslash",
        ),
        (
            "SELECT * FROM devices WHERE x = 'a\\",
            35,
            "expected an escape character after \\ but found end of query",
        ),
        (
            "SELECT * FROM devices WHERE x = 'a\\u12'",
            34,
            "expected \\u and four hexadecimal digits but found '\\u12''",
        ),
        (
            "SELECT * FROM devices WHERE x = 'a\\ud800'",
            40,
            "expected \\u followed by a low surrogate (DC00-DFFF) but found nothing after '\\uD800'",
        ),
        (
            "SELECT * FROM devices WHERE x = '\\udc00'",
            33,
            "expected a \\u escape that is not a lone low surrogate but found '\\uDC00'",
        ),
        (
            "SELECT * FROM devices WHERE x = '\\ud800\\u0041'",
            39,
            "expected a low surrogate (\\uDC00-\\uDFFF) but found '\\u0041'",
        ),
        ("SELECT * FROM devices WHERE x = '\\u0000'", 33, "a string may not contain the NUL character"),
        ("SELECT * FROM devices WHERE x = 'a\0'", 34, "a string may not contain the NUL character"),
        (
            "SELECT * FROM devices WHERE x = 'it''s'",
            36,
            "expected the end of the string but found another '; to put ' inside a string write \\'",
        ),
        (
            "SELECT * FROM devices WHERE x # 1",
            30,
            "expected a name, a constant, an operator or a parenthesis but found '#'",
        ),
        (
            "SELECT * FROM devices WHERE x = \x01",
            32,
            "expected a name, a constant, an operator or a parenthesis but found the character U+0001",
        ),
        (
            "SELECT * FROM devices WHERE x ! 1",
            31,
            "expected '=' after '!' but found ' '; write != or <> for 'not equal'",
        ),
        (
            "SELECT * FROM devices WHERE x = 1.",
            34,
            "expected a digit after the decimal point after '1.' but found end of query",
        ),
        (
            "SELECT * FROM devices WHERE x = 0x",
            34,
            "expected a hexadecimal digit after '0x' but found end of query",
        ),
        (
            "SELECT * FROM devices WHERE x = 12abc",
            34,
            "expected a space, an operator, ',' or ')' after the number 12 but found 'a'",
        ),
        (
            "SELECT * FROM devices WHERE x = 9223372036854775808",
            32,
            "the number 9223372036854775808 is out of range (-9223372036854775808 to 9223372036854775807)",
        ),
        ("SELECT * FROM devices WHERE x = " + "9" * 400 + ".5", 32, f"the number {'9' * 37}... is too large"),
        (
            "SELECT * FROM devices WHERE $ = 1",
            29,
            "expected a name (a letter or _ first) after '$' but found ' '",
        ),
        # only ASCII digits are digits (str.isdigit() takes these, and int() then failed)
        (
            "SELECT * FROM devices WHERE x = ²",
            32,
            "expected a name, a constant, an operator or a parenthesis but found '²'",
        ),
        (
            "SELECT * FROM devices WHERE x = -٣",
            32,
            "expected a name, a constant, an operator or a parenthesis but found '-'",
        ),
        (
            "SELECT * FROM devices WHERE tags.a² = 1",
            34,
            "expected a name, a constant, an operator or a parenthesis but found '²'",
        ),
    ],
)
def test_token_errors(text: str, position: int, message: str) -> None:
    err = error(text)
    assert err.position == position
    assert err.message == f"at position {position}: {message}"


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        (
            "SELECT deviceId FROM devices.jobs",
            7,
            "devices.jobs queries allow only SELECT * (no projections, TOP or COUNT())",
        ),
        (
            "SELECT TOP 5 * FROM devices.jobs",
            0,
            "devices.jobs queries allow only SELECT * (no projections, TOP or COUNT())",
        ),
        (
            "SELECT * FROM devices.jobs WHERE properties.reported.x = 1",
            33,
            "devices.jobs rows have no field 'properties' (they have deviceId, moduleId, jobId, "
            "jobType, status, "
            "startTimeUtc, endTimeUtc, createdDateTimeUtc, lastUpdatedDateTimeUtc, outcome, error); "
            "a devices.jobs query cannot test twin properties",
        ),
        ("SELECT * FROM devices.jobs GROUP BY jobId", 27, "GROUP BY works only FROM devices"),
        ("SELECT COUNT() FROM devices.modules", 7, "COUNT() works only FROM devices"),
        ("SELECT moduleId FROM devices.modules GROUP BY moduleId", 37, "GROUP BY works only FROM devices"),
        ("SELECT deviceId, COUNT() FROM devices", 7, "'deviceId' next to COUNT() needs GROUP BY deviceId"),
        (
            "SELECT tags.a, COUNT() FROM devices GROUP BY tags.b",
            7,
            "'tags.a' is not in GROUP BY; select only grouped paths and COUNT()",
        ),
        ("SELECT * FROM devices GROUP BY tags.a", 7, "GROUP BY needs a SELECT list, not *"),
        (
            "SELECT tags.x, properties.reported.x FROM devices",
            15,
            "the result already has a property 'x'; name this one differently with AS",
        ),
        (
            "SELECT COUNT() AS a, tags.a, COUNT() AS b FROM devices GROUP BY tags.a",
            21,
            "the result already has a property 'a'; name this one differently with AS",
        ),
        ("SELECT TOP 2147483648 * FROM devices", 11, "TOP allows at most 2147483647 rows"),
    ],
)
def test_rule_errors(text: str, position: int, message: str) -> None:
    err = error(text)
    assert err.position == position
    assert err.message == f"at position {position}: {message}"


def test_nesting_is_bounded() -> None:
    inner = "(" * MAX_NESTING + "x = 1" + ")" * MAX_NESTING
    assert parse(f"SELECT * FROM devices WHERE {inner}").where == eq("x", 1)
    err = error(f"SELECT * FROM devices WHERE ({inner})")
    assert err.position == 28 + MAX_NESTING
    assert "nest at most 50" in err.message
    err = error("SELECT * FROM devices WHERE " + "NOT " * (MAX_NESTING + 1) + "x = 1")
    assert err.position == 28 + 4 * MAX_NESTING


def test_length_is_bounded() -> None:
    head = "SELECT * FROM devices WHERE x = '"
    exactly = head + "a" * (MAX_QUERY_LENGTH - len(head) - 1) + "'"
    assert len(exactly) == MAX_QUERY_LENGTH
    assert parse(exactly).where == eq("x", "a" * (MAX_QUERY_LENGTH - len(head) - 1))
    err = error(exactly + " ")
    assert err.position == MAX_QUERY_LENGTH
    assert err.message == "at position 8192: a query may have at most 8192 characters; this one has 8193"


def test_long_flat_chains_do_not_recurse() -> None:
    chain = " AND ".join(["x = 1"] * 800)
    condition = parse(f"SELECT * FROM devices WHERE {chain}").where
    assert isinstance(condition, And)
    assert len(condition.operands) == 800


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("", 0, "expected '*' or a condition but found end of query"),
        (
            "SELECT * FROM devices WHERE x = 1",
            0,
            "expected '*' or a condition but found 'SELECT'; a job's queryCondition is only what "
            "would follow WHERE",
        ),
        ("* AND x = 1", 2, "expected the end of the condition after '*' but found 'AND'"),
        ("x = 1 y", 6, "expected AND, OR or the end of the condition after '1' but found 'y'"),
    ],
)
def test_job_condition_errors(text: str, position: int, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_job_condition(text)
    assert caught.value.position == position
    assert caught.value.message == f"at position {position}: {message}"


def test_a_query_is_text() -> None:
    with pytest.raises(TypeError, match="a query is a string, not int"):
        parse(5)
