"""A small, fast HTTP/1.1 server: ``asyncio.Protocol`` + httptools (llhttp), one connection per protocol.

Why not ASGI: the hub's target is 10,000 method calls/s through this API on two cores shared with
the load generator and the device farm, which leaves a few tens of µs per request for everything.
An ASGI server spends that much on the ASGI dict/messages alone. Here a request costs the parser's
callbacks, one :class:`~methodhub.http.messages.Request`, one route lookup, the handler, and its
share of one ``transport.write`` per loop iteration (:mod:`methodhub.burst`).

The package, by job:

* :mod:`methodhub.http.messages` — Request, Response, SwitchProtocol, HttpError, handler and hook types;
* :mod:`methodhub.http.wire` — a Response to bytes (and :func:`~methodhub.http.wire.error_response`);
* :mod:`methodhub.http.flow` — back-pressure: the pipeline bound, pause/resume reading and writing;
* :mod:`methodhub.http.protocol` — one connection: parser callbacks, the in-order queue, time limits;
* :mod:`methodhub.http.routing` — ``(method, path)`` → handler;
* this module — :class:`HttpServer`: listeners, admission, the connections, shutdown.

Each listener admits connections through an :class:`~methodhub.admission.Admission`: at most
``max_connections``, of which ``max_unestablished`` have not completed a request yet; when full, the
oldest never-completed, then the longest idle connection is closed to make room (a connection whose
handler is running is never shed), and so when the fd limit gets near.

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
import logging
import ssl as _ssl

from methodhub.admission import Admission, log_accept_errors
from methodhub.http.context import ServerContext
from methodhub.http.messages import ErrorHook, MethodNotAllowedHook, NotFoundHook
from methodhub.http.protocol import HttpConnection
from methodhub.http.routing import Routes

__all__ = [
    "KEEPALIVE_TIMEOUT",
    "LISTEN_BACKLOG",
    "MAX_BODY_SIZE",
    "MAX_CONNECTIONS",
    "MAX_HEADER_SIZE",
    "MAX_UNESTABLISHED",
    "REQUEST_BODY_TIMEOUT",
    "REQUEST_HEAD_TIMEOUT",
    "SHUTDOWN_GRACE",
    "HttpServer",
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

SHUTDOWN_GRACE = 5.0
"""Default seconds :meth:`HttpServer.close` gives in-flight requests before aborting connections."""

LISTEN_BACKLOG = 1024
"""Pending connections the kernel may queue for us: a load generator opening hundreds of
connections at once should not see refusals (asyncio's default is 100)."""


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
        self.max_connections = max_connections
        self.max_unestablished = max_unestablished
        self.shutdown_grace = shutdown_grace
        self.logger = logger or logging.getLogger("methodhub.http")
        self._context = ServerContext(
            routes,
            max_body_size=max_body_size,
            max_header_size=max_header_size,
            keepalive_timeout=keepalive_timeout,
            request_head_timeout=request_head_timeout,
            request_body_timeout=request_body_timeout,
            logger=self.logger,
            on_error=on_error,
            not_found=not_found,
            method_not_allowed=method_not_allowed,
        )
        self._admission = self._new_admission("http")  # for protocol_factory() without a listener
        self.admissions: list[Admission] = []
        """One per listener, in :meth:`listen` order."""
        self._servers: list[asyncio.Server] = []

    def protocol_factory(self) -> asyncio.Protocol:
        """A protocol for one new connection: ``loop.create_server(server.protocol_factory, ...)``.
        Connections made this way share one admission (limits); :meth:`listen` gives each listener
        its own.

        Returns:
            The connection's protocol.
        """
        return HttpConnection(self._context, self._admission)

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
        context = self._context
        if context.closing:
            raise RuntimeError("the server is closed")
        loop = asyncio.get_running_loop()
        log_accept_errors(loop)  # EMFILE on accept: one warning now and then, not a traceback storm
        scheme = "https" if ssl is not None else "http"
        admission = self._new_admission(f"{scheme} {host}:{port}")
        # A TLS handshake happens before connection_made (and admission): bound it like a head.
        server = await loop.create_server(
            lambda: HttpConnection(context, admission),
            host,
            port,
            ssl=ssl,
            reuse_port=reuse_port or None,
            backlog=LISTEN_BACKLOG,
            ssl_handshake_timeout=context.request_head_timeout if ssl is not None else None,
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
        context = self._context
        context.closing = True
        for server in self._servers:
            server.close()
        connections = context.connections
        for connection in list(connections):
            connection.shutdown()
        if connections:
            all_gone = context.all_gone = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(all_gone), self.shutdown_grace)
            except TimeoutError:
                self.logger.debug("aborting %d connections after the shutdown grace", len(connections))
                for connection in list(connections):
                    connection.abort()
                await asyncio.sleep(0)  # let connection_lost run: it cancels pending handlers
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    @property
    def connection_count(self) -> int:
        """Open HTTP connections (upgraded ones no longer count)."""
        return len(self._context.connections)
