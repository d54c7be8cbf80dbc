"""Performatives (part 2 §2.7), SASL bodies (part 5) and framing (part 2 §2.3)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from methodhub.amqp import (
    AMQP_HEADER,
    SASL_FRAME,
    SASL_HEADER,
    Accepted,
    Attach,
    Begin,
    Close,
    DecodeError,
    Described,
    Detach,
    Disposition,
    End,
    Error,
    ErrorCondition,
    Flow,
    Frame,
    FramingError,
    Modified,
    Open,
    ProtocolHeader,
    Received,
    Rejected,
    Released,
    Role,
    SaslChallenge,
    SaslCode,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    SaslResponse,
    Source,
    Symbol,
    Target,
    Transfer,
    UInt,
    ULong,
    decode,
    decode_frame,
    decode_protocol_header,
    encode,
    encode_composite,
    encode_disposition_frame,
    encode_frame,
    encode_transfer_frame,
    frame_overhead,
    from_value,
    read_transfer_frame,
)
from methodhub.amqp import frames as frames_module

ALL: list[Any] = [
    Open(container_id="c", hostname="localhost", max_frame_size=65536, channel_max=10, idle_time_out=60000),
    Open(container_id="c", offered_capabilities=("ANONYMOUS-RELAY",), properties={"product": "methodhub"}),
    Begin(
        remote_channel=0, next_outgoing_id=1, incoming_window=2048, outgoing_window=0xFFFFFFFF, handle_max=7
    ),
    Attach(
        name="rheaSender_1",
        handle=0,
        role=Role.SENDER,
        snd_settle_mode=1,
        source=Source(address=None),
        target=Target(address="/devices/d/methods/devicebound", capabilities=("x", "y")),
        initial_delivery_count=0,
        max_message_size=131072,
        properties={
            "com.microsoft:api-version": "2021-04-12",
            "com.microsoft:channel-correlation-id": "methods:1",
        },
    ),
    Attach(
        name="r",
        handle=1,
        role=Role.RECEIVER,
        source=Source(address="$cbs", outcomes=("amqp:accepted:list",)),
    ),
    Flow(
        incoming_window=2048,
        next_outgoing_id=0,
        outgoing_window=10,
        handle=0,
        delivery_count=0,
        link_credit=1000,
    ),
    Flow(next_incoming_id=5, incoming_window=1, next_outgoing_id=2, outgoing_window=3, drain=True, echo=True),
    Transfer(handle=0, delivery_id=0, delivery_tag=b"0", message_format=0, settled=False),
    Transfer(handle=3, delivery_id=2**32 - 1, delivery_tag=b"t" * 32, more=True, state=Received(0, 12)),
    Disposition(role=Role.RECEIVER, first=0, last=4, settled=True, state=Accepted()),
    Disposition(role=Role.SENDER, first=1, state=Rejected(Error("amqp:decode-error", "bad correlation id"))),
    Disposition(role=Role.RECEIVER, first=1, state=Released()),
    Disposition(role=Role.RECEIVER, first=1, state=Modified(True, False, {"x-opt-reason": "busy"})),
    Detach(handle=0, closed=True, error=Error(ErrorCondition.DETACH_FORCED, "shutting down")),
    Detach(handle=1),
    End(),
    End(error=Error(ErrorCondition.UNATTACHED_HANDLE, info={"handle": UInt(4)})),
    Close(),
    Close(error=Error(ErrorCondition.FRAMING_ERROR, "frame too large")),
    SaslMechanisms(("ANONYMOUS", "MSSBCBS", "PLAIN", "EXTERNAL")),
    SaslInit("PLAIN", b"\x00dev1@sas.hub\x00SharedAccessSignature sr=x", "hub.example"),
    SaslInit("MSSBCBS", b""),
    SaslChallenge(b"c"),
    SaslResponse(b"r"),
    SaslOutcome(SaslCode.OK),
    SaslOutcome(SaslCode.AUTH, b"why"),
]


@pytest.mark.parametrize("body", ALL, ids=[f"{i}:{type(b).__name__}" for i, b in enumerate(ALL)])
def test_performatives_round_trip(body: Any) -> None:
    out = bytearray()
    encode_composite(out, body)
    assert bytes(out) == encode(body.to_value()) == encode(body)  # the fast path is the typed one
    decoded = from_value(decode(bytes(out))[0])
    assert decoded == body
    assert type(decoded) is type(body)
    sasl = type(body).__name__.startswith("Sasl")
    frame = encode_frame(0 if sasl else 5, body, frame_type=SASL_FRAME if sasl else 0)
    assert decode_frame(frame) == (Frame(SASL_FRAME if sasl else 0, 0 if sasl else 5, body, b""), len(frame))


def test_exact_bytes_of_spec_built_frames() -> None:
    """Frames built by hand from part 2 (the wire doc quotes no hex captures)."""
    # open(container-id "a"): size 0x11, doff 2, type 0, channel 0; descriptor 0x10, list8 of one str8.
    assert encode_frame(0, Open(container_id="a")).hex() == "0000001102000000005310c00401a10161"
    # Defaults go out as null, trailing nulls are left off: max-frame-size is the 3rd field.
    assert encode(Open(container_id="a", max_frame_size=65536)).hex() == "005310c00a03a10161407000010000"
    assert encode(Open(container_id="a", max_frame_size=0xFFFFFFFF, channel_max=0xFFFF)).hex() == (
        "005310c00401a10161"
    )
    # begin as Node sends it (wire doc §1.4): next-outgoing-id 0, incoming 2048, outgoing 2^32-1.
    begin = Begin(next_outgoing_id=0, incoming_window=2048, outgoing_window=0xFFFFFFFF)
    assert encode(begin).hex() == "005311c00d044043700000080070ffffffff"
    # flow granting 1000 credit on handle 0, delivery-count 0.
    flow = Flow(
        incoming_window=2048,
        next_outgoing_id=0,
        outgoing_window=2048,
        handle=0,
        delivery_count=0,
        link_credit=1000,
    )
    assert encode(flow).hex() == "005313c01407407000000800437000000800434370000003e8"
    # the empty frame (§2.4.5 heartbeat), and a disposition settling delivery 0 as accepted.
    assert encode_frame(0, None) == bytes.fromhex("0000000802000000")
    assert encode(Disposition(role=True, first=0, settled=True, state=Accepted())).hex() == (
        "005315c009054143404100532445"
    )
    # detach with amqp:link:detach-forced (what the wire doc says Node reconnects after at once).
    detach = Detach(handle=0, closed=True, error=Error(ErrorCondition.DETACH_FORCED))
    condition = b"amqp:link:detach-forced".hex()
    assert encode(detach).hex() == "005316c02203434100531dc01a01a317" + condition
    # sasl-mechanisms offering ANONYMOUS and PLAIN (an array of sym8), in a SASL frame (type 1).
    mechanisms = encode_frame(0, SaslMechanisms(("ANONYMOUS", "PLAIN")), frame_type=SASL_FRAME)
    array = "e01202a309" + b"ANONYMOUS".hex() + "05" + b"PLAIN".hex()
    assert mechanisms.hex() == "0000002202010000005340c01501" + array
    # sasl-outcome ok: the mandatory code is sent even though it is 0.
    outcome = encode_frame(0, SaslOutcome(SaslCode.OK), frame_type=SASL_FRAME)
    assert outcome.hex() == "0000001002010000005344c003015000"


def test_a_transfer_carries_its_payload() -> None:
    transfer = Transfer(handle=0, delivery_id=7, delivery_tag=b"\x01", settled=True)
    frame = encode_frame(1, transfer, b"payload")
    assert len(frame) == frame_overhead(transfer) + len(b"payload")
    decoded, end = decode_frame(bytearray(b"xx" + frame), 2, 512)
    assert end == 2 + len(frame)
    assert decoded == Frame(0, 1, transfer, b"payload")
    assert type(decoded.payload) is bytes


def test_descriptors_by_name_decode_too() -> None:
    value = Described(Symbol("amqp:begin:list"), [None, UInt(0), UInt(1), UInt(1)])
    assert from_value(value) == Begin(next_outgoing_id=0, incoming_window=1, outgoing_window=1)


def test_extended_header_is_skipped_and_sasl_channel_ignored() -> None:
    body = encode(SaslOutcome(SaslCode.OK))
    frame = (8 + 4 + len(body)).to_bytes(4, "big") + bytes((3, 1, 0x12, 0x34)) + b"\xee" * 4 + body
    assert decode_frame(frame) == (Frame(SASL_FRAME, 0, SaslOutcome(0), b""), len(frame))


def test_partial_frames_need_more_bytes() -> None:
    frame = encode_frame(0, Open(container_id="abc"))
    for cut in range(len(frame)):
        assert decode_frame(frame[:cut]) == (None, 0)
    assert decode_frame(frame + frame[:3], len(frame)) == (None, len(frame))


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("0000000702000000", "smaller than the 8-byte frame header"),
        ("0000000801000000", "data offset 1"),
        ("0000000c04000000", "beyond the frame size"),
        ("0000000802020000", "unknown frame type 0x02"),
        ("0001000102000000", "larger than max-frame-size 65536"),
    ],
)
def test_bad_frame_headers_are_framing_errors(header: str, reason: str) -> None:
    with pytest.raises(FramingError, match=reason) as caught:
        decode_frame(bytes.fromhex(header), 0, 65536)  # only the header: refused before the rest arrives
    assert caught.value.condition == "amqp:connection:framing-error"


@pytest.mark.parametrize(
    ("body", "frame_type", "reason", "condition"),
    [
        (encode(SaslOutcome(0)), 0, "SaslOutcome is not an AMQP frame body", "amqp:decode-error"),
        (encode(Open(container_id="x")), 1, "Open is not a SASL frame body", "amqp:decode-error"),
        (encode(Accepted()), 0, "Accepted is not an AMQP frame body", "amqp:decode-error"),
        (encode(Close()) + b"\x40", 0, "1 bytes after its body", "amqp:decode-error"),
        (encode(Described(ULong(0x99), [])), 0, "unknown descriptor", "amqp:decode-error"),
        (encode(UInt(5)), 0, "expected a described composite", "amqp:decode-error"),
        (
            encode(Described(ULong(0x10), [])),
            0,
            "Open.container_id: mandatory but missing",
            "amqp:invalid-field",
        ),
        (
            encode(Described(ULong(0x10), [UInt(1)])),
            0,
            "Open.container_id: expected string",
            "amqp:invalid-field",
        ),
        (
            encode(Described(ULong(0x14), [Symbol("h")])),
            0,
            "Transfer.handle: expected uint",
            "amqp:invalid-field",
        ),
        (
            encode(Described(ULong(0x16), [UInt(0), UInt(1)])),
            0,
            "Detach.closed: expected boolean",
            "amqp:invalid-field",
        ),
        (
            encode(Described(ULong(0x18), [Described(ULong(0x24), [])])),
            0,
            "Close.error: expected error",
            "amqp:invalid-field",
        ),
        (encode(Described(ULong(0x18), "x")), 0, "not a list", "amqp:invalid-field"),
        (
            encode(Described(ULong(0x10), ["c", None, UInt(1), None, None, [1]])),
            0,
            "outgoing_locales",
            "amqp:invalid-field",
        ),
        (b"\x00\x53\x10\xc0\x05\x01", 0, "runs past the end", "amqp:decode-error"),  # past the frame
    ],
)
def test_bad_frame_bodies(body: bytes, frame_type: int, reason: str, condition: str) -> None:
    frame = (8 + len(body)).to_bytes(4, "big") + bytes((2, frame_type, 0, 0)) + body
    with pytest.raises(DecodeError, match=reason) as caught:
        decode_frame(frame + b"\x00\x00\x00\x08\x02\x00\x00\x00")  # a next frame does not hide an overrun
    assert caught.value.condition == condition


def test_null_fields_take_the_spec_defaults_and_extra_fields_are_ignored() -> None:
    attach = from_value(
        Described(ULong(0x12), ["n", UInt(0), True, None, None, None, None] + [None] * 7 + ["later"])
    )
    assert attach == Attach(name="n", handle=0, role=True)
    assert (
        attach.snd_settle_mode == 2 and attach.rcv_settle_mode == 0 and attach.incomplete_unsettled is False
    )
    open_ = from_value(Described(ULong(0x10), ["c"]))
    assert open_.max_frame_size == 0xFFFFFFFF and open_.channel_max == 0xFFFF
    # A multiple symbol field may come as a single symbol.
    assert from_value(Described(ULong(0x40), [Symbol("PLAIN")])) == SaslMechanisms(("PLAIN",))


def test_unknown_termini_and_states_are_kept_as_described() -> None:
    coordinator = Described(ULong(0x30), [None])
    attach = from_value(Described(ULong(0x12), ["txn", UInt(0), False, None, None, None, coordinator]))
    assert attach.target == coordinator
    assert decode(encode(attach))[0].value[6] == coordinator


def test_mandatory_fields_and_ranges_on_encode() -> None:
    with pytest.raises(ValueError, match=r"Transfer\.handle is mandatory"):
        encode(Transfer(handle=None))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        encode(Transfer(handle=2**32))
    with pytest.raises(ValueError):
        encode(Begin(remote_channel=-1, next_outgoing_id=0, incoming_window=0, outgoing_window=0))


def test_protocol_headers() -> None:
    assert decode_protocol_header(AMQP_HEADER + b"rest") == (ProtocolHeader(0, 1, 0, 0), 8)
    assert decode_protocol_header(SASL_HEADER) == (ProtocolHeader(3, 1, 0, 0), 8)
    assert ProtocolHeader(3, 1, 0, 0).to_bytes() == SASL_HEADER
    assert decode_protocol_header(b"AMQ") == (None, 0)
    assert decode_protocol_header(b"AMQP\x00\x01\x00\x01")[0] == ProtocolHeader(
        0, 1, 0, 1
    )  # decodes; caller refuses
    for wrong in (b"GET / HTTP/1.1\r\n", b"\x10\x00"):
        with pytest.raises(FramingError, match="not an AMQP protocol header"):
            decode_protocol_header(wrong)


def _frames_sample() -> bytes:
    return b"".join(encode_frame(1, body) for body in ALL if not type(body).__name__.startswith("Sasl"))


@given(st.binary(max_size=300))
@settings(max_examples=1500, deadline=None)
def test_random_bytes_as_frames_raise_only_decode_errors(data: bytes) -> None:
    try:
        decode_frame(data, 0, 1024)
    except DecodeError:
        pass


def test_bit_flips_in_frames_raise_only_decode_errors() -> None:
    rng = random.Random(20260811)
    sample = _frames_sample()
    for _ in range(3000):
        flipped = bytearray(sample)
        for _ in range(rng.randint(1, 4)):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        offset = 0
        try:
            while True:
                frame, offset = decode_frame(flipped, offset, 4096)
                if frame is None:
                    break
        except DecodeError:
            pass
    flipped.extend(b"x")  # nothing we decoded kept a view pinning the buffer


def test_the_receive_buffer_can_shrink_after_a_failed_decode() -> None:
    buffer = bytearray(encode_frame(0, Close()) + b"\x00\x00\x00\x0a\x02\x00\x00\x00\x01\x02")
    _, offset = decode_frame(buffer)
    with pytest.raises(DecodeError) as caught:
        decode_frame(buffer, offset)
    del buffer[:offset]  # a memoryview left in the traceback would make this raise BufferError
    assert caught.value.condition == "amqp:decode-error"


_UINT_VALUES = st.sampled_from([0, 1, 255, 256, 0xFFFF_FFFF])
_TRANSFERS = st.builds(
    Transfer,
    handle=_UINT_VALUES,
    delivery_id=st.one_of(st.none(), _UINT_VALUES),
    delivery_tag=st.one_of(st.none(), st.binary(max_size=32)),
    message_format=st.one_of(st.none(), _UINT_VALUES),
    settled=st.one_of(st.none(), st.booleans()),
    more=st.booleans(),
    rcv_settle_mode=st.one_of(st.none(), st.just(1)),
    state=st.one_of(st.none(), st.just(Accepted())),
    resume=st.booleans(),
    aborted=st.booleans(),
    batchable=st.booleans(),
)


def _decoded(data: bytes) -> tuple[Any, int] | DecodeError:
    try:
        return decode_frame(data, 0)
    except DecodeError as exc:
        return exc


@given(_TRANSFERS, st.binary(max_size=40), st.integers(0, 1 << 16), st.integers(0, 255), st.booleans())
@settings(max_examples=400, deadline=None)
def test_the_plain_transfer_path_decodes_what_the_general_one_does(
    transfer: Transfer, payload: bytes, where: int, byte: int, damage: bool
) -> None:
    """A transfer with only handle, delivery-id, tag, message-format, settled and more takes a
    shortcut through decode_frame: the same frame, value types included, or the general decoder's
    (damaged bytes too: the same frame or the same error)."""
    data = encode_frame(3, transfer, payload)
    if damage:
        spoiled = bytearray(data)
        spoiled[8 + where % (len(spoiled) - 8)] = byte  # (the frame header's errors come before)
        data = bytes(spoiled)
    else:
        assert decode_frame(data, 0) == (Frame(0, 3, transfer, payload), len(data))
    with patch.object(frames_module, "_plain_transfer", lambda data, start, end: None):
        general = _decoded(data)
    assert repr(_decoded(data)) == repr(general)


def test_a_plain_transfer_takes_the_shortcut() -> None:
    data = encode_frame(0, Transfer(1, 7, b"\x00\x00\x00\x07", 0, True), b"payload")
    with patch.object(frames_module, "from_value", side_effect=AssertionError("the general path")):
        frame, _ = decode_frame(data, 0)
    assert frame is not None and frame.body == Transfer(1, 7, b"\x00\x00\x00\x07", 0, True)
    assert type(frame.body.handle) is UInt and frame.payload == b"payload"


@given(_TRANSFERS, st.binary(max_size=40), st.integers(0, 0xFFFF))
@settings(max_examples=300, deadline=None)
def test_the_plain_transfer_encoding_is_the_general_one(
    transfer: Transfer, payload: bytes, channel: int
) -> None:
    """encode_frame writes a transfer with only the first six fields by hand: the same bytes."""
    with patch.object(frames_module, "_enc_plain_transfer", lambda out, transfer: False):
        general = encode_frame(channel, transfer, payload)
    assert encode_frame(channel, transfer, payload) == general


def test_a_transfer_out_of_range_is_refused_either_way() -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_frame(0, Transfer(1 << 32, 0, b"t"))


@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF_FFFF),
    st.integers(0, 0xFFFF_FFFF),
    st.binary(max_size=32),
    st.booleans(),
    st.binary(max_size=300),
)
@settings(max_examples=300, deadline=None)
def test_a_one_frame_transfer_is_what_encode_frame_writes(
    channel: int, handle: int, delivery_id: int, tag: bytes, settled: bool, payload: bytes
) -> None:
    """encode_transfer_frame (every message that fits one frame) builds the frame directly: the
    same bytes as a Transfer through encode_frame, and it decodes back to that Transfer."""
    data = encode_transfer_frame(channel, handle, delivery_id, tag, settled, payload)
    assert data == encode_frame(channel, Transfer(handle, delivery_id, tag, 0, settled), payload)
    frame, end = decode_frame(data)
    assert end == len(data) and frame is not None and frame.payload == payload
    assert frame.body == Transfer(handle, delivery_id, tag, 0, settled)


def test_a_one_frame_transfer_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="uints"):
        encode_transfer_frame(0, 1 << 32, 0, b"t", True, b"")
    with pytest.raises(ValueError, match="uints"):
        encode_transfer_frame(0, 0, -1, b"t", True, b"")


def test_performatives_are_frozen_and_built_as_dataclasses_build_them() -> None:
    """The composites' own __init__ (faster than dataclasses'): positional and keyword arguments,
    defaults, keyword-only fields, missing ones refused, instances frozen and hashable."""
    transfer = Transfer(1, 2, b"t", 0, True)
    assert transfer == Transfer(handle=1, delivery_id=2, delivery_tag=b"t", message_format=0, settled=True)
    assert (
        transfer.more is False
        and transfer.state is None
        and hash(transfer) == hash(Transfer(1, 2, b"t", 0, True))
    )
    begin = Begin(next_outgoing_id=1, incoming_window=2, outgoing_window=3)
    assert begin.remote_channel is None and begin.handle_max == 0xFFFF_FFFF
    with pytest.raises(TypeError):
        Begin(1, 2, 3, 4)  # type: ignore[misc]
    with pytest.raises(TypeError):
        Transfer()  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        transfer.handle = 3  # type: ignore[misc]
    assert dataclasses.replace(transfer, more=True).more is True


@given(_TRANSFERS, st.binary(max_size=40), st.integers(0, 1 << 16), st.integers(0, 255), st.booleans())
@settings(max_examples=400, deadline=None)
def test_a_transfer_read_in_place_is_what_decode_frame_reads(
    transfer: Transfer, payload: bytes, where: int, byte: int, damage: bool
) -> None:
    """read_transfer_frame (the connection's shortcut for every message's frame) gives the fields
    decode_frame gives, or None; damaged bytes too (anything it does not take, decode_frame reads
    or refuses)."""
    data = bytearray(encode_frame(3, transfer, payload))
    if damage:
        data[where % len(data)] = byte
    plain = read_transfer_frame(data, 0, 1 << 16)
    if plain is None:
        simple = not (transfer.rcv_settle_mode or transfer.state or transfer.resume or transfer.aborted)
        assert damage or not simple or transfer.batchable  # an undamaged simple transfer is taken
        return
    frame, end = decode_frame(data, 0, 1 << 16)
    assert frame is not None and isinstance(frame.body, Transfer) and end == plain.end
    body = frame.body
    assert not (body.rcv_settle_mode or body.state or body.resume or body.aborted or body.batchable)
    fields = (body.handle, body.delivery_id, body.delivery_tag, body.settled, body.more)
    assert (plain.handle, plain.delivery_id, plain.delivery_tag, plain.settled, plain.more) == fields
    assert (plain.channel, plain.payload) == (frame.channel, frame.payload)


def test_a_transfer_is_read_in_place_only_when_whole_and_within_the_limit() -> None:
    data = encode_frame(0, Transfer(1, 7, b"tag", 0, True), b"x" * 100)
    assert read_transfer_frame(data, 0, 1 << 16) is not None
    assert read_transfer_frame(data[:-1], 0, 1 << 16) is None  # not all in
    assert read_transfer_frame(data, 0, len(data) - 1) is None  # over max-frame-size: decode_frame refuses it
    assert read_transfer_frame(b"\x00" * 4 + data, 4, 1 << 16) == read_transfer_frame(
        data, 0, 1 << 16
    )._replace(end=4 + len(data))


_STATES = st.one_of(
    st.none(),
    st.just(Accepted()),
    st.just(Released()),
    st.builds(Rejected, st.just(Error(ErrorCondition.DECODE_ERROR, "bad"))),
)
_DISPOSITIONS = st.builds(
    Disposition,
    role=st.booleans(),
    first=_UINT_VALUES,
    last=st.one_of(st.none(), _UINT_VALUES),
    settled=st.booleans(),
    state=_STATES,
    batchable=st.booleans(),
)


@given(_DISPOSITIONS, st.integers(0, 0xFFFF))
@settings(max_examples=300, deadline=None)
def test_a_disposition_built_directly_is_what_encode_frame_writes(
    disposition: Disposition, channel: int
) -> None:
    """encode_disposition_frame (each settle) writes the bytes encode_frame does."""
    d = disposition
    data = encode_disposition_frame(channel, d.role, d.first, d.last, d.settled, d.state)
    assert data == encode_frame(channel, dataclasses.replace(d, batchable=False))


@given(_DISPOSITIONS, st.integers(0, 1 << 16), st.integers(0, 255), st.booleans())
@settings(max_examples=400, deadline=None)
def test_the_plain_disposition_path_decodes_what_the_general_one_does(
    disposition: Disposition, where: int, byte: int, damage: bool
) -> None:
    """decode_frame reads an SDK's disposition (accepted or no state) without the general decoder:
    the same frame, value types included, or the same error; damaged bytes too."""
    data = encode_frame(3, disposition)
    if damage:
        spoiled = bytearray(data)
        spoiled[8 + where % (len(spoiled) - 8)] = byte
        data = bytes(spoiled)
    else:
        assert decode_frame(data, 0) == (Frame(0, 3, disposition, b""), len(data))
    with patch.object(frames_module, "_plain_disposition", lambda data, start, end: None):
        general = _decoded(data)
    assert repr(_decoded(data)) == repr(general)


def test_an_accepted_disposition_takes_the_shortcut() -> None:
    data = encode_frame(0, Disposition(Role.RECEIVER, 7, settled=True, state=Accepted()))
    with patch.object(frames_module, "from_value", side_effect=AssertionError("the general path")):
        frame, _ = decode_frame(data, 0)
    assert frame is not None and frame.body == Disposition(Role.RECEIVER, 7, settled=True, state=Accepted())
    assert type(frame.body.first) is UInt
