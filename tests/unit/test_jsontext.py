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
