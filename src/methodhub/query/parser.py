"""A hand-written tokenizer and recursive-descent parser for IoT Hub's twin and job query subset.

The grammar is ``docs/query.md``'s (the wire reference's §4.6 EBNF, with the few extensions listed
there). Keywords and function names are case-insensitive; path segments are case-sensitive, except a
path's first segment when it names a twin's (or a ``devices.jobs`` row's) own top-level property,
which is rewritten to its canonical spelling. Every mistake raises one :class:`QuerySyntaxError`
with the 0-based character position and what was expected there.

Work is bounded: a query is at most :data:`MAX_QUERY_LENGTH` characters (IoT Hub's limit) and nests
at most :data:`MAX_NESTING` parentheses and NOTs deep, so parsing, evaluating and translating it
never recurse far.
"""

from __future__ import annotations

from dataclasses import dataclass

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
from methodhub.query.tokenizer import (
    Kind,
    QuerySyntaxError,
    Token,
    describe,
    rule_error,
    shorten,
    syntax_error,
    tokenize,
)

__all__ = [
    "MAX_NESTING",
    "MAX_QUERY_LENGTH",
    "QuerySyntaxError",
    "parse",
    "parse_condition",
    "parse_job_condition",
]

MAX_QUERY_LENGTH = 8192
"""IoT Hub's limit on a query expression (query-twins and query-jobs docs)."""
MAX_NESTING = 50
"""Parentheses and NOTs nested deeper than this are refused: far more than a person writes, and it
keeps the parser's, the evaluator's and the SQL translator's recursion (and SQLite's expression
depth limit of 1000) far away."""
MAX_TOP = 2**31 - 1

_COMPARISONS = {
    "=": ComparisonOp.EQ,
    "!=": ComparisonOp.NE,
    "<>": ComparisonOp.NE,
    "<": ComparisonOp.LT,
    "<=": ComparisonOp.LE,
    ">": ComparisonOp.GT,
    ">=": ComparisonOp.GE,
}
_COMPARISON_LIST = "a comparison operator (=, !=, <>, <, <=, >, >=)"
_CONSTANT = "a constant (a quoted string, a number, true, false or null)"
_TWIN_NAMES = {name.lower(): name for name in TWIN_FIELDS}
_JOB_NAMES = {name.lower(): name for name in JOB_ROW_FIELDS} | {
    alias.lower(): field for alias, field in JOB_FIELD_ALIASES.items()
}


@dataclass(frozen=True, slots=True)
class _RawPath:
    segments: tuple[str, ...]
    start: int


@dataclass(frozen=True, slots=True)
class _RawProjection:
    path: _RawPath | None
    """None: COUNT()."""
    alias: str | None
    start: int


