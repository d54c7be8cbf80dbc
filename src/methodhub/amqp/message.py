"""The message format (part 3 §3.2): a bare message between optional annotations, as sections.

A message is a sequence of described sections, in this order, each at most once except the
body: header, delivery-annotations, message-annotations, properties, application-properties,
the body (one or more ``data`` sections, one or more ``amqp-sequence`` sections, or one
``amqp-value``), footer. :func:`encode_message` writes them (the transfer payload);
:func:`decode_message` reads them back and raises :class:`DecodeError` for anything else.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any, NamedTuple, TypeAlias
from uuid import UUID

from methodhub.amqp.composite import (
    ANY,
    BINARY,
    BOOLEAN,
    MESSAGE_ID,
    STRING,
    SYMBOL,
    TIMESTAMP,
    UBYTE,
    UINT,
    Composite,
    composite,
    encode_composite,
)
from methodhub.amqp.decoding import decode, decode_all, new_uuid
from methodhub.amqp.encoding import enc_binary, enc_list, enc_string, enc_symbol, enc_ulong, encode_into
from methodhub.amqp.errors import DecodeError
from methodhub.amqp.values import Buffer, Described, Int, Symbol, ULong


@composite(0x70, "amqp:header:list", BOOLEAN, UBYTE, UINT, BOOLEAN, UINT)
class Header(Composite):
    """``header`` (§3.2.1)."""

    durable: bool = False
    priority: int = 4
    ttl: int | None = None
    """Milliseconds."""
    first_acquirer: bool = False
    delivery_count: int = 0


@composite(
    0x73,
    "amqp:properties:list",
    *(
        MESSAGE_ID,
        BINARY,
        ANY,
        STRING,
        ANY,
        MESSAGE_ID,
        SYMBOL,
        SYMBOL,
        TIMESTAMP,
        TIMESTAMP,
        STRING,
        UINT,
        STRING,
    ),
)
class Properties(Composite):
    """``properties`` (§3.2.4). A message-id or correlation-id is a ULong (a plain int goes out as
    one), a UUID, bytes or a str; ``to`` and ``reply_to`` are addresses (strings)."""

    message_id: Any = None
    user_id: bytes | None = None
    to: Any = None
    subject: str | None = None
    reply_to: Any = None
    correlation_id: Any = None
    content_type: str | None = None
    content_encoding: str | None = None
    absolute_expiry_time: int | None = None
    creation_time: int | None = None
    group_id: str | None = None
    group_sequence: int | None = None
    reply_to_group_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AmqpValue:
    """An ``amqp-value`` body section (§3.2.8): one AMQP value."""

    value: Any


@dataclasses.dataclass(frozen=True, slots=True)
class AmqpSequence:
    """An ``amqp-sequence`` body section (§3.2.7): a list of AMQP values."""

    items: list[Any]


Body: TypeAlias = list[bytes] | list[AmqpSequence] | AmqpValue | None
"""Data sections (each one ``bytes``), sequence sections, one value section, or no body."""


@dataclasses.dataclass(slots=True)
class Message:
    """A message: each section None when absent.

    Annotation maps have Symbol (or ULong) keys (plain ``str``/``int`` keys go out as those);
    application properties have string keys and simple values (use :class:`~methodhub.amqp.types.Int`
    for an AMQP int: a plain ``int`` is a long).
    """

    header: Header | None = None
    delivery_annotations: dict[Any, Any] | None = None
    message_annotations: dict[Any, Any] | None = None
    properties: Properties | None = None
    application_properties: dict[str, Any] | None = None
    body: Body = None
    footer: dict[Any, Any] | None = None


HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, PROPERTIES = 0x70, 0x71, 0x72, 0x73
APPLICATION_PROPERTIES, DATA, AMQP_SEQUENCE, AMQP_VALUE, FOOTER = 0x74, 0x75, 0x76, 0x77, 0x78

_SECTION_NAMES = {
    "amqp:header:list": HEADER,
    "amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    "amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    "amqp:properties:list": PROPERTIES,
    "amqp:application-properties:map": APPLICATION_PROPERTIES,
    "amqp:data:binary": DATA,
    "amqp:amqp-sequence:list": AMQP_SEQUENCE,
    "amqp:amqp-value:*": AMQP_VALUE,
    "amqp:footer:map": FOOTER,
}
_BODY = 5
"""The rank of every body section (data, amqp-sequence, amqp-value) in the section order."""
_RANK = {HEADER: 0, DELIVERY_ANNOTATIONS: 1, MESSAGE_ANNOTATIONS: 2, PROPERTIES: 3, APPLICATION_PROPERTIES: 4}
_RANK.update({DATA: _BODY, AMQP_SEQUENCE: _BODY, AMQP_VALUE: _BODY, FOOTER: 6})


def _enc_annotations(out: bytearray, section: int, annotations: dict[Any, Any]) -> None:
    out += bytes((0x00, 0x53, section))
    body = bytearray()
    for key, value in annotations.items():
        if isinstance(key, int) and not isinstance(key, bool):
            enc_ulong(body, key)
        else:
            enc_symbol(body, key)
        encode_into(body, value, 1)
    _map_header(out, body, 2 * len(annotations))


def _map_header(out: bytearray, body: bytearray, count: int) -> None:
    size = len(body)
    if size < 255 and count < 256:
        out += bytes((0xC1, size + 1, count))
    else:
        out += b"\xd1" + (size + 4).to_bytes(4, "big") + count.to_bytes(4, "big")
    out += body


_CORRELATION_UUID_PROPERTIES = b"\x00\x53\x73\xc0\x17\x06" + b"\x40" * 5 + b"\x98"
"""properties with only a uuid correlation-id (every method request), as encode_composite writes
it: a list8 of 6 fields (23 bytes), 5 nulls, then the uuid's 16 bytes."""


