"""The fuzz harness's AMQP inputs (fuzz/amqpgen.py and its value trees, frames and mutations): the
bytes it builds by hand are what methodhub.amqp's decoder reads; its well-formed dialogues are ones
the server state machine serves without a protocol error; mutations are deterministic per seed and
every kind occurs; the reader of the hub's answers and the renderings say what they should."""

from __future__ import annotations

import random
import uuid

import pytest
from fuzz.amqpframes import WELL_FORMED
from fuzz.amqpgen import AmqpGenerator
from fuzz.amqpread import AmqpAnswers
from fuzz.amqpvalues import (
    V,
    _wide,
    binary,
    composite,
    enc,
    int32,
    list_value,
    map_value,
    mutate_value,
    string,
    symbol,
    symbol_array,
    uint,
    ulong,
    uuid_value,
)
from fuzz.classify import amqp_events_of, amqp_shape
from fuzz.inputs import FuzzInput, render
from fuzz.mqttgen import Credentials

from methodhub.amqp import (
    AMQP_HEADER,
    SASL_HEADER,
    Array,
    Attach,
    Begin,
    Close,
    DecodeError,
    Described,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Int,
    Message,
    Open,
    Properties,
    SaslCode,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    Symbol,
    Transfer,
    decode,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
)
from methodhub.amqp.events import BadProtocolHeader, ProtocolFailure

DEVICES = [Credentials(f"fuzz-{i}", f"SharedAccessSignature sr=x&sig=s{i}&se=4102444800") for i in range(8)]
PERFORMATIVES = {
    "open": Open,
    "begin": Begin,
    "attach": Attach,
    "flow": Flow,
    "transfer": Transfer,
    "disposition": Disposition,
    "detach": Detach,
    "end": End,
    "close": Close,
    "sasl-init": SaslInit,
}


def generator() -> AmqpGenerator:
    return AmqpGenerator(DEVICES, "localhost")


def dialogues(seed: int, count: int) -> list[list]:  # type: ignore[type-arg]
    gen = generator()
    return [gen.dialogue(random.Random(f"{seed}:{i}")).units for i in range(count)]


def well_formed(seed: int, count: int) -> list[list]:  # type: ignore[type-arg]
    return [units for units in dialogues(seed, count) if all(u.mutated in WELL_FORMED for u in units)]


# -- values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (uint(0), 0),
        (uint(200), 200),
        (uint(0xFFFFFFFF), 0xFFFFFFFF),
        (ulong(1 << 40), 1 << 40),
        (int32(-5), -5),
        (int32(-(1 << 31)), -(1 << 31)),
        (string("é中😀"), "é中😀"),
        (string("s" * 300), "s" * 300),
        (symbol("amqp:open:list"), "amqp:open:list"),
        (binary(b"\x00" * 300), b"\x00" * 300),
        (uuid_value(uuid.UUID(int=7)), uuid.UUID(int=7)),
        (list_value([]), []),
        (list_value([uint(1), string("a")]), [1, "a"]),
        (list_value([string("x" * 200), string("y" * 200)]), ["x" * 200, "y" * 200]),  # list32
        (map_value([(string("k"), uint(1))]), {"k": 1}),
        (symbol_array(["a", "bb"]), ["a", "bb"]),
    ],
)
def test_hand_built_values_decode_to_what_they_claim(value: V, expected: object) -> None:
    data = enc(value)
    decoded, end = decode(data)
    assert end == len(data)
    assert (decoded.items if isinstance(decoded, Array) else decoded) == expected


def test_a_composite_decodes_as_its_performative() -> None:
    data = enc(composite(0x10, [string("c"), string("localhost"), uint(4096), None, None]))
    decoded, _ = decode(data)
    assert type(decoded) is Described and decoded.descriptor == 0x10
    assert decoded.value == ["c", "localhost", 4096]  # trailing absent fields left off


