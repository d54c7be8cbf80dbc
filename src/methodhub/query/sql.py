"""A parsed query as SQL over a table with one JSON document per row, so the database does the work.

Two flavours: SQLite's JSON1 functions over a TEXT column, and PostgreSQL's operators over a
``jsonb`` column. The SQL keeps :mod:`methodhub.query.evaluate`'s semantics exactly (the tests run
both over the same documents): a comparison is SQL NULL, which is the evaluator's *undefined*,
unless both sides are primitives of one kind, and AND/OR/NOT on NULL are SQL's, which are the
evaluator's. Strings compare by code point (SQLite's BINARY collation; ``COLLATE "C"`` in
PostgreSQL, whatever the database's locale), numbers by value.

Every value from the query text, property paths included, is a bound parameter; nothing the user
wrote is ever put into the SQL text. Placeholders are numbered (``?1`` in SQLite, ``$1`` in
PostgreSQL) from ``first_param``, so the caller can put its own parameters before or after ours and
write them anywhere in the statement. PostgreSQL parameters are what asyncpg takes: a path is a
``list[str]`` (``text[]``), a string a ``str``, a number or boolean its JSON text (``jsonb``), a
list of constants a list of those.
"""

from __future__ import annotations

import enum
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from methodhub.query.ast import (
    And,
    Comparison,
    ComparisonOp,
    Condition,
    CountProjection,
    InList,
    IsDefined,
    Literal,
    LiteralValue,
    Not,
    Or,
    Path,
    PathProjection,
    Query,
    Star,
    TextFunction,
    TextMatch,
    result_names,
)
from methodhub.query.evaluate import UNDEFINED, compare, json_kind


