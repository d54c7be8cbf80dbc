"""One HTTP/1.1 connection: an ``asyncio.Protocol`` driving httptools (llhttp) by its callbacks.

* the parser's callbacks build :class:`~methodhub.http.messages.Request` objects and append them to
  a per-connection queue; after each ``data_received`` the queue is served **one request at a
  time, in order** (RFC 9112 §9.3.2: pipelined responses go out in request order; serving them one
  by one also keeps non-idempotent POSTs from running concurrently, which §9.3.2 only allows for
  safe methods);
* a handler returns a :class:`~methodhub.http.messages.Response` (written at once), an
  ``asyncio.Future`` (a done-callback writes the response: no task), a coroutine (run as a task),
  or :class:`~methodhub.http.messages.SwitchProtocol`;
* protocol errors (400, 408, 413, 414, 431, 501) are queued behind the requests already received, so
  the error response, too, goes out in order; then the connection closes (lingering, RFC 9112 §9.6);
* time limits — a request head must arrive within ``request_head_timeout`` of its first byte (of the
  connection, for the first request), a body within ``request_body_timeout`` of the head, else 408;
  an idle connection closes after ``keepalive_timeout`` — are all checked by one timer per
  connection, re-armed only when it fires, so no request arms or cancels a timer;
* back-pressure both ways comes from :class:`~methodhub.http.flow.FlowControl`, responses' bytes
  from :mod:`methodhub.http.wire`;
* everything written (responses, ``100 Continue``, an upgrade's 101) goes through the connection's
  :class:`~methodhub.burst.Burst`: one ``transport.write`` per loop iteration, in order; it is
  flushed before a close, a half-close or a hand-over of the transport, dropped on abort.

A connection knows its server only through a :class:`~methodhub.http.context.ServerContext`: the
limits, routes and hooks every connection of one server shares, and the set of open connections.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from typing import Any, TypeAlias, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, parse_url

from methodhub.admission import Admission
from methodhub.burst import Burst, flusher_for
from methodhub.http.context import ServerContext
from methodhub.http.flow import FEED_SLICE, MAX_PIPELINE, FlowControl
from methodhub.http.messages import Deferred, HttpError, Request, Response, StreamResponse, SwitchProtocol
from methodhub.http.routing import MethodNotAllowed, RouteNotFound
from methodhub.http.wire import (
    CONTINUE,
    FALLBACK_500,
    encode_response,
    parse_query,
    stream_head,
    switching_protocols,
)

__all__ = ["HttpConnection"]

_LINGER_TIMEOUT = 2.0
"""Seconds we keep reading (and discarding) after an error response before closing, so the client
can read the response instead of getting a TCP reset for data it sent after it (RFC 9112 §9.6;
Apache's lingering close waits 2 s per read)."""


# -- request decoding ----------------------------------------------------------------------------

_METHODS: dict[bytes, str] = {
    m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
}
_HEADER_NAMES: dict[bytes, str] = {}
_HEADER_NAME_CACHE_SIZE = 256  # bounded: clients choose the names


def _peer_of(transport: asyncio.BaseTransport) -> tuple[str, int] | None:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return None


class _Stop(Exception):
    """Raised from a parser callback to stop parsing data we will not serve."""


# A queued request: (request or None for garbage, keep-alive, upgrade, protocol error or None).
_Entry: TypeAlias = tuple[Request | None, bool, bool, HttpError | None]


class HttpConnection(FlowControl):
    """One HTTP/1.1 connection: parser callbacks, the in-order request queue, response writing."""

    __slots__ = (
        "_admission",
        "_body",
        "_body_size",
        "_context",
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
        "_out",
        "_parser",
        "_peer",
        "_pending",
        "_phase_start",
        "_queue",
        "_raw_head",
        "_rejection",
        "_request",
        "_scheme",
        "_stop_reading",
        "_upgrade",
        "_upgrade_tail",
        "_url",
    )

    def __init__(self, context: ServerContext, admission: Admission) -> None:
        super().__init__()
        self._context = context
        self._admission = admission
        self._loop = asyncio.get_running_loop()
        self._out = Burst(flusher_for(self._loop))  # every write: one transport.write per iteration
        self._match = context.routes.match
        self._max_body = context.max_body_size
        self._max_head = context.max_header_size
        self._parser: HttpRequestParser | None = HttpRequestParser(self)
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
        self._current: tuple[Request, bool, bool, Any] | None = None
        self._pending: asyncio.Future[Any] | None = None
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
        self._out.transport = transport
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
        context = self._context
        context.connections.add(self)
        now = self._loop.time()
        self._last_activity = self._phase_start = now
        context.logger.debug("connection from %s", self._peer)
        if context.closing or not self._admission.register(self, self._shed, fd):
            transport.close()
            return
        self._arm(now + context.timer_period)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection: cancel the pending handler and timers; nothing is written after this.

        Args:
            exc: the error that broke the connection, or None for a clean close/EOF.
        """
        self._context.logger.debug("connection from %s closed: %s", self._peer, exc or "clean")
        self._detach()
        pending = self._pending
        self._pending = None
        if pending is not None and not pending.done():
            pending.cancel()  # the client is gone: let the hub stop working on the call
        elif pending is not None and not pending.cancelled():
            pending.exception()  # ended as the client went: retrieved, or asyncio logs it

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

    def _writable(self) -> None:
        """The transport drained (:meth:`~FlowControl.resume_writing`): serve the pipeline again."""
        if self._pending is None and self._queue:
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
            parse_query(raw_query) if raw_query else {},
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
                self._out.write(CONTINUE)

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
            if len(data) <= FEED_SLICE:
                self._new_message = False
                parser.feed_data(data)
                if self._in_message and self._request is None:
                    self._count_raw_head(len(data))
            else:
                with memoryview(data) as view:
                    total = len(data)
                    while base < total:
                        piece = view[base : base + FEED_SLICE]
                        self._new_message = False
                        parser.feed_data(piece)
                        if self._in_message and self._request is None:
                            self._count_raw_head(len(piece))
                        base += FEED_SLICE
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
        if self._raw_head > self._max_head + FEED_SLICE:  # slack for that over-count
            self._fail(
                HttpError(
                    431,
                    "request_header_fields_too_large",
                    f"The request line and header fields exceed {self._max_head} bytes.",
                )
            )

    def _fail(self, error: HttpError) -> None:
        """Queue ``error`` behind the requests already received; read nothing more."""
        self._context.logger.debug("protocol error from %s: %s %s", self._peer, error.status, error.message)
        self._queue.append((self._request, False, False, error))
        self._stop_reading = True
        self._in_message = False
        self._continue_due = False
        self._request = None

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
                self._phase_start = self._loop.time()  # a message we stopped reading gets its time again
                self._resume_reading()
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
            self._out.write(CONTINUE)

    def _run(self, request: Request, keep_alive: bool, upgrade: bool) -> None:
        """Route ``request``, call its handler, and write or await the result."""
        try:
            handler, request.path_params = self._match(request.method, request.path)
        except RouteNotFound:
            handler = self._context.not_found
        except MethodNotAllowed as not_allowed:
            handler = self._context.method_not_allowed_handler(not_allowed.allowed)
        try:
            result = handler(request)
        except Exception as failure:  # its own name: one ``exc`` for both clauses crashed compiled code
            result = self._error_response(request, failure)
        if type(result) is Response:
            self._respond(request, result, keep_alive, upgrade)
        elif type(result) is Deferred:
            self._await(result.future, request, keep_alive, upgrade, result.respond)
        elif asyncio.isfuture(result):
            self._await(result, request, keep_alive, upgrade)
        elif asyncio.iscoroutine(result):
            self._await(self._loop.create_task(result), request, keep_alive, upgrade)
        else:
            self._deliver(request, keep_alive, upgrade, result)

    def _await(
        self,
        future: asyncio.Future[Any],
        request: Request,
        keep_alive: bool,
        upgrade: bool,
        respond: Any = None,
    ) -> None:  # respond: a Deferred's
        self._pending = future
        self._current = (request, keep_alive, upgrade, respond)
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
        request, keep_alive, upgrade, respond = current
        if future.cancelled():
            result: Any = self._error_response(request, asyncio.CancelledError("the handler was cancelled"))
        elif respond is not None:  # a Deferred: its response from the future, here
            try:
                result = respond(future)
            except Exception as failure:
                result = self._error_response(request, failure)
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
        elif isinstance(result, StreamResponse):
            self._stream(request, result)
        else:
            error = TypeError(f"a handler returned {type(result).__name__}, not a Response")
            self._respond(request, self._error_response(request, error), keep_alive, upgrade)

    def _error_response(self, request: Request | None, exc: BaseException) -> Response:
        """``on_error(request, exc)``, falling back to the default if the hook fails."""
        context = self._context
        try:
            response = context.on_error(request, exc)
            if isinstance(response, Response):
                return response
            raise TypeError(f"on_error returned {type(response).__name__}, not a Response")
        except Exception:
            context.logger.exception("on_error failed for %r", exc)
            return context.default_on_error(request, exc)

    def _respond(self, request: Request, response: Response, keep_alive: bool, upgrade: bool) -> None:
        """Write ``response`` (into this iteration's burst); close afterwards if the exchange says so."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        close = not keep_alive or upgrade or self._context.closing
        headers = request.headers
        echo = not close and "connection" in headers and "keep-alive" in headers["connection"].lower()
        try:
            data, close = encode_response(response, request.method == "HEAD", close, echo)
        except ValueError as exc:
            fallback = self._error_response(request, exc)
            try:
                data, close = encode_response(fallback, request.method == "HEAD", close, echo)
            except ValueError:
                data, close = FALLBACK_500, True
        self._out.write(data)
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
            data, _ = encode_response(response, request is not None and request.method == "HEAD", True, False)
        except ValueError:
            data = FALLBACK_500
        out = self._out
        out.write(data)
        self._stop_reading = True
        self._queue.clear()
        out.flush()  # before the half-close or the close: what is queued goes first
        if transport.can_write_eof():
            # RFC 9112 §9.6: half-close, keep reading (and discarding) until the client closes or a
            # short timeout, so data it already sent does not turn into a reset that loses our answer.
            transport.write_eof()
            self._linger_timer = self._loop.call_later(_LINGER_TIMEOUT, transport.close)
            self._resume_reading()
        else:
            transport.close()

    def _switch(self, request: Request, upgrade: bool, switch: SwitchProtocol) -> None:
        """Write 101 and hand the transport to ``switch.protocol`` with the bytes already received."""
        transport = self._transport
        assert transport is not None
        try:
            if not upgrade:  # RFC 9110 §7.8: only to a protocol the client asked for
                raise ValueError("a handler returned SwitchProtocol for a request without Upgrade")
            head = switching_protocols(switch.headers, request.headers.get("upgrade"))
        except ValueError as exc:
            self._respond(request, self._error_response(request, exc), False, True)
            return
        self._hand_over(head, switch.protocol)

    def _stream(self, request: Request, stream: StreamResponse) -> None:
        """Write a 200 head without a length and hand the transport to ``stream.protocol``."""
        try:
            head = stream_head(stream.content_type, stream.headers)
        except ValueError as exc:
            self._respond(request, self._error_response(request, exc), False, True)
            return
        if request.method == "HEAD":
            self._respond(request, Response(200, b"", stream.content_type, stream.headers), False, False)
            return
        self._hand_over(head, stream.protocol)

    def _hand_over(self, head: bytes, protocol: asyncio.BaseProtocol) -> None:
        transport = self._transport
        assert transport is not None
        out = self._out
        out.write(head)
        out.flush()  # the new protocol writes to the transport itself: ours goes first
        tail = bytes(self._upgrade_tail or b"")
        self._detach()
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
            if self._write_paused and not self._context.closing:
                self._out.discard()
                transport.abort()  # the client is not reading: do not wait for the buffer
            else:
                self._out.flush()
                transport.close()  # flushes first (when stopping, close() bounds the wait)

    def _detach(self) -> None:
        """Stop using the transport (it closed, or another protocol owns it now)."""
        self._transport = None
        self._out.discard()  # lost: nothing more reaches the client (handed over: flushed already)
        self._out.transport = None
        self._parser = None  # breaks the parser ↔ protocol cycle
        self._stash = None
        self._upgrade_tail = None
        self._queue.clear()
        for timer in (self._idle_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._idle_timer = self._linger_timer = None
        self._admission.release(self)
        self._context.forget(self)

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
        context = self._context
        now = self._loop.time()
        period = context.timer_period
        idle_deadline = self._last_activity + context.keepalive_timeout
        if (
            self._in_message
            and not self._stop_reading
            and not self._read_paused
            and self._stash is None
            and not self._continue_due  # the client waits for our 100 Continue
        ):
            head = self._request is None
            limit = context.request_head_timeout if head else context.request_body_timeout
            deadline = self._phase_start + limit
            if now >= deadline or now >= idle_deadline:
                # RFC 9110 §15.5.9: a request that did not complete in time → 408, then close.
                what = "request head (request line and header fields)" if head else "request body"
                if now >= deadline:
                    message = f"The {what} did not arrive within {limit:g} s."
                else:
                    message = f"Nothing of the {what} arrived for {context.keepalive_timeout:g} s."
                self._fail(HttpError(408, "request_timeout", message))
                self._process()
                return
            self._arm(min(deadline, idle_deadline, now + period))
            return
        if self._pending is not None:
            self._arm(now + period)  # a handler runs: the call has its own timeout
            return
        if not self._established and not self._queue:
            deadline = self._phase_start + min(context.request_head_timeout, context.keepalive_timeout)
            if now >= deadline:
                context.logger.debug("closing a connection from %s that sent no request", self._peer)
                self._close()
                return
            self._arm(min(deadline, now + period))
            return
        if now >= idle_deadline:
            context.logger.debug("closing idle connection from %s", self._peer)
            self._close()
            return
        self._arm(min(idle_deadline, now + period))

    def _shed(self) -> None:
        """Admission closes this connection to make room for a new one (the listener is full)."""
        self._context.logger.debug("shedding the connection from %s: the listener is full", self._peer)
        self._close()

    def shutdown(self) -> None:
        """The server is closing: close now if idle, else after the response in progress."""
        if self._transport is not None and self._pending is None and not self._queue and not self._in_message:
            self._close()

    def abort(self) -> None:
        """Drop the connection now (the grace period is over)."""
        if self._transport is not None:
            self._out.discard()
            self._transport.abort()
