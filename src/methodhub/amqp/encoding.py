"""Encoding AMQP 1.0 values (part 1): always the smallest encoding, appended to a bytearray."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NoReturn, TypeAlias
from uuid import UUID

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

_U8 = struct.Struct(">B")
_U32 = struct.Struct(">I")
_U32U32 = struct.Struct(">II")


Encoder: TypeAlias = Callable[[bytearray, Any, int], None]
"""(output, value, depth) -> None: appends the value's smallest encoding."""

_C_U8 = struct.Struct(">BB")
_C_U16 = struct.Struct(">BH")
_C_U32 = struct.Struct(">BI")
_C_U64 = struct.Struct(">BQ")
_C_I8 = struct.Struct(">Bb")
_C_I16 = struct.Struct(">Bh")
_C_I32 = struct.Struct(">Bi")
_C_I64 = struct.Struct(">Bq")
_C_F32 = struct.Struct(">Bf")
_C_F64 = struct.Struct(">Bd")
_C_U8U8 = struct.Struct(">BBB")
_C_U32U32 = struct.Struct(">BII")


def _enc_null(out: bytearray, value: Any, depth: int) -> None:
    out.append(0x40)


def _enc_bool(out: bytearray, value: Any, depth: int) -> None:
    out.append(0x41 if value else 0x42)


def _enc_ubyte(out: bytearray, value: int, depth: int) -> None:
    out += _C_U8.pack(0x50, value)


def _enc_ushort(out: bytearray, value: int, depth: int) -> None:
    out += _C_U16.pack(0x60, value)


def enc_uint(out: bytearray, value: int, depth: int = 0) -> None:
    if value == 0:
        out.append(0x43)
    elif 0 < value < 256:
        out += _C_U8.pack(0x52, value)
    else:
        out += _C_U32.pack(0x70, value)


def enc_ulong(out: bytearray, value: int, depth: int = 0) -> None:
    if value == 0:
        out.append(0x44)
    elif 0 < value < 256:
        out += _C_U8.pack(0x53, value)
    else:
        out += _C_U64.pack(0x80, value)


def _enc_byte(out: bytearray, value: int, depth: int) -> None:
    out += _C_I8.pack(0x51, value)


def _enc_short(out: bytearray, value: int, depth: int) -> None:
    out += _C_I16.pack(0x61, value)


def enc_int(out: bytearray, value: int, depth: int = 0) -> None:
    if -128 <= value <= 127:
        out += _C_I8.pack(0x54, value)
    else:
        out += _C_I32.pack(0x71, value)


def _enc_long(out: bytearray, value: int, depth: int) -> None:
    if -128 <= value <= 127:
        out += _C_I8.pack(0x55, value)
    else:
        out += _C_I64.pack(0x81, value)


def _enc_timestamp(out: bytearray, value: int, depth: int) -> None:
    out += _C_I64.pack(0x83, value)


def _enc_float(out: bytearray, value: float, depth: int) -> None:
    out += _C_F32.pack(0x72, value)


def _enc_double(out: bytearray, value: float, depth: int) -> None:
    out += _C_F64.pack(0x82, value)


def _enc_decimal(out: bytearray, value: bytes, depth: int) -> None:
    out.append({4: 0x74, 8: 0x84, 16: 0x94}[len(value)])
    out += value


def _enc_char(out: bytearray, value: str, depth: int) -> None:
    out += _C_U32.pack(0x73, ord(value))


def _enc_uuid(out: bytearray, value: UUID, depth: int) -> None:
    out.append(0x98)
    out += value.bytes


def enc_binary(out: bytearray, value: Buffer, depth: int = 0) -> None:
    size = len(value) if not isinstance(value, memoryview) else value.nbytes
    out += _C_U8.pack(0xA0, size) if size < 256 else _C_U32.pack(0xB0, size)
    out += value


def enc_string(out: bytearray, value: str, depth: int = 0) -> None:
    data = value.encode("utf-8")
    size = len(data)
    out += _C_U8.pack(0xA1, size) if size < 256 else _C_U32.pack(0xB1, size)
    out += data


def enc_symbol(out: bytearray, value: str, depth: int = 0) -> None:
    data = value.encode("ascii")
    size = len(data)
    out += _C_U8.pack(0xA3, size) if size < 256 else _C_U32.pack(0xB3, size)
    out += data


