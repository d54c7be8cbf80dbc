"""AMQP 1.0 frames and message sections built by hand, as value trees (:mod:`fuzz.amqpvalues`).

A :class:`Piece` is one frame (or raw bytes: a protocol header, junk) while a dialogue is built and
mutated: its performative and message sections stay trees until :meth:`Piece.encode`, so a
mutation can change one field of one frame. The builders write what the SDKs write (smallest
encodings, trailing absent fields left off); the constants are the descriptors of part 2 and 3.
"""

from __future__ import annotations

import random
import struct
import uuid
from dataclasses import dataclass

from fuzz.amqpvalues import (
    WELL_FORMED_VALUE_MUTATIONS,
    V,
    binary,
    boolean,
    composite,
    described,
    enc,
    map_value,
    null,
    string,
    symbol,
    ubyte,
    uint,
    ulong,
    ushort,
    uuid_value,
)
from fuzz.mqttgen import Unit

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
TLS_HEADER = b"AMQP\x02\x01\x00\x00"
HUB_MAX_FRAME_SIZE = 65536
"""The max-frame-size the hub announces (``methodhub.amqp``'s default): larger frames are refused."""
OPEN, BEGIN, ATTACH, FLOW, TRANSFER, DISPOSITION, DETACH, END, CLOSE = range(0x10, 0x19)
SASL_INIT, SASL_RESPONSE = 0x41, 0x43
SOURCE, TARGET = 0x28, 0x29
ACCEPTED, REJECTED, RELEASED, MODIFIED = 0x24, 0x25, 0x26, 0x27
PROPERTIES, APPLICATION_PROPERTIES, DATA, AMQP_VALUE, HEADER_SECTION = 0x73, 0x74, 0x75, 0x77, 0x70
COPIES = frozenset(("heartbeat flood", "flood"))
"""The empty frames of a heartbeat flood, and a session or link flood's frames after its first:
well-formed copies, not counted as mutated frames."""
WELL_FORMED = frozenset(("", "value", *COPIES, *WELL_FORMED_VALUE_MUTATIONS))

_FRAME_HEADER = struct.Struct(">IBBH")


@dataclass(slots=True)
class Piece:
    """One frame (or raw bytes: a protocol header, junk) while a dialogue is built and mutated.

    ``body`` is the performative (or SASL body) as a value tree, None for an empty frame;
    ``sections`` a transfer's message as value trees, ``payload`` raw bytes after them; ``size``
    and ``doff`` lies for the frame header; ``ext`` words of (valid) extended header.
    """

    label: str
    body: V | None = None
    raw: bytes | None = None
    channel: int = 0
    frame_type: int = 0
    sections: list[V] | None = None
    payload: bytes = b""
    size: int | None = None
    doff: int | None = None
    ext: int = 0
    wait_after: str = ""
    mutated: str = ""
    mangled_frame: bool = False
    """``raw`` holds a frame's bytes after a byte-level mutation (it still counts as a frame)."""

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        out = bytearray(8)
        out += b"\x00" * (4 * self.ext)
        if self.body is not None:
            out += enc(self.body)
        for section in self.sections or ():
            out += enc(section)
        out += self.payload
        size = len(out) if self.size is None else self.size
        doff = 2 + self.ext if self.doff is None else self.doff
        _FRAME_HEADER.pack_into(
            out, 0, size & 0xFFFFFFFF, doff & 0xFF, self.frame_type & 0xFF, self.channel & 0xFFFF
        )
        return bytes(out)

    def unit(self) -> Unit:
        return Unit(self.encode(), self.label, self.mutated, self.wait_after)

    def copy(self) -> Piece:
        return Piece(
            self.label,
            self.body.copy() if self.body is not None else None,
            self.raw,
            self.channel,
            self.frame_type,
            [s.copy() for s in self.sections] if self.sections is not None else None,
            self.payload,
            self.size,
            self.doff,
            self.ext,
            self.wait_after,
            self.mutated,
            self.mangled_frame,
        )

    @property
    def is_frame(self) -> bool:
        return self.raw is None or self.mangled_frame


# -- frames and sections --------------------------------------------------------------------------


def sasl_init(mechanism: str | bytes, response: bytes | None, hostname: str | None) -> V:
    return composite(
        SASL_INIT,
        [
            symbol(mechanism),
            binary(response) if response is not None else None,
            string(hostname) if hostname is not None else None,
        ],
    )


def open_frame(
    container_id: str,
    hostname: str | None,
    *,
    max_frame_size: int | None = None,
    channel_max: int | None = None,
    idle_time_out: int | None = None,
    properties: V | None = None,
    capabilities: V | None = None,
) -> V:
    return composite(
        OPEN,
        [
            string(container_id),
            string(hostname) if hostname is not None else None,
            uint(max_frame_size) if max_frame_size is not None else None,
            ushort(channel_max) if channel_max is not None else None,
            uint(idle_time_out) if idle_time_out is not None else None,
            None,
            None,
            None,
            capabilities,
            properties,
        ],
    )


def begin_frame(
    next_outgoing_id: int = 0,
    incoming_window: int = 2048,
    outgoing_window: int = 0xFFFFFFFF,
    handle_max: int | None = None,
    remote_channel: int | None = None,
) -> V:
    return composite(
        BEGIN,
        [
            ushort(remote_channel) if remote_channel is not None else None,
            uint(next_outgoing_id),
            uint(incoming_window),
            uint(outgoing_window),
            uint(handle_max) if handle_max is not None else None,
        ],
    )


