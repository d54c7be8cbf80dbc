"""Encoding and decoding MQTT packets: bytes ↔ :mod:`methodhub.mqtt.packets`.

Decoding works on one packet body at a time (the connection state machine frames the stream);
every violation raises :class:`MalformedPacket` with the reason code MQTT 5 would put in a
DISCONNECT and, for CONNECT, the CONNACK code to answer with. References are to the normative
statements of MQTT 3.1.1 (``[MQTT-x.y.z-n]``) and MQTT 5.0 (``§x.y``).
"""

from __future__ import annotations

import struct
from typing import Any

from methodhub.mqtt.errors import MalformedPacket
from methodhub.mqtt.packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
)
from methodhub.mqtt.reason_codes import ReasonCode
from methodhub.mqtt.topics import topic_filter_error, topic_name_error

MALFORMED = ReasonCode.MALFORMED_PACKET
PROTOCOL = ReasonCode.PROTOCOL_ERROR

PROTOCOL_NAMES = {3: "MQIsdp", 4: "MQTT", 5: "MQTT"}
"""Protocol name per level: MQTT 3.1 says "MQIsdp" [3.1 §3.1], 3.1.1 and 5 say "MQTT" [MQTT-3.1.2-1]."""

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

# -- MQTT 5 properties (§2.2.2.2) -------------------------------------------------------------------

BYTE, U16, U32, VARINT, UTF8, BINARY, PAIR = range(7)
_C, _CA, _P, _PA, _S, _SA, _UA, _D, _AU, _W = (
    PacketType.CONNECT,
    PacketType.CONNACK,
    PacketType.PUBLISH,
    PacketType.PUBACK,
    PacketType.SUBSCRIBE,
    PacketType.SUBACK,
    PacketType.UNSUBACK,
    PacketType.DISCONNECT,
    PacketType.AUTH,
    0,  # the Will properties of a CONNECT
)
_ACKS = (PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP)
_ALL = frozenset((*PacketType, 0))

PROPERTIES: dict[int, tuple[str, int, frozenset[int]]] = {
    0x01: ("payload_format_indicator", BYTE, frozenset((_P, _W))),
    0x02: ("message_expiry_interval", U32, frozenset((_P, _W))),
    0x03: ("content_type", UTF8, frozenset((_P, _W))),
    0x08: ("response_topic", UTF8, frozenset((_P, _W))),
    0x09: ("correlation_data", BINARY, frozenset((_P, _W))),
    0x0B: ("subscription_identifier", VARINT, frozenset((_P, _S))),
    0x11: ("session_expiry_interval", U32, frozenset((_C, _CA, _D))),
    0x12: ("assigned_client_identifier", UTF8, frozenset((_CA,))),
    0x13: ("server_keep_alive", U16, frozenset((_CA,))),
    0x15: ("authentication_method", UTF8, frozenset((_C, _CA, _AU))),
    0x16: ("authentication_data", BINARY, frozenset((_C, _CA, _AU))),
    0x17: ("request_problem_information", BYTE, frozenset((_C,))),
    0x18: ("will_delay_interval", U32, frozenset((_W,))),
    0x19: ("request_response_information", BYTE, frozenset((_C,))),
    0x1A: ("response_information", UTF8, frozenset((_CA,))),
    0x1C: ("server_reference", UTF8, frozenset((_CA, _D))),
    0x1F: ("reason_string", UTF8, frozenset((_CA, *_ACKS, _SA, _UA, _D, _AU))),
    0x21: ("receive_maximum", U16, frozenset((_C, _CA))),
    0x22: ("topic_alias_maximum", U16, frozenset((_C, _CA))),
    0x23: ("topic_alias", U16, frozenset((_P,))),
    0x24: ("maximum_qos", BYTE, frozenset((_CA,))),
    0x25: ("retain_available", BYTE, frozenset((_CA,))),
    0x26: ("user_property", PAIR, _ALL),
    0x27: ("maximum_packet_size", U32, frozenset((_C, _CA))),
    0x28: ("wildcard_subscription_available", BYTE, frozenset((_CA,))),
    0x29: ("subscription_identifier_available", BYTE, frozenset((_CA,))),
    0x2A: ("shared_subscription_available", BYTE, frozenset((_CA,))),
}
PROPERTY_IDS = {name: (pid, kind) for pid, (name, kind, _) in PROPERTIES.items()}
REPEATABLE = frozenset(("user_property", "subscription_identifier"))
"""Properties that may occur more than once; they decode to lists [§2.2.2.2]."""


