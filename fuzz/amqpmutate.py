"""Mutations of AMQP dialogues (:class:`fuzz.amqpframes.Piece` lists), in place.

Three kinds, chosen at random by :func:`mutate`: structure-aware ones on one frame's value tree
(:func:`fuzz.amqpvalues.mutate_value`: a field's type, a size or count that lies, an unknown
constructor or descriptor, nesting beyond the decoder's limit, invalid UTF-8, ...); byte-level ones
on a frame's encoding (flips, cuts, extensions, a wrong frame size, data offset, type or channel);
and sequence ones (duplicates, deletions, swaps, a frame before ``open``, transfers, flows and
detaches on unknown handles, a frame on a channel with no session, a handle attached twice, a
second ``open`` or protocol header, a SASL frame after SASL, a wrong protocol header, junk, frames
over the hub's max-frame-size, floods of empty frames, sessions or links, a delivery that never
completes or changes its delivery-id, a ``close`` with more after it, a frame whose body never
comes).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

from fuzz.amqpframes import (
    AMQP_HEADER,
    HUB_MAX_FRAME_SIZE,
    SASL_HEADER,
    SOURCE,
    TARGET,
    TLS_HEADER,
    Piece,
    attach_frame,
    begin_frame,
    close_frame,
    data_section,
    detach_frame,
    flow_frame,
    open_frame,
    sasl_init,
    terminus,
    transfer_frame,
)
from fuzz.amqpvalues import fields_of, mutate_value, string

# -- choosing --------------------------------------------------------------------------------------


def mutate(rng: random.Random, pieces: list[Piece], hostname: str) -> None:
    """One mutation of ``pieces`` (the header or ``open`` one time in ten, else a later frame)."""
    # the header or open one time in ten; otherwise a frame after them
    index = (
        rng.randrange(len(pieces))
        if rng.random() < 0.1
        else rng.randrange(min(2, len(pieces) - 1), len(pieces))
    )
    roll = rng.random()
    if roll < 0.35:
        _SEQUENCE_MUTATORS[rng.randrange(len(_SEQUENCE_MUTATORS))](rng, pieces, index, hostname)
        return
    piece = pieces[index]
    if roll < 0.7 and piece.is_frame and (piece.body is not None or piece.sections):
        target = piece.body
        if piece.sections and (target is None or rng.random() < 0.4):
            target = rng.choice(piece.sections)
        assert target is not None
        name = mutate_value(rng, target)
        if name:
            piece.mutated = f"{piece.mutated}+{name}" if piece.mutated else name
        return
    name, mutate = _BYTE_MUTATORS[rng.randrange(len(_BYTE_MUTATORS))]
    data = piece.encode()
    out = mutate(rng, data, piece)
    if out != data:
        pieces[index] = Piece(
            piece.label,
            raw=out,
            wait_after=piece.wait_after,
            mutated=f"{piece.mutated}+{name}" if piece.mutated else name,
            mangled_frame=piece.is_frame,
        )


# byte mutators: (rng, encoded frame, piece) -> bytes


def _flip_bits(rng: random.Random, data: bytes, piece: Piece) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _set_byte(rng: random.Random, data: bytes, piece: Piece) -> bytes:
    out = bytearray(data)
    out[rng.randrange(len(out))] = rng.choice(
        (0x00, 0x40, 0x45, 0xA1, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0, 0xFF, 0x53)
    )
    return bytes(out)


def _truncate(rng: random.Random, data: bytes, piece: Piece) -> bytes:
    """Cut the frame short; half the time fix its size field to match."""
    cut = data[: rng.randrange(1, len(data))] if len(data) > 1 else b""
    if piece.is_frame and len(cut) >= 8 and rng.random() < 0.5:
        cut = struct.pack(">I", len(cut)) + cut[4:]
    return cut


def _extend(rng: random.Random, data: bytes, piece: Piece) -> bytes:
    extra = rng.choice((b"\x40", b"\x00\x53\x10", rng.randbytes(rng.choice((1, 7, 100)))))
    out = data + extra
    if piece.is_frame and len(out) >= 8 and rng.random() < 0.7:
        out = struct.pack(">I", len(out)) + out[4:]
    return out


def _frame_size(rng: random.Random, data: bytes, piece: Piece) -> bytes:
    if len(data) < 8:
        return data
    size = rng.choice(
        (
            0,
            1,
            7,
            8,
            len(data) - 1,
            len(data) + 1,
            len(data) + 100,
            512,
            HUB_MAX_FRAME_SIZE + 1,
            1 << 24,
            0xFFFFFFFF,
        )
    )
    return struct.pack(">I", size & 0xFFFFFFFF) + data[4:]


def _doff(rng: random.Random, data: bytes, piece: Piece) -> bytes:
    if len(data) < 8:
        return data
    return data[:4] + bytes((rng.choice((0, 1, 3, 16, 255)),)) + data[5:]


def _frame_type(rng: random.Random, data: bytes, piece: Piece) -> bytes:
    if len(data) < 8:
        return data
    return data[:5] + bytes((rng.choice((1, 0, 2, 3, 0x80, 0xFF)),)) + data[6:]


def _channel(rng: random.Random, data: bytes, piece: Piece) -> bytes:
    if len(data) < 8:
        return data
    return data[:6] + struct.pack(">H", rng.choice((1, 2, 255, 256, 0xFFFF))) + data[8:]


_BYTE_MUTATORS: list[tuple[str, Callable[[random.Random, bytes, Piece], bytes]]] = [
    ("flip-bits", _flip_bits),
    ("set-byte", _set_byte),
    ("truncate", _truncate),
    ("extend", _extend),
    ("frame-size", _frame_size),
    ("frame-size", _frame_size),
    ("doff", _doff),
    ("frame-type", _frame_type),
    ("channel", _channel),
]


# sequence mutators: (rng, pieces, index, hub hostname) -> None


def _first_frame_after_open(pieces: list[Piece]) -> int:
    for i, p in enumerate(pieces):
        if p.label == "open":
            return i
    return max(0, len(pieces) - 1)


def _duplicate(rng: random.Random, pieces: list[Piece], index: int, hostname: str) -> None:
    times = rng.choice((1, 1, 2, 50))
    copy = pieces[index].copy()
    copy.mutated = "duplicate"
    pieces[index + 1 : index + 1] = [copy.copy() for _ in range(times)]


def _delete(rng: random.Random, pieces: list[Piece], index: int, hostname: str) -> None:
    if len(pieces) > 1:
        del pieces[index]
        if index < len(pieces):
            pieces[index] = pieces[index].copy()
            pieces[index].mutated = "after a deleted frame"


def _swap(rng: random.Random, pieces: list[Piece], index: int, hostname: str) -> None:
    if index + 1 < len(pieces):
        first, second = pieces[index + 1].copy(), pieces[index].copy()
        first.mutated = second.mutated = "swapped"
        pieces[index], pieces[index + 1] = first, second


def _before_open(rng: random.Random, pieces: list[Piece], index: int, hostname: str) -> None:
    """A frame the dialogue sends after ``open`` (or a begin), sent before it."""
    at = _first_frame_after_open(pieces)
    later = [p for p in pieces[at + 1 :] if p.is_frame] or [Piece("begin ch0", begin_frame())]
    piece = rng.choice(later).copy()
    piece.mutated = "before open"
    pieces.insert(at, piece)


def _unknown_handle(rng: random.Random, pieces: list[Piece], index: int, hostname: str) -> None:
    handle = rng.choice((7, 99, 255, 256, 0xFFFFFFFF))
    kind = rng.randrange(4)
    if kind == 0:
        body = transfer_frame(handle, 0, b"t", settled=True)
        piece = Piece(f"transfer on unknown handle {handle}", body, sections=[data_section(b"{}")])
    elif kind == 1:
        piece = Piece(
            f"flow on unknown handle {handle}", flow_frame(handle=handle, delivery_count=0, link_credit=10)
        )
    elif kind == 2:
        piece = Piece(f"detach unknown handle {handle}", detach_frame(handle))
    else:  # a transfer continuing a delivery that never started
        piece = Piece(
            f"transfer (more) on unknown handle {handle}",
            transfer_frame(handle, None, None, more=True),
            payload=b"x",
        )
    piece.mutated = "unknown handle"
    pieces.insert(index + 1, piece)


def _wrong_channel(rng: random.Random, pieces: list[Piece], index: int, hostname: str) -> None:
    frames = [
        p for p in pieces if p.is_frame and p.frame_type == 0 and p.body is not None and p.label != "open"
    ]
    if not frames:
        return
    piece = rng.choice(frames).copy()
    piece.channel = rng.choice((1, 7, 255, 256, 0xFFFF))
    piece.mutated = "wrong channel"
    pieces.insert(index + 1, piece)


def _duplicate_handle(rng: random.Random, pieces: list[Piece], index: int, hostname: str) -> None:
    attaches = [p for p in pieces if p.label.startswith("attach") and p.body is not None]
    if not attaches:
        return
    piece = rng.choice(attaches).copy()
    fields = (fields_of(piece.body) if piece.body is not None else None) or []
    if fields and rng.random() < 0.5:
        fields[0] = string(f"another-name-{rng.randrange(1000)}")  # a new name on the same handle
    piece.mutated = "duplicate handle"
    pieces.insert(index + 1, piece)


def _second_open(rng: random.Random, pieces: list[Piece], index: int, hostname: str) -> None:
    what = rng.randrange(3)
    if what == 0:
        pieces.insert(index + 1, Piece("second open", open_frame("again", hostname), mutated="second open"))
    elif what == 1:
        pieces.insert(
            index + 1,
            Piece("second header", raw=rng.choice((AMQP_HEADER, SASL_HEADER)), mutated="second header"),
        )
    else:
        body = sasl_init("ANONYMOUS", None, None)
        pieces.insert(index + 1, Piece("SASL frame after SASL", body, frame_type=1, mutated="late SASL"))


def _wrong_header(rng: random.Random, pieces: list[Piece], index: int, hostname: str) -> None:
    header = rng.choice(
        (
            TLS_HEADER,
            b"AMQP\x01\x01\x00\x00",
            b"AMQP\x00\x00\x09\x01",  # AMQP 0-9-1
            b"AMQP\x00\x01\x00\x01",
            b"AMQP\x00\x02\x00\x00",
            b"AMQP\x03\x01\x00\x01",
            b"AMQ",  # half a header
            b"GET / HTTP/1.1\r\n\r\n",
            b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00",  # an MQTT CONNECT
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS ClientHello's start
            b"\x00" * 8,
        )
    )
    pieces[0] = Piece(f"header {header[:8]!r}", raw=header, mutated="wrong header")


def _junk(rng: random.Random, pieces: list[Piece], index: int, hostname: str) -> None:
    data = rng.choice(
        (
            rng.randbytes(rng.randint(1, 16)),
            b"\x00\x00\x00\x08",
            b"\x00\x00\x00\x08\x02\x00",
            AMQP_HEADER,
            b"\x00\x00",
        )
    )
    pieces.insert(index + 1, Piece(f"junk {data[:8].hex()}", raw=data, mutated="junk"))


def _oversized(rng: random.Random, pieces: list[Piece], index: int, hostname: str) -> None:
    """A frame larger than the hub's max-frame-size: really sent, or only announced."""
    kind = rng.randrange(4)
    if kind == 0:
        body = transfer_frame(0, 0, b"big", settled=True)
        piece = Piece("transfer of 70 KB in one frame", body, sections=[data_section(b"x" * 70_000)])
    elif kind == 1:  # the header says so, the data never comes
        size = rng.choice((HUB_MAX_FRAME_SIZE + 1, 1 << 24, 0xFFFFFFFF))
        piece = Piece(
            f"frame header of {size} B, no data", raw=struct.pack(">IBBH", size, 2, 0, 0) + b"\x00\x53\x10"
        )
    elif kind == 2:  # a SASL frame over the SASL limit
        piece = Piece("SASL init of 8 KB", sasl_init("PLAIN", b"\0u\0" + b"p" * 8192, None), frame_type=1)
    else:  # exactly the largest frame the hub accepts, then one byte more
        filler = HUB_MAX_FRAME_SIZE - 8 - 3 + rng.choice((0, 1))
        piece = Piece(
            f"empty-ish frame of {filler + 11} B",
            raw=struct.pack(">IBBH", filler + 11, 2, 0, 0) + b"\x00\x53\x10" + b"\x45" * filler,
        )
    piece.mutated = "oversized"
    pieces.insert(index + 1, piece)


