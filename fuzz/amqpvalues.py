"""AMQP 1.0 values as trees the fuzzer can mutate, and their encoding, built by hand.

A :class:`V` is one encoded value: its constructor byte and what follows it — the fixed or
variable-width bytes of a primitive, the items of a list, map or array, or the descriptor and value
of a described type. :func:`enc` writes the bytes, using the real size and count fields unless a
mutation set a lie in ``size`` or ``count``. The encoder is independent of ``methodhub.amqp`` (so a
codec bug cannot hide on both sides, and a field can hold what no encoder writes: an unknown
constructor, a count larger than the data, a list8 announcing 255 bytes); the tests decode what it
writes with ``methodhub.amqp``'s decoder.

:func:`mutate_value` is the structure-aware mutation: it picks one node of a tree and changes its
type, its size or count field, its constructor, its descriptor, its nesting, or its text, or
re-encodes it in its wide (32-bit) form, which changes the bytes and keeps the value.
"""

from __future__ import annotations

import random
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")

FIXED_WIDTH = {
    **dict.fromkeys((0x40, 0x41, 0x42, 0x43, 0x44, 0x45), 0),
    **dict.fromkeys((0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56), 1),
    **dict.fromkeys((0x60, 0x61), 2),
    **dict.fromkeys((0x70, 0x71, 0x72, 0x73, 0x74), 4),
    **dict.fromkeys((0x80, 0x81, 0x82, 0x83, 0x84), 8),
    **dict.fromkeys((0x94, 0x98), 16),
}
"""Constructor -> bytes after it, for the fixed-width types (part 1 §1.6)."""
VARIABLE8 = frozenset((0xA0, 0xA1, 0xA3))
VARIABLE32 = frozenset((0xB0, 0xB1, 0xB3))
COMPOUND8 = frozenset((0xC0, 0xC1))
COMPOUND32 = frozenset((0xD0, 0xD1))
ARRAYS = frozenset((0xE0, 0xF0))
WIDE = {0xA0: 0xB0, 0xA1: 0xB1, 0xA3: 0xB3, 0xC0: 0xD0, 0xC1: 0xD1, 0xE0: 0xF0, 0x45: 0xD0}
RAW = -1
"""A :class:`V` of this code is ``raw`` bytes written as they are (very deep nesting, built flat)."""
UNKNOWN_CONSTRUCTORS = (0x01, 0x02, 0x3F, 0x46, 0x57, 0x5F, 0x62, 0x75, 0x85, 0x90, 0x99, 0xA2, 0xC2, 0xFF)


@dataclass(slots=True)
class V:
    """One AMQP value as it will be encoded.

    Attributes:
        code: the constructor byte (0x00: a described value, ``items`` = [descriptor, value]).
        raw: the bytes of a fixed-width value, or of a binary/string/symbol (without its length).
        items: the items of a list or map (keys and values alternating), the elements of an array,
            or the descriptor and value of a described value.
        element: an array's element constructor.
        size / count: lies to encode instead of the real size (length) and count.
    """

    code: int
    raw: bytes = b""
    items: list[V] = field(default_factory=list)
    element: int = 0
    size: int | None = None
    count: int | None = None

    def nodes(self) -> list[V]:
        """This node and every node under it, depth first."""
        out = [self]
        for item in self.items:
            out += item.nodes()
        return out

    def copy(self) -> V:
        return V(self.code, self.raw, [i.copy() for i in self.items], self.element, self.size, self.count)


def enc(v: V) -> bytes:
    out = bytearray()
    _enc(out, v)
    return bytes(out)


def _enc(out: bytearray, v: V) -> None:
    code = v.code
    if code == RAW:
        out += v.raw
        return
    if code == 0x00:
        out.append(0)
        for item in v.items[:2]:
            _enc(out, item)
        return
    if code in VARIABLE8:
        out += bytes((code, (len(v.raw) if v.size is None else v.size) & 0xFF)) + v.raw
        return
    if code in VARIABLE32:
        out.append(code)
        out += _U32.pack((len(v.raw) if v.size is None else v.size) & 0xFFFFFFFF) + v.raw
        return
    if code in COMPOUND8 or code in COMPOUND32 or code in ARRAYS:
        body = bytearray()
        if code in ARRAYS:
            body.append(v.element)
            for item in v.items:
                body += enc(item)[1:]  # array elements go without their constructor
        else:
            for item in v.items:
                _enc(body, item)
        count = len(v.items) if v.count is None else v.count
        if code in COMPOUND8 or code == 0xE0:
            size = len(body) + 1 if v.size is None else v.size
            out += bytes((code, size & 0xFF, count & 0xFF))
        else:
            size = len(body) + 4 if v.size is None else v.size
            out.append(code)
            out += _U32.pack(size & 0xFFFFFFFF) + _U32.pack(count & 0xFFFFFFFF)
        out += body
        return
    out.append(code)  # fixed width (or an unknown constructor: its raw bytes follow)
    out += v.raw


