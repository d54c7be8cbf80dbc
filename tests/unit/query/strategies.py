"""Hypothesis strategies for the query tests: any valid AST (round trips), and small pools of paths,
constants and documents that collide often (the evaluator vs SQL cross-checks)."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import strategies as st

from methodhub.query import (
    JOB_ROW_FIELDS,
    MAX_QUERY_LENGTH,
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
    Or,
    Path,
    PathProjection,
    Projection,
    Query,
    TextFunction,
    TextMatch,
    render,
    result_names,
)
from methodhub.query.tokenizer import RESERVED

# --- any valid AST ---------------------------------------------------------------------------------

_LETTERS = st.sampled_from("abcxyzABCXYZ_éßΩж")
_NAME_CHARS = st.sampled_from("abcxyzABCXYZ_éßΩж0129-")


@st.composite
def names(draw: st.DrawFn) -> str:
    """A name as the grammar writes one: a letter or _ first, then letters, digits, _ and -."""
    return draw(_LETTERS) + "".join(draw(st.lists(_NAME_CHARS, max_size=6)))


def segments() -> st.SearchStrategy[str]:
    """A path segment after a dot: any name, a $name, or a reserved word (``tags.from``)."""
    return st.one_of(
        names(), names().map(lambda n: "$" + n), st.sampled_from([*sorted(RESERVED), "count", "devices"])
    )


_TWIN_LOWER = {f.lower() for f in TWIN_FIELDS}
_JOB_LOWER = {f.lower() for f in JOB_ROW_FIELDS} | {"createdtimeutc"}


def first_segments(collection: Collection) -> st.SearchStrategy[str]:
    """A path's first segment as the parser leaves it: canonical system names, other names that are
    neither reserved nor a system name in another case."""
    if collection is Collection.JOBS:
        return st.sampled_from(JOB_ROW_FIELDS)
    other = st.one_of(names(), names().map(lambda n: "$" + n)).filter(
        lambda n: n.upper() not in RESERVED and n.lower() not in _TWIN_LOWER
    )
    return st.one_of(st.sampled_from(TWIN_FIELDS), other)


def paths(collection: Collection = Collection.DEVICES) -> st.SearchStrategy[Path]:
    return st.builds(
        lambda first, rest: Path((first, *rest)), first_segments(collection), st.lists(segments(), max_size=3)
    )


_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=12)
_int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
literal_values: st.SearchStrategy[LiteralValue] = st.one_of(
    _text, _int64, st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.none()
)
literals = literal_values.map(Literal)


def predicates(collection: Collection) -> st.SearchStrategy[Condition]:
    path = paths(collection)
    operand = st.one_of(path, literals)
    return st.one_of(
        st.builds(Comparison, st.sampled_from(ComparisonOp), operand, operand),
        st.builds(InList, path, st.lists(literals, min_size=1, max_size=4).map(tuple), st.booleans()),
        st.builds(IsDefined, path),
        st.builds(TextMatch, st.sampled_from(TextFunction), path, _text),
    )


def conditions(
    collection: Collection = Collection.DEVICES, leaves: st.SearchStrategy[Condition] | None = None
) -> st.SearchStrategy[Condition]:
    def extend(inner: st.SearchStrategy[Condition]) -> st.SearchStrategy[Condition]:
        many = st.lists(inner, min_size=2, max_size=4).map(tuple)
        return st.one_of(st.builds(And, many), st.builds(Or, many), st.builds(Not, inner))

    return st.recursive(predicates(collection) if leaves is None else leaves, extend, max_leaves=10)


_aliases = names().filter(lambda n: n.upper() not in RESERVED)


def _unique_names(projections: tuple[Projection, ...]) -> bool:
    names_ = result_names(projections)
    return len(set(names_)) == len(names_)


@st.composite
def queries(
    draw: st.DrawFn,
    path_strategy: st.SearchStrategy[Path] | None = None,
    condition_strategy: st.SearchStrategy[Condition] | None = None,
    collections: tuple[Collection, ...] = tuple(Collection),
    top: bool = True,
) -> Query:
    """A query the parser accepts (every rule of docs/query.md kept)."""
    collection = draw(st.sampled_from(collections))
    path = paths(collection) if path_strategy is None else path_strategy
    where = draw(st.none() | (conditions(collection) if condition_strategy is None else condition_strategy))
    alias = st.none() | _aliases
    if collection is Collection.JOBS:
        return Query(STAR, collection, where)
    select: Any = STAR
    group_by: tuple[Path, ...] = ()
    shape = draw(
        st.sampled_from(
            ["star", "paths", "count", "group"] if collection is Collection.DEVICES else ["star", "paths"]
        )
    )
    if shape == "paths":
        select = tuple(draw(st.lists(st.builds(PathProjection, path, alias), min_size=1, max_size=4)))
    elif shape == "count":
        select = tuple(draw(st.lists(st.builds(CountProjection, alias), min_size=1, max_size=2)))
    elif shape == "group":
        group_by = tuple(draw(st.lists(path, min_size=1, max_size=3)))
        grouped = st.builds(PathProjection, st.sampled_from(group_by), alias)
        items = st.one_of(grouped, st.builds(CountProjection, alias))
        select = tuple(draw(st.lists(items, min_size=1, max_size=4)))
    if select is not STAR and not _unique_names(select):
        select = tuple(
            PathProjection(p.path, f"n{i}") if isinstance(p, PathProjection) else CountProjection(f"n{i}")
            for i, p in enumerate(select)
        )
    limit = draw(st.none() | st.integers(min_value=0, max_value=2**31 - 1)) if top else None
    return Query(select, collection, where, group_by, limit)


def renders_within_limit(query: Query) -> bool:
    return len(render(query)) <= MAX_QUERY_LENGTH


# --- colliding pools for the cross-checks ----------------------------------------------------------

KEYS = ("a", "b", "s", "$version")
STRINGS = ("", "a", "ab", "abc", "b", "B", "ba", "é", "z", "a'b", "😀", "ﬀ", "A")
NUMBERS: tuple[int | float, ...] = (
    0,
    1,
    -1,
    2,
    3,
    1.0,
    0.5,
    -1.5,
    2.0,
    0.1,
    1e-07,
    2**53 + 1,
    9007199254740992.0,
)
SCALARS: tuple[LiteralValue, ...] = (None, True, False, *STRINGS, *NUMBERS)


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 3 and roll < 0.3:
        return random_object(rng, depth + 1)
    if depth < 3 and roll < 0.38:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return rng.choice(SCALARS)


def random_object(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    keys = rng.sample(KEYS, rng.randrange(len(KEYS) + 1))
    return {key: random_value(rng, depth) for key in keys}


def random_twin(rng: random.Random, index: int) -> dict[str, Any]:
    """A twin-shaped document: deviceId, status and version always, tags and properties sometimes,
    each holding values from the pools (so queries drawn from them hit)."""
    twin: dict[str, Any] = {"deviceId": f"dev{index}", "status": rng.choice(["enabled", "disabled", 1, None])}
    if rng.random() < 0.9:
        twin["version"] = rng.choice(NUMBERS)
    if rng.random() < 0.85:
        twin["tags"] = random_object(rng)
    if rng.random() < 0.7:
        twin["properties"] = {"desired": random_object(rng), "reported": random_object(rng)}
    return twin


def random_twins(seed: int, count: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [random_twin(rng, i) for i in range(count)]


twin_documents = st.integers(min_value=0, max_value=2**32).map(lambda seed: random_twins(seed, 12))

_pool_paths = st.one_of(
    st.sampled_from([Path(("deviceId",)), Path(("status",)), Path(("version",)), Path(("tags",))]),
    st.builds(
        lambda top, rest: Path((*top, *rest)),
        st.sampled_from([("tags",), ("properties", "desired"), ("properties", "reported")]),
        st.lists(st.sampled_from(KEYS), min_size=1, max_size=2),
    ),
)
_pool_literals = st.sampled_from(SCALARS).map(Literal)
_pool_text = st.sampled_from(STRINGS)


def pool_predicates() -> st.SearchStrategy[Condition]:
    operand = st.one_of(_pool_paths, _pool_paths, _pool_literals)
    return st.one_of(
        st.builds(Comparison, st.sampled_from(ComparisonOp), _pool_paths, _pool_literals),
        st.builds(Comparison, st.sampled_from(ComparisonOp), operand, operand),
        st.builds(
            InList, _pool_paths, st.lists(_pool_literals, min_size=1, max_size=4).map(tuple), st.booleans()
        ),
        st.builds(IsDefined, _pool_paths),
        st.builds(TextMatch, st.sampled_from(TextFunction), _pool_paths, _pool_text),
    )


pool_queries = queries(
    path_strategy=_pool_paths,
    condition_strategy=conditions(leaves=pool_predicates()),
    collections=(Collection.DEVICES,),
)


def canonical(value: Any) -> Any:
    """A value with numbers made comparable across backends (an integral float is its int)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    return [canonical(v) for v in value]


def row_multiset(rows: list[Any]) -> list[str]:
    return sorted(json.dumps(canonical(r), sort_keys=True) for r in rows)