def _too_deep() -> NoReturn:
    raise ValueError(f"value nested deeper than {MAX_DEPTH} (AMQP decoders here refuse it)")


def _compound_header(out: bytearray, body: bytearray, count: int, code8: int, code32: int) -> None:
    size = len(body)
    if size < 255 and count < 256:
        out += _C_U8U8.pack(code8, size + 1, count)
    else:
        out += _C_U32U32.pack(code32, size + 4, count)
    out += body


def enc_list(out: bytearray, value: list[Any] | tuple[Any, ...], depth: int = 0) -> None:
    if not value:
        out.append(0x45)
        return
    if depth >= MAX_DEPTH:
        _too_deep()
    body = bytearray()
    depth += 1
    encoders = _ENCODERS
    for item in value:
        (encoders.get(type(item)) or _encoder_for(item))(body, item, depth)
    _compound_header(out, body, len(value), 0xC0, 0xD0)


def enc_map(out: bytearray, value: dict[Any, Any], depth: int = 0) -> None:
    if depth >= MAX_DEPTH:
        _too_deep()
    body = bytearray()
    depth += 1
    encoders = _ENCODERS
    for key, item in value.items():
        (encoders.get(type(key)) or _encoder_for(key))(body, key, depth)
        (encoders.get(type(item)) or _encoder_for(item))(body, item, depth)
    _compound_header(out, body, 2 * len(value), 0xC1, 0xD1)


def _enc_described(out: bytearray, value: Described, depth: int) -> None:
    if depth >= MAX_DEPTH:
        _too_deep()
    out.append(0x00)
    encode_into(out, value.descriptor, depth + 1)
    encode_into(out, value.value, depth + 1)


# Array element encodings: (code of the 8-bit-or-small form, code of the wide form, how to write items).
_FIXED_ELEMENTS: dict[type, tuple[int, str]] = {
    UByte: (0x50, "B"),
    UShort: (0x60, "H"),
    Byte: (0x51, "b"),
    Short: (0x61, "h"),
    Float: (0x72, "f"),
    float: (0x82, "d"),
    Timestamp: (0x83, "q"),
    Char: (0x73, "I"),
}
_SMALL_OR_WIDE: dict[type, tuple[int, str, int, str, int, int]] = {
    UInt: (0x52, "B", 0x70, "I", 0, 255),
    ULong: (0x53, "B", 0x80, "Q", 0, 255),
    Int: (0x54, "b", 0x71, "i", -128, 127),
    Long: (0x55, "b", 0x81, "q", -128, 127),
}
_VARIABLE_ELEMENTS: dict[type, tuple[int, int]] = {
    bytes: (0xA0, 0xB0),
    str: (0xA1, 0xB1),
    Symbol: (0xA3, 0xB3),
    list: (0xC0, 0xD0),
    dict: (0xC1, 0xD1),
    Array: (0xE0, 0xF0),
}


def _element_bodies(array: Array, depth: int) -> list[bytes]:
    """Each element's encoding without its constructor (for variable-width element types)."""
    element = array.element
    bodies = []
    for item in array.items:
        if element is Symbol:
            bodies.append(item.encode("ascii"))
        elif element is str:
            bodies.append(item.encode("utf-8"))
        elif element is bytes:
            bodies.append(bytes(item))
        else:
            scratch = bytearray()
            if element is list:
                enc_list(scratch, list(item), depth)
                if scratch == b"\x45":
                    scratch = bytearray(b"\xc0\x01\x00")
            elif element is dict:
                enc_map(scratch, item, depth)
            else:
                _enc_array(scratch, item, depth)
            bodies.append(bytes(scratch))
    return bodies


def _variable_items(out: bytearray, array: Array, depth: int) -> None:
    code8, code32 = _VARIABLE_ELEMENTS[array.element]
    bodies = _element_bodies(array, depth)
    if array.element in (list, dict, Array):
        # Each body starts with its own 8- or 32-bit constructor; re-encode all in one width.
        wide = any(body[0] == code32 for body in bodies)
        out.append(code32 if wide else code8)
        for body in bodies:
            out += _widen(body, code8, code32) if wide else body[1:]
        return
    wide = any(len(body) > 255 for body in bodies)
    out.append(code32 if wide else code8)
    pack = _U32.pack if wide else _U8.pack
    for body in bodies:
        out += pack(len(body))
        out += body


