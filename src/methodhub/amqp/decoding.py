"""Decoding AMQP 1.0 values (part 1): a table of decoders indexed by the constructor byte.

Bounds: a length or count larger than the data is refused before anything is allocated; nesting
deeper than MAX_DEPTH is refused; a truncated value raises DecodeError (the IndexError or
struct.error of reading past the end is turned into one at the entry points).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NoReturn, TypeAlias
from uuid import UUID, SafeUUID

from methodhub.amqp.errors import DecodeError
from methodhub.amqp.values import (
    MAX_DEPTH,
    Array,
    Buffer,
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

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
_U8U8 = struct.Struct(">BB")
_U32U32 = struct.Struct(">II")

_new_int = int.__new__
_new_str = str.__new__
_new_float = float.__new__

_UBYTES = [_new_int(UByte, i) for i in range(256)]
_SMALL_UINTS = [_new_int(UInt, i) for i in range(256)]
_SMALL_ULONGS = [_new_int(ULong, i) for i in range(256)]
_SMALL_INTS = [_new_int(Int, i) for i in range(-128, 128)]
_SMALL_LONGS = [_new_int(Long, i) for i in range(-128, 128)]
_BYTES = [_new_int(Byte, i) for i in range(-128, 128)]
UINT0 = _SMALL_UINTS[0]
ULONG0 = _SMALL_ULONGS[0]

Decoder: TypeAlias = Callable[[Buffer, int, int], tuple[Any, int]]
"""A constructor's decoder: (buffer, offset just after the constructor, depth) -> (value, next offset)."""


def _fail(reason: str) -> NoReturn:
    raise DecodeError(reason)


