"""JSON as methodhub reads and writes payloads: strict (no NaN/Infinity) and exact.

orjson is fast but reads integers beyond 64 bits as floats (and cannot write them), which would
change a device's or a caller's numbers; text holding such a run of digits goes through the stdlib
instead. Every front door and dialect uses these three functions, so the rule lives once.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_LONG_DIGITS = re.compile(rb"\d{19}")
"""19+ digits: maybe an integer beyond 64 bits (or a long fraction, which the stdlib reads alike)."""


class NotJson(ValueError):
    """The text is not JSON (or uses NaN/Infinity, which JSON does not have)."""


def loads(data: bytes | str) -> Any:
    """Parse JSON text exactly. Raises :class:`NotJson` with the parser's reason."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        if _LONG_DIGITS.search(raw) is not None:
            return json.loads(raw, parse_constant=_no_constants)
        return orjson.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise NotJson(str(exc)) from None


def dumps(value: Any) -> bytes:
    """Compact JSON bytes; integers beyond 64 bits are written exactly."""
    try:
        return orjson.dumps(value)
    except TypeError:  # integers beyond 64 bits
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def is_json(data: bytes) -> bool:
    """Whether ``data`` is JSON text (validity only: orjson's answer is the stdlib's, minus NaN)."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
