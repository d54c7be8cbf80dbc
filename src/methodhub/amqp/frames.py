"""Framing (part 2 §2.2 protocol headers, §2.3 frames; part 5 §5.3 SASL frames).

A frame is a 4-byte size (the whole frame, header included), a data offset ``doff`` (in 4-byte
words, at least 2), a type (0 AMQP, 1 SASL) and two type-specific bytes (the channel of an AMQP
frame), then an extended header we skip, then the body: one performative and, for a transfer, the
message payload after it. An empty body is a keep-alive (§2.4.5).
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from methodhub.amqp.composite import Composite, encode_composite, from_value
from methodhub.amqp.encoding import enc_binary, enc_uint
from methodhub.amqp.errors import DecodeError, FramingError
from methodhub.amqp.performatives import PERFORMATIVES, SASL_BODIES, Accepted, Disposition, Transfer
from methodhub.amqp.types import Buffer, decode
from methodhub.amqp.values import UInt

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
TLS_HEADER = b"AMQP\x02\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"

AMQP_FRAME = 0
SASL_FRAME = 1

FRAME_HEADER_SIZE = 8
MIN_MAX_FRAME_SIZE = 512
"""The smallest max-frame-size a peer may announce (§2.7.1 open)."""
SASL_MAX_FRAME_SIZE = 512
"""Frames during SASL: "at least 512 bytes" and nothing larger is needed (part 5 §5.3.1)."""

_HEADER = struct.Struct(">IBBH")
_AMQP_BODIES = frozenset(PERFORMATIVES)
_SASL_BODIES = frozenset(SASL_BODIES)
_EMPTY_FRAME_HEADER = _HEADER.pack(8, 2, AMQP_FRAME, 0)


class ProtocolHeader(NamedTuple):
    """The 8 bytes that open a connection or a layer (§2.2): ``AMQP``, id, major, minor, revision."""

    protocol_id: int
    """0 AMQP, 2 TLS, 3 SASL."""
    major: int
    minor: int
    revision: int

    def to_bytes(self) -> bytes:
        return b"AMQP" + bytes(self)


def decode_protocol_header(data: Buffer, offset: int = 0) -> tuple[ProtocolHeader | None, int]:
    """The protocol header at ``offset`` -> (header or None when fewer than 8 bytes came, next offset).

    Raises FramingError when the bytes do not start with ``AMQP`` (not an AMQP peer). A header for
    another version or protocol id decodes: answer it with the header we support and close (§2.2).
    """
    if len(data) - offset < 8:
        if bytes(data[offset : offset + 4]) != b"AMQP"[: len(data) - offset]:
            raise FramingError(f"not an AMQP protocol header: {bytes(data[offset : offset + 8])!r}")
        return None, offset
    if bytes(data[offset : offset + 4]) != b"AMQP":
        raise FramingError(f"not an AMQP protocol header: {bytes(data[offset : offset + 8])!r}")
    return ProtocolHeader(data[offset + 4], data[offset + 5], data[offset + 6], data[offset + 7]), offset + 8


class Frame(NamedTuple):
    """One decoded frame."""

    frame_type: int
    """:data:`AMQP_FRAME` (0) or :data:`SASL_FRAME` (1)."""
    channel: int
    """The channel of an AMQP frame (0 for SASL frames)."""
    body: Any
    """The performative (an Open, a Transfer, ... or a SASL frame body), None for an empty frame."""
    payload: bytes
    """What follows the performative (a transfer's message bytes); b"" otherwise."""


def _enc_plain_transfer(out: bytearray, transfer: Transfer) -> bool:
    """Append ``transfer`` as encode_composite would, when it has only handle, delivery-id, tag,
    message-format, settled and more (every transfer we send), without walking its 11 fields;
    False (nothing appended) for any other, or a value out of range (the general path says so)."""
    if (
        transfer.rcv_settle_mode is not None
        or transfer.state is not None
        or transfer.resume
        or transfer.aborted
        or transfer.batchable
        or transfer.handle is None
    ):
        return False
    fields: tuple[Any, ...] = (
        transfer.handle,
        transfer.delivery_id,
        transfer.delivery_tag,
        transfer.message_format,
        transfer.settled,
        True if transfer.more else None,
    )
    count = 6
    while fields[count - 1] is None:
        count -= 1
    body = bytearray()
    try:
        for index in range(count):
            value = fields[index]
            if value is None:
                body.append(0x40)
            elif index == 2:
                if type(value) is not bytes or len(value) > 200:
                    return False
                enc_binary(body, value)
            elif index >= 4:
                body.append(0x41 if value else 0x42)
            elif type(value) is int or type(value) is UInt:
                enc_uint(body, value)
            else:
                return False
    except struct.error:
        return False
    out += b"\x00\x53\x14\xc0"
    out.append(len(body) + 1)
    out.append(count)
    out += body
    return True


def encode_frame(
    channel: int, body: Composite | None, payload: Buffer = b"", frame_type: int = AMQP_FRAME
) -> bytes:
    """One frame: ``body`` a performative (or a SASL body with ``frame_type`` 1), None for an empty frame.

    The caller keeps frames within the peer's max-frame-size (splitting transfers).
    """
    if body is None:
        if payload:
            raise ValueError("an empty frame carries no payload")
        if frame_type == AMQP_FRAME and channel == 0:
            return _EMPTY_FRAME_HEADER
        return _HEADER.pack(8, 2, frame_type, channel)
    out = bytearray(_EMPTY_FRAME_HEADER)
    if type(body) is not Transfer or not _enc_plain_transfer(out, body):
        encode_composite(out, body)
    if payload:
        out += payload
    _HEADER.pack_into(out, 0, len(out), 2, frame_type, channel)
    return bytes(out)


def _uint_bytes(value: int) -> bytes:
    if value == 0:
        return b"\x43"
    if value < 256:
        return bytes((0x52, value))
    return b"\x70" + value.to_bytes(4, "big")


def encode_transfer_frame(
    channel: int, handle: int, delivery_id: int, delivery_tag: bytes, settled: bool, payload: Buffer
) -> bytes:
    """``encode_frame(channel, Transfer(handle, delivery_id, delivery_tag, 0, settled), payload)``,
    the same bytes, built directly: the frame of every message that fits one frame (a method
    request, a put-token or twin answer), without a Transfer to build and walk.

    Raises ValueError for a handle or delivery-id outside uint, or a tag over 255 bytes.
    """
    if not 0 <= handle <= 0xFFFF_FFFF or not 0 <= delivery_id <= 0xFFFF_FFFF or len(delivery_tag) > 255:
        raise ValueError("a transfer's handle and delivery-id are uints, its tag at most 255 bytes")
    fields = b"".join(
        (
            _uint_bytes(handle),
            _uint_bytes(delivery_id),
            bytes((0xA0, len(delivery_tag))),
            delivery_tag,
            b"\x43\x41" if settled else b"\x43\x42",  # message-format 0, settled
        )
    )
    size = FRAME_HEADER_SIZE + 6 + len(fields) + len(payload)
    head = _HEADER.pack(size, 2, AMQP_FRAME, channel) + bytes((0x00, 0x53, 0x14, 0xC0, len(fields) + 1, 5))
    return b"".join((head, fields, payload))


_ACCEPTED = b"\x00\x53\x24\x45"
"""The accepted outcome, encoded (a described list0)."""


def encode_disposition_frame(
    channel: int, role: bool, first: int, last: int | None, settled: bool, state: Composite | None
) -> bytes:
    """``encode_frame(channel, Disposition(role, first, last, settled, state))``, the same bytes,
    built directly (a settled delivery's disposition, on every unsettled call)."""
    if not 0 <= first <= 0xFFFF_FFFF or (last is not None and not 0 <= last <= 0xFFFF_FFFF):
        raise ValueError("a disposition's first and last are uints")
    if state is None:
        encoded_state = None
    elif type(state) is Accepted:
        encoded_state = _ACCEPTED
    else:
        out = bytearray()
        encode_composite(out, state)
        encoded_state = bytes(out)
    fields = [
        b"\x41" if role else b"\x42",
        _uint_bytes(first),
        _uint_bytes(last) if last is not None else None,
        b"\x41" if settled else None,
        encoded_state,
    ]
    while fields[-1] is None:
        fields.pop()
    body = b"".join(field if field is not None else b"\x40" for field in fields)
    if len(body) < 255:
        head = bytes((0x00, 0x53, 0x15, 0xC0, len(body) + 1, len(fields)))
    else:
        head = b"\x00\x53\x15\xd0" + (len(body) + 4).to_bytes(4, "big") + len(fields).to_bytes(4, "big")
    size = FRAME_HEADER_SIZE + len(head) + len(body)
    return b"".join((_HEADER.pack(size, 2, AMQP_FRAME, channel), head, body))


def frame_overhead(body: Composite) -> int:
    """Bytes a frame with this body takes before any payload (to size transfer payloads)."""
    out = bytearray()
    encode_composite(out, body)
    return FRAME_HEADER_SIZE + len(out)


_new_int = int.__new__
_new_tuple = tuple.__new__
_UINT0 = _new_int(UInt, 0)


def _plain_uint(data: Buffer, pos: int) -> tuple[Any, int]:
    """A plain transfer's uint field (or null) at ``pos``; KeyError for any other encoding."""
    code = data[pos]
    if code == 0x52:
        return _new_int(UInt, data[pos + 1]), pos + 2
    if code == 0x43:
        return _UINT0, pos + 1
    if code == 0x70:
        return _new_int(UInt, int.from_bytes(data[pos + 1 : pos + 5], "big")), pos + 5
    if code == 0x40:
        return None, pos + 1
    raise KeyError(code)


_PLAIN_BOOLEANS = {0x41: True, 0x42: False, 0x40: None}


def _plain_transfer(data: Buffer, start: int, end: int) -> tuple[list[Any], int] | None:
    """The fields of the Transfer the frame body ``data[start:end]`` starts with (handle,
    delivery-id, delivery-tag, message-format, settled, more) and the offset after it, when it is
    plain, as every SDK sends a message: a list8 of at most those six fields, the handle a uint
    (smalluint, uint0 or uint), delivery-id and message-format uints or null, delivery-tag a vbin8
    or null, settled and more true, false or null. What the general decoder would give (uints as
    UInt), read in place without building a Described value and a field list; None for anything
    else (the general decoder then reads it, or says what is wrong)."""
    try:
        if data[start] != 0 or data[start + 1] != 0x53 or data[start + 2] != 0x14 or data[start + 3] != 0xC0:
            return None
        stop = start + 5 + data[start + 4]
        count = data[start + 5]
        if count > 6 or stop > end:
            return None
        pos = start + 6
        fields: list[Any] = [None, None, None, None, None, None]
        if count:
            fields[0], pos = _plain_uint(data, pos)
        if count > 1:
            fields[1], pos = _plain_uint(data, pos)
        if count > 2:
            code = data[pos]
            if code == 0xA0:
                after = pos + 2 + data[pos + 1]
                fields[2] = bytes(data[pos + 2 : after])
                pos = after
            elif code == 0x40:
                pos += 1
            else:
                return None
        if count > 3:
            fields[3], pos = _plain_uint(data, pos)
        if count > 4:
            fields[4] = _PLAIN_BOOLEANS[data[pos]]
            pos += 1
        if count > 5:
            fields[5] = _PLAIN_BOOLEANS[data[pos]]
            pos += 1
    except (IndexError, KeyError):
        return None
    if pos != stop or fields[0] is None:
        return None
    return fields, pos


def _plain_disposition(data: Buffer, start: int, end: int) -> Disposition | None:
    """The Disposition that is the whole frame body ``data[start:end]``, when it is plain, as every
    SDK settles a delivery: a list8 of role (true/false), first (a uint), last (a uint or null),
    settled (true, false or null) and optionally the accepted outcome (a described list0), nothing
    after it. What the general decoder would give (uints as UInt); None for anything else."""
    try:
        if data[start] != 0 or data[start + 1] != 0x53 or data[start + 3] != 0xC0:
            return None
        stop = start + 5 + data[start + 4]
        count = data[start + 5]
        if stop != end or not 2 <= count <= 5:
            return None
        role = _PLAIN_BOOLEANS[data[start + 6]]
        if role is None:
            return None
        first, pos = _plain_uint(data, start + 7)
        if first is None:
            return None
        last = settled = state = None
        if count > 2:
            last, pos = _plain_uint(data, pos)
        if count > 3:
            settled = _PLAIN_BOOLEANS[data[pos]]
            pos += 1
        if count > 4:
            if data[pos : pos + 4] != _ACCEPTED:
                return None
            state = Accepted()
            pos += 4
    except (IndexError, KeyError):
        return None
    if pos != stop:
        return None
    return Disposition(role, first, last, settled is True, state)


class PlainTransfer(NamedTuple):
    """A frame :func:`read_transfer_frame` read: a plain transfer's fields and its payload."""

    channel: int
    handle: int
    delivery_id: int | None
    delivery_tag: bytes | None
    settled: bool | None
    more: bool
    payload: bytes
    end: int
    """The offset after the frame."""


def read_transfer_frame(data: Buffer, offset: int, max_frame_size: int) -> PlainTransfer | None:
    """The frame at ``offset`` when it is a whole, well-formed AMQP frame (8-byte header, within
    ``max_frame_size``) holding a plain transfer (see :func:`_plain_transfer`): its fields, as
    :func:`decode_frame` would give them, without a Frame and a Transfer to build (every message's
    frame). None for anything else, incomplete or malformed frames included:
    :func:`decode_frame` then reads it (or raises)."""
    if len(data) - offset < FRAME_HEADER_SIZE:
        return None
    size, doff, frame_type, channel = _HEADER.unpack_from(data, offset)
    end = offset + size
    if doff != 2 or frame_type != AMQP_FRAME or size > max_frame_size or end > len(data):
        return None
    plain = _plain_transfer(data, offset + 8, end)
    if plain is None:
        return None
    (handle, delivery_id, tag, _, settled, more), after = plain  # (message-format: no one's business)
    payload = _payload(data, after, end)
    # (tuple.__new__ directly: a NamedTuple's own __new__ is a Python function, one call more per frame)
    return _new_tuple(PlainTransfer, (channel, handle, delivery_id, tag, settled, more is True, payload, end))


def _payload(data: Buffer, start: int, end: int) -> bytes:
    if end - start < 1024:
        return bytes(data[start:end]) if start < end else b""
    with memoryview(data) as whole:  # one copy (a bytearray's slice would be a second), no view left
        return bytes(whole[start:end])


def decode_frame(
    data: Buffer, offset: int = 0, max_frame_size: int = 0xFFFF_FFFF
) -> tuple[Frame | None, int]:
    """The frame at ``offset`` -> (frame, offset after it), or (None, offset) when more bytes are needed.

    Raises FramingError (condition ``amqp:connection:framing-error``) for a bad frame header or one
    larger than ``max_frame_size`` (the size we announced; checked as soon as the header is in, so
    an oversized frame is refused before it is buffered), and DecodeError (``amqp:decode-error`` or
    ``amqp:invalid-field``) for a body that does not decode into the frame type's performatives.
    """
    available = len(data) - offset
    if available < FRAME_HEADER_SIZE:
        return None, offset
    size, doff, frame_type, channel = _HEADER.unpack_from(data, offset)
    if size < FRAME_HEADER_SIZE:
        raise FramingError(f"frame size {size} is smaller than the 8-byte frame header")
    if size > max_frame_size:
        raise FramingError(f"frame size {size} is larger than max-frame-size {max_frame_size}")
    if doff < 2:
        raise FramingError(f"frame data offset {doff} is smaller than 2 (the header is 8 bytes)")
    if doff * 4 > size:
        raise FramingError(f"frame data offset {doff * 4} bytes is beyond the frame size {size}")
    if frame_type == AMQP_FRAME:
        allowed = _AMQP_BODIES
    elif frame_type == SASL_FRAME:
        allowed, channel = _SASL_BODIES, 0
    else:
        raise FramingError(f"unknown frame type 0x{frame_type:02x}")
    if available < size:
        return None, offset
    end = offset + size
    start = offset + doff * 4
    if start == end:
        return Frame(frame_type, channel, None, b""), end
    if frame_type == AMQP_FRAME and 6 <= end - start < 64 and data[start + 2] == 0x15:
        disposition = _plain_disposition(data, start, end)
        if disposition is not None:
            return Frame(frame_type, channel, disposition, b""), end
    plain = _plain_transfer(data, start, end) if frame_type == AMQP_FRAME else None
    if plain is not None:  # every message's frame: read in place, the payload one copy
        (handle, delivery_id, tag, message_format, settled, more), after = plain
        transfer = Transfer(handle, delivery_id, tag, message_format, settled, more is True)
        return Frame(frame_type, channel, transfer, _payload(data, after, end)), end
    with memoryview(data) as whole, whole[start:end] as view:
        value, used = decode(view)
        body: Any = from_value(value)
    if type(body) not in allowed:
        kind = "an AMQP" if frame_type == AMQP_FRAME else "a SASL"
        raise DecodeError(f"{type(body).__name__} is not {kind} frame body")
    if start + used == end:
        return Frame(frame_type, channel, body, b""), end
    if type(body) is not Transfer:
        raise DecodeError(f"{type(body).__name__} frame has {end - start - used} bytes after its body")
    return Frame(frame_type, channel, body, _payload(data, start + used, end)), end