def _flood(rng: random.Random, pieces: list[Piece], index: int, hostname: str) -> None:
    kind = rng.randrange(3)
    if kind == 0:
        count = rng.choice((20, 200, 1000))
        pieces[index + 1 : index + 1] = [
            Piece("empty frame", None, mutated="heartbeat flood") for _ in range(count)
        ]
    elif kind == 1:  # more sessions than channel-max (255)
        pieces[index + 1 : index + 1] = [
            Piece(f"begin ch{c}", begin_frame(), channel=c, mutated="session flood" if c == 1 else "flood")
            for c in range(1, 300)
        ]
    else:  # more links than handle-max (255)
        pieces[index + 1 : index + 1] = [
            Piece(
                f"attach h{h}",
                attach_frame(
                    f"l{h}", h, receiver=True, source=terminus(SOURCE, "$cbs"), target=terminus(TARGET, None)
                ),
                mutated="link flood" if h == 10 else "flood",
            )
            for h in range(10, 300)
        ]


def _unfinished(rng: random.Random, pieces: list[Piece], index: int, hostname: str) -> None:
    """A delivery whose frames say more=True and that never ends (or ends aborted), or a transfer
    that changes its delivery-id midway."""
    kind = rng.randrange(3)
    first = Piece(
        "transfer more=True",
        transfer_frame(0, 0, b"u", more=True),
        payload=b"\x00\x53\x75\xa0\x10" + b"y" * 5,
    )
    if kind == 0:
        cont = Piece(
            "transfer more=True (cont.)", transfer_frame(0, None, None, more=True), payload=b"z" * 100
        )
        extra = [first] + [cont.copy() for _ in range(rng.choice((1, 10, 200)))]
    elif kind == 1:
        extra = [first, Piece("transfer aborted", transfer_frame(0, None, None, aborted=True))]
    else:
        extra = [first, Piece("transfer with another delivery-id", transfer_frame(0, 9, None), payload=b"z")]
    for i, piece in enumerate(extra):
        piece.mutated = "unfinished delivery" if i == 0 or kind else "flood"
    pieces[index + 1 : index + 1] = extra


def _close_then_more(rng: random.Random, pieces: list[Piece], index: int, hostname: str) -> None:
    pieces.insert(index + 1, Piece("close (mid-dialogue)", close_frame(), mutated="close then more"))


def _announce_huge(rng: random.Random, pieces: list[Piece], index: int, hostname: str) -> None:
    """A frame header (within max-frame-size) whose body never comes in full."""
    size = rng.choice((1000, 65536, 30000))
    pieces.insert(
        index + 1,
        Piece(
            f"frame of {size} B, 3 sent",
            raw=struct.pack(">IBBH", size, 2, 0, 0) + b"\x00\x53\x14",
            mutated="huge-length",
        ),
    )


_SEQUENCE_MUTATORS = [
    _duplicate,
    _delete,
    _swap,
    _before_open,
    _unknown_handle,
    _unknown_handle,
    _wrong_channel,
    _duplicate_handle,
    _second_open,
    _wrong_header,
    _junk,
    _oversized,
    _flood,
    _unfinished,
    _close_then_more,
    _announce_huge,
]