def _unknown(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    _fail(f"unknown constructor 0x{buf[pos - 1]:02x} at offset {pos - 1}")


def _null(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return None, pos


def _true(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return True, pos


def _false(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return False, pos


def _boolean(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    octet = buf[pos]
    if octet > 1:
        _fail(f"boolean (0x56) at offset {pos} is 0x{octet:02x}, not 0x00 or 0x01")
    return octet == 1, pos + 1


def _ubyte(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _UBYTES[buf[pos]], pos + 1


def _ushort(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _new_int(UShort, _U16.unpack_from(buf, pos)[0]), pos + 2


def _uint(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _new_int(UInt, _U32.unpack_from(buf, pos)[0]), pos + 4


def _smalluint(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _SMALL_UINTS[buf[pos]], pos + 1


def _uint0(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return UINT0, pos


def _ulong(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _new_int(ULong, _U64.unpack_from(buf, pos)[0]), pos + 8


def _smallulong(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _SMALL_ULONGS[buf[pos]], pos + 1


def _ulong0(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return ULONG0, pos


def _byte(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _BYTES[buf[pos] ^ 0x80], pos + 1  # two's complement: 0x80 -> -128 -> index 0


def _short(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _new_int(Short, _I16.unpack_from(buf, pos)[0]), pos + 2


def _int(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _new_int(Int, _I32.unpack_from(buf, pos)[0]), pos + 4


def _smallint(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _SMALL_INTS[buf[pos] ^ 0x80], pos + 1


def _long(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _new_int(Long, _I64.unpack_from(buf, pos)[0]), pos + 8


def _smalllong(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _SMALL_LONGS[buf[pos] ^ 0x80], pos + 1


def _float(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _new_float(Float, _F32.unpack_from(buf, pos)[0]), pos + 4


def _double(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _F64.unpack_from(buf, pos)[0], pos + 8


def _fixed_bytes(buf: Buffer, pos: int, size: int) -> bytes:
    end = pos + size
    if end > len(buf):
        _fail(f"value at offset {pos} needs {size} bytes, {len(buf) - pos} left")
    return bytes(buf[pos:end])


def _decimal32(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return bytes.__new__(Decimal32, _fixed_bytes(buf, pos, 4)), pos + 4


def _decimal64(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return bytes.__new__(Decimal64, _fixed_bytes(buf, pos, 8)), pos + 8


def _decimal128(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return bytes.__new__(Decimal128, _fixed_bytes(buf, pos, 16)), pos + 16


def _char(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    (point,) = _U32.unpack_from(buf, pos)
    if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
        _fail(f"char at offset {pos} is not a Unicode scalar value: 0x{point:x}")
    return _new_str(Char, chr(point)), pos + 4


def _timestamp(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _new_int(Timestamp, _I64.unpack_from(buf, pos)[0]), pos + 8


_new_object = object.__new__
_set_uuid_int = UUID.__dict__["int"].__set__
_set_uuid_is_safe = UUID.__dict__["is_safe"].__set__
_UNKNOWN = SafeUUID.unknown


def new_uuid(value: bytes) -> UUID:
    """``UUID(bytes=value)`` for 16 bytes, in a third of its time: what ``UUID.__init__`` ends with
    (its two slots set), without its argument checks (every uuid a device sends is decoded)."""
    if len(value) != 16:
        raise ValueError("a uuid is 16 bytes")
    uuid = _new_object(UUID)
    _set_uuid_int(uuid, int.from_bytes(value, "big"))
    _set_uuid_is_safe(uuid, _UNKNOWN)
    return uuid


def _uuid(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return new_uuid(_fixed_bytes(buf, pos, 16)), pos + 16


def _span8(buf: Buffer, pos: int, what: str) -> tuple[int, int]:
    start = pos + 1
    end = start + buf[pos]
    if end > len(buf):
        _fail(f"{what} at offset {pos - 1}: length {buf[pos]} runs past the end ({len(buf) - start} left)")
    return start, end


def _span32(buf: Buffer, pos: int, what: str) -> tuple[int, int]:
    start = pos + 4
    end = start + _U32.unpack_from(buf, pos)[0]
    if end > len(buf):
        _fail(f"{what} at offset {pos - 1}: length {end - start} runs past the end ({len(buf) - start} left)")
    return start, end


def _vbin8(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    start, end = _span8(buf, pos, "vbin8")
    return bytes(buf[start:end]), end


def _vbin32(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    start, end = _span32(buf, pos, "vbin32")
    return bytes(buf[start:end]), end


def _text(buf: Buffer, start: int, end: int) -> str:
    try:
        return str(buf[start:end], "utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"string at offset {start} is not valid UTF-8: {exc.reason}") from None


def _symbol_text(buf: Buffer, start: int, end: int) -> Symbol:
    try:
        return _new_str(Symbol, str(buf[start:end], "ascii"))
    except UnicodeDecodeError:
        raise DecodeError(f"symbol at offset {start} is not ASCII") from None


def _str8(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    start, end = _span8(buf, pos, "str8")
    return _text(buf, start, end), end


def _str32(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    start, end = _span32(buf, pos, "str32")
    return _text(buf, start, end), end


def _sym8(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    start, end = _span8(buf, pos, "sym8")
    return _symbol_text(buf, start, end), end


def _sym32(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    start, end = _span32(buf, pos, "sym32")
    return _symbol_text(buf, start, end), end


def _compound(buf: Buffer, pos: int, wide: bool, what: str) -> tuple[int, int, int]:
    """Size and count of a list/map/array: -> (count, offset of the first item, end offset)."""
    if wide:
        size, count = _U32U32.unpack_from(buf, pos)
        first, width = pos + 8, 4
    else:
        size, count = _U8U8.unpack_from(buf, pos)
        first, width = pos + 2, 1
    end = pos + width + size
    if size < width:
        _fail(f"{what} at offset {pos - 1}: size {size} is smaller than its count field")
    if end > len(buf):
        _fail(f"{what} at offset {pos - 1}: size {size} runs past the end ({len(buf) - pos - width} left)")
    if count > end - first:  # every item takes at least one byte (zero-width array items count one)
        _fail(f"{what} at offset {pos - 1}: count {count} does not fit in its {size} bytes")
    return count, first, end


def _items(buf: Buffer, pos: int, end: int, count: int, depth: int, what: str) -> list[Any]:
    if depth >= MAX_DEPTH:
        _fail(f"{what} at offset {pos}: nested deeper than {MAX_DEPTH}")
    items: list[Any] = []
    append = items.append
    table = _DECODERS
    depth += 1
    for _ in range(count):
        value, pos = table[buf[pos]](buf, pos + 1, depth)
        append(value)
    if pos != end:
        _fail(f"{what} ending at offset {end}: its items end at offset {pos}")
    return items


def _list0(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return [], pos


def _list8(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    count, first, end = _compound(buf, pos, False, "list8")
    return _items(buf, first, end, count, depth, "list8"), end


def _list32(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    count, first, end = _compound(buf, pos, True, "list32")
    return _items(buf, first, end, count, depth, "list32"), end


def _map(buf: Buffer, pos: int, depth: int, wide: bool) -> tuple[Any, int]:
    what = "map32" if wide else "map8"
    count, first, end = _compound(buf, pos, wide, what)
    if count & 1:
        _fail(f"{what} at offset {pos - 1} has an odd count {count}")
    items = _items(buf, first, end, count, depth, what)
    try:
        result = dict(zip(items[::2], items[1::2], strict=True))
    except TypeError:
        raise DecodeError(
            f"{what} at offset {pos - 1} has a key Python cannot hash (list, map, array)"
        ) from None
    if len(result) * 2 != count:
        _fail(f"{what} at offset {pos - 1} has duplicate keys (AMQP map keys are distinct)")
    return result, end


def _map8(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _map(buf, pos, depth, False)


def _map32(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _map(buf, pos, depth, True)


def _array(buf: Buffer, pos: int, depth: int, wide: bool) -> tuple[Any, int]:
    what = "array32" if wide else "array8"
    count, first, end = _compound(buf, pos, wide, what)
    if first >= end:
        _fail(f"{what} at offset {pos - 1} has no element constructor")
    if depth >= MAX_DEPTH:
        _fail(f"{what} at offset {pos - 1}: nested deeper than {MAX_DEPTH}")
    code = buf[first]
    first += 1
    descriptor = None
    if code == 0x00:
        descriptor, first = _DECODERS[buf[first]](buf, first + 1, depth + 1)
        code = buf[first]
        first += 1
        if code == 0x00:
            _fail(f"{what} at offset {pos - 1}: nested described element constructors are not supported")
    element = _ELEMENT_TYPES.get(code)
    if element is None:
        _fail(f"{what} at offset {pos - 1}: unknown element constructor 0x{code:02x}")
    if count > end - first and code not in _ZERO_WIDTH:
        _fail(f"{what} at offset {pos - 1}: count {count} does not fit in its bytes")
    decoder = _DECODERS[code]
    items: list[Any] = []
    append = items.append
    cursor = first
    depth += 1
    for _ in range(count):
        value, cursor = decoder(buf, cursor, depth)
        append(value)
    if cursor != end:
        _fail(f"{what} ending at offset {end}: its elements end at offset {cursor}")
    return Array(items, element, descriptor), end


def _array8(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _array(buf, pos, depth, False)


def _array32(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return _array(buf, pos, depth, True)


def _described(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    if depth >= MAX_DEPTH:
        _fail(f"described value at offset {pos - 1}: nested deeper than {MAX_DEPTH}")
    table = _DECODERS
    descriptor, pos = table[buf[pos]](buf, pos + 1, depth + 1)
    value, pos = table[buf[pos]](buf, pos + 1, depth + 1)
    return Described(descriptor, value), pos


_DECODER_BY_CODE: dict[int, tuple[Decoder, type]] = {
    0x00: (_described, Described),
    0x40: (_null, type(None)),
    0x41: (_true, bool),
    0x42: (_false, bool),
    0x56: (_boolean, bool),
    0x50: (_ubyte, UByte),
    0x60: (_ushort, UShort),
    0x70: (_uint, UInt),
    0x52: (_smalluint, UInt),
    0x43: (_uint0, UInt),
    0x80: (_ulong, ULong),
    0x53: (_smallulong, ULong),
    0x44: (_ulong0, ULong),
    0x51: (_byte, Byte),
    0x61: (_short, Short),
    0x71: (_int, Int),
    0x54: (_smallint, Int),
    0x81: (_long, Long),
    0x55: (_smalllong, Long),
    0x72: (_float, Float),
    0x82: (_double, float),
    0x74: (_decimal32, Decimal32),
    0x84: (_decimal64, Decimal64),
    0x94: (_decimal128, Decimal128),
    0x73: (_char, Char),
    0x83: (_timestamp, Timestamp),
    0x98: (_uuid, UUID),
    0xA0: (_vbin8, bytes),
    0xB0: (_vbin32, bytes),
    0xA1: (_str8, str),
    0xB1: (_str32, str),
    0xA3: (_sym8, Symbol),
    0xB3: (_sym32, Symbol),
    0x45: (_list0, list),
    0xC0: (_list8, list),
    0xD0: (_list32, list),
    0xC1: (_map8, dict),
    0xD1: (_map32, dict),
    0xE0: (_array8, Array),
    0xF0: (_array32, Array),
}
_DECODERS: list[Decoder] = [_DECODER_BY_CODE.get(code, (_unknown, object))[0] for code in range(256)]
_ELEMENT_TYPES = {code: cls for code, (_, cls) in _DECODER_BY_CODE.items() if code != 0x00}
_ZERO_WIDTH = frozenset((0x40, 0x41, 0x42, 0x43, 0x44, 0x45))


def decode(data: Buffer, offset: int = 0) -> tuple[Any, int]:
    """Decode one value at ``offset`` -> (value, the offset after it). Raises :class:`DecodeError`."""
    try:
        return _DECODERS[data[offset]](data, offset + 1, 0)
    except (IndexError, struct.error):
        raise DecodeError(f"value starting at offset {offset} is truncated") from None


def decode_all(data: Buffer) -> list[Any]:
    """Every value in ``data``, one after another (a message's sections, say)."""
    values = []
    offset, end = 0, len(data)
    table = _DECODERS
    try:
        while offset < end:
            value, offset = table[data[offset]](data, offset + 1, 0)
            values.append(value)
    except (IndexError, struct.error):
        raise DecodeError(f"value starting at offset {offset} is truncated") from None
    return values