# -- builders: the smallest encoding, as a real encoder writes it -------------------------------------


def null() -> V:
    return V(0x40)


def boolean(value: bool) -> V:
    return V(0x41 if value else 0x42)


def ubyte(value: int) -> V:
    return V(0x50, bytes((value & 0xFF,)))


def ushort(value: int) -> V:
    return V(0x60, _U16.pack(value & 0xFFFF))


def uint(value: int) -> V:
    value &= 0xFFFFFFFF
    if value == 0:
        return V(0x43)
    if value < 256:
        return V(0x52, bytes((value,)))
    return V(0x70, _U32.pack(value))


def ulong(value: int) -> V:
    value &= 0xFFFFFFFFFFFFFFFF
    if value == 0:
        return V(0x44)
    if value < 256:
        return V(0x53, bytes((value,)))
    return V(0x80, _U64.pack(value))


def int32(value: int) -> V:
    if -128 <= value < 128:
        return V(0x54, bytes((value & 0xFF,)))
    return V(0x71, _I32.pack(value))


def long64(value: int) -> V:
    if -128 <= value < 128:
        return V(0x55, bytes((value & 0xFF,)))
    return V(0x81, _I64.pack(value))


def timestamp(ms: int) -> V:
    return V(0x83, _I64.pack(ms))


def uuid_value(value: uuid.UUID) -> V:
    return V(0x98, value.bytes)


def binary(data: bytes) -> V:
    return V(0xA0 if len(data) < 256 else 0xB0, data)


def string(text: str | bytes) -> V:
    raw = text.encode() if isinstance(text, str) else text
    return V(0xA1 if len(raw) < 256 else 0xB1, raw)


def symbol(text: str | bytes) -> V:
    raw = text.encode() if isinstance(text, str) else text
    return V(0xA3 if len(raw) < 256 else 0xB3, raw)


def _compound(code8: int, items: list[V]) -> V:
    body = sum(len(enc(i)) for i in items)
    if body + 1 < 256 and len(items) < 256:
        return V(code8, items=items)
    return V(WIDE[code8], items=items)


def list_value(items: list[V]) -> V:
    return V(0x45) if not items else _compound(0xC0, items)


def map_value(pairs: list[tuple[V, V]]) -> V:
    return _compound(0xC1, [x for pair in pairs for x in pair])


def symbol_array(names: list[str]) -> V:
    """An array of symbols (capabilities, mechanisms); sym8 elements when every name fits."""
    wide = any(len(n.encode()) > 255 for n in names)
    items = [V(0xB3 if wide else 0xA3, n.encode()) for n in names]
    element = 0xB3 if wide else 0xA3
    body = 1 + sum(len(enc(i)) - 1 for i in items)
    code = 0xE0 if body + 1 < 256 and len(items) < 256 else 0xF0
    return V(code, items=items, element=element)


def described(descriptor: int | str, value: V) -> V:
    return V(0x00, items=[ulong(descriptor) if isinstance(descriptor, int) else symbol(descriptor), value])


def composite(descriptor: int, fields: list[V | None]) -> V:
    """A described list with ``fields`` in order; trailing absent (None) fields are left off, as
    encoders do, and the others are null."""
    while fields and fields[-1] is None:
        fields.pop()
    return described(descriptor, list_value([f if f is not None else null() for f in fields]))


def fields_of(v: V) -> list[V] | None:
    """The field list of a composite (``described(descriptor, list)``), or None."""
    if v.code == 0x00 and len(v.items) == 2 and v.items[1].code in (0x45, 0xC0, 0xD0):
        return v.items[1].items
    return None


# -- structure-aware mutation -----------------------------------------------------------------------

