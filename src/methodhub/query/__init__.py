"""IoT Hub's query language (the twin and job subset): parse, render, evaluate, translate to SQL.

A pure core like ``mqtt/`` and ``amqp/``: text in, a :class:`Query` out (:func:`parse`, or
:func:`parse_job_condition` for a job's ``queryCondition``); :func:`run` evaluates it over documents
in memory (the reference semantics); :func:`to_sql` makes SQLite or PostgreSQL do the same over a
table of JSON documents. Nothing here imports the rest of methodhub. ``docs/query.md`` describes the
language and its semantics.
"""

from methodhub.query.ast import (
    JOB_FIELD_ALIASES,
    JOB_ROW_FIELDS,
    STAR,
    TWIN_FIELDS,
    And,
    Collection,
    Comparison,
    ComparisonOp,
    Condition,
    CountProjection,
    InList,
    IsDefined,
    Literal,
    LiteralValue,
    Not,
    Operand,
    Or,
    Path,
    PathProjection,
    Projection,
    Query,
    Star,
    TextFunction,
    TextMatch,
    result_names,
)
from methodhub.query.evaluate import UNDEFINED, compare, evaluate, json_kind, matches, project, resolve, run
from methodhub.query.parser import MAX_NESTING, MAX_QUERY_LENGTH, parse, parse_condition, parse_job_condition
from methodhub.query.render import render, render_condition, render_value
from methodhub.query.sql import Flavour, SqlQuery, to_sql, where_sql
from methodhub.query.tokenizer import QuerySyntaxError

__all__ = [
    "JOB_FIELD_ALIASES",
    "JOB_ROW_FIELDS",
    "MAX_NESTING",
    "MAX_QUERY_LENGTH",
    "STAR",
    "TWIN_FIELDS",
    "UNDEFINED",
    "And",
    "Collection",
    "Comparison",
    "ComparisonOp",
    "Condition",
    "CountProjection",
    "Flavour",
    "InList",
    "IsDefined",
    "Literal",
    "LiteralValue",
    "Not",
    "Operand",
    "Or",
    "Path",
    "PathProjection",
    "Projection",
    "Query",
    "QuerySyntaxError",
    "SqlQuery",
    "Star",
    "TextFunction",
    "TextMatch",
    "compare",
    "evaluate",
    "json_kind",
    "matches",
    "parse",
    "parse_condition",
    "parse_job_condition",
    "project",
    "render",
    "render_condition",
    "render_value",
    "resolve",
    "result_names",
    "run",
    "to_sql",
    "where_sql",
]
