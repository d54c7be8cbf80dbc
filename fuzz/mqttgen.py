"""MQTT 3.1 / 3.1.1 / 5 packet sequences, built by hand, and their structure-aware mutations.

The bytes are built here rather than with ``methodhub.mqtt``'s encoder, so a codec bug cannot hide
itself by being on both sides, and so fields can hold what no encoder writes (invalid UTF-8,
non-minimal lengths, properties on the wrong packet). A sequence is a list of :class:`Unit` — one
packet (or some junk) each, with a label — so a reproducer can be shown and shrunk packet by packet.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")

API_VERSION = "2021-04-12"
BAD_UTF8 = (
    b"\xff",
    b"\xc0\x80",  # overlong NUL
    b"\xed\xa0\x80",  # a UTF-16 surrogate
    b"\x00",  # U+0000 is forbidden in MQTT strings [MQTT-1.5.4-2]
    b"\xef\xbf\xbf",  # U+FFFF, a non-character
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xe2\x82",  # truncated sequence
    b"\x7f",  # DEL, a control character
)
COPIES = frozenset(("duplicate", "ping flood", "spliced"))
"""Labels of units that are copies of packets, not mutations of their own."""
INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, 0x10, 0x20, 0x30, 0x32, 0x82, 0xC0, 0xE0, 0xF0)


@dataclass(slots=True)
class Unit:
    """One packet (or junk) of a sequence: its bytes and what it is (``mutated`` names the mutation)."""

    data: bytes
    label: str
    mutated: str = ""
    wait_after: str = ""
    """A real client would wait for the hub's answer after this unit: ``"answer"`` (its next bytes:
    an AMQP attach and credit) or ``"put-token"`` (its answer to an AMQP put-token, which comes
    after the delivery's disposition); plans that follow the dialogue's stages do."""

    def describe(self) -> str:
        return f"{self.label} [{self.mutated}]" if self.mutated else self.label


# -- encoding primitives -------------------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def s(data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return _U16.pack(len(raw) & 0xFFFF) + raw


def frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def props(items: list[tuple[int, bytes]]) -> bytes:
    """MQTT 5 properties from (identifier, already-encoded value) pairs."""
    body = b"".join(varint(pid) + value for pid, value in items)
    return varint(len(body)) + body


# Property encoders by identifier (§2.2.2.2): value -> bytes.
def _byte(v: int) -> bytes:
    return bytes((v & 0xFF,))


def _u16(v: int) -> bytes:
    return _U16.pack(v & 0xFFFF)


def _u32(v: int) -> bytes:
    return _U32.pack(v & 0xFFFFFFFF)


PUBLISH_TOPICS = (
    "$iothub/methods/res/{status}/?$rid={rid}",
    "devices/{device}/messages/events/",
    "devices/{device}/messages/events/a=1&b=2",
    "$iothub/twin/GET/?$rid={rid}",
    "$iothub/twin/PATCH/properties/reported/?$rid={rid}",
    "a/b",
)
TEXT = "abcXYZ019 -_.~/%&=?$!'é中😀\u2028\ufeff\u0301"
"""Characters of fuzzed field values: all valid in MQTT strings (no U+0000, no wildcards)."""


def _text(rng: random.Random) -> str:
    return "".join(rng.choices(TEXT, k=rng.randrange(13)))


# -- packet builders -----------------------------------------------------------------------------


@dataclass(slots=True)
class Credentials:
    """A device the fuzzer may connect as (registered by the harness, key chosen by the seed)."""

    device_id: str
    password: str
    hostname: str = "localhost"

    @property
    def username(self) -> str:
        return f"{self.hostname}/{self.device_id}/?api-version={API_VERSION}"


def connect(
    client_id: bytes | str,
    *,
    level: int = 4,
    username: bytes | str | None = None,
    password: bytes | str | None = None,
    clean: bool = True,
    keepalive: int = 60,
    will: tuple[bytes, bytes, int, bool] | None = None,
    properties: bytes = b"\x00",
    will_properties: bytes = b"\x00",
    name: bytes | None = None,
    reserved_flag: bool = False,
) -> bytes:
    flags = (0x02 if clean else 0) | (0x01 if reserved_flag else 0)
    if will is not None:
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
    if password is not None:
        flags |= 0x40
    if username is not None:
        flags |= 0x80
    proto = name if name is not None else (b"MQIsdp" if level == 3 else b"MQTT")
    body = s(proto) + bytes((level & 0xFF, flags & 0xFF)) + _u16(keepalive)
    if level == 5:
        body += properties
    body += s(client_id)
    if will is not None:
        if level == 5:
            body += will_properties
        body += s(will[0]) + s(will[1])
    if username is not None:
        body += s(username)
    if password is not None:
        body += s(password)
    return frame(0x10, body)


def publish(
    topic: bytes | str,
    payload: bytes = b"",
    *,
    level: int = 4,
    qos: int = 0,
    packet_id: int = 1,
    retain: bool = False,
    dup: bool = False,
    properties: bytes = b"\x00",
) -> bytes:
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    body = s(topic) + (_u16(packet_id) if qos else b"") + (properties if level == 5 else b"") + payload
    return frame(first & 0xFF, body)


def subscribe(
    filters: list[tuple[bytes | str, int]], *, level: int = 4, packet_id: int = 1, properties: bytes = b"\x00"
) -> bytes:
    body = _u16(packet_id) + (properties if level == 5 else b"")
    body += b"".join(s(f) + bytes((o & 0xFF,)) for f, o in filters)
    return frame(0x82, body)


def unsubscribe(filters: list[bytes | str], *, level: int = 4, packet_id: int = 1) -> bytes:
    body = _u16(packet_id) + (b"\x00" if level == 5 else b"") + b"".join(s(f) for f in filters)
    return frame(0xA2, body)


def ack(first: int, packet_id: int, *, level: int = 4, reason: int | None = None) -> bytes:
    body = _u16(packet_id)
    if level == 5 and reason is not None:
        body += bytes((reason,)) + b"\x00"
    return frame(first, body)


def disconnect(*, level: int = 4, reason: int = 0, properties: bytes | None = None) -> bytes:
    if level != 5 or (not reason and properties is None):
        return b"\xe0\x00"
    return frame(0xE0, bytes((reason,)) + (properties or b""))


PINGREQ = b"\xc0\x00"


# -- sequences -----------------------------------------------------------------------------------


@dataclass(slots=True)
class MqttSequence:
    """What to send on one MQTT connection: the units, and whether the first one is an authenticated
    CONNECT (so the connection may be accepted and kept alive)."""

    units: list[Unit]
    level: int
    authenticated: bool
    mutations: int
    """Packets whose bytes were mutated or fuzzed (copies — duplicates, floods, splices — not counted)."""


class MqttGenerator:
    """Builds and mutates MQTT packet sequences from a :class:`random.Random`."""

    def __init__(self, devices: list[Credentials], corpus_seed: str) -> None:
        self.devices = devices
        rng = random.Random(f"{corpus_seed}:corpus")
        # Sequences to splice from: made once per seed, so splicing keeps the run deterministic.
        self.corpus: list[list[Unit]] = [self._body(rng, rng.choice((4, 5)), None, 12) for _ in range(64)]

    # -- valid packets --

    def _connect(self, rng: random.Random, level: int, device: Credentials | None) -> Unit:
        props_items: list[tuple[int, bytes]] = []
        if level == 5:
            for pid, make in (
                (0x11, lambda: _u32(rng.choice((0, 60, 3600, 0xFFFFFFFF)))),  # session expiry
                (0x21, lambda: _u16(rng.choice((1, 10, 65535)))),  # receive maximum
                (0x27, lambda: _u32(rng.choice((128, 65536, 1 << 28)))),  # maximum packet size
                (0x22, lambda: _u16(rng.choice((0, 10)))),  # topic alias maximum
                (0x17, lambda: _byte(rng.choice((0, 1)))),  # request problem information
                (0x19, lambda: _byte(rng.choice((0, 1)))),  # request response information
                (0x26, lambda: s("k") + s("v" * rng.randint(0, 40))),  # user property
            ):
                if rng.random() < 0.3:
                    props_items.append((pid, make()))
            if rng.random() < 0.03:
                props_items.append((0x15, s("SCRAM-SHA-1")))  # enhanced authentication
        will = None
        if rng.random() < 0.1:
            will = (b"devices/will", b"gone", rng.choice((0, 1)), False)
        keepalive = rng.choice((0, 1, 5, 30, 60, 1800, 65535))
        clean = rng.random() < 0.5
        if device is not None:
            data = connect(
                device.device_id,
                level=level,
                username=device.username,
                password=device.password,
                clean=clean,
                keepalive=keepalive,
                will=will,
                properties=props(props_items),
            )
            return Unit(data, f"CONNECT v{level} {device.device_id} (valid credentials)")
        kind = rng.randrange(9)
        client_id: bytes | str = f"anon-{rng.randrange(1 << 20)}"
        username: bytes | str | None = None
        password: bytes | str | None = None
        name = None
        if kind == 0:
            what = "no credentials"
        elif kind == 1:
            client_id, username, what = "x", "x", "user name only"
        elif kind == 2:
            dev = rng.choice(self.devices)
            username, password = dev.username, "SharedAccessSignature sr=x&sig=y&se=1"
            client_id, what = dev.device_id, "wrong SAS token"
        elif kind == 3:
            username = f"localhost/{client_id}/?api-version={API_VERSION}"
            password, what = (
                "SharedAccessSignature sr=a&sig=b&se=" + "9" * rng.choice((20, 400, 5000)),
                "huge se",
            )
        elif kind == 4:
            username, password, what = f"{client_id}&a1B2c3D4e5F", "0" * 40, "Alibaba form, unknown product"
        elif kind == 5:
            client_id, what = "", "empty client id"
        elif kind == 6:
            client_id, what = "c" * rng.choice((24, 256, 65535)), "long client id"
        elif kind == 7:
            name, what = rng.choice((b"MQTX", b"", b"MQTT\x00")), "bad protocol name"
        else:
            dev = rng.choice(self.devices)
            username, password = (
                f"localhost/{dev.device_id}/modules/m1/?api-version={API_VERSION}",
                dev.password,
            )
            client_id, what = f"{dev.device_id}/m1", "module of a device with the device's token"
        data = connect(
            client_id,
            level=level,
            username=username,
            password=password,
            clean=clean,
            keepalive=keepalive,
            will=will,
            properties=props(props_items),
            name=name,
        )
        return Unit(data, f"CONNECT v{level} {what}")

    def _packet(self, rng: random.Random, level: int, device: Credentials | None) -> Unit:
        """A packet; half of them with fuzzed field values that keep it well-formed (labelled
        ``value``): random payloads, topic levels, request ids, packet ids, options, properties."""
        device_id = device.device_id if device is not None else "anon"
        roll = rng.random()
        soft = rng.random() < 0.5
        pid = rng.randrange(1, 65536)
        v5props = b"\x00"
        if soft and level == 5 and rng.random() < 0.5:
            makers = (
                lambda: (0x01, _byte(rng.randrange(2))),
                lambda: (0x02, _u32(rng.randrange(1 << 32))),
                lambda: (0x03, s(_text(rng))),
                lambda: (0x09, s(rng.randbytes(rng.randrange(20)))),
                lambda: (0x26, s(_text(rng)) + s(_text(rng))),
            )
            v5props = props([make() for make in makers[: rng.randint(1, 5)]])
        elif level == 5 and rng.random() < 0.25:
            items: list[tuple[int, bytes]] = []
            for prop_id, make in (
                (0x01, lambda: _byte(rng.choice((0, 1)))),
                (0x02, lambda: _u32(rng.choice((1, 3600)))),
                (0x03, lambda: s("application/json")),
                (0x08, lambda: s("reply/to")),
                (0x09, lambda: s(b"\x01\x02")),
                (0x23, lambda: _u16(rng.choice((1, 2, 10)))),  # topic alias
                (0x26, lambda: s("a") + s("b")),
            ):
                if rng.random() < 0.3:
                    items.append((prop_id, make()))
            v5props = props(items)
        if roll < 0.45:
            rid: object = rng.randrange(1 << 31)
            status: object = rng.choice((200, 200, 404, 500, 0))
            if soft:
                kind = rng.randrange(3)
                rid = _text(rng) if kind == 0 else rng.randrange(-(1 << 70), 1 << 70) if kind == 1 else ""
                status = _text(rng) if rng.random() < 0.5 else rng.randrange(-1000, 100000)
            if rng.random() < 0.97:
                topic = PUBLISH_TOPICS[rng.randrange(len(PUBLISH_TOPICS))].format(
                    status=status, rid=rid, device=device_id
                )
            else:
                topic = rng.choice(("", "#", "+/x", "$SYS/x", "t" * (70000 if rng.random() < 0.05 else 300)))
            payload = rng.choice((b"", b"{}", b'{"ok":true}', b"x" * 10))
            if soft:
                topic = topic.replace("a=1&b=2", f"{_text(rng)}={_text(rng)}")
                payload = rng.choice((rng.randbytes(rng.randrange(64)), _text(rng).encode(), b'{"a":' * 30))
            if rng.random() < 0.01:  # big ones are rare: they cost the most bytes and find the least
                payload = b"x" * rng.choice((1000, 1000, 140000))
            qos = rng.choice((0, 1, 1, 2)) if rng.random() < 0.95 else 3
            if soft:
                qos = rng.choice((0, 1))
            return Unit(
                publish(
                    topic,
                    payload,
                    level=level,
                    qos=qos,
                    packet_id=pid,
                    properties=v5props,
                    retain=rng.random() < 0.05,
                ),
                f"PUBLISH q{qos} {topic[:60]} ({len(payload)} B)",
                "value" if soft else "",
            )
        if roll < 0.6:
            count = rng.choice((1, 1, 2, 3, 20))
            filters: list[tuple[bytes | str, int]] = []
            for _ in range(count):
                flt = rng.choice(
                    (
                        "$iothub/methods/POST/#",
                        "$iothub/twin/res/#",
                        "$iothub/twin/PATCH/properties/desired/#",
                        f"devices/{device_id}/messages/devicebound/#",
                        "/sys/a1B2c3D4e5F/x/rrpc/request/+",
                        "#",
                        "+/+",
                        "a/#/b",
                        "a+",
                        "$share/g/t",
                        "",
                        "f" * (rng.choice((1000, 60000)) if rng.random() < 0.05 else 100),
                    )
                )
                options = rng.choice((0, 1, 1, 2)) if rng.random() < 0.9 else rng.randrange(256)
                if soft:
                    flt = "/".join(rng.choice((_text(rng), "+")) for _ in range(rng.randint(1, 4)))
                    flt += rng.choice(("", "/#"))
                    # QoS 0-2; MQTT 5 also No Local, Retain As Published, Retain Handling 0-2
                    options = rng.randrange(3) | (
                        (rng.randrange(4) << 2) | (rng.randrange(3) << 4) if level == 5 else 0
                    )
                filters.append((flt, options))
            shown = ",".join(str(f)[:40] for f, _ in filters[:3])
            return Unit(
                subscribe(filters, level=level, packet_id=pid, properties=v5props),
                f"SUBSCRIBE {shown}",
                "value" if soft else "",
            )
        if roll < 0.66:
            flt = rng.choice(("$iothub/methods/POST/#", "a/b", "#", ""))
            if soft:
                flt = _text(rng) + "/" + _text(rng)
            return Unit(
                unsubscribe([flt], level=level, packet_id=pid), f"UNSUBSCRIBE {flt}", "value" if soft else ""
            )
        if roll < 0.84:
            return Unit(PINGREQ, "PINGREQ")
        if roll < 0.94:
            first, name = rng.choice(
                ((0x40, "PUBACK"), (0x50, "PUBREC"), (0x62, "PUBREL"), (0x70, "PUBCOMP"))
            )
            reason = rng.choice((None, 0, 0x10, 0x80)) if level == 5 else None
            if soft and level == 5:
                reason = rng.choice((0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x92, 0x97, 0x99))
            return Unit(ack(first, pid, level=level, reason=reason), f"{name} {pid}", "value" if soft else "")
        if roll < 0.97 and level == 5:
            return Unit(
                frame(0xF0, bytes((rng.choice((0x00, 0x18, 0x19)),)) + props([(0x15, s("x"))])), "AUTH"
            )
        if roll < 0.985:
            return Unit(disconnect(level=level, reason=rng.choice((0, 4, 0x80))), "DISCONNECT")
        return Unit(connect(f"second-{pid}", level=level), "second CONNECT")

    def _body(self, rng: random.Random, level: int, device: Credentials | None, count: int) -> list[Unit]:
        return [self._packet(rng, level, device) for _ in range(count)]

    # -- a whole sequence --

    def sequence(self, rng: random.Random) -> MqttSequence:
        level = rng.choices((3, 4, 5), (1, 10, 9))[0]
        device = rng.choice(self.devices) if rng.random() < 0.6 else None
        units = [self._connect(rng, level, device)]
        size = rng.choices(
            (rng.randint(0, 3), rng.randint(4, 60), rng.randint(60, 400), rng.randint(400, 2000)),
            (3, 4, 2, 1),
        )[0]
        units += self._body(rng, level, device, size)
        if rng.random() < 0.3:
            units.append(Unit(disconnect(level=level), "DISCONNECT"))
        for _ in range(rng.choices((0, 1, 2, 3, 8), (15, 45, 20, 12, 8))[0]):
            self._mutate(rng, units, level)
        mutated = sum(1 for u in units if u.mutated and u.mutated not in COPIES)
        return MqttSequence(units, level, device is not None, mutated)

    def _mutate(self, rng: random.Random, units: list[Unit], level: int) -> bool:
        # The CONNECT is mutated one time in six; otherwise a packet after it.
        index = 0 if (len(units) == 1 or rng.random() < 0.17) else rng.randrange(1, len(units))
        if rng.random() < 0.3:
            return _SEQUENCE_MUTATORS[rng.randrange(len(_SEQUENCE_MUTATORS))](self, rng, units, index, level)
        unit = units[index]
        name, mutate = _PACKET_MUTATORS[rng.randrange(len(_PACKET_MUTATORS))]
        data = mutate(rng, unit.data)
        if data == unit.data:
            return False
        units[index] = Unit(data, unit.label, f"{unit.mutated}+{name}" if unit.mutated else name)
        return True


# -- packet mutators: bytes -> bytes -------------------------------------------------------------


def _header_length(data: bytes) -> int:
    """Bytes of the fixed header (first byte + remaining length), as far as it parses."""
    index = 1
    while index < len(data) and index < 5 and data[index] & 0x80:
        index += 1
    return min(index + 1, len(data))


def _flip_bits(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(out))
        out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


def _set_byte(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    pos = rng.randrange(len(out))
    out[pos] = rng.choice(INTERESTING_BYTES) if rng.random() < 0.6 else rng.randrange(256)
    return bytes(out)


def _truncate(rng: random.Random, data: bytes) -> bytes:
    """Cut the packet short; half the time fix the remaining length to match."""
    head = _header_length(data)
    if len(data) <= head:
        return data[:1]
    body = data[head : head + rng.randrange(len(data) - head)]
    return frame(data[0], body) if rng.random() < 0.5 else data[:head] + body


def _extend(rng: random.Random, data: bytes) -> bytes:
    head = _header_length(data)
    extra = rng.randbytes(rng.choice((1, 2, 7, 100)))
    body = data[head:] + extra
    return frame(data[0], body) if rng.random() < 0.7 else data + extra


def _first_byte(rng: random.Random, data: bytes) -> bytes:
    """Other flags, or another packet type, with the same body."""
    if rng.random() < 0.5:  # other flags
        return bytes(((data[0] & 0xF0) | rng.randrange(16),)) + data[1:]
    first = (rng.randrange(16) << 4) | (data[0] & 0x0F)
    return bytes((first,)) + data[1:]


def _wrong_length(rng: random.Random, data: bytes) -> bytes:
    head = _header_length(data)
    body = data[head:]
    choice = rng.randrange(6)
    if choice == 0:
        length = varint(max(0, len(body) + rng.choice((-2, -1, 1, 2, 100))))
    elif choice == 1:
        length = b"\xff\xff\xff\x7f"  # 268,435,455: the most MQTT allows
    elif choice == 2:
        length = b"\xff\xff\xff\xff\x7f"  # five bytes [MQTT-2.2.3]
    elif choice == 3:
        length = _non_minimal(len(body))
    elif choice == 4:
        length = b"\x80\x80\x80\x80"  # a varint that never ends (within 4 bytes)
    else:
        length = varint(rng.randrange(1 << 28))
    return bytes((data[0],)) + length + body


def _non_minimal(value: int) -> bytes:
    """``value`` as a 4-byte varint (not the minimum size the spec requires)."""
    out = bytearray()
    for _ in range(3):
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value & 0x7F)
    return bytes(out)


def _bad_utf8(rng: random.Random, data: bytes) -> bytes:
    """Put an invalid UTF-8 sequence somewhere in the body (often inside the first string)."""
    head = _header_length(data)
    if len(data) <= head + 2:
        return data
    kind = data[0] >> 4
    start = head + (0 if kind in (1, 3) else 2)  # CONNECT/PUBLISH: a string first; others: packet id
    if start + 2 >= len(data):
        start = head
    length = _U16.unpack_from(data, start)[0] if start + 2 <= len(data) else 0
    lo = start + 2
    hi = min(len(data), lo + max(length, 1))
    pos = rng.randrange(lo, hi) if hi > lo and rng.random() < 0.8 else rng.randrange(head, len(data))
    bad = rng.choice(BAD_UTF8)
    return data[:pos] + bad + data[pos + len(bad) :]


def _bad_properties(rng: random.Random, data: bytes) -> bytes:
    """Replace the packet's tail with a property block that is wrong in one way."""
    head = _header_length(data)
    kind = data[0] >> 4
    choice = rng.randrange(7)
    if choice == 0:
        block = props([(0x7F, b"\x01")])  # unknown identifier
    elif choice == 1:
        block = props([(0x11, _u32(1)), (0x11, _u32(2))])  # a non-repeatable property twice
    elif choice == 2:
        block = b"\x10" + b"\x11\x00"  # says 16 bytes, holds 2
    elif choice == 3:
        block = props([(0x0B, b"\x00")])  # subscription identifier 0 (and not from a client)
    elif choice == 4:
        block = props([(0x24, b"\x01")])  # maximum QoS: a CONNACK property
    elif choice == 5:
        block = b"\xff\xff\xff\xff\x7f"  # a property length of five bytes
    else:
        block = props([(0x26, s(b"k") + s(rng.choice(BAD_UTF8)))])  # user property, bad UTF-8
    if kind == 3 and len(data) > head + 2:  # PUBLISH: after topic (and packet id)
        topic_len = _U16.unpack_from(data, head)[0]
        cut = head + 2 + topic_len + (2 if data[0] & 0x06 else 0)
    elif kind == 1:
        cut = head + 10 if len(data) >= head + 10 else len(data)  # after "MQTT", level, flags, keepalive
    else:
        cut = head + 2 if len(data) >= head + 2 else len(data)  # after the packet id
    body = data[head:cut] + block + data[cut:][rng.choice((0, 1, 99999)) :]
    return frame(data[0], body)


_PACKET_MUTATORS: list[tuple[str, Callable[[random.Random, bytes], bytes]]] = [
    ("flip-bits", _flip_bits),
    ("set-byte", _set_byte),
    ("truncate", _truncate),
    ("extend", _extend),
    ("first-byte", _first_byte),
    ("wrong-length", _wrong_length),
    ("bad-utf8", _bad_utf8),
    ("bad-utf8", _bad_utf8),
    ("bad-properties", _bad_properties),
]


# -- sequence mutators ---------------------------------------------------------------------------


def _duplicate(gen: MqttGenerator, rng: random.Random, units: list[Unit], index: int, level: int) -> bool:
    times = rng.choice((1, 1, 2, 50))
    units[index + 1 : index + 1] = [Unit(units[index].data, units[index].label, "duplicate")] * times
    return True


def _delete(gen: MqttGenerator, rng: random.Random, units: list[Unit], index: int, level: int) -> bool:
    if len(units) < 2:
        return False
    del units[index]
    return True


def _swap(gen: MqttGenerator, rng: random.Random, units: list[Unit], index: int, level: int) -> bool:
    if index + 1 >= len(units):
        return False
    units[index], units[index + 1] = units[index + 1], units[index]
    return True


def _splice(gen: MqttGenerator, rng: random.Random, units: list[Unit], index: int, level: int) -> bool:
    donor = gen.corpus[rng.randrange(len(gen.corpus))]
    start = rng.randrange(len(donor))
    piece = [Unit(u.data, u.label, "spliced") for u in donor[start : start + rng.randint(1, 6)]]
    units[index + 1 : index + 1] = piece
    return True


def _junk(gen: MqttGenerator, rng: random.Random, units: list[Unit], index: int, level: int) -> bool:
    data = rng.choice(
        (
            rng.randbytes(rng.randint(1, 16)),
            b"\x00\x00",
            b"GET / HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x00\xa5\x01",  # a TLS ClientHello's start
            b"\x30",  # half a fixed header
        )
    )
    units.insert(index + 1, Unit(data, f"junk {data[:8].hex()}", "junk"))
    return True


def _second_connect(
    gen: MqttGenerator, rng: random.Random, units: list[Unit], index: int, level: int
) -> bool:
    units.insert(index + 1, Unit(units[0].data, units[0].label, "second CONNECT"))
    return True


def _mid_disconnect(
    gen: MqttGenerator, rng: random.Random, units: list[Unit], index: int, level: int
) -> bool:
    units.insert(
        index + 1, Unit(disconnect(level=level, reason=rng.choice((0, 4))), "DISCONNECT", "inserted")
    )
    return True


def _announce_huge(gen: MqttGenerator, rng: random.Random, units: list[Unit], index: int, level: int) -> bool:
    """A PUBLISH header announcing more bytes than ever follow (the hub must not wait forever)."""
    length = rng.choice((b"\xff\xff\xff\x7f", varint(200_000), varint(1000)))
    units.insert(
        index + 1, Unit(b"\x30" + length + b"\x00\x01a", "PUBLISH header, body never sent", "huge-length")
    )
    return True


def _many_pings(gen: MqttGenerator, rng: random.Random, units: list[Unit], index: int, level: int) -> bool:
    count = rng.choice((100, 1000, 5000))
    units[index + 1 : index + 1] = [Unit(PINGREQ, "PINGREQ", "ping flood")] * count
    return True


_SEQUENCE_MUTATORS = [
    _duplicate,
    _delete,
    _swap,
    _splice,
    _junk,
    _second_connect,
    _mid_disconnect,
    _announce_huge,
    _many_pings,
]
