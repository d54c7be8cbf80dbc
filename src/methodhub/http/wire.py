"""Response encoding: a :class:`~methodhub.http.messages.Response` to the bytes of one write.

The status line, the ``Server``/``Date`` pair (rebuilt at most once a second), ``Content-Type``
lines, header-field checks (no response splitting), the ``200`` JSON fast path, the ``101`` head,
and the canned bytes (``100 Continue``, the last-resort ``500``).
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

import orjson

from methodhub.http.messages import Response

__all__ = [
    "CONTINUE",
    "FALLBACK_500",
    "encode_response",
    "error_response",
    "stream_head",
    "switching_protocols",
]

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
"""The interim response a client that sent ``Expect: 100-continue`` waits for (RFC 9110 §10.1.1)."""


def error_response(
    status: int, error: str, message: str, headers: list[tuple[str, str]] | None = None
) -> Response:
    """The default error shape: ``{"error": "<code>", "message": "<sentence>"}``.

    Args:
        status: the HTTP status code.
        error: a short machine-readable code.
        message: a human-readable sentence.
        headers: extra header fields.

    Returns:
        A JSON response.
    """
    return Response(status, orjson.dumps({"error": error, "message": message}), headers=headers)


_STATUS_LINES: dict[int, bytes] = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode("ascii")) for s in HTTPStatus
}
_JSON = "application/json; charset=utf-8"
_JSON_LINE = b"Content-Type: application/json; charset=utf-8\r\n"
_CONTENT_TYPE_LINES: dict[str, bytes] = {_JSON: _JSON_LINE}
_OK_JSON = b"HTTP/1.1 200 OK\r\n%b" + _JSON_LINE + b"Content-Length: %d\r\n%b\r\n%b"
"""The common response: Server/Date, Connection (if any), body."""
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # RFC 9110 §5.6.2
_FIELD_VALUE_FORBIDDEN = re.compile(r"[\x00\r\n]")  # RFC 9110 §5.5: CR, LF, NUL never valid
_FRAMING_FIELDS = frozenset({"content-length", "transfer-encoding"})

_date_second = -1
_server_and_date = b""


def _server_date() -> bytes:
    """``Server`` and ``Date`` (RFC 9110 §6.6.1) lines, rebuilt at most once per second."""
    global _date_second, _server_and_date
    now = time.time()
    second = int(now)
    if second != _date_second:
        _server_and_date = b"Server: methodhub\r\nDate: %s\r\n" % formatdate(second, usegmt=True).encode()
        _date_second = second
    return _server_and_date


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is not None and status >= 200:
        return line
    if type(status) is not int or not 200 <= status <= 999:  # RFC 9110 §15: three digits
        raise ValueError(f"a handler's response status must be 200..999, not {status!r}")
    return b"HTTP/1.1 %d \r\n" % status  # RFC 9112 §4: the reason phrase may be empty


def _content_type_line(content_type: str) -> bytes:
    line = _CONTENT_TYPE_LINES.get(content_type)
    if line is None:
        line = _field_line("Content-Type", content_type)
        if len(_CONTENT_TYPE_LINES) < 64:
            _CONTENT_TYPE_LINES[content_type] = line
    return line


def _field_line(name: str, value: str) -> bytes:
    """One header line, refusing what would corrupt the message (response splitting)."""
    if not _TOKEN.match(name):
        raise ValueError(f"invalid header name {name!r}")
    if _FIELD_VALUE_FORBIDDEN.search(value):
        raise ValueError(f"invalid characters in the value of header {name!r}")
    return f"{name}: {value}\r\n".encode("latin-1")


def encode_response(response: Response, head: bool, close: bool, echo_keep_alive: bool) -> tuple[bytes, bool]:
    """Serialize ``response`` into one buffer (status line, fields, blank line, content).

    Args:
        response: what the handler returned.
        head: the request was HEAD: send the fields of the content but not the content (RFC 9110 §9.3.2).
        close: the connection closes after this response: send ``Connection: close`` (RFC 9112 §9.6).
        echo_keep_alive: the client asked for ``Connection: keep-alive`` (HTTP/1.0 needs the echo).

    Returns:
        The bytes to write, and whether the connection closes after them (a handler may ask).

    Raises:
        ValueError: an invalid status, header name or value, or a framing header set by the handler.
    """
    status = response.status
    body = response.body
    content_type = response.content_type
    extra = response.headers
    if status == 200 and content_type == _JSON and not extra and not close and not head:
        # The hot path: one formatting operation, one copy of the body.
        return (
            _OK_JSON
            % (
                _server_date(),
                len(body),
                b"Connection: keep-alive\r\n" if echo_keep_alive else b"",
                body,
            ),
            False,
        )
    parts = [_status_line(status), _server_date()]
    if status == 204 or status == 304:
        # RFC 9110 §6.4.1: no content, hence no Content-Type. §8.6: no Content-Length in a 204; a
        # 304's would describe the selected representation, which we do not know.
        body = b""
    else:
        if content_type is not None:
            parts.append(_content_type_line(content_type))
        parts.append(b"Content-Length: %d\r\n" % len(body))
    if extra:
        for name, value in extra:
            lower = name.lower()
            if lower in _FRAMING_FIELDS:
                raise ValueError(f"a handler must not set {name}: the server frames the message")
            if lower == "connection":
                if "close" in value.lower():
                    close = True
                continue
            parts.append(_field_line(name, value))
    if close:
        parts.append(b"Connection: close\r\n\r\n")
    elif echo_keep_alive:
        parts.append(b"Connection: keep-alive\r\n\r\n")
    else:
        parts.append(b"\r\n")
    if body and not head:
        parts.append(body)
    return b"".join(parts), close


_INTERNAL_ERROR_BODY = orjson.dumps(
    {"error": "internal_error", "message": "The server could not handle the request."}
)
FALLBACK_500 = (
    b"HTTP/1.1 500 Internal Server Error\r\nServer: methodhub\r\n"
    b"Content-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b"
    % (len(_INTERNAL_ERROR_BODY), _INTERNAL_ERROR_BODY)
)
"""Written when even the error response cannot be encoded; then the connection closes."""


def switching_protocols(headers: list[tuple[str, str]], client_upgrade: str | None) -> bytes:
    """The head of a ``101 Switching Protocols`` response.

    Args:
        headers: the handler's fields (:attr:`~methodhub.http.messages.SwitchProtocol.headers`).
        client_upgrade: the request's ``Upgrade`` value, echoed when ``headers`` has none (RFC 9110 §7.8).

    Returns:
        The status line, ``Server``/``Date``, the fields (with ``Connection: upgrade`` unless given),
        and the blank line.

    Raises:
        ValueError: an invalid header name or value.
    """
    names = set()
    lines = [_STATUS_LINES[101], _server_date()]
    for name, value in headers:
        names.add(name.lower())
        lines.append(_field_line(name, value))
    if "connection" not in names:
        lines.append(b"Connection: upgrade\r\n")
    if "upgrade" not in names and client_upgrade is not None:
        lines.append(_field_line("Upgrade", client_upgrade))
    lines.append(b"\r\n")
    return b"".join(lines)


def stream_head(content_type: str, headers: list[tuple[str, str]]) -> bytes:
    """The head of a ``200`` whose content ends when the connection closes (a
    :class:`~methodhub.http.messages.StreamResponse`): no ``Content-Length``, ``Connection: close``.

    Raises:
        ValueError: an invalid header name or value, or a framing field among ``headers``.
    """
    lines = [_status_line(200), _server_date(), _content_type_line(content_type)]
    for name, value in headers:
        if name.lower() in _FRAMING_FIELDS or name.lower() == "connection":
            raise ValueError(f"a handler must not set {name}: the server frames the message")
        lines.append(_field_line(name, value))
    lines.append(b"Connection: close\r\n\r\n")
    return b"".join(lines)


def parse_query(raw_query: str) -> dict[str, str]:
    """``a=1&b=x%20y`` → ``{"a": "1", "b": "x y"}`` (form decoding, like ``urllib.parse.parse_qsl``
    with blank values kept, at a fraction of its cost when nothing needs decoding).

    Args:
        raw_query: the query as sent (latin-1 decoded bytes).

    Returns:
        Names → values, percent-decoded as UTF-8 (``+`` is a space); the last repeated name wins.
    """
    query: dict[str, str] = {}
    for pair in raw_query.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in pair or "+" in pair or not pair.isascii():
            name, value = unquote_plus(name), unquote_plus(value)
        query[name] = value
    return query


def unquote_plus(text: str) -> str:
    return unquote_to_bytes(text.replace("+", " ").encode("latin-1")).decode("utf-8", "replace")
