"""The AMQP 1.0 type system (part 1): exact encodings, round trips, and hostile input."""

from __future__ import annotations

import random
import tracemalloc
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from methodhub.amqp import (
    MAX_DEPTH,
    Array,
    Byte,
    Char,
    Decimal32,
    DecodeError,
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
    decode,
    decode_all,
    encode,
    encode_into,
)

from .strategies import same, values

# -- exact bytes (part 1 §1.6: constructors and the smallest encoding of each value) ----------------

EXACT: list[tuple[Any, str]] = [
    (None, "40"),
    (True, "41"),
    (False, "42"),
    (UByte(7), "5007"),
    (UShort(0x1234), "601234"),
    (UInt(0), "43"),  # uint0
    (UInt(1), "5201"),  # smalluint
    (UInt(255), "52ff"),
    (UInt(256), "7000000100"),
    (UInt(0xFFFFFFFF), "70ffffffff"),
    (ULong(0), "44"),  # ulong0
    (ULong(0x10), "5310"),  # smallulong: how descriptors go out
    (ULong(2**32), "800000000100000000"),
    (Byte(-1), "51ff"),
    (Short(-2), "61fffe"),
    (Int(-128), "5480"),  # smallint
    (Int(127), "547f"),
    (Int(200), "71000000c8"),
    (Int(-129), "71ffffff7f"),
    (Long(5), "5505"),  # smalllong
    (5, "5505"),  # a plain int is a long
    (2**40, "810000010000000000"),
    (Float(1.5), "723fc00000"),
    (1.5, "823ff8000000000000"),
    (Char("a"), "7300000061"),
    (Char("😀"), "730001f600"),
    (Timestamp(1311704463521), "830000013167adb8a1"),  # part 1 §1.6.19: ms since the epoch
    (Decimal32(b"\x01\x02\x03\x04"), "7401020304"),
    (uuid.UUID("0d28684f-0000-4000-8000-000000000001"), "980d28684f000040008000000000000001"),
    (b"", "a000"),  # vbin8
    (b"ab", "a0026162"),
    (b"x" * 256, "b000000100" + "78" * 256),  # vbin32
    ("", "a100"),  # str8-utf8
    ("é", "a102c3a9"),
    ("x" * 255, "a1ff" + "78" * 255),
    ("x" * 256, "b100000100" + "78" * 256),  # str32-utf8
    (Symbol("PLAIN"), "a305504c41494e"),  # sym8
    (Symbol("s" * 256), "b300000100" + "73" * 256),  # sym32
    ([], "45"),  # list0
    ([None], "c0020140"),  # list8: size 2 (the count byte and one item), count 1
    ([UInt(0), True], "c003024341"),
    ([None] * 254, "c0fffe" + "40" * 254),  # the largest list8
    ([None] * 255, "d0000001030000" + "00ff" + "40" * 255),  # list32: its size would not fit a byte
    ({}, "c10100"),  # map8
    ({"a": None}, "c10502a1016140"),
    ({Symbol("k"): Int(1)}, "c10602a3016b5401"),
    (Described(ULong(0x24), []), "00532445"),  # accepted: described list0
    (Described(Symbol("amqp:accepted:list"), []), "00a312616d71703a61636365707465643a6c69737445"),
    (Array([Symbol("ANONYMOUS"), Symbol("PLAIN")], Symbol), "e01202a309414e4f4e594d4f555305504c41494e"),
    (Array([], Symbol), "e00200a3"),
    (Array([UInt(1), UInt(2)], UInt), "e00402520102"),  # all fit: smalluint elements
    (Array([UInt(1), UInt(256)], UInt), "e00a02700000000100000100"),
    (Array([True, False], bool), "e00402560100"),
    (Array([[], [None]], list), "e00702c0" + "0100" + "020140"),  # list elements: no constructor each
]


@pytest.mark.parametrize(("value", "hexed"), EXACT, ids=[f"{i}:{h[:12]}" for i, (_, h) in enumerate(EXACT)])
def test_exact_encoding_and_back(value: Any, hexed: str) -> None:
    data = bytes.fromhex(hexed)
    assert encode(value).hex() == hexed
    decoded, end = decode(data)
    assert end == len(data)
    assert same(decoded, Long(value) if type(value) is int else value)  # a plain int comes back a Long


