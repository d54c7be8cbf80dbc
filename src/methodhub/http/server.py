"""A small, fast HTTP/1.1 server: ``asyncio.Protocol`` + httptools (llhttp), one connection per protocol.

Why not ASGI: the hub's target is 10,000 method calls/s through this API on two cores shared with
the load generator and the device farm, which leaves a few tens of µs per request for everything.
An ASGI server spends that much on the ASGI dict/messages alone. Here a request costs the parser's
callbacks, one :class:`Request`, one route lookup, the handler, and one ``transport.write``.

Model:

* the parser's callbacks build :class:`Request` objects and append them to a per-connection queue;
  after each ``data_received`` the queue is served **one request at a time, in order** (RFC 9112
  §9.3.2: pipelined responses go out in request order; serving them one by one also keeps
  non-idempotent POSTs from running concurrently, which §9.3.2 only allows for safe methods);
* a handler returns a :class:`Response` (written at once), an ``asyncio.Future`` (a done-callback
  writes the response: no task), a coroutine (run as a task), or :class:`SwitchProtocol`;
* protocol errors (400, 408, 413, 414, 431, 501) are queued behind the requests already received, so
  the error response, too, goes out in order; then the connection closes (lingering, RFC 9112 §9.6);
* time limits — a request head must arrive within ``request_head_timeout`` of its first byte (of the
  connection, for the first request), a body within ``request_body_timeout`` of the head, else 408;
  an idle connection closes after ``keepalive_timeout`` — are all checked by one timer per
  connection, re-armed only when it fires, so no request arms or cancels a timer;
* each listener admits connections through an :class:`~methodhub.admission.Admission`: at most
  ``max_connections``, of which ``max_unestablished`` have not completed a request yet; when full,
  the oldest never-completed, then the longest idle connection is closed to make room (a connection
  whose handler is running is never shed), and so when the fd limit gets near.

Usage::

    routes = Routes()
    routes.add("POST", "/twins/{device_id}/methods", handler)
    server = HttpServer(routes)
    await server.listen("127.0.0.1", 8080)
    ...
    await server.close()

Nothing here installs an event loop policy: the server runs on whatever loop runs it (uvloop when
the hub's entry point chose it).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import socket
import ssl as _ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, TypeAlias, cast
from urllib.parse import unquote_to_bytes

import orjson
from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, parse_url

from methodhub.admission import Admission, log_accept_errors
from methodhub.http.routing import MethodNotAllowed, RouteNotFound, Routes

__all__ = [
    "KEEPALIVE_TIMEOUT",
    "LISTEN_BACKLOG",
    "MAX_BODY_SIZE",
    "MAX_CONNECTIONS",
    "MAX_HEADER_SIZE",
    "MAX_PIPELINE",
    "MAX_UNESTABLISHED",
    "REQUEST_BODY_TIMEOUT",
    "REQUEST_HEAD_TIMEOUT",
    "SHUTDOWN_GRACE",
    "Handler",
    "HttpError",
    "HttpServer",
    "Request",
    "Response",
    "SwitchProtocol",
    "error_response",
]

# -- limits -------------------------------------------------------------------------------------

MAX_HEADER_SIZE = 16 * 1024
"""Default limit on the request line + header section, in bytes (→ 431, or 414 for the target alone).

