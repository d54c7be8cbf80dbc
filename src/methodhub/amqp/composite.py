"""Composite types (part 1 §1.4): described lists whose fields have names, AMQP types and defaults.

The performatives (:mod:`methodhub.amqp.performatives`) and the message sections
(:mod:`methodhub.amqp.message`) are frozen dataclasses made by :func:`composite`, which records,
field by field in spec order, the AMQP type (a :class:`Kind`) and the default. From that:

- ``encode_composite(out, obj)`` writes the described list straight into a bytearray (a field
  equal to its default goes out as null, trailing nulls are left off, the smallest list form);
- ``obj.to_value()`` gives the same as :class:`~methodhub.amqp.types.Described` of typed values;
- ``from_value(described)`` finds the class by descriptor (a ULong code or the symbolic name,
  e.g. ``amqp:open:list``) and checks each field: a missing mandatory field or one of the wrong
  type raises :class:`DecodeError` with condition ``amqp:invalid-field``. Fields past the ones
  this version of the spec defines are ignored.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from operator import attrgetter
from typing import Any, ClassVar, Self, TypeVar, dataclass_transform
from uuid import UUID

from methodhub.amqp.encoding import (
    enc_binary,
    enc_list,
    enc_map,
    enc_string,
    enc_symbol,
    enc_uint,
    enc_ulong,
    encode_into,
    register_encoder,
)
from methodhub.amqp.errors import INVALID_FIELD, DecodeError
from methodhub.amqp.values import MAX_DEPTH, Array, Described, Symbol, Timestamp, UByte, UInt, ULong, UShort

_MISSING: Any = dataclasses.MISSING


def _invalid(reason: str) -> DecodeError:
    return DecodeError(reason, INVALID_FIELD)


@dataclasses.dataclass(frozen=True, slots=True)
class Kind:
    """How one field's AMQP type is encoded, checked when decoded, and typed by ``to_value``."""

    name: str
    encode: Callable[[bytearray, Any, int], None]
    check: Callable[[Any], Any]
    """Decoded value (not None) -> the field's value; raises DecodeError when it has the wrong type."""
    wrap: Callable[[Any], Any]
    """Field value (not None) -> the typed value ``to_value`` puts in the list."""


def _integer(cls: type[Any]) -> Callable[[Any], Any]:
    low, high = cls.LOW, cls.HIGH

    def check(value: Any) -> Any:
        if type(value) is cls:
            return value
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return int.__new__(cls, value)
        raise _invalid(f"expected {cls.__name__.lower()}, got {type(value).__name__} {value!r}")

    return check


def _check_string(value: Any) -> Any:
    if isinstance(value, str):
        return value
    raise _invalid(f"expected string, got {type(value).__name__}")


def _check_symbol(value: Any) -> Any:
    if type(value) is Symbol:
        return value
    if isinstance(value, str) and value.isascii():
        return Symbol(value)
    raise _invalid(f"expected symbol, got {type(value).__name__}")


def _check_bool(value: Any) -> Any:
    if value is True or value is False:
        return value
    raise _invalid(f"expected boolean, got {type(value).__name__}")


def _check_binary(value: Any) -> Any:
    if type(value) is bytes:
        return value
    raise _invalid(f"expected binary, got {type(value).__name__}")


def _check_map(value: Any) -> Any:
    if type(value) is dict:
        return value
    raise _invalid(f"expected map, got {type(value).__name__}")


def _check_list(value: Any) -> Any:
    if type(value) is list:
        return value
    raise _invalid(f"expected list, got {type(value).__name__}")


def _check_symbols(value: Any) -> Any:
    """A ``multiple="true"`` symbol field: one symbol or an array of them -> a tuple."""
    if type(value) is Array and value.element is Symbol and value.descriptor is None:
        return tuple(value.items)
    return (_check_symbol(value),)


def _check_message_id(value: Any) -> Any:
    if isinstance(value, (ULong, UUID, bytes, str)):
        return value
    raise _invalid(f"expected a message-id (ulong, uuid, binary or string), got {type(value).__name__}")


def _same(value: Any) -> Any:
    return value


def _enc_bool(out: bytearray, value: Any, depth: int) -> None:
    out.append(0x41 if value else 0x42)


def _enc_ubyte(out: bytearray, value: int, depth: int) -> None:
    out += bytes((0x50, value))


def _enc_ushort(out: bytearray, value: int, depth: int) -> None:
    out += _C_U16.pack(0x60, value)


def _enc_timestamp(out: bytearray, value: int, depth: int) -> None:
    out += _C_I64.pack(0x83, value)


_C_U16 = struct.Struct(">BH")
_C_I64 = struct.Struct(">Bq")


def _enc_symbols(out: bytearray, value: Any, depth: int) -> None:
    if isinstance(value, str):
        value = (value,)
    encode_into(out, Array(value, Symbol), depth)


def _enc_fields(out: bytearray, value: dict[Any, Any], depth: int) -> None:
    enc_map(out, {k if type(k) is Symbol else Symbol(k): v for k, v in value.items()}, depth)