def test_every_wide_and_compact_form_decodes() -> None:
    """Forms we never write (we always pick the smallest) still decode: other implementations use them."""
    assert same(decode(bytes.fromhex("7000000000"))[0], UInt(0))
    assert same(decode(bytes.fromhex("800000000000000005"))[0], ULong(5))
    assert same(decode(bytes.fromhex("5601"))[0], True)  # boolean with a byte
    assert same(decode(bytes.fromhex("5600"))[0], False)
    assert same(decode(bytes.fromhex("8100000000000000ff"))[0], Long(255))
    assert same(decode(bytes.fromhex("b10000000161"))[0], "a")  # str32 for a short string
    assert same(decode(bytes.fromhex("b30000000161"))[0], Symbol("a"))
    assert same(decode(bytes.fromhex("b00000000161"))[0], b"a")
    assert same(decode(bytes.fromhex("d00000000400000000"))[0], [])  # list32, empty
    assert same(decode(bytes.fromhex("c00100"))[0], [])  # list8, empty
    assert same(decode(bytes.fromhex("d10000000400000000"))[0], {})  # map32, empty
    array32 = decode(bytes.fromhex("f00000000f00000002b3" + "0000000161" + "0000000162"))[0]
    assert same(array32, Array([Symbol("a"), Symbol("b")], Symbol))


def test_plain_python_values_encode_as_their_amqp_types() -> None:
    assert encode(bytearray(b"ab")) == encode(memoryview(b"ab")) == encode(b"ab")
    assert encode((1, "a")) == encode([1, "a"])
    assert encode([Long(1)]) == encode([1])


def test_subclasses_use_the_nearest_amqp_base() -> None:
    import enum

    class Code(enum.IntEnum):
        TWO = 2

    assert encode(Code.TWO) == encode(Long(2))


@pytest.mark.parametrize(
    ("make", "arg"),
    [
        (UByte, 256),
        (UByte, -1),
        (UInt, 2**32),
        (ULong, -1),
        (Int, 2**31),
        (Short, -(2**15) - 1),
        (Long, 2**63),
    ],
)
def test_explicit_types_are_range_checked(make: Any, arg: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        make(arg)


def test_other_explicit_types_are_checked() -> None:
    with pytest.raises(ValueError, match="ASCII"):
        Symbol("é")
    with pytest.raises(ValueError, match="one Unicode"):
        Char("ab")
    with pytest.raises(ValueError, match="4 bytes"):
        Decimal32(b"123")
    with pytest.raises(ValueError, match="out of range"):
        Float(1e300)
    assert Float(0.1) != 0.1  # rounded to 32 bits


def test_unencodable_values() -> None:
    with pytest.raises(TypeError, match="no AMQP encoding for object"):
        encode(object())
    with pytest.raises(ValueError, match="out of range"):
        encode(2**64)
    with pytest.raises(ValueError, match="nested deeper"):
        nested: list[Any] = []
        for _ in range(MAX_DEPTH + 1):
            nested = [nested]
        encode(nested)
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="nested deeper"):
        encode(cycle)


def test_encode_into_appends() -> None:
    out = bytearray(b"\xff")
    encode_into(out, UInt(1))
    assert bytes(out) == b"\xff\x52\x01"


def test_decode_at_an_offset_and_decode_all() -> None:
    data = b"\x00\x00" + encode(Symbol("x")) + encode(UInt(9))
    value, end = decode(data, 2)
    assert same(value, Symbol("x"))
    assert same(decode(data, end)[0], UInt(9))
    assert decode_all(data[2:]) == [Symbol("x"), UInt(9)]
    assert decode(memoryview(data), 2)[0] == "x"
    assert decode(bytearray(data), 2)[0] == "x"


# -- round trips -----------------------------------------------------------------------------------


@given(values())
@settings(max_examples=400, deadline=None)
def test_round_trip_keeps_values_and_amqp_types(value: Any) -> None:
    data = encode(value)
    decoded, end = decode(data)
    assert end == len(data)
    assert same(decoded, value), (value, decoded)
    assert encode(decoded) == data  # the smallest encoding is canonical


# -- hostile input ---------------------------------------------------------------------------------


def _valid_samples() -> list[bytes]:
    return [
        encode(value)
        for value in (
            [UInt(1), "two", Symbol("three"), {Symbol("k"): [b"\x00" * 300, None]}, uuid.UUID(int=7)],
            Described(ULong(0x10), ["container", "host", UInt(65536), None, UInt(60000)]),
            Array([Symbol("ANONYMOUS"), Symbol("MSSBCBS"), Symbol("PLAIN")], Symbol),
            {"x" * 300: [Int(200), Long(2**40), 1.5, Float(2.5), Char("é"), Timestamp(5), True]},
            Array([[UInt(1)], [UInt(2), UInt(3)]], list),
        )
    ]


def _must_decode_or_fail_cleanly(data: bytes) -> None:
    try:
        decode(data)
        decode_all(data)
    except DecodeError:
        pass


