"""The AMQP 1.0 types that have no Python type of their own (part 1 §1.6), and arrays and described values.

Each is a subclass of the Python type it behaves as, range-checked when made. Import them from
:mod:`methodhub.amqp.types`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any, ClassVar, TypeAlias

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
