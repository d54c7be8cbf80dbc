"""Small helpers shared by the registry contract tests."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from methodhub.errors import ErrorKind, HubError


@contextmanager
def raises_hub_error(kind: ErrorKind, match: str | None = None) -> Iterator[None]:
    with pytest.raises(HubError) as info:
        yield
    assert info.value.kind is kind, info.value
    if match is not None:
        assert match in info.value.message, info.value.message


def key_of(n_bytes: int, fill: int = 7) -> str:
    return base64.b64encode(bytes([fill]) * n_bytes).decode()