def _only_correlation_id(p: Properties) -> bool:
    return (
        p.message_id is None
        and p.user_id is None
        and p.to is None
        and p.subject is None
        and p.reply_to is None
        and p.content_type is None
        and p.content_encoding is None
        and p.absolute_expiry_time is None
        and p.creation_time is None
        and p.group_id is None
        and p.group_sequence is None
        and p.reply_to_group_id is None
    )


def _enc_application_properties(out: bytearray, properties: dict[str, Any]) -> None:
    out += b"\x00\x53\x74"
    body = bytearray()
    for key, value in properties.items():
        if type(key) is not str and not isinstance(key, str):
            raise TypeError(f"application property keys are strings, not {type(key).__name__}")
        enc_string(body, key)
        if type(value) is str:
            enc_string(body, value)
        else:
            encode_into(body, value, 1)
    _map_header(out, body, 2 * len(properties))


def encode_application_properties(properties: dict[str, Any]) -> bytes:
    """The application-properties section of ``properties``, encoded (as :func:`encode_message`
    writes it): for :func:`encode_plain_message`, and to keep for messages that repeat it."""
    out = bytearray()
    _enc_application_properties(out, properties)
    return bytes(out)


def encode_plain_message(correlation_uuid: bytes, application_properties: bytes, data: Buffer) -> bytes:
    """The message with a uuid correlation-id (its 16 bytes), an application-properties section
    (encoded by :func:`encode_application_properties`) and one data section: the bytes
    :func:`encode_message` gives for it, without building the Message and its Properties (every
    method request is one)."""
    if len(correlation_uuid) != 16:
        raise ValueError("a uuid is 16 bytes")
    size = len(data)
    header = _DATA8.pack(0xA0, size) if size < 256 else _DATA32.pack(0xB0, size)
    parts = (_CORRELATION_UUID_PROPERTIES, correlation_uuid, application_properties, _DATA, header, data)
    return b"".join(parts)


_DATA = b"\x00\x53\x75"
_DATA8 = struct.Struct(">BB")
_DATA32 = struct.Struct(">BI")


