"""Backend-independent pieces of the registry: id rules and symmetric keys."""

from __future__ import annotations

import base64

import pytest

from methodhub.errors import ErrorKind, HubError
from methodhub.registry import SymmetricKeys, validate_device_id, validate_module_id


@pytest.mark.parametrize("validate", [validate_device_id, validate_module_id])
def test_valid_ids_are_returned(validate: object) -> None:
    for good in ("dev1", "x" * 128, "-.%_*?!(),:=@$'"):
        assert validate(good) == good  # type: ignore[operator]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", "is required"),
        (None, "is required"),
        (42, "is required"),
        ("x" * 129, "at most 128"),
        ("a+b", "'+'"),
        ("a#b", "'#'"),
        ("a/b c", "' /'"),
        ("é", "'é'"),
    ],
)
def test_invalid_ids_say_what_is_wrong(bad: object, message: str) -> None:
    with pytest.raises(HubError) as info:
        validate_device_id(bad)
    assert info.value.kind is ErrorKind.INVALID_ARGUMENT
    assert message in info.value.message


def test_module_id_errors_name_the_module() -> None:
    with pytest.raises(HubError, match="module id"):
        validate_module_id("a b")


def test_generated_keys() -> None:
    keys = SymmetricKeys.generate()
    for key in (keys.primary, keys.secondary):
        assert len(base64.b64decode(key, validate=True)) == 32
        assert SymmetricKeys.is_valid_key(key)
    assert keys.primary != keys.secondary
    assert SymmetricKeys.generate() != keys


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        (base64.b64encode(b"k" * 16).decode(), True),
        (base64.b64encode(b"k" * 64).decode(), True),
        (base64.b64encode(b"k" * 15).decode(), False),
        (base64.b64encode(b"k" * 65).decode(), False),
        ("", False),
        ("not base64!", False),
        (base64.b64encode(b"k" * 32).decode().rstrip("="), False),  # missing padding
        (None, False),
        (b"a2trazlrazlrazlrazlrazlrazlrazlr", False),  # bytes, not text
    ],
)
def test_is_valid_key(key: object, valid: bool) -> None:
    assert SymmetricKeys.is_valid_key(key) is valid
