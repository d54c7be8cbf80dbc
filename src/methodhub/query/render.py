"""Query text from a parsed query: ``parse(render(q)) == q`` for every query the parser can return.

Used by the round-trip tests and wherever a query is shown back (logs, error details). The text is
canonical: keywords upper-case, ``!=`` for not-equal, strings in single quotes, parentheses only
where precedence needs them.
"""

from __future__ import annotations

from decimal import Decimal

from methodhub.query.ast import (
    And,
    Comparison,
    Condition,
    CountProjection,
    InList,
    IsDefined,
    LiteralValue,
    Not,
    Operand,
    Or,
    Path,
    Projection,
    Query,
    Star,
    TextMatch,
)


def render_value(value: LiteralValue) -> str:
    """A constant as query text (a float always with a decimal point and never with an exponent)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if "e" in text or "E" in text:
            text = format(Decimal(text), "f")
        return text if "." in text else text + ".0"
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def render_path(path: Path) -> str:
    return path.dotted


def _operand(operand: Operand) -> str:
    return render_path(operand) if isinstance(operand, Path) else render_value(operand.value)


def _grouped(condition: Condition, parenthesize: tuple[type, ...]) -> str:
    text = render_condition(condition)
    return f"({text})" if isinstance(condition, parenthesize) else text


def render_condition(condition: Condition) -> str:
    """A condition as query text (what follows WHERE, or a job's queryCondition)."""
    if isinstance(condition, Or):
        return " OR ".join(_grouped(c, (Or,)) for c in condition.operands)
    if isinstance(condition, And):
        return " AND ".join(_grouped(c, (And, Or)) for c in condition.operands)
    if isinstance(condition, Not):
        return "NOT " + _grouped(condition.operand, (And, Or))
    if isinstance(condition, Comparison):
        return f"{_operand(condition.left)} {condition.op.value} {_operand(condition.right)}"
    if isinstance(condition, InList):
        values = ", ".join(render_value(v.value) for v in condition.values)
        return f"{render_path(condition.path)} {'NIN' if condition.negated else 'IN'} [{values}]"
    if isinstance(condition, IsDefined):
        return f"IS_DEFINED({render_path(condition.path)})"
    assert isinstance(condition, TextMatch)
    return f"{condition.function.value}({render_path(condition.path)}, {render_value(condition.text)})"


def _projection(projection: Projection) -> str:
    text = "COUNT()" if isinstance(projection, CountProjection) else render_path(projection.path)
    return text if projection.alias is None else f"{text} AS {projection.alias}"


def render(query: Query) -> str:
    """The whole query as text."""
    parts = ["SELECT"]
    if query.top is not None:
        parts.append(f"TOP {query.top}")
    if isinstance(query.select, Star):
        parts.append("*")
    else:
        parts.append(", ".join(_projection(p) for p in query.select))
    parts.append(f"FROM {query.from_.value}")
    if query.where is not None:
        parts.append(f"WHERE {render_condition(query.where)}")
    if query.group_by:
        parts.append("GROUP BY " + ", ".join(render_path(p) for p in query.group_by))
    return " ".join(parts)