class Flavour(enum.Enum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


_SQL_OPS = {
    ComparisonOp.EQ: "=",
    ComparisonOp.NE: "<>",
    ComparisonOp.LT: "<",
    ComparisonOp.LE: "<=",
    ComparisonOp.GT: ">",
    ComparisonOp.GE: ">=",
}
_NULL_EQUAL = (ComparisonOp.EQ, ComparisonOp.LE, ComparisonOp.GE)
"""The operators for which ``null op null`` is true."""


@dataclass(frozen=True)
class SqlQuery:
    """The pieces of one SELECT; :meth:`statement` puts them together, or the caller does.

    Attributes:
        columns: the SELECT list; :meth:`row` turns one fetched row of them into a result row.
        where: a boolean SQL expression (true when the query has no WHERE).
        group_by: the GROUP BY expressions (empty: none).
        params: every parameter, in placeholder order from ``first_param``: the WHERE's come first.
        where_param_count: how many of ``params`` the WHERE uses (the first ones), for a caller
            that builds its own SELECT list around ``where``.
        limit: TOP's row count, or None.
    """

    columns: tuple[str, ...]
    where: str
    group_by: tuple[str, ...]
    params: tuple[object, ...]
    where_param_count: int
    limit: int | None
    _decode: Callable[[Sequence[Any]], Any] = field(repr=False, compare=False)

    @property
    def where_params(self) -> tuple[object, ...]:
        return self.params[: self.where_param_count]

    def row(self, values: Sequence[Any]) -> Any:
        """The IoT Hub result row (a twin, a job row, or an object of projected values) for one
        fetched row of :attr:`columns`."""
        return self._decode(values)

    def statement(self, table: str) -> str:
        """``SELECT columns FROM table WHERE where [GROUP BY ...] [LIMIT n]``; ``table`` is the
        caller's SQL (a table name or a subquery), never user input."""
        text = f"SELECT {', '.join(self.columns)} FROM {table} WHERE {self.where}"
        if self.group_by:
            text += " GROUP BY " + ", ".join(self.group_by)
        if self.limit is not None:
            text += f" LIMIT {int(self.limit)}"
        return text


def _balanced(parts: list[str], op: str) -> str:
    """``a op b op c ...`` as a balanced tree: SQLite limits expression depth to 1000, and a left-deep
    chain of a thousand ANDs would reach it."""
    if len(parts) == 1:
        return parts[0]
    middle = len(parts) // 2
    return f"({_balanced(parts[:middle], op)} {op} {_balanced(parts[middle:], op)})"


def _loads(text: Any) -> Any:
    return json.loads(text) if isinstance(text, str | bytes | bytearray) else text


class _Translator(ABC):
    """One flavour's SQL for each construct; parameters are collected in order."""

    true = "TRUE"
    false = "FALSE"
    null = "NULL"

    def __init__(self, doc: str, first_param: int, text_columns: Mapping[tuple[str, ...], str]) -> None:
        self.doc = doc
        self.first_param = first_param
        self.text_columns = text_columns
        """Paths whose value is a column of the row beside the document, never null text: read
        from the column (the document is not built and searched for them)."""
        self.params: list[object] = []
        self._path_placeholders: dict[tuple[str, ...], str] = {}

    # parameters

    @abstractmethod
    def placeholder(self, number: int) -> str: ...

    def bind(self, value: object) -> str:
        self.params.append(value)
        return self.placeholder(self.first_param + len(self.params) - 1)

    def path_param(self, path: Path) -> str:
        """A path's placeholder; a path used twice is bound once."""
        placeholder = self._path_placeholders.get(path.segments)
        if placeholder is None:
            placeholder = self.bind(self.path_value(path))
            self._path_placeholders[path.segments] = placeholder
        return placeholder

    @abstractmethod
    def path_value(self, path: Path) -> object: ...

    def constant(self, outcome: bool | None) -> str:
        return self.null if outcome is None else self.true if outcome else self.false

    # conditions

    def condition(self, condition: Condition) -> str:
        if isinstance(condition, Comparison):
            return self.comparison(condition)
        if isinstance(condition, InList):
            found = self.in_list(condition.path, condition.values)
            return f"(NOT {found})" if condition.negated else found
        if isinstance(condition, IsDefined):
            return self.is_defined(condition.path)
        if isinstance(condition, TextMatch):
            return self.text_match(condition.function, condition.path, condition.text)
        if isinstance(condition, And):
            return _balanced([self.condition(c) for c in condition.operands], "AND")
        if isinstance(condition, Or):
            return _balanced([self.condition(c) for c in condition.operands], "OR")
        assert isinstance(condition, Not)
        return f"(NOT {self.condition(condition.operand)})"

    def comparison(self, comparison: Comparison) -> str:
        op, left, right = comparison.op, comparison.left, comparison.right
        if isinstance(left, Literal) and isinstance(right, Literal):
            return self.constant(compare(op, left.value, right.value))
        if isinstance(left, Literal):
            op, left, right = op.flipped(), right, left
        assert isinstance(left, Path)
        if isinstance(right, Path):
            return self.compare_paths(op, left, right)
        return self.compare_value(op, left, right.value)

    def in_list(self, path: Path, values: tuple[Literal, ...]) -> str:
        """``x = a OR x = b ...``: true on a match of x's kind; otherwise false, or NULL when a
        constant of another kind is in the list (that comparison was undefined)."""
        kinds = [json_kind(v.value) for v in values]
        cases: list[str] = []
        for kind in ("string", "number", "boolean", "null"):
            same = [v.value for v, k in zip(values, kinds, strict=True) if k == kind]
            if not same:
                continue  # x's kind matches none: every comparison undefined, CASE gives NULL
            member = self.true if kind == "null" else self.member(kind, path, same)
            if any(k != kind for k in kinds):
                member = f"(CASE WHEN {member} THEN {self.true} END)"
            cases.append(f"WHEN {self.is_kind(path, kind)} THEN {member}")
        return f"(CASE {' '.join(cases)} END)"

    # flavour-specific

    @abstractmethod
    def is_kind(self, path: Path, kind: str) -> str: ...

    @abstractmethod
    def compare_value(self, op: ComparisonOp, path: Path, value: LiteralValue) -> str: ...

    @abstractmethod
    def compare_paths(self, op: ComparisonOp, left: Path, right: Path) -> str: ...

    @abstractmethod
    def member(self, kind: str, path: Path, values: list[LiteralValue]) -> str: ...

    @abstractmethod
    def is_defined(self, path: Path) -> str: ...

    @abstractmethod
    def text_match(self, function: TextFunction, path: Path, text: str) -> str: ...

    # columns

    @abstractmethod
    def value_columns(self, path: Path) -> tuple[str, ...]:
        """The columns one projected path needs (decoded by :meth:`decode_value`)."""
        ...

    @abstractmethod
    def decode_value(self, values: Sequence[Any]) -> Any: ...

    @abstractmethod
    def group_columns(self, path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The columns one grouped path needs (decoded by :meth:`decode_group`) and the GROUP BY
        expressions they are made of."""
        ...

    @abstractmethod
    def decode_group(self, values: Sequence[Any]) -> Any: ...

    def document_column(self) -> str:
        return self.doc


class _Sqlite(_Translator):
    true = "1"
    false = "0"

    def placeholder(self, number: int) -> str:
        return f"?{number}"

    def path_value(self, path: Path) -> object:
        # quoted labels: a segment may hold '-' or '$', never '"' (the grammar has no such name)
        return "$" + "".join(f'."{segment}"' for segment in path.segments)

    def type_of(self, path: Path) -> str:
        if path.segments in self.text_columns:
            return "'text'"
        return f"json_type({self.doc}, {self.path_param(path)})"

    def value_of(self, path: Path) -> str:
        column = self.text_columns.get(path.segments)
        if column is not None:
            return column
        return f"json_extract({self.doc}, {self.path_param(path)})"

    def class_of(self, path: Path) -> str:
        """json_type with the kinds that compare with each other merged: 'real' for numbers, 'true'
        for booleans (json_extract gives 1 and 0)."""
        t = self.type_of(path)
        return f"(CASE {t} WHEN 'integer' THEN 'real' WHEN 'false' THEN 'true' ELSE {t} END)"

    _TYPES = {
        "string": "('text')",
        "number": "('integer', 'real')",
        "boolean": "('true', 'false')",
        "null": "('null')",
    }

    def is_kind(self, path: Path, kind: str) -> str:
        return f"{self.type_of(path)} IN {self._TYPES[kind]}"

    def compare_value(self, op: ComparisonOp, path: Path, value: LiteralValue) -> str:
        kind = json_kind(value)
        if kind == "null":
            return f"(CASE WHEN {self.is_kind(path, kind)} THEN {self.constant(op in _NULL_EQUAL)} END)"
        bound = self.bind(int(value) if isinstance(value, bool) else value)
        return f"(CASE WHEN {self.is_kind(path, kind)} THEN {self.value_of(path)} {_SQL_OPS[op]} {bound} END)"

    def compare_paths(self, op: ComparisonOp, left: Path, right: Path) -> str:
        a, b = self.class_of(left), self.class_of(right)
        same = f"{a} = {b} AND {a} IN ('text', 'real', 'true')"
        nulls = f"{a} = 'null' AND {b} = 'null'"
        values = f"{self.value_of(left)} {_SQL_OPS[op]} {self.value_of(right)}"
        return f"(CASE WHEN {same} THEN {values} WHEN {nulls} THEN {self.constant(op in _NULL_EQUAL)} END)"

    def member(self, kind: str, path: Path, values: list[LiteralValue]) -> str:
        bound = ", ".join(self.bind(int(v) if isinstance(v, bool) else v) for v in values)
        return f"{self.value_of(path)} IN ({bound})"

    def is_defined(self, path: Path) -> str:
        return f"({self.type_of(path)} IS NOT NULL)"

    def text_match(self, function: TextFunction, path: Path, text: str) -> str:
        s, v = self.bind(text), self.value_of(path)
        if function is TextFunction.STARTSWITH:
            test = f"substr({v}, 1, length({s})) = {s}"
        else:
            test = f"length({v}) >= length({s}) AND substr({v}, length({v}) - length({s}) + 1) = {s}"
        return f"(CASE WHEN {self.type_of(path)} = 'text' THEN {test} END)"

    def value_columns(self, path: Path) -> tuple[str, ...]:
        return (self.type_of(path), self.value_of(path))

    def decode_value(self, values: Sequence[Any]) -> Any:
        sql_type, value = values
        if sql_type is None:
            return UNDEFINED
        if sql_type in ("object", "array"):
            return json.loads(value)
        return {"null": None, "true": True, "false": False}.get(sql_type, value)

    def group_columns(self, path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
        columns = (self.class_of(path), self.value_of(path))
        return columns, columns

    def decode_group(self, values: Sequence[Any]) -> Any:
        sql_class, value = values
        if sql_class == "true":
            return bool(value)
        return self.decode_value(values)


class _Postgres(_Translator):
    null = "NULL::boolean"

    def placeholder(self, number: int) -> str:
        return f"${number}"

    def path_value(self, path: Path) -> object:
        return list(path.segments)

    def json_of(self, path: Path) -> str:
        column = self.text_columns.get(path.segments)
        if column is not None:
            return f"to_jsonb({column}::text)"
        return f"({self.doc} #> {self.path_param(path)}::text[])"

    def text_of(self, path: Path) -> str:
        column = self.text_columns.get(path.segments)
        if column is not None:
            return f"({column}::text)"
        return f"({self.doc} #>> {self.path_param(path)}::text[])"

    def type_of(self, path: Path) -> str:
        if path.segments in self.text_columns:
            return "'string'"
        return f"jsonb_typeof({self.json_of(path)})"

    def is_kind(self, path: Path, kind: str) -> str:
        return f"{self.type_of(path)} = '{kind}'"

    def compare_value(self, op: ComparisonOp, path: Path, value: LiteralValue) -> str:
        kind = json_kind(value)
        if kind == "null":
            test = self.constant(op in _NULL_EQUAL)
        elif kind == "string":
            test = f'{self.text_of(path)} COLLATE "C" {_SQL_OPS[op]} {self.bind(value)}::text'
        else:
            test = f"{self.json_of(path)} {_SQL_OPS[op]} {self.bind(json.dumps(value))}::jsonb"
        return f"(CASE WHEN {self.is_kind(path, kind)} THEN {test} END)"

    def compare_paths(self, op: ComparisonOp, left: Path, right: Path) -> str:
        sql_op = _SQL_OPS[op]
        ta, tb = self.type_of(left), self.type_of(right)
        strings = f'{self.text_of(left)} COLLATE "C" {sql_op} {self.text_of(right)}'
        values = f"{self.json_of(left)} {sql_op} {self.json_of(right)}"
        by_kind = (
            f"CASE {ta} WHEN 'string' THEN {strings} WHEN 'number' THEN {values} "
            f"WHEN 'boolean' THEN {values} WHEN 'null' THEN {self.constant(op in _NULL_EQUAL)} END"
        )
        return f"(CASE WHEN {ta} = {tb} THEN {by_kind} END)"

    def member(self, kind: str, path: Path, values: list[LiteralValue]) -> str:
        if kind == "string":
            return f"{self.text_of(path)} = ANY({self.bind(values)}::text[])"
        return f"{self.json_of(path)} = ANY({self.bind([json.dumps(v) for v in values])}::jsonb[])"

    def is_defined(self, path: Path) -> str:
        return f"({self.json_of(path)} IS NOT NULL)"

    def text_match(self, function: TextFunction, path: Path, text: str) -> str:
        s = self.bind(text)
        end = "left" if function is TextFunction.STARTSWITH else "right"
        test = f"{end}({self.text_of(path)}, char_length({s}::text)) = {s}::text"
        return f"(CASE WHEN {self.is_kind(path, 'string')} THEN {test} END)"

    def value_columns(self, path: Path) -> tuple[str, ...]:
        return (f"{self.json_of(path)}::text",)

    def decode_value(self, values: Sequence[Any]) -> Any:
        (text,) = values
        return UNDEFINED if text is None else json.loads(text)

    def group_columns(self, path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
        # grouped by the jsonb (1 and 1.0 are one group), shown as text (whatever codecs the caller
        # set up); PostgreSQL accepts the column because it is made of the grouped expression
        grouped = self.json_of(path)
        return (f"{grouped}::text",), (grouped,)

    def decode_group(self, values: Sequence[Any]) -> Any:
        return self.decode_value(values)

    def document_column(self) -> str:
        return f"{self.doc}::text"


def _translator(
    flavour: Flavour,
    doc_column: str,
    first_param: int,
    text_columns: Mapping[tuple[str, ...], str] | None = None,
) -> _Translator:
    if first_param < 1:
        raise ValueError("placeholders are numbered from 1")
    return (_Sqlite if flavour is Flavour.SQLITE else _Postgres)(doc_column, first_param, text_columns or {})


def where_sql(
    condition: Condition | None, flavour: Flavour, doc_column: str = "doc", first_param: int = 1
) -> tuple[str, tuple[object, ...]]:
    """A WHERE condition (None: none) as a boolean SQL expression over ``doc_column`` (the caller's
    SQL, never user input) and its parameters, numbered from ``first_param``."""
    translator = _translator(flavour, doc_column, first_param)
    text = translator.true if condition is None else translator.condition(condition)
    return text, tuple(translator.params)


def to_sql(
    query: Query,
    flavour: Flavour,
    doc_column: str = "doc",
    first_param: int = 1,
    text_columns: Mapping[tuple[str, ...], str] | None = None,
) -> SqlQuery:
    """The whole query as SQL pieces (see :class:`SqlQuery`): the documents selected and the rows
    built in the database, so a query over many devices never loads them all. ``text_columns``:
    paths the caller's rows hold in a column of their own as never-null text (``deviceId``), read
    from it instead of the document (the caller's SQL, never user input)."""
    translator = _translator(flavour, doc_column, first_param, text_columns)
    where = translator.true if query.where is None else translator.condition(query.where)
    where_count = len(translator.params)
    columns: list[str] = []
    group_by: tuple[str, ...] = ()
    decode: Callable[[Sequence[Any]], Any]
    if isinstance(query.select, Star):
        columns.append(translator.document_column())

        def decode(values: Sequence[Any]) -> Any:
            return _loads(values[0])

    elif not query.is_aggregate:
        names = result_names(query.select)
        spans: list[tuple[str, int, int]] = []
        for name, projection in zip(names, query.select, strict=True):
            assert isinstance(projection, PathProjection)
            own = translator.value_columns(projection.path)
            spans.append((name, len(columns), len(columns) + len(own)))
            columns.extend(own)

        def decode(values: Sequence[Any]) -> Any:
            row: dict[str, Any] = {}
            for name, start, end in spans:
                value = translator.decode_value(values[start:end])
                if value is not UNDEFINED:
                    row[name] = value
            return row

    else:
        groups: list[tuple[int, int]] = []
        grouped: list[str] = []
        for path in query.group_by:
            own, expressions = translator.group_columns(path)
            groups.append((len(columns), len(columns) + len(own)))
            columns.extend(own)
            grouped.extend(expressions)
        group_by = tuple(grouped)
        count_at = len(columns)
        columns.append("COUNT(*)")
        plan: list[tuple[str, int | None]] = []  # (name, group index; None: the count)
        for name, projection in zip(result_names(query.select), query.select, strict=True):
            if isinstance(projection, CountProjection):
                plan.append((name, None))
            else:
                plan.append((name, query.group_by.index(projection.path)))

        def decode(values: Sequence[Any]) -> Any:
            row: dict[str, Any] = {}
            for name, group in plan:
                if group is None:
                    row[name] = values[count_at]
                    continue
                start, end = groups[group]
                value = translator.decode_group(values[start:end])
                if value is not UNDEFINED:
                    row[name] = value
            return row

    return SqlQuery(
        columns=tuple(columns),
        where=where,
        group_by=group_by,
        params=tuple(translator.params),
        where_param_count=where_count,
        limit=query.top,
        _decode=decode,
    )
