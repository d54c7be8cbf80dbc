"""The AMQP 1.0 type system (OASIS AMQP 1.0 part 1): Python values ↔ bytes.

Python ↔ AMQP: ``None`` null, ``bool`` boolean, ``str`` string (UTF-8), ``bytes``/``bytearray``/
``memoryview`` binary, :class:`uuid.UUID` uuid, ``list``/``tuple`` list, ``dict`` map, a plain ``int``
long, a plain ``float`` double. Every other AMQP type has a class here (:class:`UInt`,
:class:`Symbol`, ...): a subclass of the Python type it behaves as, range-checked when made.
Decoding gives these classes back (a long as :class:`Long`, a double as ``float``), so
``decode(encode(x))`` equals ``x`` and keeps its AMQP type.

Encoding is always the smallest one the spec allows (uint0/smalluint, list0/list8/list32,
str8/str32, ...). Decoding accepts every encoding, dispatching on the constructor byte through a
table; anything malformed or truncated raises :class:`DecodeError` (never IndexError,
struct.error or UnicodeDecodeError), a length or count larger than the data is refused before
anything is allocated, and nesting deeper than :data:`MAX_DEPTH` is refused. Section numbers are
those of part 1 (§1.6 primitive types, §1.2 described types, §1.6.24 arrays).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, NoReturn, TypeAlias
from uuid import UUID

from methodhub.amqp.errors import DecodeError

MAX_DEPTH = 32
"""Nesting of lists, maps, arrays and described values a decoded (or encoded) value may have."""

Buffer: TypeAlias = bytes | bytearray | memoryview

# -- the explicit types -----------------------------------------------------------------------------


class _RangedInt(int):
    __slots__ = ()
    LOW: ClassVar[int]
    HIGH: ClassVar[int]

    def __new__(cls, value: int = 0) -> Any:
        self = int.__new__(cls, value)
        if not cls.LOW <= self <= cls.HIGH:
            raise ValueError(f"{cls.__name__} out of range [{cls.LOW}, {cls.HIGH}]: {int(value)}")
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self)})"


class UByte(_RangedInt):
    """ubyte (0x50): 0 .. 255."""

    __slots__ = ()
    LOW, HIGH = 0, 0xFF


class UShort(_RangedInt):
    """ushort (0x60): 0 .. 65535."""

    __slots__ = ()
    LOW, HIGH = 0, 0xFFFF


class UInt(_RangedInt):
    """uint (0x70, smalluint 0x52, uint0 0x43)."""

    __slots__ = ()
    LOW, HIGH = 0, 0xFFFF_FFFF


class ULong(_RangedInt):
    """ulong (0x80, smallulong 0x53, ulong0 0x44)."""

    __slots__ = ()
    LOW, HIGH = 0, 0xFFFF_FFFF_FFFF_FFFF


class Byte(_RangedInt):
    """byte (0x51): -128 .. 127."""

    __slots__ = ()
    LOW, HIGH = -0x80, 0x7F


class Short(_RangedInt):
    """short (0x61)."""

    __slots__ = ()
    LOW, HIGH = -0x8000, 0x7FFF


class Int(_RangedInt):
    """int (0x71, smallint 0x54)."""

    __slots__ = ()
    LOW, HIGH = -0x8000_0000, 0x7FFF_FFFF


class Long(_RangedInt):
    """long (0x81, smalllong 0x55). A plain ``int`` encodes as a long too."""

    __slots__ = ()
    LOW, HIGH = -0x8000_0000_0000_0000, 0x7FFF_FFFF_FFFF_FFFF


class Timestamp(_RangedInt):
    """timestamp (0x83): milliseconds since the Unix epoch, signed 64-bit."""

    __slots__ = ()
    LOW, HIGH = -0x8000_0000_0000_0000, 0x7FFF_FFFF_FFFF_FFFF


_F32 = struct.Struct(">f")


class Float(float):
    """float (0x72): IEEE 754 binary32; the value is rounded to 32 bits when made."""

    __slots__ = ()

    def __new__(cls, value: float = 0.0) -> Float:
        try:
            (rounded,) = _F32.unpack(_F32.pack(value))
        except OverflowError:
            raise ValueError(f"Float out of range: {value!r}") from None
        return float.__new__(cls, rounded)

    def __repr__(self) -> str:
        return f"Float({float(self)!r})"


class Char(str):
    """char (0x73): one Unicode scalar value (UTF-32BE on the wire)."""

    __slots__ = ()

    def __new__(cls, value: str) -> Char:
        if len(value) != 1 or 0xD800 <= ord(value) <= 0xDFFF:
            raise ValueError(f"Char must be one Unicode scalar value: {value!r}")
        return str.__new__(cls, value)

    def __repr__(self) -> str:
        return f"Char({str(self)!r})"


class Symbol(str):
    """symbol (sym8 0xa3, sym32 0xb3): ASCII text naming something (conditions, capabilities, keys)."""

    __slots__ = ()

    def __new__(cls, value: str) -> Symbol:
        if not value.isascii():
            raise ValueError(f"Symbol must be ASCII: {value!r}")
        return str.__new__(cls, value)

    def __repr__(self) -> str:
        return f"Symbol({str(self)!r})"


class _Decimal(bytes):
    SIZE: ClassVar[int]

    def __new__(cls, value: bytes) -> Any:
        if len(value) != cls.SIZE:
            raise ValueError(f"{cls.__name__} is {cls.SIZE} bytes (IEEE 754 decimal), not {len(value)}")
        return bytes.__new__(cls, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({bytes(self)!r})"


class Decimal32(_Decimal):
    """decimal32 (0x74), kept as its 4 opaque bytes."""

    SIZE = 4


class Decimal64(_Decimal):
    """decimal64 (0x84), kept as its 8 opaque bytes."""

    SIZE = 8


class Decimal128(_Decimal):
    """decimal128 (0x94), kept as its 16 opaque bytes."""

    SIZE = 16


class Described:
    """A described type (§1.2): ``descriptor`` (a ULong code or a Symbol name) and the ``value``."""

    __slots__ = ("descriptor", "value")

    def __init__(self, descriptor: Any, value: Any) -> None:
        self.descriptor = descriptor
        self.value = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Described):
            return NotImplemented
        return self.descriptor == other.descriptor and self.value == other.value

    def __hash__(self) -> int:
        return hash((self.descriptor, self.value))

    def __repr__(self) -> str:
        return f"Described({self.descriptor!r}, {self.value!r})"


_NORMAL_ELEMENT: dict[type, type] = {int: Long, bytearray: bytes, memoryview: bytes, tuple: list}


class Array:
    """An AMQP array (§1.6.24): ``items`` all of one AMQP type, ``element``.

    ``element`` is the class naming that type: one of this module's classes (``Symbol``,
    ``UInt``, ...), or ``str``, ``bytes``, ``bool``, ``float`` (double), ``int`` (long, kept as
    :class:`Long`), ``UUID``, ``list``, ``dict``, ``Array``, ``type(None)``. When ``descriptor``
    is given, every element is a described value with that descriptor and ``items`` hold the
    values under it.
    """

    __slots__ = ("descriptor", "element", "items")

    def __init__(self, items: Iterable[Any], element: type, descriptor: Any = None) -> None:
        self.items = list(items)
        self.element = _NORMAL_ELEMENT.get(element, element)
        self.descriptor = descriptor

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Array):
            return NotImplemented
        return (self.element, self.descriptor, self.items) == (other.element, other.descriptor, other.items)

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        described = "" if self.descriptor is None else f", descriptor={self.descriptor!r}"
        return f"Array({self.items!r}, {self.element.__name__}{described})"


# -- decoding -------------------------------------------------------------------------------------

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
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


def _uuid(buf: Buffer, pos: int, depth: int) -> tuple[Any, int]:
    return UUID(bytes=_fixed_bytes(buf, pos, 16)), pos + 16


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


# -- encoding -------------------------------------------------------------------------------------

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


_U8 = struct.Struct(">B")


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