def test_structure_aware_mutations_decode_or_raise_decode_error_only() -> None:
    """Every mutated value is either still a value or refused with DecodeError (no other exception)."""
    rng = random.Random(11)
    refused = 0
    for _ in range(3000):
        root = composite(
            0x12,
            [
                string("name"),
                uint(rng.randrange(300)),
                list_value([symbol("a"), map_value([(string("k"), binary(b"v"))])]),
                symbol_array(["x", "y"]),
            ],
        )
        mutate_value(rng, root)
        try:
            decode(enc(root))
        except DecodeError:
            refused += 1
    assert refused > 300  # the mutations do break things


def test_a_lying_count_or_size_is_refused() -> None:
    lying = list_value([uint(1), uint(2)])
    lying.count = 0xFFFFFFFF
    lying.code = 0xD0
    with pytest.raises(DecodeError):
        decode(enc(lying))
    text = string("abc")
    text.size = 0xFFFFFFFF
    text.code = 0xB1
    with pytest.raises(DecodeError):
        decode(enc(text))


def test_wide_encoding_keeps_the_value() -> None:
    rng = random.Random(3)
    kept = 0
    for _ in range(200):
        root = list_value([uint(7), ulong(9), string("abc"), list_value([symbol("s")])])
        before = decode(enc(root))[0]
        node = rng.choice(root.nodes())
        if _wide(rng, node):
            assert decode(enc(root))[0] == before
            kept += 1
    assert kept > 50


# -- dialogues ------------------------------------------------------------------------------------


def test_same_seed_same_dialogues_and_mutations() -> None:
    first, again = dialogues(4, 200), dialogues(4, 200)
    assert [[(u.data, u.mutated) for u in d] for d in first] == [
        [(u.data, u.mutated) for u in d] for d in again
    ]
    assert [[u.data for u in d] for d in dialogues(5, 50)] != [[u.data for u in d] for d in first[:50]]


def test_well_formed_frames_decode_as_the_performative_their_label_names() -> None:
    checked = 0
    for units in well_formed(1, 400):
        for unit in units:
            if unit.data.startswith(b"AMQP"):
                continue
            frame, end = decode_frame(unit.data)
            assert frame is not None and end == len(unit.data), unit.describe()
            word = unit.label.split(" ")[0]
            if word == "empty":
                assert frame.body is None
            elif word in PERFORMATIVES:
                assert type(frame.body) is PERFORMATIVES[word], unit.describe()
                checked += 1
            if type(frame.body) is Transfer and "put-token" in unit.label and "part" not in unit.label:
                message = decode_message(frame.payload)
                keys = set(message.application_properties or {})
                assert len(keys) >= 2 and keys <= {"operation", "type", "name", "expiration"}
    assert checked > 2000


def test_well_formed_dialogues_are_served_without_a_protocol_error() -> None:
    """Stage by stage through a server-role AmqpConnection (SASL ok, every link accepted): what the
    generator calls well-formed is a valid AMQP dialogue, so the hub must serve every frame of it."""
    served = 0
    for units in well_formed(2, 600):
        inp = FuzzInput(0, "amqp", units, "stages", "fin", 0)
        failures = [e for e in amqp_events_of(inp) if isinstance(e, ProtocolFailure | BadProtocolHeader)]
        assert not failures, ([u.describe() for u in units][:30], failures[:2])
        served += 1
    assert served > 50


def test_every_mutation_kind_occurs() -> None:
    labels = {m for units in dialogues(1, 700) for u in units for m in u.mutated.split("+")}
    for name in (
        "value",
        "flip-bits",
        "truncate",
        "frame-size",
        "doff",
        "channel",
        "huge-count",
        "huge-size",
        "bad-constructor",
        "bad-descriptor",
        "deep-nesting",
        "bad-array",
        "wide-encoding",
        "before open",
        "unknown handle",
        "wrong channel",
        "duplicate handle",
        "wrong header",
        "oversized",
        "heartbeat flood",
        "session flood",
        "link flood",
        "unfinished delivery",
        "unoffered mechanism",
    ):
        assert name in labels, name