def encode_message(message: Message) -> bytes:
    """The message's sections, in order: what a transfer carries (smallest encodings).

    Raises TypeError/ValueError for a value with no AMQP encoding or out of its type's range.
    """
    out = bytearray()
    if message.header is not None:
        encode_composite(out, message.header)
    if message.delivery_annotations is not None:
        _enc_annotations(out, DELIVERY_ANNOTATIONS, message.delivery_annotations)
    if message.message_annotations is not None:
        _enc_annotations(out, MESSAGE_ANNOTATIONS, message.message_annotations)
    properties = message.properties
    if properties is not None:
        if type(properties.correlation_id) is UUID and _only_correlation_id(properties):
            out += _CORRELATION_UUID_PROPERTIES
            out += properties.correlation_id.bytes
        else:
            encode_composite(out, properties)
    if message.application_properties is not None:
        _enc_application_properties(out, message.application_properties)
    body_sections = message.body
    if isinstance(body_sections, AmqpValue):
        out += b"\x00\x53\x77"
        encode_into(out, body_sections.value, 1)
    elif body_sections is not None:
        for section in body_sections:
            if isinstance(section, AmqpSequence):
                out += b"\x00\x53\x76"
                enc_list(out, section.items, 1)
                continue
            if not isinstance(section, (bytes, bytearray, memoryview)):
                raise TypeError(f"a data section is bytes, not {type(section).__name__}")
            out += b"\x00\x53\x75"
            enc_binary(out, section)
    if message.footer is not None:
        _enc_annotations(out, FOOTER, message.footer)
    return bytes(out)


def _section_code(descriptor: Any) -> int:
    if type(descriptor) is ULong:
        if HEADER <= descriptor <= FOOTER:
            return int(descriptor)
    elif type(descriptor) is Symbol and descriptor in _SECTION_NAMES:
        return _SECTION_NAMES[descriptor]
    raise DecodeError(f"not a message section: descriptor {descriptor!r}")


def _expect(value: Any, kind: type, what: str) -> Any:
    if type(value) is not kind:
        raise DecodeError(f"{what} section holds a {type(value).__name__}, not a {kind.__name__}")
    return value


_PLAIN_IDS = frozenset((0x98, 0xA1, 0xA0, 0x80, 0x53, 0x44))
"""A plain message's message-id and correlation-id: uuid, str8, vbin8, ulong."""
_PLAIN_VALUES = frozenset(
    (0x40, 0x41, 0x42, 0x56, 0x50, 0x60, 0x70, 0x52, 0x43, 0x80, 0x53, 0x44, 0x51, 0x61, 0x71, 0x54)
)
_PLAIN_VALUES |= {0x81, 0x55, 0x83, 0x98, 0xA0, 0xB0, 0xA1, 0xB1, 0xA3, 0xB3}
"""A plain message's application property values: null, booleans, integers, timestamps, uuids,
binaries, strings and symbols (scalars: no depth to count)."""


_new_tuple = tuple.__new__
_new_int = int.__new__
_INT32 = struct.Struct(">i")
_FIVE_NULLS = b"\x40" * 5


def read_plain_message(data: Buffer) -> PlainMessage | None:
    """The message ``data`` holds when it has the shape nearly every method request and response
    has, as its few parts (what :func:`decode_message` would say, without building Described
    values, field lists, composites or a Message: a reader of method answers needs only these);
    None for anything else (then decode it with :func:`decode_message`, which also says what is
    wrong with it).

    Plain: sections with smallulong descriptors, in order: properties (list0, or a list8 of nulls
    but for message-id and correlation-id in :data:`_PLAIN_IDS`), application-properties (a map8 of
    distinct str8 keys and :data:`_PLAIN_VALUES`), data sections (vbin8/vbin32), each optional.
    """
    end = len(data)
    pos = 0
    has_properties = False
    ids: list[Any] = [None, None]
    application_properties = None
    body: list[bytes] = []
    try:  # the sections in their order, each optional: properties, application-properties, data...
        if pos < end and data[pos] == 0 and data[pos + 1] == 0x53 and data[pos + 2] == PROPERTIES:
            kind = data[pos + 3]
            pos += 4
            if kind == 0xC0:
                stop = pos + 1 + data[pos]
                count = data[pos + 1]
                pos += 2
                first = 0
                if count == 6 and data[pos : pos + 5] == _FIVE_NULLS:  # only a correlation-id
                    first = 5
                    pos += 5
                for index in range(first, count):
                    field = data[pos]
                    if field == 0x40:
                        pos += 1
                    elif field == 0x98 and (index == 0 or index == 5) and pos + 17 <= end:
                        ids[index == 5] = new_uuid(bytes(data[pos + 1 : pos + 17]))
                        pos += 17
                    elif (index == 0 or index == 5) and field in _PLAIN_IDS:
                        ids[index == 5], pos = decode(data, pos)
                    else:
                        return None
                if pos != stop:
                    return None
            elif kind != 0x45:
                return None
            has_properties = True
        if pos < end and data[pos] == 0 and data[pos + 1] == 0x53 and data[pos + 2] == APPLICATION_PROPERTIES:
            if data[pos + 3] != 0xC1:
                return None
            pos += 4
            stop = pos + 1 + data[pos]
            count = data[pos + 1]
            pos += 2
            if count & 1 or stop > end:
                return None
            found: dict[Any, Any] = {}
            for _ in range(count >> 1):
                if data[pos] != 0xA1:
                    return None
                start = pos + 2
                pos = start + data[pos + 1]
                key = str(data[start:pos], "utf-8")
                code = data[pos]
                if code not in _PLAIN_VALUES or key in found:
                    return None
                if code == 0x71:  # an int (every SDK's IoThub-status): read here, not by decode()
                    found[key] = _new_int(Int, _INT32.unpack_from(data, pos + 1)[0])
                    pos += 5
                else:
                    found[key], pos = decode(data, pos)
            if pos != stop:
                return None
            application_properties = found
        while pos < end:
            if data[pos] != 0 or data[pos + 1] != 0x53 or data[pos + 2] != DATA:
                return None
            kind = data[pos + 3]
            if kind == 0xA0:
                size = data[pos + 4]
                pos += 5
            elif kind == 0xB0:
                size = int.from_bytes(data[pos + 4 : pos + 8], "big")
                pos += 8
            else:
                return None
            if pos + size > end:
                return None
            body.append(bytes(data[pos : pos + size]))
            pos += size
    except (DecodeError, IndexError, UnicodeDecodeError, struct.error):
        return None
    if pos != end:
        return None
    # (tuple.__new__ directly: a NamedTuple's own __new__ is a Python function, one call more)
    return _new_tuple(PlainMessage, (has_properties, ids[0], ids[1], application_properties, body or None))