def _enc_message_id(out: bytearray, value: Any, depth: int) -> None:
    if type(value) is int:
        enc_ulong(out, value)
    else:
        encode_into(out, value, depth)


def _wrap_symbols(value: Any) -> Array:
    return Array((value,) if isinstance(value, str) else value, Symbol)


def _wrap_message_id(value: Any) -> Any:
    return ULong(value) if type(value) is int else value


def _wrap_fields(value: dict[Any, Any]) -> dict[Any, Any]:
    return {k if type(k) is Symbol else Symbol(k): v for k, v in value.items()}


STRING = Kind("string", enc_string, _check_string, str)
SYMBOL = Kind("symbol", enc_symbol, _check_symbol, Symbol)
BOOLEAN = Kind("boolean", _enc_bool, _check_bool, bool)
UBYTE = Kind("ubyte", _enc_ubyte, _integer(UByte), UByte)
USHORT = Kind("ushort", _enc_ushort, _integer(UShort), UShort)
UINT = Kind("uint", enc_uint, _integer(UInt), UInt)
ULONG = Kind("ulong", enc_ulong, _integer(ULong), ULong)
TIMESTAMP = Kind("timestamp", _enc_timestamp, _integer(Timestamp), Timestamp)
BINARY = Kind("binary", enc_binary, _check_binary, bytes)
SYMBOLS = Kind("symbol[]", _enc_symbols, _check_symbols, _wrap_symbols)
FIELDS = Kind("fields", _enc_fields, _check_map, _wrap_fields)
MAP = Kind("map", enc_map, _check_map, _same)
LIST = Kind("list", enc_list, _check_list, _same)
ANY = Kind("*", encode_into, _same, _same)
MESSAGE_ID = Kind("message-id", _enc_message_id, _check_message_id, _wrap_message_id)


# -- composite classes ------------------------------------------------------------------------------

_BY_CODE: dict[int, type[Composite]] = {}
_BY_NAME: dict[str, type[Composite]] = {}


class Composite:
    """Base of every composite type: ``CODE`` (descriptor code), ``NAME`` (symbolic descriptor)."""

    __slots__ = ()
    CODE: ClassVar[int]
    NAME: ClassVar[str]
    FIELDS: ClassVar[tuple[tuple[str, Kind, Any], ...]]
    """(field name, kind, default: dataclasses.MISSING when the field is mandatory), in spec order."""
    _HEADER: ClassVar[bytes]
    _VALUES: ClassVar[Any]
    """obj -> its field values in spec order (an attrgetter; Any: mypy would bind a Callable ClassVar)."""
    _CHECKS: ClassVar[tuple[tuple[str, Callable[[Any], Any], Any], ...]]
    _REQUIRED: ClassVar[int]
    """How many fields a list must have to reach the last mandatory one."""

    @classmethod
    def from_fields(cls, values: Any) -> Self:
        """The composite whose decoded field list is ``values`` (DecodeError amqp:invalid-field if bad)."""
        if type(values) is not list:
            raise _invalid(f"{cls.__name__}: the described value is a {type(values).__name__}, not a list")
        kwargs = {}
        name = ""
        try:
            for (name, check, default), value in zip(cls._CHECKS, values):  # noqa: B905 (extra fields: ignored)
                if value is not None:
                    kwargs[name] = check(value)
                elif default is _MISSING:
                    raise _invalid("mandatory but missing")
        except DecodeError as exc:
            raise _invalid(f"{cls.__name__}.{name}: {exc.reason}") from None
        if len(values) < cls._REQUIRED:
            missing = cls._CHECKS[len(values)][0]
            raise _invalid(f"{cls.__name__}.{missing}: mandatory but missing")
        return cls(**kwargs)

    def to_value(self) -> Described:
        """This composite as a Described(ULong code, [typed field values, trailing nulls left off])."""
        values: list[Any] = []
        for (name, kind, default), value in zip(self.FIELDS, self._VALUES(self), strict=True):
            if value is None or value == default:
                _check_present(self, name, value, default)
                values.append(None)
            else:
                values.append(kind.wrap(value))
        while values and values[-1] is None:
            values.pop()
        return Described(ULong(self.CODE), values)


def _check_present(obj: Composite, name: str, value: Any, default: Any) -> None:
    if value is None and default is _MISSING:
        raise ValueError(f"{type(obj).__name__}.{name} is mandatory")


def encode_composite(out: bytearray, obj: Composite, depth: int = 0) -> None:
    """Append ``obj`` as a described list (the fast path of ``encode(obj.to_value())``)."""
    if depth >= MAX_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_DEPTH}")
    body = bytearray()
    count = nulls = 0
    depth += 1
    try:
        for (name, kind, default), value in zip(obj.FIELDS, obj._VALUES(obj), strict=True):
            if value is None or value == default:  # null means the default (part 1 §1.4)
                if value is None and default is _MISSING:
                    _check_present(obj, name, value, default)
                nulls += 1
                continue
            if nulls:
                body += b"\x40" * nulls
                count += nulls
                nulls = 0
            kind.encode(body, value, depth)
            count += 1
    except struct.error as exc:
        raise ValueError(f"{type(obj).__name__}: a field is out of range for its AMQP type: {exc}") from None
    out += obj._HEADER
    size = len(body)
    if count == 0:
        out.append(0x45)
    elif size < 255:
        out += bytes((0xC0, size + 1, count))
        out += body
    else:
        out += struct.pack(">BII", 0xD0, size + 4, count)
        out += body