BAD_UTF8 = (b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80")
LIES32 = (0xFFFFFFFF, 0xFFFFFFFE, 0x80000000, 0x7FFFFFFF, 0x10000, 0x1000000)
"""Sizes and counts a 32-bit field may lie with: the largest, "negative" ones (top bit set), large."""
SPECIAL_UINTS = (0, 1, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)


def _other_value(rng: random.Random) -> V:
    """A value of some type, to put where another type belongs."""
    choice = rng.randrange(16)
    if choice == 0:
        return null()
    if choice == 1:
        return boolean(rng.random() < 0.5)
    if choice == 2:
        return uint(rng.choice(SPECIAL_UINTS))
    if choice == 3:
        return ulong(rng.choice((0, 1, 1 << 32, (1 << 64) - 1)))
    if choice == 4:
        return int32(rng.choice((-1, -(1 << 31), (1 << 31) - 1, 0)))
    if choice == 5:
        return long64(rng.choice((-1, -(1 << 63), 0)))
    if choice == 6:
        return string(rng.choice(("", "x", "é中😀", "s" * 300)))
    if choice == 7:
        return symbol(rng.choice(("", "amqp:open:list", "x" * 300)))
    if choice == 8:
        return binary(rng.randbytes(rng.choice((0, 1, 16, 300))))
    if choice == 9:
        return uuid_value(uuid.UUID(int=rng.getrandbits(128)))
    if choice == 10:
        return list_value([uint(1), null(), string("a")])
    if choice == 11:
        return map_value([(string("k"), uint(1)), (symbol("s"), null())])
    if choice == 12:
        return symbol_array(["a", "b"])
    if choice == 13:
        return described(rng.choice((0x10, 0x12, 0x28, 0x77, 0x99)), list_value([]))
    if choice == 14:
        return V(0x56, bytes((rng.choice((0, 1, 2, 0xFF)),)))  # boolean: 2 and 0xFF are invalid
    return timestamp(rng.choice((0, -1, 1 << 62)))


def _nested(depth: int, kind: int) -> V:
    """Lists in lists (kind 0), maps in maps (1) or described values in described values (2),
    ``depth`` deep, as one raw node (a tree that deep would exhaust Python's recursion here)."""
    if kind == 2:
        return V(RAW, b"\x00\x53\x77" * depth + b"\x40")
    inner = b"\x45"
    for _ in range(depth):
        if kind == 0:
            inner = b"\xd0" + _U32.pack(len(inner) + 4) + _U32.pack(1) + inner
        else:
            inner = b"\xd1" + _U32.pack(len(inner) + 6) + _U32.pack(2) + b"\xa1\x01k" + inner
    return V(RAW, inner)


def _change_type(rng: random.Random, node: V) -> str:
    other = _other_value(rng)
    node.code, node.raw, node.items, node.element = other.code, other.raw, other.items, other.element
    node.size = node.count = None
    return "value-type"


def _lie_count(rng: random.Random, node: V) -> str:
    if node.code not in COMPOUND8 | COMPOUND32 | ARRAYS:
        return ""
    if node.code in WIDE and rng.random() < 0.6:
        node.code = WIDE[node.code]
    wide = node.code in COMPOUND32 or node.code == 0xF0
    real = len(node.items)
    node.count = (
        rng.choice(LIES32 if wide else (0xFF, 0xFE))
        if rng.random() < 0.6
        else real + rng.choice((-1, 1, 2, 3))
    )
    if node.count < 0:
        node.count = 0 if real else 1
    return "huge-count"


def _lie_size(rng: random.Random, node: V) -> str:
    if node.code in VARIABLE8 | VARIABLE32 | COMPOUND8 | COMPOUND32 | ARRAYS:
        if node.code in WIDE and rng.random() < 0.5:
            node.code = WIDE[node.code]
        wide = node.code in VARIABLE32 | COMPOUND32 or node.code == 0xF0
        real = len(enc(node)) - (5 if wide else 2)
        if rng.random() < 0.5:
            node.size = rng.choice(LIES32) if wide else 0xFF
        else:
            node.size = max(0, real + rng.choice((-3, -1, 1, 2, 100)))
        return "huge-size"
    return ""


def _bad_constructor(rng: random.Random, node: V) -> str:
    node.code = rng.choice(UNKNOWN_CONSTRUCTORS)
    return "bad-constructor"


def _bad_text(rng: random.Random, node: V) -> str:
    if node.code not in (0xA1, 0xB1, 0xA3, 0xB3):
        return ""
    bad = rng.choice(BAD_UTF8) if node.code in (0xA1, 0xB1) else rng.choice((b"\x80", "é".encode(), b"\xff"))
    pos = rng.randrange(len(node.raw) + 1)
    node.raw = node.raw[:pos] + bad + node.raw[pos:]
    return "bad-utf8"


def _bad_descriptor(rng: random.Random, node: V) -> str:
    if node.code != 0x00 or not node.items:
        return ""
    node.items[0] = rng.choice(
        (
            ulong(rng.choice((0x00, 0x19, 0x1F, 0x30, 0x41, 0x73, 0x77, 0xFFFF, (1 << 64) - 1))),
            symbol(rng.choice(("amqp:bogus:list", "amqp:open:list", "amqp:sasl-init:list", ""))),
            null(),
            list_value([ulong(0x10)]),
            string("amqp:open:list"),  # a string, not a symbol
            described(0x10, ulong(0x10)),  # a described descriptor
        )
    )
    return "bad-descriptor"


def _drop_fields(rng: random.Random, node: V) -> str:
    if node.code not in (0xC0, 0xD0) or not node.items:
        return ""
    del node.items[rng.randrange(len(node.items)) :]
    if not node.items and rng.random() < 0.5:
        node.code = 0x45
    return "drop-fields"


def _extra_fields(rng: random.Random, node: V) -> str:
    if node.code not in (0x45, 0xC0, 0xD0):
        return ""
    if node.code == 0x45:
        node.code = 0xC0
    node.items += [_other_value(rng) for _ in range(rng.choice((1, 2, 20)))]
    return "extra-fields"


def _deep(rng: random.Random, node: V) -> str:
    other = _nested(rng.choice((31, 32, 33, 100, 1000, 20000)), rng.randrange(3))
    node.code, node.raw, node.items, node.size, node.count = other.code, other.raw, other.items, None, None
    return "deep-nesting"


def _bad_array(rng: random.Random, node: V) -> str:
    choice = rng.randrange(4)
    if choice == 0:  # elements of a zero-width type, and a count far beyond them
        node.code, node.element = 0xF0, rng.choice((0x40, 0x41, 0x43, 0x45))
        node.items = [V(node.element)] * rng.randint(0, 3)
        node.count, node.size, node.raw = rng.choice(LIES32), None, b""
    elif choice == 1:  # an unknown (or described) element constructor
        node.code, node.element, node.raw = 0xE0, rng.choice((0x00, 0x01, 0xFF, 0x57)), b""
        node.items = [V(node.element, b"\x53\x10")]
        node.size = node.count = None
    elif choice == 2:  # elements that do not match the element constructor
        node.code, node.element, node.raw = 0xE0, 0xA3, b""
        node.items = [symbol("a"), uint(7), string("b")]
        node.size = node.count = None
    else:  # an array with no element constructor at all
        node.code, node.items, node.raw, node.element = 0xE0, [], b"", 0
        node.size, node.count = 1, 0
    return "bad-array"


def _wide(rng: random.Random, node: V) -> str:
    """The same value in its 32-bit encoding (list32 for list8, str32 for str8, uint for smalluint,
    ...): well-formed, and the decoder's other branch."""
    if node.code in WIDE and node.size is None and node.count is None:
        node.code = WIDE[node.code]
        return "wide-encoding"
    if node.code == 0x52:
        node.code, node.raw = 0x70, b"\x00\x00\x00" + node.raw
    elif node.code == 0x43:
        node.code, node.raw = 0x70, b"\x00\x00\x00\x00"
    elif node.code == 0x53:
        node.code, node.raw = 0x80, b"\x00" * 7 + node.raw
    elif node.code == 0x44:
        node.code, node.raw = 0x80, b"\x00" * 8
    elif node.code in (0x41, 0x42):
        node.raw, node.code = bytes((1 if node.code == 0x41 else 0,)), 0x56
    else:
        return ""
    return "wide-encoding"


def _special_number(rng: random.Random, node: V) -> str:
    if node.code in (0x43, 0x52, 0x70):
        value = rng.choice(SPECIAL_UINTS)
        node.code, node.raw = 0x70, _U32.pack(value)
    elif node.code in (0x44, 0x53, 0x80):
        node.code, node.raw = 0x80, _U64.pack(rng.choice((0, (1 << 64) - 1, 1 << 63, 1 << 32)))
    elif node.code in (0x54, 0x71):
        node.code, node.raw = 0x71, _I32.pack(rng.choice((-1, -(1 << 31), (1 << 31) - 1)))
    elif node.code == 0x60:
        node.raw = _U16.pack(rng.choice((0, 0xFFFF, 0x8000)))
    elif node.code == 0x50:
        node.raw = bytes((rng.choice((0, 2, 3, 0x80, 0xFF)),))
    else:
        return ""
    return "special-number"


_MUTATORS: tuple[Callable[[random.Random, V], str], ...] = (
    _change_type,
    _lie_count,
    _lie_count,
    _lie_size,
    _lie_size,
    _bad_constructor,
    _bad_text,
    _bad_descriptor,
    _drop_fields,
    _extra_fields,
    _deep,
    _bad_array,
    _wide,
    _special_number,
    _special_number,
)
WELL_FORMED_VALUE_MUTATIONS = frozenset(("wide-encoding",))
"""Value mutations that keep the value (and so the frame) well-formed."""


def mutate_value(rng: random.Random, root: V) -> str:
    """Mutate one node of ``root`` in place; the mutation's name ('' when none applied)."""
    nodes = root.nodes()
    for _ in range(8):
        node = nodes[rng.randrange(len(nodes))]
        name = _MUTATORS[rng.randrange(len(_MUTATORS))](rng, node)
        if name:
            return name
    return ""