class _Parser:
    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"a query is a string, not {type(text).__name__}")
        if len(text) > MAX_QUERY_LENGTH:
            raise rule_error(
                MAX_QUERY_LENGTH,
                f"at most {MAX_QUERY_LENGTH} characters",
                f"a query may have at most {MAX_QUERY_LENGTH} characters; this one has {len(text)}",
            )
        self.tokens = tokenize(text)
        self.i = 0
        self.collection = Collection.DEVICES

    # token access

    @property
    def token(self) -> Token:
        return self.tokens[self.i]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    @property
    def previous(self) -> str:
        token = self.tokens[self.i - 1]
        return describe(token) if token.kind is Kind.STRING else f"'{shorten(token.text)}'"

    def advance(self) -> Token:
        token = self.tokens[self.i]
        if token.kind is not Kind.END:
            self.i += 1
        return token

    def fail(self, expected: str, hint: str = "", after: bool = True) -> QuerySyntaxError:
        return syntax_error(
            self.token.start,
            expected,
            describe(self.token),
            after=self.previous if after and self.i else None,
            hint=hint,
        )

    def expect_word(self, word: str, expected: str | None = None) -> Token:
        if not self.token.is_word(word):
            raise self.fail(expected or word)
        return self.advance()

    def expect_symbol(self, symbol: str, expected: str | None = None) -> Token:
        if not self.token.is_symbol(symbol):
            raise self.fail(expected or f"'{symbol}'")
        return self.advance()

    def expect_end(self, expected: str) -> None:
        if self.token.kind is not Kind.END:
            raise self.fail(expected)

    # query

    def query(self) -> Query:
        select_start = self.expect_word("SELECT").start
        top: int | None = None
        if self.token.is_word("TOP"):
            self.advance()
            top = self.top_count()
        select_at = self.token.start
        raw_select: Star | list[_RawProjection]
        if self.token.is_symbol("*"):
            self.advance()
            raw_select = STAR
            after_select = "FROM"
        else:
            raw_select = [self.projection()]
            while self.token.is_symbol(","):
                self.advance()
                raw_select.append(self.projection())
            after_select = "',' or FROM"
        self.expect_word("FROM", after_select)
        self.collection = self.collection_name()
        select = self.finish_select(raw_select, select_at, top, select_start)
        where: Condition | None = None
        next_clause = "WHERE, GROUP BY or the end of the query"
        if self.token.is_word("WHERE"):
            self.advance()
            where = self.condition(0, "a condition")
            next_clause = "AND, OR, GROUP BY or the end of the query"
        group_by: tuple[Path, ...] = ()
        if self.token.is_word("GROUP"):
            group_at = self.advance().start
            self.expect_word("BY")
            group_by = self.group_by(group_at)
            next_clause = "',' or the end of the query"
        self.expect_end(next_clause)
        query = Query(select=select, from_=self.collection, where=where, group_by=group_by, top=top)
        self.check_aggregates(query, raw_select, select_at)
        return query

    def top_count(self) -> int:
        token = self.token
        if token.kind is not Kind.NUMBER or not isinstance(token.value, int) or token.text.startswith("-"):
            raise self.fail("a whole number of rows after TOP", after=False)
        if token.value > MAX_TOP:
            raise rule_error(token.start, f"at most {MAX_TOP}", f"TOP allows at most {MAX_TOP} rows")
        self.advance()
        return token.value

    def projection(self) -> _RawProjection:
        token = self.token
        start = token.start
        path: _RawPath | None
        if token.kind is Kind.NAME and self.peek().is_symbol("("):
            if token.text.upper() != "COUNT":
                raise self.fail(
                    "a property path or COUNT()",
                    hint=f"{token.text.upper()}() is not supported; only COUNT() is",
                )
            self.advance()
            self.advance()
            self.expect_symbol(")", "')' (COUNT takes no argument)")
            path = None
        elif token.kind is Kind.NAME and not token.reserved:
            path = self.raw_path()
        else:
            raise self.fail("a property path, COUNT() or *")
        alias: str | None = None
        if self.token.is_word("AS"):
            self.advance()
            name = self.token
            if name.kind is not Kind.NAME or name.reserved or name.text.startswith("$"):
                raise self.fail("a name for the result property (a letter or _ first)")
            alias = self.advance().text
        return _RawProjection(path, alias, start)

    def collection_name(self) -> Collection:
        expected = "devices, devices.modules or devices.jobs"
        if not self.token.is_word("DEVICES"):
            raise self.fail(expected)
        self.advance()
        if not self.token.is_symbol("."):
            return Collection.DEVICES
        self.advance()
        if self.token.is_word("MODULES"):
            self.advance()
            return Collection.MODULES
        if self.token.is_word("JOBS"):
            self.advance()
            return Collection.JOBS
        raise self.fail("modules or jobs")

    def finish_select(
        self, raw: Star | list[_RawProjection], at: int, top: int | None, select_start: int
    ) -> Star | tuple[Projection, ...]:
        if self.collection is Collection.JOBS and (not isinstance(raw, Star) or top is not None):
            raise rule_error(
                select_start if top is not None else at,
                "SELECT *",
                "devices.jobs queries allow only SELECT * (no projections, TOP or COUNT())",
            )
        if isinstance(raw, Star):
            return raw
        projections: list[Projection] = []
        for item in raw:
            if item.path is None:
                if self.collection is not Collection.DEVICES:
                    raise rule_error(item.start, "a property path", "COUNT() works only FROM devices")
                projections.append(CountProjection(item.alias))
            else:
                projections.append(PathProjection(self.resolve(item.path), item.alias))
        names = result_names(tuple(projections))
        seen: set[str] = set()
        for item, name in zip(raw, names, strict=True):
            if name in seen:
                raise rule_error(
                    item.start,
                    "a result name not used before",
                    f"the result already has a property '{name}'; name this one differently with AS",
                )
            seen.add(name)
        return tuple(projections)

    def group_by(self, group_at: int) -> tuple[Path, ...]:
        if self.collection is not Collection.DEVICES:
            raise rule_error(group_at, "the end of the query", "GROUP BY works only FROM devices")
        paths = [self.path("a property path to group by")]
        while self.token.is_symbol(","):
            self.advance()
            paths.append(self.path("a property path to group by"))
        return tuple(paths)

    def check_aggregates(self, query: Query, raw: Star | list[_RawProjection], select_at: int) -> None:
        if isinstance(query.select, Star) or isinstance(raw, Star):
            if query.group_by:
                raise rule_error(
                    select_at,
                    "a list of the grouped paths and COUNT()",
                    "GROUP BY needs a SELECT list, not *",
                )
            return
        has_count = any(isinstance(p, CountProjection) for p in query.select)
        for item, projection in zip(raw, query.select, strict=True):
            if not isinstance(projection, PathProjection):
                continue
            if query.group_by and projection.path not in query.group_by:
                raise rule_error(
                    item.start,
                    "a path named in GROUP BY, or COUNT()",
                    f"'{projection.path.dotted}' is not in GROUP BY; select only grouped paths and COUNT()",
                )
            if has_count and not query.group_by:
                raise rule_error(
                    item.start,
                    "COUNT() alone, or GROUP BY",
                    f"'{projection.path.dotted}' next to COUNT() needs GROUP BY {projection.path.dotted}",
                )

    # paths

    def raw_path(self) -> _RawPath:
        start = self.token.start
        segments = [self.advance().text]
        while self.token.is_symbol("."):
            self.advance()
            if self.token.kind is not Kind.NAME:
                raise self.fail("a property name")
            segments.append(self.advance().text)
        return _RawPath(tuple(segments), start)

    def path(self, expected: str) -> Path:
        if self.token.kind is not Kind.NAME or self.token.reserved:
            raise self.fail(expected)
        if self.peek().is_symbol("("):
            raise self.fail(expected, hint="a function cannot be used here")
        return self.resolve(self.raw_path())

    def resolve(self, raw: _RawPath) -> Path:
        """The path as this collection's documents hold it (prefix stripped, top-level name canonical)."""
        segments = raw.segments
        if self.collection is Collection.JOBS:
            if len(segments) > 2 and segments[0].lower() == "devices" and segments[1].lower() == "jobs":
                segments = segments[2:]
            canonical = _JOB_NAMES.get(segments[0].lower())
            if canonical is None:
                raise rule_error(
                    raw.start,
                    "a devices.jobs field",
                    f"devices.jobs rows have no field '{segments[0]}' "
                    f"(they have {', '.join(JOB_ROW_FIELDS)}); "
                    "a devices.jobs query cannot test twin properties",
                )
            return Path((canonical, *segments[1:]))
        canonical = _TWIN_NAMES.get(segments[0].lower())
        return Path(segments if canonical is None else (canonical, *segments[1:]))

    # conditions

    def condition(self, depth: int, expected: str) -> Condition:
        operands = [self.and_condition(depth, expected)]
        while self.token.is_word("OR"):
            self.advance()
            operands.append(self.and_condition(depth, "a condition"))
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_condition(self, depth: int, expected: str) -> Condition:
        operands = [self.not_condition(depth, expected)]
        while self.token.is_word("AND"):
            self.advance()
            operands.append(self.not_condition(depth, "a condition"))
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def deeper(self, depth: int) -> int:
        if depth >= MAX_NESTING:
            raise rule_error(
                self.token.start,
                f"at most {MAX_NESTING} nested parentheses and NOTs",
                f"conditions may nest at most {MAX_NESTING} parentheses and NOTs deep",
            )
        return depth + 1

    def not_condition(self, depth: int, expected: str) -> Condition:
        if self.token.is_word("NOT"):
            inner = self.deeper(depth)
            self.advance()
            return Not(self.not_condition(inner, "a condition"))
        if self.token.is_symbol("("):
            inner = self.deeper(depth)
            self.advance()
            condition = self.condition(inner, "a condition")
            self.expect_symbol(")", "AND, OR or ')'")
            return condition
        return self.predicate(expected)

    def predicate(self, expected: str) -> Condition:
        token = self.token
        if token.kind is Kind.NAME and self.peek().is_symbol("("):
            return self.function()
        left = self.operand(expected)
        if isinstance(left, Path) and (self.token.is_word("IN") or self.token.is_word("NIN")):
            negated = self.advance().text.upper() == "NIN"
            return InList(left, self.constant_list(), negated)
        if self.token.kind is Kind.SYMBOL and self.token.text in _COMPARISONS:
            op = _COMPARISONS[self.advance().text]
            return Comparison(op, left, self.operand("a value"))
        if isinstance(left, Path):
            raise self.fail(f"{_COMPARISON_LIST}, IN or NIN")
        raise self.fail(_COMPARISON_LIST)

    def function(self) -> Condition:
        token = self.token
        name = token.text.upper()
        if name == "IS_DEFINED":
            self.advance()
            self.advance()
            path = self.path("a property path")
            self.expect_symbol(")", "')' (IS_DEFINED takes one path)")
            return IsDefined(path)
        if name in ("STARTSWITH", "ENDSWITH"):
            self.advance()
            self.advance()
            path = self.path("a property path")
            self.expect_symbol(",", "','")
            text = self.token
            if text.kind is not Kind.STRING:
                raise self.fail(f"a quoted string to compare the start or end of '{path.dotted}' with")
            self.advance()
            self.expect_symbol(")", f"')' ({name} takes a path and a string)")
            assert isinstance(text.value, str)
            return TextMatch(TextFunction(name), path, text.value)
        hint = "twin queries know IS_DEFINED, STARTSWITH and ENDSWITH"
        if name in ("STARTS_WITH", "ENDS_WITH"):
            hint = f"write {name.replace('_', '')} (STARTS_WITH is the routing language's spelling)"
        raise self.fail("a condition", hint=hint)

    def operand(self, expected: str) -> Operand:
        token = self.token
        if token.kind in (Kind.STRING, Kind.NUMBER):
            self.advance()
            return Literal(token.value)
        if token.is_word("TRUE") or token.is_word("FALSE") or token.is_word("NULL"):
            self.advance()
            return Literal({"TRUE": True, "FALSE": False, "NULL": None}[token.text.upper()])
        if token.kind is Kind.NAME and not token.reserved and not self.peek().is_symbol("("):
            return self.resolve(self.raw_path())
        hint = ""
        if token.kind is Kind.NAME and self.peek().is_symbol("("):
            hint = f"{token.text}() cannot be used as a value"
        raise self.fail(expected, hint=hint)

    def constant_list(self) -> tuple[Literal, ...]:
        self.expect_symbol("[", "'[' and a list of constants")
        values = [self.constant()]
        while self.token.is_symbol(","):
            self.advance()
            values.append(self.constant())
        self.expect_symbol("]", "',' or ']'")
        return tuple(values)

    def constant(self) -> Literal:
        token = self.token
        if token.kind in (Kind.STRING, Kind.NUMBER):
            self.advance()
            return Literal(token.value)
        if token.is_word("TRUE") or token.is_word("FALSE") or token.is_word("NULL"):
            self.advance()
            return Literal({"TRUE": True, "FALSE": False, "NULL": None}[token.text.upper()])
        hint = f"put names in quotes: '{token.text}'" if token.kind is Kind.NAME else ""
        raise self.fail(_CONSTANT, hint=hint)