register_encoder(Composite, encode_composite)


def _enc_composite(out: bytearray, value: Any, depth: int) -> None:
    if isinstance(value, Composite):
        encode_composite(out, value, depth)
    else:
        encode_into(out, value, depth)  # a Described the registry does not know, kept as it came


def composite_kind(name: str, *classes: type[Composite], other_described: bool = False) -> Kind:
    """A field holding one of ``classes`` (or, with ``other_described``, any described value)."""
    allowed = frozenset(classes)

    def check(value: Any) -> Any:
        if type(value) is not Described:
            raise _invalid(f"expected {name}, got {type(value).__name__}")
        cls = lookup(value.descriptor)
        if cls is None or cls not in allowed:
            if other_described:
                return value
            raise _invalid(f"expected {name}, got a described value with descriptor {value.descriptor!r}")
        return cls.from_fields(value.value)

    def wrap(value: Any) -> Any:
        return value.to_value() if isinstance(value, Composite) else value

    return Kind(name, _enc_composite, check, wrap)


def lookup(descriptor: Any) -> type[Composite] | None:
    """The composite class a descriptor names (a ULong code or a symbolic name), or None."""
    if isinstance(descriptor, int) and not isinstance(descriptor, bool):
        return _BY_CODE.get(descriptor)
    if isinstance(descriptor, str):
        return _BY_NAME.get(descriptor)
    return None


def from_value(value: Any) -> Composite:
    """The composite (performative, delivery state, message section, ...) a decoded value is."""
    if type(value) is not Described:
        raise DecodeError(f"expected a described composite, got {type(value).__name__}")
    cls = lookup(value.descriptor)
    if cls is None:
        raise DecodeError(f"unknown descriptor {value.descriptor!r}")
    return cls.from_fields(value.value)


_C = TypeVar("_C", bound=Composite)


def _fast_frozen_init(cls: type[Any], fields: tuple[dataclasses.Field[Any], ...]) -> None:
    """Give frozen slotted dataclass ``cls`` an ``__init__`` that sets each slot through its member
    descriptor: the same signature and result as dataclasses' own, in half its time (that one goes
    through ``object.__setattr__`` per field, which is what makes a performative cost ~1 µs to
    build; a transfer is built for every message each way). Fields with a ``default_factory`` or
    ``init=False`` keep dataclasses' ``__init__``."""
    if any(f.default_factory is not _MISSING or not f.init or not f.name.isidentifier() for f in fields):
        return
    namespace: dict[str, Any] = {}
    positional: list[str] = []
    keyword: list[str] = []
    body = []
    for index, f in enumerate(fields):
        namespace[f"_set{index}"] = cls.__dict__[f.name].__set__
        params = keyword if f.kw_only else positional
        if f.default is _MISSING:
            params.append(f.name)
        else:
            namespace[f"_default{index}"] = f.default
            params.append(f"{f.name}=_default{index}")
        body.append(f"    _set{index}(self, {f.name})")
    params = positional + (["*", *keyword] if keyword else [])
    source = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass") + "\n"
    exec(source, namespace)  # (built from the dataclass's own field names)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init


@dataclass_transform(frozen_default=True)
def composite(code: int, name: str, *kinds: Kind) -> Callable[[type[_C]], type[_C]]:
    """Make ``cls`` a frozen slotted dataclass whose fields (in spec order) have these kinds."""

    def make(cls: type[_C]) -> type[_C]:
        data_cls = dataclasses.dataclass(frozen=True, slots=True)(cls)
        fields = dataclasses.fields(data_cls)  # type: ignore[arg-type]
        _fast_frozen_init(data_cls, fields)
        if len(fields) != len(kinds):
            raise TypeError(f"{cls.__name__}: {len(fields)} fields but {len(kinds)} kinds")
        names = tuple(field.name for field in fields)
        data_cls.CODE = code
        data_cls.NAME = name
        data_cls.FIELDS = tuple(
            (field.name, kind, field.default) for field, kind in zip(fields, kinds, strict=True)
        )
        data_cls._HEADER = bytes((0x00, 0x53, code)) if code < 256 else b"\x00\x80" + code.to_bytes(8, "big")
        if len(names) > 1:
            data_cls._VALUES = attrgetter(*names)
        elif names:
            only = names[0]
            data_cls._VALUES = staticmethod(lambda obj: (getattr(obj, only),))
        else:
            data_cls._VALUES = staticmethod(lambda obj: ())
        data_cls._CHECKS = tuple((name, kind.check, default) for name, kind, default in data_cls.FIELDS)
        mandatory = [i for i, (_, _, default) in enumerate(data_cls.FIELDS) if default is _MISSING]
        data_cls._REQUIRED = mandatory[-1] + 1 if mandatory else 0
        _BY_CODE[code] = data_cls
        _BY_NAME[name] = data_cls
        return data_cls

    return make
