"""JSON as methodhub reads and writes payloads: strict (no NaN/Infinity), exact and bounded.

orjson is fast but reads integers beyond 64 bits as floats (and cannot write them), which would
change a device's or a caller's numbers; text holding such a run of digits goes through the stdlib
instead. A number too large for a double (``1e999``) is refused, not read as infinity (which would
be written back as ``null``). Text nesting arrays/objects deeper than :data:`MAX_DEPTH` levels is
refused before it is parsed. Every front door and dialect uses these functions, so the rules live
once.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects :func:`loads` accepts (the top level counts as 1).

64 is the default of .NET's System.Text.Json and Newtonsoft.Json (``MaxDepth``), what Azure's own
services and SDKs parse with, and far beyond what a method payload needs; deeper text is almost
always an attack on recursive parsers and encoders (orjson writes at most 254 levels, the stdlib
recurses once per level). In a method call the envelope ``{"methodName": …, "payload": …}`` is one
level, so a payload may nest 63."""

_LONG_DIGITS = re.compile(rb"\d{19}")
"""19+ digits: maybe an integer beyond 64 bits (or a long fraction, which the stdlib reads alike)."""


class NotJson(ValueError):
    """The text is not JSON (or uses NaN/Infinity, which JSON does not have)."""


def loads(data: bytes | str) -> Any:
    """Parse JSON text exactly. Raises :class:`NotJson` with the parser's reason.

    Refused: invalid text, ``NaN``/``Infinity``, numbers beyond a double's range (``1e999``) and
    nesting deeper than :data:`MAX_DEPTH`.
    """
    raw = data.encode() if isinstance(data, str) else data
    if nesting_exceeds(raw, MAX_DEPTH):
        raise NotJson(f"arrays and objects nest deeper than {MAX_DEPTH} levels, the limit")
    try:
        if _LONG_DIGITS.search(raw) is not None:
            return json.loads(raw, parse_constant=_no_constants, parse_float=_finite_float)
        return orjson.loads(raw)  # refuses 1e999 itself ("number is infinity when parsed as double")
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise NotJson(str(exc)) from None


_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def nesting_exceeds(raw: bytes, limit: int) -> bool:
    """Whether JSON text ``raw`` nests arrays/objects deeper than ``limit`` (brackets inside
    strings do not count). Cheap for the usual payload: text with at most ``limit`` opening
    brackets cannot be deeper, and that is two ``bytes.count`` calls.

    Invalid text may get either answer; the parser refuses it anyway.
    """
    if len(raw) <= 2 * limit or raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    if b"\\" in raw:  # drop escapes (a backslash only appears in strings), so quotes pair up
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    if b'"' in raw:
        raw = b"".join(raw.split(b'"')[::2])  # what is outside strings
    brackets = raw.translate(_BRACKETS, _NOT_BRACKETS)  # "(" opens, ")" closes
    for _ in range(limit):  # each pass removes the innermost level of every branch
        if not brackets:
            return False
        brackets = brackets.replace(b"()", b"")
    return bool(brackets)


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


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is beyond the range of a double")
    return value
