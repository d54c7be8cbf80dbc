"""The HTTP server's message types, as handlers see them: :class:`Request`, :class:`Response`,
:class:`SwitchProtocol` (take over the connection after an ``Upgrade``), :class:`HttpError`, and the
signatures of a handler and of the server's hooks.

Nothing here does I/O or encodes bytes (:mod:`methodhub.http.wire` does that).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import orjson

__all__ = [
    "Deferred",
    "ErrorHook",
    "Handler",
    "HttpError",
    "MethodNotAllowedHook",
    "NotFoundHook",
    "Request",
    "Response",
    "StreamResponse",
    "SwitchProtocol",
]


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


@dataclass(slots=True)
class StreamResponse:
    """Returned by a handler to answer ``200`` with content of unknown length that ``protocol``
    writes for as long as it likes (e.g. Server-Sent Events, ``text/event-stream``).

    The server writes the head — status 200, ``content_type``, ``headers``, ``Connection: close``
    and no ``Content-Length``: the content ends when the connection closes (RFC 9112 §6.3 item 8) —
    then hands the transport over as it does for :class:`SwitchProtocol`. Bytes the client sends
    afterwards go to ``protocol`` (which may ignore them). For HEAD only the head is sent.

    Attributes:
        content_type: the ``Content-Type``.
        headers: more fields, e.g. ``[("cache-control", "no-store")]``; no framing fields.
        protocol: writes the content to the transport it is given and closes it when done.
    """

    content_type: str
    headers: list[tuple[str, str]]
    protocol: asyncio.BaseProtocol


@dataclass(slots=True)
class Deferred:
    """Returned by a handler whose response waits for a future: ``respond(future)``, called once
    ``future`` is done (not cancelled), gives the response; an exception it raises is answered as a
    handler's (500). Unlike returning a future of the response, the response is made and written in
    the future's own done-callback: no second future, and one loop turn sooner. The connection
    going away cancels ``future``.
    """

    future: asyncio.Future[Any]
    respond: Callable[[asyncio.Future[Any]], Response]


_Result: TypeAlias = Response | SwitchProtocol | StreamResponse
Handler: TypeAlias = Callable[[Request], _Result | Deferred | Awaitable[_Result]]
"""A route handler: returns a Response directly, a :class:`Deferred`, a Future of one (no task), or
a coroutine."""


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


ErrorHook: TypeAlias = Callable[[Request | None, BaseException], Response]
NotFoundHook: TypeAlias = Callable[[Request], Response]
MethodNotAllowedHook: TypeAlias = Callable[[Request, list[str]], Response]