def parse(text: str) -> Query:
    """Parse a whole query (``SELECT ... FROM ... [WHERE ...] [GROUP BY ...]``).

    Raises:
        QuerySyntaxError: the text is not a query of the supported language.
        TypeError: ``text`` is not a string.
    """
    return _Parser(text).query()


def parse_condition(text: str, collection: Collection = Collection.DEVICES) -> Condition:
    """Parse a bare condition (what follows WHERE), with ``collection``'s path rules.

    Raises:
        QuerySyntaxError: as :func:`parse`.
    """
    parser = _Parser(text)
    parser.collection = collection
    condition = parser.condition(0, "a condition")
    parser.expect_end("AND, OR or the end of the condition")
    return condition


def parse_job_condition(text: str) -> Condition | None:
    """Parse a job's ``queryCondition``: ``*`` (every device: None) or a condition on device twins.

    Raises:
        QuerySyntaxError: as :func:`parse`; a full ``SELECT`` query is refused with a hint.
    """
    parser = _Parser(text)
    if parser.token.is_symbol("*"):
        parser.advance()
        parser.expect_end("the end of the condition")
        return None
    if parser.token.is_word("SELECT"):
        raise parser.fail(
            "'*' or a condition", hint="a job's queryCondition is only what would follow WHERE", after=False
        )
    condition = parser.condition(0, "'*' or a condition")
    parser.expect_end("AND, OR or the end of the condition")
    return condition