def test_a_mutated_dialogue_is_classified_by_the_servers_error() -> None:
    units = well_formed(3, 100)[0]
    bad = list(units)
    bad[0] = type(bad[0])(b"AMQP\x01\x01\x00\x00", "header AMQP 1", "wrong header")
    shape, reason = amqp_shape(FuzzInput(0, "amqp", bad, "stages", "fin", 0))
    assert shape == "bad protocol header" and reason == "bad protocol header"


# -- rendering ------------------------------------------------------------------------------------


def test_stages_wait_where_the_device_would_and_one_write_does_not() -> None:
    units = next(u for u in well_formed(6, 200) if any(x.wait_after == "put-token" for x in u))
    staged = render(FuzzInput(0, "amqp", units, "stages", "fin", 1))
    ops = [op for op, _ in staged]
    assert "wait-put-token" in ops and "wait-attach" in ops
    assert b"".join(arg for op, arg in staged if op == "write") == b"".join(u.data for u in units)  # type: ignore[misc]
    assert render(FuzzInput(0, "amqp", units, "one-write", "fin", 1)) == [
        ("write", b"".join(u.data for u in units))
    ]


def test_a_dribble_trickles_then_checks_the_deadline() -> None:
    units = well_formed(6, 50)[0]
    steps = render(FuzzInput(0, "amqp", units, "dribble", "fin", 1))
    ops = [op for op, _ in steps]
    assert ops[-1] == "deadline" and "release" in ops
    assert sum(arg for op, arg in steps if op == "pause") >= 10  # type: ignore[misc]


# -- the hub's answers ----------------------------------------------------------------------------


def _answers(data: bytes, sasl_plain: bool = False, chunk: int = 7) -> AmqpAnswers:
    answers = AmqpAnswers(sasl_plain)
    for i in range(0, len(data), chunk):  # in pieces, as reads come
        answers.feed(data[i : i + chunk])
    return answers


def test_answers_read_a_close_with_its_condition() -> None:
    data = (
        AMQP_HEADER
        + encode_frame(0, Open("hub"))
        + encode_frame(0, Close(Error(Symbol("amqp:decode-error"))))
    )
    answers = _answers(data)
    assert answers.opened and answers.ending(closed_by_hub=True) == "close amqp:decode-error"
    assert not answers.authorized


def test_answers_read_a_sasl_refusal_and_a_bad_header_answer() -> None:
    mechanisms = encode_frame(0, SaslMechanisms((Symbol("PLAIN"),)), frame_type=1)
    refused = SASL_HEADER + mechanisms + encode_frame(0, SaslOutcome(SaslCode.AUTH), frame_type=1)
    assert _answers(refused, sasl_plain=True).ending(True) == "SASL outcome 1"
    assert _answers(AMQP_HEADER).ending(True) == "protocol header, then TCP close"
    ok = SASL_HEADER + mechanisms + encode_frame(0, SaslOutcome(SaslCode.OK), frame_type=1) + AMQP_HEADER
    assert _answers(ok, sasl_plain=True).authorized and not _answers(ok).authorized


def test_answers_read_put_token_statuses_and_errors() -> None:
    answer = Message(
        properties=Properties(correlation_id="id"),
        application_properties={"status-code": Int(200), "status-description": "OK"},
    )
    data = (
        AMQP_HEADER
        + encode_frame(0, Open("hub"))
        + encode_frame(0, Transfer(1, 0, b"", settled=True), encode_message(answer))
        + encode_frame(0, Detach(2, True, Error(Symbol("amqp:unauthorized-access"))))
        + encode_frame(0, End(Error(Symbol("amqp:session:unattached-handle"))))
    )
    answers = _answers(data)
    assert answers.put_token_statuses == [200] and answers.authorized
    assert answers.detach_errors == ["amqp:unauthorized-access"]
    assert answers.end_errors == ["amqp:session:unattached-handle"]
    assert answers.ending(closed_by_hub=True) == "TCP close"
    assert _answers(AMQP_HEADER + b"\x00\x00\x00\x08\x07\x00\x00\x00").garbled  # frame type 7