As h11 puts it, this is effectively the limit on the request line + headers. Precedents: h11 16 KiB
(its comment cites Node's former 80 KiB, Tomcat 8 KiB, IIS 16 KiB), Node.js today 16 KiB, nginx
4 × 8 KiB buffers. Our clients send a SAS token (~200 bytes) and a few short headers: ample."""

MAX_BODY_SIZE = 1024 * 1024
"""Default limit on a request body, in bytes (→ 413). The hub passes its own (4 × the 128 KiB
method payload limit); 1 MiB is a safe default for any JSON API we serve."""

KEEPALIVE_TIMEOUT = 75.0
"""Default seconds an idle keep-alive connection stays open (nginx's default).

Deliberately longer than common client pool expiries (httpx 5 s, aiohttp 15 s), so that the
*client* usually closes idle connections: when the server closes first, a client can send a request
just as the close arrives, and clients do not retry non-idempotent requests such as our POSTs."""

REQUEST_HEAD_TIMEOUT = 10.0
"""Default seconds a request head (request line and header fields) may take to arrive, from its
first byte — or, for a connection's first request, from the connection's start (→ 408 and close;
a connection that sent nothing is closed without an answer). Each byte used to re-arm the idle
timer, so a client sending a byte every few seconds held its connection forever (slowloris).
Our clients send a head in one packet; 10 s is the MQTT CONNECT deadline too. (nginx's
``client_header_timeout`` is 60 s, Apache's mod_reqtimeout 20–40 s.)"""

REQUEST_BODY_TIMEOUT = 30.0
"""Default seconds a request body may take to arrive after its head (or after ``100 Continue``)
(→ 408 and close): the hub's largest body (512 KiB) at 17 KB/s. (Apache's mod_reqtimeout: 20 s.)"""

MAX_CONNECTIONS = 10_000
"""Default connections one listener holds; beyond, the oldest never-completed or idle one is
closed for a new one (and a new one is refused if every connection has a handler running)."""

MAX_UNESTABLISHED = 1_000
"""Default connections per listener that have not completed a request yet; beyond, the oldest of
them is closed for a new one."""

MAX_PIPELINE = 16
"""Parsed requests queued on one connection before we stop reading from it (RFC 9112 §9.3.2).

Deep enough to keep a pipelining client busy, small enough that one connection cannot make us hold
much more than 16 requests (plus what one parser slice, below, may complete at once)."""

_FEED_SLICE = 16 * 1024
"""Bytes given to the parser at a time. httptools parses all it is given and cannot pause, so we
feed big reads in slices and stop between slices once :data:`MAX_PIPELINE` requests are queued;
one slice bounds the overshoot (a few hundred minimal requests)."""

_LINGER_TIMEOUT = 2.0
"""Seconds we keep reading (and discarding) after an error response before closing, so the client
can read the response instead of getting a TCP reset for data it sent after it (RFC 9112 §9.6;
Apache's lingering close waits 2 s per read)."""

SHUTDOWN_GRACE = 5.0
"""Default seconds :meth:`HttpServer.close` gives in-flight requests before aborting connections."""

LISTEN_BACKLOG = 1024
"""Pending connections the kernel may queue for us: a load generator opening hundreds of
connections at once should not see refusals (asyncio's default is 100)."""

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# -- public types -------------------------------------------------------------------------------


@dataclass(slots=True)
class Request:
    """One HTTP request, as the router and handlers see it.

    Attributes:
        method: the method token, e.g. ``"POST"``.
        path: the path as sent, without the query, *not* percent-decoded (``"/twins/dev%201/methods"``).
        query: the query parameters, percent-decoded (``+`` as space); the last value of a repeated
            key wins.
        headers: lower-cased names → latin-1 decoded values, surrounding whitespace removed;
            repeated fields joined with ``", "`` (RFC 9110 §5.3).
        body: the request content (chunked transfer coding already removed).
        path_params: filled by the router; each segment percent-decoded on its own.
        peer: the client's ``(host, port)``, or None when the transport has no IP peer.
        scheme: ``"https"`` when the connection uses TLS, else ``"http"``.
        raw_query: the query string as sent (for signatures computed over the raw parameters).
    """

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    path_params: dict[str, str] = field(default_factory=dict)
    peer: tuple[str, int] | None = None
    scheme: str = "http"
    raw_query: str = ""


@dataclass(slots=True)
class Response:
    """An HTTP response. The server adds ``Content-Length``, ``Date``, ``Server`` and ``Connection``.

    Attributes:
        status: the status code, 200–999 (a 1xx other than via :class:`SwitchProtocol` is refused).
        body: the content; not sent for HEAD, 204 and 304.
        content_type: the ``Content-Type``; None sends none.
        headers: more fields, ``(name, value)``; must not include ``Content-Length`` or
            ``Transfer-Encoding`` (the server frames the message). ``("connection", "close")``
            makes the server close the connection after this response.
    """

    status: int
    body: bytes = b""
    content_type: str | None = "application/json; charset=utf-8"
    headers: list[tuple[str, str]] | None = None

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
        """A JSON response encoded with orjson.

        Args:
            obj: any value orjson can serialize.
            status: the status code.
            headers: extra header fields.

        Returns:
            The response, ``Content-Type: application/json; charset=utf-8``.

        Raises:
            orjson.JSONEncodeError: ``obj`` is not serializable (a ``TypeError``).
        """
        return cls(status, orjson.dumps(obj), headers=headers)


@dataclass(slots=True)
class SwitchProtocol:
    """Returned by a handler to accept an ``Upgrade`` (e.g. WebSocket) and take over the connection.

    The server writes ``101 Switching Protocols`` with ``headers`` (adding ``Connection: upgrade``
    and the client's ``Upgrade`` value if missing, RFC 9110 §7.8), then calls
    ``transport.set_protocol(protocol)``, ``protocol.connection_made(transport)`` and
    ``protocol.data_received(...)`` with any bytes that followed the request. Only valid for a
    request that carried ``Upgrade`` and ``Connection: upgrade``; otherwise the handler's result is
    treated as an error (500).

    Attributes:
        headers: the 101 response's fields, e.g.
            ``[("upgrade", "websocket"), ("sec-websocket-accept", ...)]``.
        protocol: the protocol that owns the connection from now on.
    """

    headers: list[tuple[str, str]]
    protocol: asyncio.BaseProtocol


Handler: TypeAlias = Callable[[Request], Response | SwitchProtocol | Awaitable[Response | SwitchProtocol]]
"""A route handler: returns a Response directly, a Future of one (no task), or a coroutine."""


class HttpError(Exception):
    """An HTTP-level failure with its status; rendered by ``on_error``.

    The server raises it for protocol errors — 400 (unparsable request), 408 (head or body not
    received in time), 413 (body too large), 414 (request target too long), 431 (header section
    too large, RFC 6585 §5), 501 (a transfer coding other than chunked, RFC 9112 §6.1) — and
    passes it to ``on_error(request_or_None,
    error)``; after those the connection closes. Handlers may raise it too; the default
    ``on_error`` renders it with its status, and the connection stays open.

    Attributes:
        status: the HTTP status code.
        error: a short machine-readable code, e.g. ``"payload_too_large"``.
        message: a sentence for humans.
    """

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


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


ErrorHook: TypeAlias = Callable[[Request | None, BaseException], Response]
NotFoundHook: TypeAlias = Callable[[Request], Response]
MethodNotAllowedHook: TypeAlias = Callable[[Request, list[str]], Response]

# -- response encoding ---------------------------------------------------------------------------

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


def _encode_response(
    response: Response, head: bool, close: bool, echo_keep_alive: bool
) -> tuple[bytes, bool]:
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
_FALLBACK_500 = (
    b"HTTP/1.1 500 Internal Server Error\r\nServer: methodhub\r\n"
    b"Content-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b"
    % (len(_INTERNAL_ERROR_BODY), _INTERNAL_ERROR_BODY)
)
"""Written when even the error response cannot be encoded; then the connection closes."""

# -- request decoding ----------------------------------------------------------------------------

_METHODS: dict[bytes, str] = {
    m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
}
_HEADER_NAMES: dict[bytes, str] = {}
_HEADER_NAME_CACHE_SIZE = 256  # bounded: clients choose the names


def _parse_query(raw_query: str) -> dict[str, str]:
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
            name, value = _unquote_plus(name), _unquote_plus(value)
        query[name] = value
    return query


def _unquote_plus(text: str) -> str:
    return unquote_to_bytes(text.replace("+", " ").encode("latin-1")).decode("utf-8", "replace")


def _peer_of(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return None


class _Stop(Exception):
    """Raised from a parser callback to stop parsing data we will not serve."""


# A queued request: (request or None for garbage, keep-alive, upgrade, protocol error or None).
_Entry: TypeAlias = tuple[Request | None, bool, bool, HttpError | None]


class _HttpConnection(asyncio.Protocol):
    """One HTTP/1.1 connection: parser callbacks, the in-order request queue, response writing."""

    __slots__ = (
        "_admission",
        "_body",
        "_body_size",
        "_continue_due",
        "_current",
        "_established",
        "_head_bytes",
        "_headers",
        "_idle_timer",
        "_in_message",
        "_last_activity",
        "_linger_timer",
        "_loop",
        "_match",
        "_max_body",
        "_max_head",
        "_new_message",
        "_parser",
        "_peer",
        "_pending",
        "_phase_start",
        "_queue",
        "_raw_head",
        "_read_paused",
        "_rejection",
        "_request",
        "_scheme",
        "_server",
        "_stash",
        "_stop_reading",
        "_transport",
        "_upgrade",
        "_upgrade_tail",
        "_url",
        "_write_paused",
    )

    def __init__(self, server: HttpServer, admission: Admission) -> None:
        self._server = server
        self._admission = admission
        self._loop = asyncio.get_running_loop()
        self._match = server.routes.match
        self._max_body = server.max_body_size
        self._max_head = server.max_header_size
        self._parser: HttpRequestParser | None = HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._peer: tuple[str, int] | None = None
        self._scheme = "http"
        # The message being parsed.
        self._in_message = False
        self._new_message = False
        self._url = b""
        self._headers: dict[str, str] = {}
        self._head_bytes = 0
        self._raw_head = 0
        self._request: Request | None = None
        self._upgrade = False
        self._body: list[bytes] = []
        self._body_size = 0
        self._continue_due = False
        self._rejection: HttpError | None = None
        # Requests received, in order, and the one being served.
        self._queue: collections.deque[_Entry] = collections.deque()
        self._current: tuple[Request, bool, bool] | None = None
        self._pending: asyncio.Future[Any] | None = None
        self._write_paused = False
        self._read_paused = False
        self._stash: bytes | None = None
        self._upgrade_tail: bytearray | None = None
        self._stop_reading = False
        self._last_activity = 0.0
        self._established = False  # a request completed on this connection
        self._phase_start = 0.0  # when the current wait began: connection (first request), head, body
        self._idle_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start serving ``transport`` (if the listener admits it); arm the connection's timer.

        Args:
            transport: the connection's transport (TCP, or TLS when ``sslcontext`` is set).
        """
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._peer = _peer_of(transport)
        if transport.get_extra_info("sslcontext") is not None:
            self._scheme = "https"
        sock = transport.get_extra_info("socket")
        fd = None
        if sock is not None:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                try:  # asyncio sets it already; not every loop does. Small responses must not wait (Nagle).
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            try:
                fd = sock.fileno()
            except (OSError, ValueError):
                pass
        server = self._server
        server._connections.add(self)
        now = self._loop.time()
        self._last_activity = self._phase_start = now
        server.logger.debug("connection from %s", self._peer)
        if server._closing or not self._admission.register(self, self._shed, fd):
            transport.close()
            return
        self._arm(now + server._timer_period)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection: cancel the pending handler and timers; nothing is written after this.

        Args:
            exc: the error that broke the connection, or None for a clean close/EOF.
        """
        self._server.logger.debug("connection from %s closed: %s", self._peer, exc or "clean")
        self._detach()
        pending = self._pending
        self._pending = None
        if pending is not None and not pending.done():
            pending.cancel()  # the client is gone: let the hub stop working on the call

    def data_received(self, data: bytes) -> None:
        """Parse ``data`` and serve the requests it completes.

        Args:
            data: bytes from the client.
        """
        self._last_activity = self._loop.time()
        if self._stop_reading:
            if self._upgrade_tail is not None:
                self._upgrade_tail += data  # for the protocol we may switch to
            return  # after an error, "Connection: close" or while lingering: discard
        if self._stash is not None:
            self._stash += data
            return
        self._feed(data)
        if self._pending is None and self._queue and not self._write_paused:
            self._process()
        if len(self._queue) >= MAX_PIPELINE:
            self._pause_reading()

    def eof_received(self) -> bool:
        """The client closed its sending side: treat it as gone.

        A FIN cannot tell "half-closed, still reading" from "closed"; clients that half-close after
        a request are rare, while a backend that gives up on a call is common, and the hub must
        stop working on calls nobody waits for (nginx and uvicorn decide the same way). Responses
        already written are still delivered by the kernel.

        Returns:
            False: the transport closes, and ``connection_lost`` cancels the pending handler.
        """
        return False

    def pause_writing(self) -> None:
        """The transport's buffer is full: stop serving the pipeline until it drains."""
        self._write_paused = True

    def resume_writing(self) -> None:
        """The transport's buffer drained: serve the pipeline again."""
        self._write_paused = False
        if self._transport is not None and self._pending is None and self._queue:
            self._process()

    # -- httptools callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        """httptools: a request starts. Resets the per-message state.

        Raises:
            _Stop: a request after one that ends the connection (``close``, upgrade, error).
        """
        if self._stop_reading:
            raise _Stop
        self._in_message = True
        self._new_message = True
        if self._established:  # the head's clock starts with its first byte (the first: at connect)
            self._phase_start = self._last_activity
        self._url = b""
        self._headers = {}
        self._head_bytes = 0
        self._request = None
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        """httptools: (part of) the request target.

        Args:
            url: the next bytes of the target.

        Raises:
            HttpError: 414, the target alone exceeds the header limit (RFC 9110 §15.5.15).
        """
        self._url += url
        self._head_bytes += len(url)
        if len(self._url) > self._max_head:
            raise self._reject(414, "uri_too_long", f"The request target exceeds {self._max_head} bytes.")

    def on_header(self, name: bytes, value: bytes) -> None:
        """httptools: one complete field line.

        Args:
            name: the field name as sent.
            value: the field value, leading whitespace already removed by llhttp.

        Raises:
            HttpError: 431, the request line and fields exceed the header limit (RFC 6585 §5).
        """
        size = self._head_bytes + len(name) + len(value) + 4
        self._head_bytes = size
        if size > self._max_head:
            raise self._reject(
                431,
                "request_header_fields_too_large",
                f"The request line and header fields exceed {self._max_head} bytes.",
            )
        key = _HEADER_NAMES.get(name)
        if key is None:
            key = name.decode("latin-1").lower()
            if len(_HEADER_NAMES) < _HEADER_NAME_CACHE_SIZE:
                _HEADER_NAMES[name] = key
        text = value.rstrip(b" \t").decode("latin-1")  # RFC 9112 §5: OWS is not part of the value
        headers = self._headers
        if key in headers:
            headers[key] = f"{headers[key]}, {text}"  # RFC 9110 §5.3
        else:
            headers[key] = text

    def on_headers_complete(self) -> None:
        """httptools: the header section is complete: build the :class:`Request`.

        Raises:
            HttpError: 400 for a missing or repeated Host; 413 when the declared Content-Length
                exceeds the body limit.
        """
        parser = self._parser
        assert parser is not None
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        url = self._url
        if url[:1] == b"/":  # origin-form, RFC 9112 §3.2.1
            if b"#" in url:  # a fragment is never part of a request target (RFC 9112 §3.2)
                url = url.partition(b"#")[0]
            path_bytes, _, query_bytes = url.partition(b"?")
        elif url == b"*":  # asterisk-form, RFC 9112 §3.2.4
            path_bytes, query_bytes = url, b""
        else:  # absolute-form (§3.2.2, MUST accept) or authority-form for CONNECT (§3.2.3)
            try:
                parsed = parse_url(url)
                path_bytes, query_bytes = parsed.path or b"/", parsed.query or b""
            except HttpParserError:
                path_bytes, query_bytes = url, b""
        raw_query = query_bytes.decode("latin-1")
        headers = self._headers
        request = Request(
            method,
            path_bytes.decode("latin-1"),
            _parse_query(raw_query) if raw_query else {},
            headers,
            b"",
            {},
            self._peer,
            self._scheme,
            raw_query,
        )
        self._request = request
        self._upgrade = parser.should_upgrade()
        host = headers.get("host")
        if (host is None and parser.get_http_version() != "1.0") or (host is not None and "," in host):
            # RFC 9112 §3.2: MUST answer 400 to an HTTP/1.1 request without Host or with several.
            raise self._reject(400, "bad_request", "The request needs exactly one Host header.")
        self._phase_start = self._last_activity  # the body's clock starts
        coding = headers.get("transfer-encoding")
        if coding is not None and coding.lower() != "chunked":
            # RFC 9112 §6.1: a server SHOULD answer 501 to a transfer coding it does not understand
            # (llhttp would read "gzip, chunked" as plain chunked and hand over the compressed bytes).
            raise self._reject(
                501,
                "not_implemented",
                f"Transfer-Encoding {coding!r} is not supported; send the body with Content-Length "
                "or 'Transfer-Encoding: chunked' alone.",
            )
        length = headers.get("content-length")
        if length is not None and int(length) > self._max_body:
            # RFC 9110 §15.5.14: refuse at once; we do not read the body, so the connection closes.
            raise self._reject(
                413,
                "payload_too_large",
                f"The request body ({length} bytes) exceeds the limit of {self._max_body} bytes.",
            )
        expect = headers.get("expect")
        if expect is not None and expect.lower() == "100-continue" and parser.get_http_version() != "1.0":
            # RFC 9110 §10.1.1: the client waits for 100 before sending the body. An HTTP/1.0 client's
            # expectation MUST be ignored. Earlier pipelined responses must go out first (in order).
            if self._queue or self._pending is not None:
                self._continue_due = True
            elif self._transport is not None:
                self._transport.write(_CONTINUE)

    def on_body(self, chunk: bytes) -> None:
        """httptools: a piece of the content (chunked coding already removed).

        Args:
            chunk: the bytes.

        Raises:
            HttpError: 413, the content grew past the body limit.
        """
        size = self._body_size + len(chunk)
        if size > self._max_body:  # chunked (or otherwise undeclared) content grew past the limit
            raise self._reject(
                413, "payload_too_large", f"The request body exceeds the limit of {self._max_body} bytes."
            )
        self._body_size = size
        self._body.append(chunk)

    def on_message_complete(self) -> None:
        """httptools: the request is complete: queue it (it is served after ``feed_data`` returns)."""
        request = self._request
        assert request is not None and self._parser is not None
        body = self._body
        if body:
            request.body = body[0] if len(body) == 1 else b"".join(body)
        keep_alive = self._parser.should_keep_alive()  # RFC 9112 §9.3: version + Connection
        upgrade = self._upgrade
        self._queue.append((request, keep_alive, upgrade, None))
        self._in_message = False
        self._continue_due = False
        self._request = None
        if not self._established:
            self._established = True
            self._admission.mark_established(self)
        if not keep_alive or upgrade:
            self._stop_reading = True  # RFC 9112 §9.6: nothing after a "close" request is served

    def _reject(self, status: int, error: str, message: str) -> HttpError:
        self._rejection = HttpError(status, error, message)
        return self._rejection

    # -- parsing ---------------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        """Give ``data`` to the parser, a slice at a time; stash the rest once the queue is full."""
        parser = self._parser
        assert parser is not None
        base = 0
        try:
            if len(data) <= _FEED_SLICE:
                self._new_message = False
                parser.feed_data(data)
                if self._in_message and self._request is None:
                    self._count_raw_head(len(data))
            else:
                with memoryview(data) as view:
                    total = len(data)
                    while base < total:
                        piece = view[base : base + _FEED_SLICE]
                        self._new_message = False
                        parser.feed_data(piece)
                        if self._in_message and self._request is None:
                            self._count_raw_head(len(piece))
                        base += _FEED_SLICE
                        if self._stop_reading:
                            break
                        if base < total and len(self._queue) >= MAX_PIPELINE:
                            self._stash = bytes(view[base:])
                            self._pause_reading()
                            break
        except HttpParserUpgrade as exc:
            # The request before exc.args[0] asked to switch protocols; what follows is not HTTP.
            self._upgrade_tail = bytearray(data[base + exc.args[0] :])
            self._pause_reading()  # bound the tail until the handler decides
        except HttpParserError as exc:
            if self._stop_reading and self._rejection is None:
                return  # data after a "close" request (RFC 9112 §9.6): ignored
            error = self._rejection or HttpError(400, "bad_request", f"Malformed HTTP request: {exc}.")
            self._fail(error)

    def _count_raw_head(self, size: int) -> None:
        """Bound the bytes of an unfinished header section (httptools buffers a partial field)."""
        if self._new_message:
            self._raw_head = size  # includes what preceded the message in this slice: over-counts
        else:
            self._raw_head += size
        if self._raw_head > self._max_head + _FEED_SLICE:  # slack for that over-count
            self._fail(
                HttpError(
                    431,
                    "request_header_fields_too_large",
                    f"The request line and header fields exceed {self._max_head} bytes.",
                )
            )

    def _fail(self, error: HttpError) -> None:
        """Queue ``error`` behind the requests already received; read nothing more."""
        self._server.logger.debug("protocol error from %s: %s %s", self._peer, error.status, error.message)
        self._queue.append((self._request, False, False, error))
        self._stop_reading = True
        self._in_message = False
        self._continue_due = False
        self._request = None

    def _pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()

    # -- serving ---------------------------------------------------------------------------------

    def _process(self) -> None:
        """Serve queued requests in order until one is pending, writing is paused, or none is left."""
        queue = self._queue
        while True:
            while self._pending is None and queue and not self._write_paused:
                if self._transport is None:
                    return
                request, keep_alive, upgrade, error = queue.popleft()
                if error is not None:
                    self._respond_error_and_close(request, error)
                    return
                assert request is not None
                self._run(request, keep_alive, upgrade)
            if self._transport is None:
                return
            if len(queue) > MAX_PIPELINE // 2 or self._stop_reading:
                break
            if self._stash is not None:  # the queue drained: parse what we held back
                data, self._stash = self._stash, None
                self._feed(data)
                continue
            if self._read_paused:
                self._read_paused = False
                self._phase_start = self._loop.time()  # a message we stopped reading gets its time again
                self._transport.resume_reading()
            break
        if (
            self._continue_due
            and self._in_message
            and self._pending is None
            and not queue
            and not self._stop_reading
            and not self._transport.is_closing()
        ):
            self._continue_due = False
            self._phase_start = self._loop.time()  # the body's clock starts now that we asked for it
            self._transport.write(_CONTINUE)

    def _run(self, request: Request, keep_alive: bool, upgrade: bool) -> None:
        """Route ``request``, call its handler, and write or await the result."""
        try:
            handler, request.path_params = self._match(request.method, request.path)
        except RouteNotFound:
            handler = self._server._not_found_handler
        except MethodNotAllowed as exc:
            handler = self._server._method_not_allowed_handler(exc.allowed)
        try:
            result = handler(request)
        except Exception as exc:
            result = self._error_response(request, exc)
        if type(result) is Response:
            self._respond(request, result, keep_alive, upgrade)
        elif asyncio.isfuture(result):
            self._await(result, request, keep_alive, upgrade)
        elif asyncio.iscoroutine(result):
            self._await(self._loop.create_task(result), request, keep_alive, upgrade)
        else:
            self._deliver(request, keep_alive, upgrade, result)

    def _await(self, future: asyncio.Future[Any], request: Request, keep_alive: bool, upgrade: bool) -> None:
        self._pending = future
        self._current = (request, keep_alive, upgrade)
        self._admission.mark_busy(self)  # a caller waits: never shed while the handler runs
        future.add_done_callback(self._handler_done)

    def _handler_done(self, future: asyncio.Future[Any]) -> None:
        if future is not self._pending:
            return  # the connection was lost (and the future cancelled) meanwhile
        self._pending = None
        self._admission.mark_idle(self)
        current = self._current
        assert current is not None
        self._current = None
        request, keep_alive, upgrade = current
        if future.cancelled():
            result: Any = self._error_response(request, asyncio.CancelledError("the handler was cancelled"))
        else:
            exc = future.exception()
            result = future.result() if exc is None else self._error_response(request, exc)
        self._deliver(request, keep_alive, upgrade, result)
        if self._transport is not None:
            self._process()

    def _deliver(self, request: Request, keep_alive: bool, upgrade: bool, result: Any) -> None:
        if isinstance(result, Response):
            self._respond(request, result, keep_alive, upgrade)
        elif isinstance(result, SwitchProtocol):
            self._switch(request, upgrade, result)
        else:
            error = TypeError(f"a handler returned {type(result).__name__}, not a Response")
            self._respond(request, self._error_response(request, error), keep_alive, upgrade)

    def _error_response(self, request: Request | None, exc: BaseException) -> Response:
        """``on_error(request, exc)``, falling back to the default if the hook fails."""
        server = self._server
        try:
            response = server._on_error(request, exc)
            if isinstance(response, Response):
                return response
            raise TypeError(f"on_error returned {type(response).__name__}, not a Response")
        except Exception:
            server.logger.exception("on_error failed for %r", exc)
            return server._default_on_error(request, exc)

    def _respond(self, request: Request, response: Response, keep_alive: bool, upgrade: bool) -> None:
        """Write ``response`` (one ``transport.write``); close afterwards if the exchange says so."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        close = not keep_alive or upgrade or self._server._closing
        headers = request.headers
        echo = not close and "connection" in headers and "keep-alive" in headers["connection"].lower()
        try:
            data, close = _encode_response(response, request.method == "HEAD", close, echo)
        except ValueError as exc:
            fallback = self._error_response(request, exc)
            try:
                data, close = _encode_response(fallback, request.method == "HEAD", close, echo)
            except ValueError:
                data, close = _FALLBACK_500, True
        transport.write(data)
        self._last_activity = self._loop.time()
        if close:
            self._close()

    def _respond_error_and_close(self, request: Request | None, error: HttpError) -> None:
        """Answer a protocol error, then close, lingering so the client can read the answer."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        response = self._error_response(request, error)
        try:
            data, _ = _encode_response(
                response, request is not None and request.method == "HEAD", True, False
            )
        except ValueError:
            data = _FALLBACK_500
        transport.write(data)
        self._stop_reading = True
        self._queue.clear()
        if transport.can_write_eof():
            # RFC 9112 §9.6: half-close, keep reading (and discarding) until the client closes or a
            # short timeout, so data it already sent does not turn into a reset that loses our answer.
            transport.write_eof()
            self._linger_timer = self._loop.call_later(_LINGER_TIMEOUT, transport.close)
            if self._read_paused:
                self._read_paused = False
                transport.resume_reading()
        else:
            transport.close()

    def _switch(self, request: Request, upgrade: bool, switch: SwitchProtocol) -> None:
        """Write 101 and hand the transport to ``switch.protocol`` with the bytes already received."""
        transport = self._transport
        assert transport is not None
        try:
            if not upgrade:  # RFC 9110 §7.8: only to a protocol the client asked for
                raise ValueError("a handler returned SwitchProtocol for a request without Upgrade")
            names = set()
            lines = [_STATUS_LINES[101], _server_date()]
            for name, value in switch.headers:
                names.add(name.lower())
                lines.append(_field_line(name, value))
        except ValueError as exc:
            self._respond(request, self._error_response(request, exc), False, True)
            return
        if "connection" not in names:
            lines.append(b"Connection: upgrade\r\n")
        if "upgrade" not in names and "upgrade" in request.headers:
            lines.append(_field_line("Upgrade", request.headers["upgrade"]))
        lines.append(b"\r\n")
        transport.write(b"".join(lines))
        tail = bytes(self._upgrade_tail or b"")
        self._detach()
        protocol = switch.protocol
        transport.set_protocol(protocol)
        transport.resume_reading()
        protocol.connection_made(transport)
        if tail and not transport.is_closing():
            cast(asyncio.Protocol, protocol).data_received(tail)

    def _close(self) -> None:
        transport = self._transport
        self._stop_reading = True
        self._queue.clear()
        if transport is not None:
            if self._write_paused and not self._server._closing:
                transport.abort()  # the client is not reading: do not wait for the buffer
            else:
                transport.close()  # flushes first (when stopping, close() bounds the wait)

    def _detach(self) -> None:
        """Stop using the transport (it closed, or another protocol owns it now)."""
        self._transport = None
        self._parser = None  # breaks the parser ↔ protocol cycle
        self._stash = None
        self._upgrade_tail = None
        self._queue.clear()
        for timer in (self._idle_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._idle_timer = self._linger_timer = None
        self._admission.release(self)
        self._server._forget(self)

    # -- timers and shutdown -----------------------------------------------------------------------

    def _arm(self, when: float) -> None:
        self._idle_timer = self._loop.call_at(when, self._check_time)

    def _check_time(self) -> None:
        """The connection's one timer: 408 for a head or body that did not arrive in time, close an
        idle (or never used) connection, else re-arm.

        It fires at least every ``min(head, body, keep-alive timeouts)`` seconds and then arms for
        the next deadline if that is sooner, so each deadline is met exactly although no request
        (re-)arms a timer: a head that starts after one firing ends within the next period, which
        the following firing sees.
        """
        self._idle_timer = None
        transport = self._transport
        if transport is None:
            return
        server = self._server
        now = self._loop.time()
        period = server._timer_period
        idle_deadline = self._last_activity + server.keepalive_timeout
        if (
            self._in_message
            and not self._stop_reading
            and not self._read_paused
            and self._stash is None
            and not self._continue_due  # the client waits for our 100 Continue
        ):
            head = self._request is None
            limit = server.request_head_timeout if head else server.request_body_timeout
            deadline = self._phase_start + limit
            if now >= deadline or now >= idle_deadline:
                # RFC 9110 §15.5.9: a request that did not complete in time → 408, then close.
                what = "request head (request line and header fields)" if head else "request body"
                if now >= deadline:
                    message = f"The {what} did not arrive within {limit:g} s."
                else:
                    message = f"Nothing of the {what} arrived for {server.keepalive_timeout:g} s."
                self._fail(HttpError(408, "request_timeout", message))
                self._process()
                return
            self._arm(min(deadline, idle_deadline, now + period))
            return
        if self._pending is not None:
            self._arm(now + period)  # a handler runs: the call has its own timeout
            return
        if not self._established and not self._queue:
            deadline = self._phase_start + min(server.request_head_timeout, server.keepalive_timeout)
            if now >= deadline:
                server.logger.debug("closing a connection from %s that sent no request", self._peer)
                self._close()
                return
            self._arm(min(deadline, now + period))
            return
        if now >= idle_deadline:
            server.logger.debug("closing idle connection from %s", self._peer)
            self._close()
            return
        self._arm(min(idle_deadline, now + period))

    def _shed(self) -> None:
        """Admission closes this connection to make room for a new one (the listener is full)."""
        self._server.logger.debug("shedding the connection from %s: the listener is full", self._peer)
        self._close()

    def shutdown(self) -> None:
        """The server is closing: close now if idle, else after the response in progress."""
        if self._transport is not None and self._pending is None and not self._queue and not self._in_message:
            self._close()

    def abort(self) -> None:
        """Drop the connection now (the grace period is over)."""
        if self._transport is not None:
            self._transport.abort()


# -- the server -------------------------------------------------------------------------------------


class HttpServer:
    """Serves :class:`Routes` over HTTP/1.1 (and 1.0) on one or more listening sockets.

    Args:
        routes: the routing table (complete before serving).
        max_body_size: largest request body accepted, bytes (→ 413 and close).
        max_header_size: largest request line + header section, bytes (→ 431/414 and close).
        keepalive_timeout: seconds an idle connection stays open.
        request_head_timeout: seconds a request head may take (see :data:`REQUEST_HEAD_TIMEOUT`).
        request_body_timeout: seconds a request body may take (see :data:`REQUEST_BODY_TIMEOUT`).
        max_connections: connections held per listener (see :data:`MAX_CONNECTIONS`).
        max_unestablished: connections per listener that have not completed a request yet (see
            :data:`MAX_UNESTABLISHED`).
        on_error: ``(request | None, exc) → Response`` for handler exceptions and for
            :class:`HttpError` protocol errors (request is None when the request line could not
            be parsed). Default: HttpError → its status as JSON; anything else → logged with its
            traceback (logger ``methodhub.http``) and a generic 500.
        not_found: ``request → Response`` when no route matches (default: JSON 404).
        method_not_allowed: ``(request, allowed methods) → Response`` when routes match the path
            but not the method (default: JSON 405). The server adds ``Allow`` if the response
            lacks it (RFC 9110 §15.5.6).
        logger: where to log (default ``logging.getLogger("methodhub.http")``); DEBUG for
            per-connection events, ERROR for handler failures.
        shutdown_grace: seconds :meth:`close` waits for in-flight requests.

    Raises:
        ValueError: a non-positive limit or timeout.
    """

    def __init__(
        self,
        routes: Routes,
        *,
        max_body_size: int = MAX_BODY_SIZE,
        max_header_size: int = MAX_HEADER_SIZE,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        request_head_timeout: float = REQUEST_HEAD_TIMEOUT,
        request_body_timeout: float = REQUEST_BODY_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        max_unestablished: int = MAX_UNESTABLISHED,
        on_error: ErrorHook | None = None,
        not_found: NotFoundHook | None = None,
        method_not_allowed: MethodNotAllowedHook | None = None,
        logger: logging.Logger | None = None,
        shutdown_grace: float = SHUTDOWN_GRACE,
    ) -> None:
        for name, value in (
            ("max_body_size", max_body_size),
            ("max_header_size", max_header_size),
            ("keepalive_timeout", keepalive_timeout),
            ("request_head_timeout", request_head_timeout),
            ("request_body_timeout", request_body_timeout),
            ("max_connections", max_connections),
            ("max_unestablished", max_unestablished),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {value!r}")
        if shutdown_grace < 0:
            raise ValueError(f"shutdown_grace must not be negative, not {shutdown_grace!r}")
        self.routes = routes
        self.max_body_size = max_body_size
        self.max_header_size = max_header_size
        self.keepalive_timeout = keepalive_timeout
        self.request_head_timeout = request_head_timeout
        self.request_body_timeout = request_body_timeout
        self.max_connections = max_connections
        self.max_unestablished = max_unestablished
        self._timer_period = min(keepalive_timeout, request_head_timeout, request_body_timeout)
        self.shutdown_grace = shutdown_grace
        self.logger = logger or logging.getLogger("methodhub.http")
        self._admission = self._new_admission("http")  # for protocol_factory() without a listener
        self.admissions: list[Admission] = []
        """One per listener, in :meth:`listen` order."""
        self._on_error: ErrorHook = on_error or self._default_on_error
        self._not_found: NotFoundHook = not_found or _default_not_found
        self._method_not_allowed: MethodNotAllowedHook = method_not_allowed or _default_method_not_allowed
        self._connections: set[_HttpConnection] = set()
        self._servers: list[asyncio.Server] = []
        self._closing = False
        self._all_gone: asyncio.Future[None] | None = None

    def protocol_factory(self) -> asyncio.Protocol:
        """A protocol for one new connection: ``loop.create_server(server.protocol_factory, ...)``.
        Connections made this way share one admission (limits); :meth:`listen` gives each listener
        its own.

        Returns:
            The connection's protocol.
        """
        return _HttpConnection(self, self._admission)

    def _new_admission(self, name: str) -> Admission:
        return Admission(
            name,
            max_connections=self.max_connections,
            max_unestablished=self.max_unestablished,
            logger=self.logger,
        )

    async def listen(
        self, host: str, port: int, *, ssl: _ssl.SSLContext | None = None, reuse_port: bool = False
    ) -> asyncio.Server:
        """Start listening (several calls add several listeners).

        Args:
            host: the address to bind, e.g. ``"127.0.0.1"`` or ``"0.0.0.0"``.
            port: the port; 0 picks a free one (read it from ``server.sockets[0].getsockname()``).
            ssl: serve HTTPS with this context.
            reuse_port: set ``SO_REUSEPORT`` (several processes sharing one port).

        Returns:
            The listening :class:`asyncio.Server`.

        Raises:
            OSError: the address cannot be bound.
            RuntimeError: :meth:`close` was called.
        """
        if self._closing:
            raise RuntimeError("the server is closed")
        loop = asyncio.get_running_loop()
        log_accept_errors(loop)  # EMFILE on accept: one warning now and then, not a traceback storm
        scheme = "https" if ssl is not None else "http"
        admission = self._new_admission(f"{scheme} {host}:{port}")
        # A TLS handshake happens before connection_made (and admission): bound it like a head.
        server = await loop.create_server(
            lambda: _HttpConnection(self, admission),
            host,
            port,
            ssl=ssl,
            reuse_port=reuse_port or None,
            backlog=LISTEN_BACKLOG,
            ssl_handshake_timeout=self.request_head_timeout if ssl is not None else None,
        )
        sockname = server.sockets[0].getsockname() if server.sockets else None
        if sockname:
            admission.name = f"{scheme} {sockname[0]}:{sockname[1]}"
        self.admissions.append(admission)
        self._servers.append(server)
        return server

    async def close(self) -> None:
        """Stop listening, close idle connections, let in-flight requests finish (up to
        ``shutdown_grace`` seconds, answered with ``Connection: close``), then abort the rest."""
        self._closing = True
        for server in self._servers:
            server.close()
        for connection in list(self._connections):
            connection.shutdown()
        if self._connections:
            self._all_gone = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._all_gone), self.shutdown_grace)
            except TimeoutError:
                self.logger.debug("aborting %d connections after the shutdown grace", len(self._connections))
                for connection in list(self._connections):
                    connection.abort()
                await asyncio.sleep(0)  # let connection_lost run: it cancels pending handlers
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    @property
    def connection_count(self) -> int:
        """Open HTTP connections (upgraded ones no longer count)."""
        return len(self._connections)

    def _forget(self, connection: _HttpConnection) -> None:
        self._connections.discard(connection)
        if not self._connections and self._all_gone is not None and not self._all_gone.done():
            self._all_gone.set_result(None)

    def _default_on_error(self, request: Request | None, exc: BaseException) -> Response:
        if isinstance(exc, HttpError):
            return error_response(exc.status, exc.error, exc.message)
        where = f"{request.method} {request.path}" if request is not None else "a request"
        self.logger.error("error serving %s", where, exc_info=exc)
        return error_response(500, "internal_error", "The server could not handle the request.")

    def _not_found_handler(self, request: Request) -> Response:
        return self._not_found(request)

    def _method_not_allowed_handler(self, allowed: list[str]) -> Callable[[Request], Response]:
        def handler(request: Request) -> Response:
            response = self._method_not_allowed(request, allowed)
            if isinstance(response, Response) and not any(
                name.lower() == "allow" for name, _ in response.headers or ()
            ):
                response.headers = [*(response.headers or []), ("Allow", ", ".join(allowed))]
            return response

        return handler


def _default_not_found(request: Request) -> Response:
    return error_response(404, "not_found", f"No resource at {request.method} {request.path}.")


def _default_method_not_allowed(request: Request, allowed: list[str]) -> Response:
    return error_response(
        405,
        "method_not_allowed",
        f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}.",
        headers=[("Allow", ", ".join(allowed))],
    )
