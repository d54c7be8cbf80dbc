"""Hypothesis strategies for AMQP values, and a comparison that also checks AMQP types."""

from __future__ import annotations

import math
import struct
import uuid
from typing import Any

from hypothesis import strategies as st

from methodhub.amqp import (
    Array,
    Byte,
    Char,
    Decimal32,
    Decimal64,
    Decimal128,
    Described,
    Float,
    Int,
    Long,
    Short,
    Symbol,
    Timestamp,
    UByte,
    UInt,
    ULong,
    UShort,
)


def _ints(cls: Any) -> st.SearchStrategy[Any]:
    return st.integers(cls.LOW, cls.HIGH).map(cls)


symbols = st.text(st.characters(max_codepoint=127), max_size=300).map(Symbol)
chars = st.characters(exclude_categories=("Cs",)).map(Char)
floats32 = st.floats(width=32).map(Float)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    _ints(UByte),
    _ints(UShort),
    _ints(UInt),
    _ints(ULong),
    _ints(Byte),
    _ints(Short),
    _ints(Int),
    _ints(Long),
    _ints(Timestamp),
    floats32,
    st.floats(),
    chars,
    st.binary(min_size=4, max_size=4).map(Decimal32),
    st.binary(min_size=8, max_size=8).map(Decimal64),
    st.binary(min_size=16, max_size=16).map(Decimal128),
    st.uuids(),
    st.binary(max_size=300),
    st.text(max_size=300),
    symbols,
)
hashable_keys = st.one_of(st.text(max_size=20), symbols, _ints(ULong), _ints(Int), st.none(), st.booleans())

_ARRAY_ELEMENTS: list[tuple[type, st.SearchStrategy[Any]]] = [
    (Symbol, symbols),
    (str, st.text(max_size=300)),
    (bytes, st.binary(max_size=300)),
    (UInt, _ints(UInt)),
    (ULong, _ints(ULong)),
    (Int, _ints(Int)),
    (Long, _ints(Long)),
    (UByte, _ints(UByte)),
    (UShort, _ints(UShort)),
    (Short, _ints(Short)),
    (Byte, _ints(Byte)),
    (bool, st.booleans()),
    (uuid.UUID, st.uuids()),
    (Timestamp, _ints(Timestamp)),
    (Float, floats32),
    (float, st.floats()),
    (Char, chars),
]
arrays = st.one_of(
    *(
        st.lists(items, max_size=20).map(lambda xs, e=element: Array(xs, e))
        for element, items in _ARRAY_ELEMENTS
    ),
    st.lists(st.lists(_ints(UInt), max_size=5), max_size=5).map(lambda xs: Array(xs, list)),
    st.lists(_ints(UInt), max_size=5).map(lambda xs: Array(xs, UInt, descriptor=ULong(0x77))),
)


def values(max_leaves: int = 40) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.one_of(scalars, arrays),
        lambda children: st.one_of(
            st.lists(children, max_size=8),
            st.dictionaries(hashable_keys, children, max_size=6),
            st.tuples(st.one_of(_ints(ULong), symbols), children).map(lambda pair: Described(*pair)),
        ),
        max_leaves=max_leaves,
    )


def same(a: Any, b: Any) -> bool:
    """Equal and of the same AMQP type, all the way down (NaN equals NaN bit for bit)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            fmt = ">f" if type(a) is Float else ">d"
            return struct.pack(fmt, a) == struct.pack(fmt, b)
        return a == b
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, Described):
        return same(a.descriptor, b.descriptor) and same(a.value, b.value)
    if isinstance(a, Array):
        return a.element is b.element and same(a.descriptor, b.descriptor) and same(a.items, b.items)
    return bool(a == b)
