"""methodhub.jsontext: strict, exact JSON for payloads."""

from __future__ import annotations

import pytest

from methodhub import jsontext


def test_integers_beyond_64_bits_survive_both_ways() -> None:
    text = b'{"id": 1180591620717411303424, "small": 5, "neg": -18446744073709551617}'
    value = jsontext.loads(text)
    assert value == {"id": 2**70, "small": 5, "neg": -(2**64) - 1}
    assert jsontext.loads(jsontext.dumps(value)) == value
    assert jsontext.dumps([2**70]) == b"[1180591620717411303424]"


@pytest.mark.parametrize("text", [b"NaN", b"[Infinity]", b'{"a": -Infinity, "n": 12345678901234567890}'])
def test_nan_and_infinity_are_not_json(text: bytes) -> None:
    with pytest.raises(jsontext.NotJson):
        jsontext.loads(text)
    assert not jsontext.is_json(text.replace(b"12345678901234567890", b"1"))


@pytest.mark.parametrize("text", [b"", b"hello", b"{", b"\xff\xfe", "[" * 5000 + "]" * 5000])
def test_garbage_is_not_json(text: bytes | str) -> None:
    with pytest.raises(jsontext.NotJson):
        jsontext.loads(text)


def test_str_and_bytes_and_validity() -> None:
    assert jsontext.loads('"é"') == "é"
    assert jsontext.is_json(b'{"a": [1, 2.5, null, "x"]}') and not jsontext.is_json(b"{'a': 1}")


@pytest.mark.parametrize(
    "text", [b"[1e999, 12345678901234567890]", b'{"n": -1E400, "id": 1180591620717411303424}', b"[1e999]"]
)
def test_numbers_beyond_a_double_are_refused_not_read_as_infinity(text: bytes) -> None:
    # The long integer sends the text through the stdlib parser, which read 1e999 as inf (then
    # written back as null); orjson refuses it alone.
    with pytest.raises(jsontext.NotJson, match="double"):
        jsontext.loads(text)


def test_nesting_is_limited_to_max_depth() -> None:
    limit = jsontext.MAX_DEPTH
    assert jsontext.loads(b"[" * limit + b"]" * limit) is not None
    assert jsontext.loads(b'{"a":' * limit + b"1" + b"}" * limit) is not None
    for text in (
        b"[" * (limit + 1) + b"]" * (limit + 1),
        b'{"a":' * (limit + 1) + b"1" + b"}" * (limit + 1),
        b'{"methodName":"m","payload":' + b"[" * 1000 + b"]" * 1000 + b"}",
        b"[" * 1000 + b"]" * 1000 + b" 12345678901234567890",  # the stdlib path too
    ):
        with pytest.raises(jsontext.NotJson, match=f"deeper than {limit} levels"):
            jsontext.loads(text)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    limit = jsontext.MAX_DEPTH
    wide = b"[" + b",".join([b'"[[[{{{"'] * 200) + b"]"
    assert len(jsontext.loads(wide)) == 200
    # Escaped quotes and backslashes do not end a string early: the brackets after them are text.
    tricky = b'["\\\\\\"' + b"[" * 100 + b'", ' + b"[" * (limit - 1) + b"]" * (limit - 1) + b"]"
    assert jsontext.loads(tricky)[0] == '\\"' + "[" * 100
    # ...and a string cannot hide real depth: closing brackets inside it are text too.
    hidden = b'["]]]]", ' * 0 + b"[" * (limit + 1) + b'"' + b"]" * 100 + b'"' + b"]" * (limit + 1)
    with pytest.raises(jsontext.NotJson):
        jsontext.loads(hidden)
    wide_objects = b"[" + b",".join([b'{"a":[1,{"b":[]}]}'] * 100) + b"]"
    assert len(jsontext.loads(wide_objects)) == 100