def _widen(body: bytes, code8: int, code32: int) -> bytes:
    """A list8/map8/array8 encoding (constructor included) as the 32-bit form's body."""
    if body[0] == code32:
        return body[1:]
    size, count = body[1], body[2]
    return _U32U32.pack(size + 3, count) + body[3:]


def _enc_array(out: bytearray, value: Array, depth: int) -> None:
    if depth >= MAX_DEPTH:
        _too_deep()
    depth += 1
    items, element, count = value.items, value.element, len(value.items)
    body = bytearray()
    if value.descriptor is not None:
        body.append(0x00)
        encode_into(body, value.descriptor, depth)
    try:
        if element in _SMALL_OR_WIDE:
            small, small_fmt, wide, wide_fmt, low, high = _SMALL_OR_WIDE[element]
            fits = all(low <= item <= high for item in items)
            body.append(small if fits else wide)
            body += struct.pack(f">{count}{small_fmt if fits else wide_fmt}", *items)
        elif element in _FIXED_ELEMENTS:
            code, fmt = _FIXED_ELEMENTS[element]
            body.append(code)
            body += struct.pack(f">{count}{fmt}", *(ord(i) for i in items) if element is Char else items)
        elif element is bool:
            body.append(0x56)
            body += bytes(1 if item else 0 for item in items)
        elif element is UUID:
            body.append(0x98)
            body += b"".join(item.bytes for item in items)
        elif element is type(None):
            body.append(0x40)
        elif element in (Decimal32, Decimal64, Decimal128):
            body.append({Decimal32: 0x74, Decimal64: 0x84, Decimal128: 0x94}[element])
            body += b"".join(element(item) for item in items)
        elif element in _VARIABLE_ELEMENTS:
            _variable_items(body, value, depth)
        else:
            raise TypeError(f"no AMQP array of {element.__name__}")
    except struct.error as exc:
        raise ValueError(f"array of {element.__name__}: an item does not fit: {exc}") from None
    _compound_header(out, body, count, 0xE0, 0xF0)


_ENCODERS: dict[type, Encoder] = {
    type(None): _enc_null,
    bool: _enc_bool,
    int: _enc_long,
    float: _enc_double,
    str: enc_string,
    bytes: enc_binary,
    bytearray: enc_binary,
    memoryview: enc_binary,
    UUID: _enc_uuid,
    list: enc_list,
    tuple: enc_list,
    dict: enc_map,
    UByte: _enc_ubyte,
    UShort: _enc_ushort,
    UInt: enc_uint,
    ULong: enc_ulong,
    Byte: _enc_byte,
    Short: _enc_short,
    Int: enc_int,
    Long: _enc_long,
    Timestamp: _enc_timestamp,
    Float: _enc_float,
    Char: _enc_char,
    Symbol: enc_symbol,
    Decimal32: _enc_decimal,
    Decimal64: _enc_decimal,
    Decimal128: _enc_decimal,
    Described: _enc_described,
    Array: _enc_array,
}


def _encoder_for(value: Any) -> Encoder:
    """The encoder of a subclass (an IntEnum, say) is its nearest AMQP base's."""
    for base in type(value).__mro__:
        found = _ENCODERS.get(base)
        if found is not None:
            return found
    raise TypeError(f"no AMQP encoding for {type(value).__name__}: {value!r}")


def encode_into(out: bytearray, value: Any, depth: int = 0) -> None:
    """Append the smallest AMQP encoding of ``value`` to ``out``.

    Raises TypeError for a value with no AMQP type, ValueError for one out of its type's range.
    """
    try:
        (_ENCODERS.get(type(value)) or _encoder_for(value))(out, value, depth)
    except struct.error as exc:
        raise ValueError(f"value out of range for its AMQP type: {exc}") from None


def encode(value: Any) -> bytes:
    """The smallest AMQP encoding of ``value``."""
    out = bytearray()
    encode_into(out, value)
    return bytes(out)


def register_encoder(cls: type, encoder: Encoder) -> None:
    """Let ``encode`` write instances of ``cls`` (and its subclasses) with ``encoder``.

    :mod:`methodhub.amqp.composite` registers its composites this way (this module cannot import it).
    """
    _ENCODERS[cls] = encoder
