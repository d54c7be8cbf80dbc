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

from methodhub.amqp.decoding import decode, decode_all
from methodhub.amqp.encoding import encode, encode_into
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

__all__ = [
    "MAX_DEPTH",
    "Array",
    "Buffer",
    "Byte",
    "Char",
    "Decimal32",
    "Decimal64",
    "Decimal128",
    "DecodeError",
    "Described",
    "Float",
    "Int",
    "Long",
    "Short",
    "Symbol",
    "Timestamp",
    "UByte",
    "UInt",
    "ULong",
    "UShort",
    "decode",
    "decode_all",
    "encode",
    "encode_into",
]
