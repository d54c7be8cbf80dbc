"""The reference semantics: a parsed query evaluated over JSON-shaped documents in memory.

Used for small sets (a job's few devices, tests) and to cross-check the SQL translation
(:mod:`methodhub.query.sql` must select the same documents and build the same rows).

The rules (``docs/query.md``, "Semantics"):

- A missing path is *undefined*. A condition has three outcomes, true, false and undefined (None
  here), combined as SQL combines NULL (Kleene logic): ``NOT undefined`` is undefined, ``false AND
  undefined`` is false, ``true OR undefined`` is true. A document is selected only when the whole
  condition is true.
- A comparison is undefined unless both sides are primitives (null, boolean, number, string) of the
  same kind; so ``x != 'a'`` does not select a document whose ``x`` is a number or missing, and
  neither does ``NOT (x = 'a')``. Numbers compare by value (``1 = 1.0``), strings by code point,
  ``false < true``, and ``null`` equals ``null``.
- ``x IN [a, b]`` is ``x = a OR x = b``; ``NIN`` is ``NOT IN``. ``IS_DEFINED(x)`` is true or false,
  never undefined (true for an explicit null). ``STARTSWITH``/``ENDSWITH`` are undefined unless the
  value is a string, and case-sensitive.
"""

from __future__ import annotations

import itertools
import json
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from methodhub.query.ast import (
    And,
    Comparison,
    ComparisonOp,
    Condition,
    CountProjection,
    InList,
    IsDefined,
    Not,
    Operand,
    Or,
    Path,
    PathProjection,
    Query,
    Star,
    TextFunction,
    TextMatch,
    result_names,
)


class _Undefined:
    """What a missing path evaluates to (JSON has no such value: a projection leaves it out)."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Final = _Undefined()

_ORDER: dict[ComparisonOp, Callable[[Any, Any], bool]] = {
    ComparisonOp.EQ: operator.eq,
    ComparisonOp.NE: operator.ne,
    ComparisonOp.LT: operator.lt,
    ComparisonOp.LE: operator.le,
    ComparisonOp.GT: operator.gt,
    ComparisonOp.GE: operator.ge,
}


def json_kind(value: object) -> str:
    """``null``, ``boolean``, ``number``, ``string``, ``object`` or ``array``.

    Raises:
        TypeError: ``value`` is not JSON-shaped.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def resolve(document: object, path: Path) -> Any:
    """The value at ``path`` in ``document``, or :data:`UNDEFINED` (a path goes through objects only)."""
    value: Any = document
    for segment in path.segments:
        if not isinstance(value, Mapping) or segment not in value:
            return UNDEFINED
        value = value[segment]
    return value


def compare(op: ComparisonOp, left: object, right: object) -> bool | None:
    """``left op right`` with the query language's typing; None when undefined."""
    if left is UNDEFINED or right is UNDEFINED:
        return None
    kind = json_kind(left)
    if kind != json_kind(right) or kind in ("object", "array"):
        return None
    if kind == "null":
        return op in (ComparisonOp.EQ, ComparisonOp.LE, ComparisonOp.GE)
    return _ORDER[op](left, right)


def _value(operand: Operand, document: object) -> Any:
    return resolve(document, operand) if isinstance(operand, Path) else operand.value


def _all(outcomes: Iterable[bool | None]) -> bool | None:
    result: bool | None = True
    for outcome in outcomes:
        if outcome is False:
            return False
        if outcome is None:
            result = None
    return result


def _any(outcomes: Iterable[bool | None]) -> bool | None:
    result: bool | None = False
    for outcome in outcomes:
        if outcome is True:
            return True
        if outcome is None:
            result = None
    return result


def _not(outcome: bool | None) -> bool | None:
    return None if outcome is None else not outcome


def evaluate(condition: Condition, document: object) -> bool | None:
    """The condition's outcome for one document: True, False or None (undefined)."""
    if isinstance(condition, Comparison):
        return compare(condition.op, _value(condition.left, document), _value(condition.right, document))
    if isinstance(condition, InList):
        value = resolve(document, condition.path)
        found = _any(compare(ComparisonOp.EQ, value, literal.value) for literal in condition.values)
        return _not(found) if condition.negated else found
    if isinstance(condition, IsDefined):
        return resolve(document, condition.path) is not UNDEFINED
    if isinstance(condition, TextMatch):
        value = resolve(document, condition.path)
        if not isinstance(value, str):
            return None
        if condition.function is TextFunction.STARTSWITH:
            return value.startswith(condition.text)
        return value.endswith(condition.text)
    if isinstance(condition, And):
        return _all(evaluate(c, document) for c in condition.operands)
    if isinstance(condition, Or):
        return _any(evaluate(c, document) for c in condition.operands)
    assert isinstance(condition, Not)
    return _not(evaluate(condition.operand, document))


def matches(condition: Condition | None, document: object) -> bool:
    """Whether a WHERE condition (None: no WHERE) selects the document."""
    return condition is None or evaluate(condition, document) is True


def project(query: Query, document: Any) -> Any:
    """The result row of one selected document in a query that is not an aggregate: the document
    itself for ``SELECT *``, else an object of the projected values (undefined ones left out)."""
    if query.is_aggregate:
        raise ValueError("an aggregate query's rows come from run(), not from one document")
    if isinstance(query.select, Star):
        return document
    row: dict[str, Any] = {}
    for name, projection in zip(result_names(query.select), query.select, strict=True):
        assert isinstance(projection, PathProjection)
        value = resolve(document, projection.path)
        if value is not UNDEFINED:
            row[name] = value
    return row


def group_key(value: object) -> tuple[object, ...]:
    """What GROUP BY groups a value by: its kind and value, numbers by value (``1`` with ``1.0``),
    objects and arrays by their JSON with sorted keys; undefined is a group of its own."""
    if value is UNDEFINED:
        return ("undefined",)
    kind = json_kind(value)
    if kind in ("object", "array"):
        return (kind, json.dumps(value, sort_keys=True, separators=(",", ":")))
    return (kind, value)


def run(query: Query, documents: Iterable[Any]) -> list[Any]:
    """Every result row of the query over ``documents`` (the collection the query names; the caller
    picks it): filtered, grouped and counted, projected, then cut to TOP. Groups come in the order
    their first document came."""
    selected = (d for d in documents if matches(query.where, d))
    if not query.is_aggregate:
        chosen = selected if query.top is None else itertools.islice(selected, query.top)
        return [project(query, d) for d in chosen]
    rows = _aggregate(query, selected)
    return rows if query.top is None else rows[: query.top]


def _aggregate(query: Query, selected: Iterable[Any]) -> list[Any]:
    assert not isinstance(query.select, Star)
    groups: dict[tuple[tuple[object, ...], ...], tuple[list[Any], list[int]]] = {}
    for document in selected:
        values = [resolve(document, path) for path in query.group_by]
        _, count = groups.setdefault(tuple(group_key(v) for v in values), (values, [0]))
        count[0] += 1
    if not query.group_by and not groups:
        groups[()] = ([], [0])  # COUNT() alone: one row, even of nothing
    rows = []
    names = result_names(query.select)
    for values, count in groups.values():
        row: dict[str, Any] = {}
        for name, projection in zip(names, query.select, strict=True):
            if isinstance(projection, CountProjection):
                row[name] = count[0]
                continue
            value = values[query.group_by.index(projection.path)]
            if value is not UNDEFINED:
                row[name] = value
        rows.append(row)
    return rows