# -- primitives -------------------------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """Variable Byte Integer [MQTT-1.5.5]: 7 bits per byte, at most 4 bytes."""
    if value < 128:
        return bytes((value,))
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode("utf-8")
    return _U16.pack(len(data)) + data


def _binary(data: bytes) -> bytes:
    return _U16.pack(len(data)) + data


class Reader:
    """A cursor over one packet body; every read checks bounds and raises MalformedPacket."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def byte(self) -> int:
        if self.pos >= self.end:
            raise MalformedPacket("[MQTT-1.5] packet ends in the middle of a field", MALFORMED)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        if self.pos + 2 > self.end:
            raise MalformedPacket("[MQTT-1.5.2] packet ends in the middle of a two-byte integer", MALFORMED)
        value = (self.data[self.pos] << 8) | self.data[self.pos + 1]
        self.pos += 2
        return value

    def u32(self) -> int:
        if self.pos + 4 > self.end:
            raise MalformedPacket("§1.5.3 packet ends in the middle of a four-byte integer", MALFORMED)
        (value,) = _U32.unpack_from(self.data, self.pos)
        self.pos += 4
        return value

    def varint(self) -> int:
        value = 0
        for shift in (0, 7, 14, 21):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise MalformedPacket("[MQTT-1.5.5] variable byte integer longer than 4 bytes", MALFORMED)

    def binary(self) -> bytes:
        length = self.u16()
        if self.pos + length > self.end:
            raise MalformedPacket("[MQTT-1.5.6] binary data runs past the end of the packet", MALFORMED)
        value = bytes(self.data[self.pos : self.pos + length])
        self.pos += length
        return value

    def utf8(self) -> str:
        length = self.u16()
        if self.pos + length > self.end:
            raise MalformedPacket("[MQTT-1.5.3] string runs past the end of the packet", MALFORMED)
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        try:
            text = bytes(raw).decode("utf-8")  # strict: rejects surrogates and overlongs [MQTT-1.5.3-1]
        except UnicodeDecodeError:
            raise MalformedPacket("[MQTT-1.5.3-1] string is not well-formed UTF-8", MALFORMED) from None
        if "\x00" in text:
            raise MalformedPacket("[MQTT-1.5.3-2] string contains U+0000", MALFORMED)
        return text

    def rest(self) -> bytes:
        value = bytes(self.data[self.pos : self.end])
        self.pos = self.end
        return value

    def done(self, what: str) -> None:
        if self.pos != self.end:
            raise MalformedPacket(f"{what} has {self.end - self.pos} unexpected trailing bytes", MALFORMED)


def decode_properties(reader: Reader, packet_type: int) -> Properties | None:
    """Read a property length and properties allowed in ``packet_type`` (0 = Will) [§2.2.2];
    None when there are none."""
    length = reader.varint()
    end = reader.pos + length
    if end > reader.end:
        raise MalformedPacket("§2.2.2.1 property length runs past the end of the packet", MALFORMED)
    props: Properties = {}
    sub = Reader(reader.data, reader.pos, end)
    while sub.pos < end:
        pid = sub.varint()
        entry = PROPERTIES.get(pid)
        if entry is None:
            raise MalformedPacket(f"§2.2.2.2 unknown property identifier 0x{pid:02x}", MALFORMED)
        name, kind, allowed = entry
        if packet_type not in allowed:
            raise MalformedPacket(f"§2.2.2.2 property {name} is not allowed in this packet", PROTOCOL)
        if kind == BYTE:
            value: Any = sub.byte()
        elif kind == U16:
            value = sub.u16()
        elif kind == U32:
            value = sub.u32()
        elif kind == VARINT:
            value = sub.varint()
        elif kind == UTF8:
            value = sub.utf8()
        elif kind == BINARY:
            value = sub.binary()
        else:
            value = (sub.utf8(), sub.utf8())
        if name in REPEATABLE:
            props.setdefault(name, []).append(value)
        elif name in props:
            raise MalformedPacket(f"§2.2.2.2 property {name} appears more than once", PROTOCOL)
        else:
            props[name] = value
    reader.pos = end
    return props or None


def encode_properties(props: Properties | None) -> bytes:
    if not props:
        return b"\x00"
    out = bytearray()
    for name, value in props.items():
        pid, kind = PROPERTY_IDS[name]
        values = value if name in REPEATABLE and isinstance(value, list) else [value]
        for item in values:
            out += encode_varint(pid)
            if kind == BYTE:
                out.append(item)
            elif kind == U16:
                out += _U16.pack(item)
            elif kind == U32:
                out += _U32.pack(item)
            elif kind == VARINT:
                out += encode_varint(item)
            elif kind == UTF8:
                out += _utf8(item)
            elif kind == BINARY:
                out += _binary(item)
            else:
                out += _utf8(item[0]) + _utf8(item[1])
    return encode_varint(len(out)) + bytes(out)


# -- decoding -------------------------------------------------------------------------------------


def decode_connect(flags: int, body: bytes) -> Connect:
    """CONNECT [MQTT-3.1]. Errors carry the CONNACK code to answer with, where there is one."""
    r = Reader(body)
    name = r.utf8()
    level = r.byte()
    if (name, level) not in (("MQTT", 4), ("MQTT", 5), ("MQIsdp", 3)):
        if name not in ("MQTT", "MQIsdp"):
            raise MalformedPacket(
                f"[MQTT-3.1.2-1] unknown protocol name {name!r}", PROTOCOL, connack_code=None
            )
        raise MalformedPacket(
            f"[MQTT-3.1.2-2] unsupported protocol level {level} for {name!r}",
            ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
            connack_code=1,
        )
    v5 = level == 5
    try:
        connect_flags = r.byte()
        if connect_flags & 0x01:
            raise MalformedPacket("[MQTT-3.1.2-3] reserved CONNECT flag is set", MALFORMED)
        clean = bool(connect_flags & 0x02)
        will_flag = bool(connect_flags & 0x04)
        will_qos = (connect_flags >> 3) & 0x03
        will_retain = bool(connect_flags & 0x20)
        has_password = bool(connect_flags & 0x40)
        has_username = bool(connect_flags & 0x80)
        if not will_flag and (will_qos or will_retain):
            raise MalformedPacket("[MQTT-3.1.2-13] Will QoS/Retain set without the Will flag", MALFORMED)
        if will_qos == 3:
            raise MalformedPacket("[MQTT-3.1.2-14] Will QoS 3", MALFORMED)
        if has_password and not has_username and not v5:
            raise MalformedPacket("[MQTT-3.1.2-22] password flag set without the user name flag", MALFORMED)
        keepalive = r.u16()
        properties = decode_properties(r, PacketType.CONNECT) if v5 else None
        client_id = r.utf8()
        will = None
        if will_flag:
            will_props = decode_properties(r, 0) if v5 else None
            topic = r.utf8()
            if (error := topic_name_error(topic)) is not None:
                raise MalformedPacket(f"Will topic: {error}", ReasonCode.TOPIC_NAME_INVALID)
            will = Will(topic, r.binary(), will_qos, will_retain, will_props)
        username = r.utf8() if has_username else None
        password = r.binary() if has_password else None
        r.done("CONNECT")
    except MalformedPacket as exc:
        exc.protocol_level = level
        if exc.connack_code is None and v5:  # MQTT 5 may say why in a CONNACK before closing [§4.13.1]
            exc.connack_code = exc.reason_code if exc.reason_code >= 0x80 else MALFORMED
        raise
    if not client_id and not clean and level == 4:
        raise MalformedPacket(
            "[MQTT-3.1.3-8] empty client id requires CleanSession=1",
            ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
            connack_code=2,
        )
    if not client_id and level == 3:
        raise MalformedPacket(
            "MQTT 3.1 requires a client id", ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, connack_code=2
        )
    return Connect(client_id, clean, keepalive, username, password, will, name, level, properties)


def decode_connack(flags: int, body: bytes, level: int) -> Connack:
    r = Reader(body)
    ack_flags = r.byte()
    if ack_flags & 0xFE:
        raise MalformedPacket("[MQTT-3.2.2-1] reserved CONNACK flags are set", MALFORMED)
    code = r.byte()
    props = decode_properties(r, PacketType.CONNACK) if level == 5 and r.remaining() else None
    r.done("CONNACK")
    return Connack(bool(ack_flags & 1), code, props)


def decode_publish(flags: int, body: bytes, level: int) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("[MQTT-3.3.1-4] PUBLISH with QoS 3", MALFORMED)
    dup = bool(flags & 0x08)
    if dup and qos == 0:
        raise MalformedPacket("[MQTT-3.3.1-2] DUP flag set on a QoS 0 PUBLISH", MALFORMED)
    r = Reader(body)
    topic = r.utf8()
    packet_id = None
    if qos:
        packet_id = r.u16()
        if packet_id == 0:
            raise MalformedPacket("[MQTT-2.3.1-1] QoS > 0 PUBLISH with packet identifier 0", MALFORMED)
    props = decode_properties(r, PacketType.PUBLISH) if level == 5 else None
    if (error := topic_name_error(topic)) is not None:
        raise MalformedPacket(error, ReasonCode.TOPIC_NAME_INVALID if topic else PROTOCOL)
    return Publish(topic, r.rest(), qos, bool(flags & 0x01), dup, packet_id, props)


def _decode_ack(cls: type, packet_type: PacketType, body: bytes, level: int) -> Any:
    r = Reader(body)
    packet_id = r.u16()
    if packet_id == 0:
        raise MalformedPacket("[MQTT-2.3.1-1] packet identifier 0", MALFORMED)
    code = 0
    props = None
    if level == 5 and r.remaining():
        code = r.byte()
        if r.remaining():
            props = decode_properties(r, packet_type)
    r.done(packet_type.name)
    return cls(packet_id, code, props)


def decode_subscribe(flags: int, body: bytes, level: int) -> Subscribe:
    r = Reader(body)
    packet_id = r.u16()
    if packet_id == 0:
        raise MalformedPacket("[MQTT-2.3.1-1] SUBSCRIBE with packet identifier 0", MALFORMED)
    props = decode_properties(r, PacketType.SUBSCRIBE) if level == 5 else None
    if props and len(props.get("subscription_identifier", ())) > 1:
        raise MalformedPacket("§3.8.2.1.2 more than one subscription identifier", PROTOCOL)
    subscriptions: list[tuple[str, int]] = []
    options: list[int] = []
    while r.remaining():
        topic_filter = r.utf8()
        option = r.byte()
        qos = option & 0x03
        if qos == 3:
            raise MalformedPacket("[MQTT-3.8.3-4] requested QoS 3", MALFORMED)
        if level == 5:
            if option & 0xC0:
                raise MalformedPacket("§3.8.3.1 reserved subscription option bits are set", MALFORMED)
            if (option >> 4) & 0x03 == 3:
                raise MalformedPacket("§3.8.3.1 Retain Handling 3", PROTOCOL)
        elif option & 0xFC:
            raise MalformedPacket("[MQTT-3.8.3-4] reserved bits of the requested QoS byte are set", MALFORMED)
        if (error := topic_filter_error(topic_filter)) is not None:
            raise MalformedPacket(error, ReasonCode.TOPIC_FILTER_INVALID if level == 5 else MALFORMED)
        subscriptions.append((topic_filter, qos))
        options.append(option)
    if not subscriptions:
        raise MalformedPacket("[MQTT-3.8.3-3] SUBSCRIBE without topic filters", PROTOCOL)
    return Subscribe(packet_id, subscriptions, options if level == 5 else None, props)


def decode_suback(flags: int, body: bytes, level: int) -> Suback:
    r = Reader(body)
    packet_id = r.u16()
    props = decode_properties(r, PacketType.SUBACK) if level == 5 else None
    codes = list(r.rest())
    if not codes:
        raise MalformedPacket("[MQTT-3.9.3] SUBACK without return codes", MALFORMED)
    return Suback(packet_id, codes, props)


def decode_unsubscribe(flags: int, body: bytes, level: int) -> Unsubscribe:
    r = Reader(body)
    packet_id = r.u16()
    if packet_id == 0:
        raise MalformedPacket("[MQTT-2.3.1-1] UNSUBSCRIBE with packet identifier 0", MALFORMED)
    props = decode_properties(r, PacketType.UNSUBSCRIBE) if level == 5 else None
    filters: list[str] = []
    while r.remaining():
        topic_filter = r.utf8()
        if (error := topic_filter_error(topic_filter)) is not None:
            raise MalformedPacket(error, ReasonCode.TOPIC_FILTER_INVALID if level == 5 else MALFORMED)
        filters.append(topic_filter)
    if not filters:
        raise MalformedPacket("[MQTT-3.10.3-2] UNSUBSCRIBE without topic filters", PROTOCOL)
    return Unsubscribe(packet_id, filters, props)


def decode_unsuback(flags: int, body: bytes, level: int) -> Unsuback:
    r = Reader(body)
    packet_id = r.u16()
    if level == 5:
        props = decode_properties(r, PacketType.UNSUBACK)
        return Unsuback(packet_id, list(r.rest()), props)
    r.done("UNSUBACK")
    return Unsuback(packet_id)


def _decode_reason_only(cls: type, packet_type: PacketType, body: bytes, level: int) -> Any:
    if level != 5:
        if body:
            raise MalformedPacket(f"{packet_type.name} must have no body before MQTT 5", MALFORMED)
        return cls()
    r = Reader(body)
    code = r.byte() if r.remaining() else 0
    props = decode_properties(r, packet_type) if r.remaining() else None
    r.done(packet_type.name)
    return cls(code, props)


def decode(first_byte: int, body: bytes, level: int) -> Packet:
    """Decode one packet whose fixed header's first byte is ``first_byte`` and whose remaining
    bytes are ``body``, for protocol ``level`` (3, 4 or 5).

    Raises:
        MalformedPacket: the bytes are not a valid packet of that type.
    """
    kind = first_byte >> 4
    flags = first_byte & 0x0F
    if kind == 3:
        return decode_publish(flags, body, level)
    expected_flags = 0x02 if kind in (6, 8, 10) else 0x00
    if kind == 0 or (kind == 15 and level != 5):
        raise MalformedPacket(f"[MQTT-2.2.1] reserved packet type {kind}", MALFORMED)
    if flags != expected_flags:
        raise MalformedPacket(
            f"[MQTT-2.2.2-2] invalid fixed header flags 0x{flags:x} for {PacketType(kind).name}", MALFORMED
        )
    if kind == 4:
        return _decode_ack(Puback, PacketType.PUBACK, body, level)
    if kind == 12:
        if body:
            raise MalformedPacket("PINGREQ must have no body", MALFORMED)
        return Pingreq()
    if kind == 8:
        return decode_subscribe(flags, body, level)
    if kind == 1:
        return decode_connect(flags, body)
    if kind == 2:
        return decode_connack(flags, body, level)
    if kind == 5:
        return _decode_ack(Pubrec, PacketType.PUBREC, body, level)
    if kind == 6:
        return _decode_ack(Pubrel, PacketType.PUBREL, body, level)
    if kind == 7:
        return _decode_ack(Pubcomp, PacketType.PUBCOMP, body, level)
    if kind == 9:
        return decode_suback(flags, body, level)
    if kind == 10:
        return decode_unsubscribe(flags, body, level)
    if kind == 11:
        return decode_unsuback(flags, body, level)
    if kind == 13:
        if body:
            raise MalformedPacket("PINGRESP must have no body", MALFORMED)
        return Pingresp()
    if kind == 14:
        return _decode_reason_only(Disconnect, PacketType.DISCONNECT, body, level)
    return _decode_reason_only(Auth, PacketType.AUTH, body, level)


# -- encoding -------------------------------------------------------------------------------------


def _frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_varint(len(body)) + body


def encode_publish(packet: Publish, level: int) -> bytes:
    """PUBLISH, the hot path: one join, the payload copied once."""
    topic = packet.topic.encode("utf-8")
    first = 0x30 | (packet.qos << 1) | (0x08 if packet.dup else 0) | (0x01 if packet.retain else 0)
    head = _U16.pack(len(topic)) + topic
    if packet.qos:
        head += _U16.pack(packet.packet_id or 0)
    if level == 5:
        head += encode_properties(packet.properties)
    length = len(head) + len(packet.payload)
    return b"".join((bytes((first,)), encode_varint(length), head, packet.payload))


def encode(packet: Packet, level: int) -> bytes:
    """Encode ``packet`` for protocol ``level``; MQTT 5-only fields are dropped below level 5."""
    kind = type(packet)
    v5 = level == 5
    if kind is Publish:
        return encode_publish(packet, level)  # type: ignore[arg-type]
    if kind is Puback or kind is Pubrec or kind is Pubrel or kind is Pubcomp:
        first = {Puback: 0x40, Pubrec: 0x50, Pubrel: 0x62, Pubcomp: 0x70}[kind]
        body = _U16.pack(packet.packet_id)  # type: ignore[union-attr]
        if v5 and (packet.reason_code or packet.properties):  # type: ignore[union-attr]
            body += bytes((packet.reason_code,))  # type: ignore[union-attr]
            if packet.properties:  # type: ignore[union-attr]
                body += encode_properties(packet.properties)  # type: ignore[union-attr]
        return _frame(first, body)
    if kind is Pingreq:
        return b"\xc0\x00"
    if kind is Pingresp:
        return b"\xd0\x00"
    if kind is Connack:
        flags = 1 if packet.session_present and level >= 4 else 0  # type: ignore[union-attr]
        body = bytes((flags, packet.reason_code))  # type: ignore[union-attr]
        if v5:
            body += encode_properties(packet.properties)  # type: ignore[union-attr]
        return _frame(0x20, body)
    if kind is Suback:
        codes = packet.reason_codes  # type: ignore[union-attr]
        if not v5:
            codes = [c if c < 0x80 else 0x80 for c in codes]
        body = _U16.pack(packet.packet_id)  # type: ignore[union-attr]
        if v5:
            body += encode_properties(packet.properties)  # type: ignore[union-attr]
        return _frame(0x90, body + bytes(codes))
    if kind is Unsuback:
        body = _U16.pack(packet.packet_id)  # type: ignore[union-attr]
        if v5:
            body += encode_properties(packet.properties) + bytes(packet.reason_codes)  # type: ignore[union-attr]
        return _frame(0xB0, body)
    if kind is Subscribe:
        body = _U16.pack(packet.packet_id)  # type: ignore[union-attr]
        if v5:
            body += encode_properties(packet.properties)  # type: ignore[union-attr]
        options = packet.options if v5 and packet.options else None  # type: ignore[union-attr]
        for index, (topic_filter, qos) in enumerate(packet.subscriptions):  # type: ignore[union-attr]
            body += _utf8(topic_filter) + bytes((options[index] if options else qos,))
        return _frame(0x82, body)
    if kind is Unsubscribe:
        body = _U16.pack(packet.packet_id)  # type: ignore[union-attr]
        if v5:
            body += encode_properties(packet.properties)  # type: ignore[union-attr]
        for topic_filter in packet.topic_filters:  # type: ignore[union-attr]
            body += _utf8(topic_filter)
        return _frame(0xA2, body)
    if kind is Connect:
        return _encode_connect(packet)  # type: ignore[arg-type]
    if kind is Disconnect or kind is Auth:
        first = 0xE0 if kind is Disconnect else 0xF0
        if not v5:
            if kind is Auth:
                raise ValueError("AUTH exists only in MQTT 5")
            return b"\xe0\x00"
        if not packet.reason_code and not packet.properties:  # type: ignore[union-attr]
            return bytes((first, 0))
        body = bytes((packet.reason_code,))  # type: ignore[union-attr]
        if packet.properties:  # type: ignore[union-attr]
            body += encode_properties(packet.properties)  # type: ignore[union-attr]
        return _frame(first, body)
    raise TypeError(f"not an MQTT packet: {packet!r}")


def _encode_connect(packet: Connect) -> bytes:
    level = packet.protocol_level
    v5 = level == 5
    flags = 0x02 if packet.clean_session else 0
    will = packet.will
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if packet.password is not None:
        flags |= 0x40
    if packet.username is not None:
        flags |= 0x80
    body = (
        _utf8(packet.protocol_name or PROTOCOL_NAMES[level])
        + bytes((level, flags))
        + _U16.pack(packet.keepalive)
    )
    if v5:
        body += encode_properties(packet.properties)
    body += _utf8(packet.client_id)
    if will is not None:
        if v5:
            body += encode_properties(will.properties)
        body += _utf8(will.topic) + _binary(will.payload)
    if packet.username is not None:
        body += _utf8(packet.username)
    if packet.password is not None:
        body += _binary(packet.password)
    return _frame(0x10, body)