class PlainMessage(NamedTuple):
    """A message of :func:`read_plain_message`'s shape: its properties' two ids (None when absent),
    its application properties (None when absent), its data sections (None when none)."""

    has_properties: bool
    message_id: Any
    correlation_id: Any
    application_properties: dict[str, Any] | None
    body: list[bytes] | None


def _decode_plain(data: Buffer) -> Message | None:
    plain = read_plain_message(data)
    if plain is None:
        return None
    properties = None
    if plain.has_properties:
        properties = Properties(message_id=plain.message_id, correlation_id=plain.correlation_id)
    return Message(
        properties=properties, application_properties=plain.application_properties, body=plain.body
    )


def decode_message(data: Buffer) -> Message:
    """The message whose sections are ``data`` (a transfer's payload, reassembled).

    Raises DecodeError for bytes that do not decode, a value that is not a section, sections out of
    order or repeated, body sections of mixed kinds, or a second amqp-value.
    """
    plain = _decode_plain(data)
    if plain is not None:
        return plain
    message = Message()
    rank = -1
    body_kind = 0
    data_sections: list[Any] = []
    for section in decode_all(data):
        if type(section) is not Described:
            raise DecodeError(f"a message holds described sections, not a {type(section).__name__}")
        code = _section_code(section.descriptor)
        new_rank = _RANK[code]
        if new_rank < rank or (
            new_rank == rank and (new_rank != _BODY or code != body_kind or code == AMQP_VALUE)
        ):
            raise DecodeError(
                f"message section 0x{code:02x} out of order, repeated or mixed with another body kind"
            )
        rank = new_rank
        value = section.value
        if code == DATA:
            data_sections.append(_expect(value, bytes, "data"))
        elif code == AMQP_SEQUENCE:
            data_sections.append(AmqpSequence(_expect(value, list, "amqp-sequence")))
        elif code == AMQP_VALUE:
            message.body = AmqpValue(value)
        elif code == APPLICATION_PROPERTIES:
            message.application_properties = _expect(value, dict, "application-properties")
        elif code == PROPERTIES:
            message.properties = Properties.from_fields(value)
        elif code == HEADER:
            message.header = Header.from_fields(value)
        elif code == MESSAGE_ANNOTATIONS:
            message.message_annotations = _expect(value, dict, "message-annotations")
        elif code == DELIVERY_ANNOTATIONS:
            message.delivery_annotations = _expect(value, dict, "delivery-annotations")
        else:
            message.footer = _expect(value, dict, "footer")
        if new_rank == _BODY:
            body_kind = code
    if data_sections:
        message.body = data_sections
    return message