@given(st.binary(max_size=200))
@settings(max_examples=2000, deadline=None)
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    _must_decode_or_fail_cleanly(data)


@given(st.sampled_from(_valid_samples()), st.data())
@settings(max_examples=500, deadline=None)
def test_mutated_valid_encodings_raise_only_decode_error(sample: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(sample) - 1))
    mutated = bytearray(sample)
    mutated[position] = data.draw(st.integers(0, 255))
    _must_decode_or_fail_cleanly(bytes(mutated[: data.draw(st.integers(0, len(mutated)))]))


def test_truncations_and_bit_flips_raise_only_decode_error() -> None:
    """A fixed-seed sweep: every truncation of each sample, and 3000 random bit flips."""
    rng = random.Random(1011)
    for sample in _valid_samples():
        for cut in range(len(sample)):
            with pytest.raises(DecodeError):
                decode(sample[:cut])
        for _ in range(600):
            flipped = bytearray(sample)
            for _ in range(rng.randint(1, 3)):
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            _must_decode_or_fail_cleanly(bytes(flipped))


@pytest.mark.parametrize(
    ("hexed", "reason"),
    [
        ("", "truncated"),
        ("01", "unknown constructor 0x01"),
        ("52", "truncated"),
        ("70000001", "truncated"),
        ("a005616263", "runs past the end"),
        ("b0ffffffff61", "runs past the end"),  # 4 GiB claimed by 1 byte: refused, nothing allocated
        ("b1ffffffff61", "runs past the end"),
        ("a102c328", "not valid UTF-8"),
        ("a103eda080", "not valid UTF-8"),  # a surrogate
        ("a30180", "not ASCII"),
        ("5602", "not 0x00 or 0x01"),
        ("7300110000", "not a Unicode scalar"),
        ("730000d800", "not a Unicode scalar"),
        ("c00502404040", "runs past the end"),
        ("c0020540", "does not fit"),
        ("d0ffffffffffffffff", "runs past the end"),
        ("d000000004ffffffff", "does not fit"),  # 4 billion items in 0 bytes
        ("d00000000400000001", "does not fit"),
        ("c00101", "does not fit"),
        ("c003014040", "its items end"),
        ("c00000", "smaller than its count"),
        ("c1020140", "odd count"),
        ("c10402014040", "unknown constructor 0x01"),
        ("c105044540" + "4540", "cannot hash"),
        ("c10904a1016140a1016140", "duplicate keys"),
        ("e00100", "no element constructor"),
        ("e00200ff", "unknown element constructor"),
        ("f0ffffffff00000001a3", "runs past the end"),
        ("e00afa40" + "00" * 8, "does not fit"),  # 250 nulls in 9 bytes
        ("e00702a3016162", "runs past the end"),
        ("e00702a30161016200", "its elements end"),
        ("e006010053000040", "nested described element"),
        ("0053", "truncated"),
    ],
)
def test_malformed_encodings(hexed: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason) as caught:
        decode(bytes.fromhex(hexed))
    assert caught.value.condition == "amqp:decode-error"


@pytest.mark.parametrize(
    "bomb",
    [
        b"\x00" * 100_000 + b"\x40",  # described, whose descriptor is described, ...
        b"\xc0\xfe\x01" * 20_000 + b"\x40",  # a list holding a list holding ...
        b"\xe0" + b"\xfe\x01\xe0" * 20_000,  # an array of arrays of ... (elements: no constructor)
        b"\xc1\xfe\x02\x40" * 20_000,  # a map whose value is a map ...
    ],
    ids=["described", "list", "array", "map"],
)
def test_depth_bombs_are_refused(bomb: bytes) -> None:
    """A value nested far deeper than MAX_DEPTH: DecodeError, not RecursionError."""
    with pytest.raises(DecodeError, match="nested deeper"):
        decode(bomb)


def test_exactly_max_depth_decodes() -> None:
    value: Any = None
    for _ in range(MAX_DEPTH):
        value = [value]
    assert decode(encode(value))[0] == value


def test_huge_counts_and_lengths_allocate_nothing_big() -> None:
    bombs = [
        bytes.fromhex("f000000005ffffffff40"),  # array32 of 4 billion nulls, in 10 bytes
        bytes.fromhex("d0fffffff0fffffff0") + b"\x40" * 64,  # list32 claiming 4 GiB
        bytes.fromhex("b0fffffff0") + b"x" * 64,
        bytes.fromhex("e0ff") + b"\xff\x40" + b"\x00" * 253,  # array8 of 255 nulls in 255 bytes: too many
    ]
    tracemalloc.start()
    try:
        for bomb in bombs:
            with pytest.raises(DecodeError):
                decode(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