def terminus(descriptor: int, address: str | None) -> V:
    return composite(descriptor, [string(address) if address is not None else None])


def attach_frame(
    name: str,
    handle: int,
    *,
    receiver: bool,
    source: V | None,
    target: V | None,
    snd_settle_mode: int | None = None,
    rcv_settle_mode: int | None = None,
    initial_delivery_count: int | None = None,
    max_message_size: int | None = None,
    properties: V | None = None,
) -> V:
    """An attach: ``receiver`` True when the device receives on the link (role = receiver)."""
    if initial_delivery_count is None and not receiver:
        initial_delivery_count = 0  # a sender must say where its delivery count starts
    return composite(
        ATTACH,
        [
            string(name),
            uint(handle),
            boolean(receiver),
            ubyte(snd_settle_mode) if snd_settle_mode is not None else None,
            ubyte(rcv_settle_mode) if rcv_settle_mode is not None else None,
            source if source is not None else null(),
            target if target is not None else null(),
            None,
            None,
            uint(initial_delivery_count) if initial_delivery_count is not None else None,
            ulong(max_message_size) if max_message_size is not None else None,
            None,
            None,
            properties,
        ],
    )


def flow_frame(
    *,
    incoming_window: int = 2048,
    next_outgoing_id: int = 0,
    outgoing_window: int = 0xFFFFFFFF,
    next_incoming_id: int | None = None,
    handle: int | None = None,
    delivery_count: int | None = None,
    link_credit: int | None = None,
    drain: bool | None = None,
    echo: bool | None = None,
) -> V:
    return composite(
        FLOW,
        [
            uint(next_incoming_id) if next_incoming_id is not None else None,
            uint(incoming_window),
            uint(next_outgoing_id),
            uint(outgoing_window),
            uint(handle) if handle is not None else None,
            uint(delivery_count) if delivery_count is not None else None,
            uint(link_credit) if link_credit is not None else None,
            None,
            boolean(drain) if drain is not None else None,
            boolean(echo) if echo is not None else None,
        ],
    )


def transfer_frame(
    handle: int,
    delivery_id: int | None,
    tag: bytes | None,
    *,
    settled: bool | None = None,
    more: bool | None = None,
    aborted: bool | None = None,
    message_format: int | None = 0,
) -> V:
    return composite(
        TRANSFER,
        [
            uint(handle),
            uint(delivery_id) if delivery_id is not None else None,
            binary(tag) if tag is not None else None,
            uint(message_format) if message_format is not None else None,
            boolean(settled) if settled is not None else None,
            boolean(more) if more is not None else None,
            None,
            None,
            None,
            boolean(aborted) if aborted is not None else None,
        ],
    )


def error_value(condition: str, description: str | None = None) -> V:
    return composite(0x1D, [symbol(condition), string(description) if description is not None else None])


def outcome_value(rng: random.Random) -> V:
    kind = rng.randrange(5)
    if kind == 0:
        return composite(ACCEPTED, [])
    if kind == 1:
        return composite(REJECTED, [error_value("amqp:decode-error", "bad")])
    if kind == 2:
        return composite(RELEASED, [])
    if kind == 3:
        return composite(MODIFIED, [boolean(True), boolean(False)])
    return composite(0x23, [uint(0), ulong(0)])  # received


def disposition_frame(first: int, last: int | None, settled: bool, state: V | None) -> V:
    return composite(
        DISPOSITION,
        [boolean(True), uint(first), uint(last) if last is not None else None, boolean(settled), state],
    )


def detach_frame(handle: int, closed: bool = True, error: V | None = None) -> V:
    return composite(DETACH, [uint(handle), boolean(closed), error])


def end_frame(error: V | None = None) -> V:
    return composite(END, [error])


def close_frame(error: V | None = None) -> V:
    return composite(CLOSE, [error])


def message_id(rng: random.Random) -> V:
    """A message-id of each type the SDKs use (wire doc §2.2): Node's UUID text, C's ulong, Java's
    uuid, C#'s ``<linkname><n>``; and binary, which the spec allows."""
    kind = rng.randrange(5)
    if kind == 0:
        return string(str(uuid.UUID(int=rng.getrandbits(128))))
    if kind == 1:
        return ulong(rng.randrange(1 << rng.choice((8, 32, 64))))
    if kind == 2:
        return uuid_value(uuid.UUID(int=rng.getrandbits(128)))
    if kind == 3:
        return string(f"duplex:{rng.randrange(100)}:sender{rng.randrange(10)}")
    return binary(rng.randbytes(rng.choice((0, 8, 16))))


def properties_section(
    message_id_value: V | None = None,
    *,
    to: str | None = None,
    reply_to: str | None = None,
    correlation_id: V | None = None,
) -> V:
    return composite(
        PROPERTIES,
        [
            message_id_value,
            None,
            string(to) if to is not None else None,
            None,
            string(reply_to) if reply_to is not None else None,
            correlation_id,
        ],
    )


def application_properties(pairs: list[tuple[str, V]]) -> V:
    return described(APPLICATION_PROPERTIES, map_value([(string(k), v) for k, v in pairs]))


def data_section(data: bytes) -> V:
    return described(DATA, binary(data))


def value_section(value: V) -> V:
    return described(AMQP_VALUE, value)
