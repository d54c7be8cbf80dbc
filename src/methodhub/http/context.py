"""What the connections of one HTTP server share: :class:`ServerContext`.

The server (:class:`~methodhub.http.server.HttpServer`) makes one context and gives it to every
connection (:class:`~methodhub.http.protocol.HttpConnection`) it creates: the limits, the routes,
the hooks (with their defaults), and the two pieces of server state a connection changes — the set
of open connections and whether the server is closing. A connection never sees the server, and the
server sees a connection only as a :class:`ServedConnection`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from methodhub.http.messages import (
    ErrorHook,
    HttpError,
    MethodNotAllowedHook,
    NotFoundHook,
    Request,
    Response,
)
from methodhub.http.routing import Routes
from methodhub.http.wire import error_response

__all__ = ["ServedConnection", "ServerContext"]


class ServedConnection(Protocol):
    """A connection as the server sees it when it shuts down."""

    def shutdown(self) -> None:
        """The server is closing: close now if idle, else after the response in progress."""

    def abort(self) -> None:
        """Drop the connection now (the grace period is over)."""


class ServerContext:
    """What the connections of one server share: its limits, routes and hooks, and the server
    state they change (the set of open connections, whether the server is closing).

    Args:
        routes: the routing table.
        max_body_size: largest request body accepted, bytes.
        max_header_size: largest request line + header section, bytes.
        keepalive_timeout: seconds an idle connection stays open.
        request_head_timeout: seconds a request head may take.
        request_body_timeout: seconds a request body may take.
        logger: where connections log.
        on_error: ``(request | None, exc) → Response``; None for :meth:`default_on_error`.
        not_found: ``request → Response`` when no route matches; None for a JSON 404.
        method_not_allowed: ``(request, allowed) → Response`` when only the method is wrong; None
            for a JSON 405.

    Attributes:
        timer_period: the longest a connection's timer sleeps (the shortest of the timeouts).
        connections: the open HTTP connections (upgraded ones leave it).
        closing: the server is shutting down: answer with ``Connection: close``, admit no one.
        all_gone: set by the server while it waits for the last connection to go.
    """

    __slots__ = (
        "all_gone",
        "closing",
        "connections",
        "keepalive_timeout",
        "logger",
        "max_body_size",
        "max_header_size",
        "method_not_allowed",
        "not_found",
        "on_error",
        "request_body_timeout",
        "request_head_timeout",
        "routes",
        "timer_period",
    )

    def __init__(
        self,
        routes: Routes,
        *,
        max_body_size: int,
        max_header_size: int,
        keepalive_timeout: float,
        request_head_timeout: float,
        request_body_timeout: float,
        logger: logging.Logger,
        on_error: ErrorHook | None = None,
        not_found: NotFoundHook | None = None,
        method_not_allowed: MethodNotAllowedHook | None = None,
    ) -> None:
        self.routes = routes
        self.max_body_size = max_body_size
        self.max_header_size = max_header_size
        self.keepalive_timeout = keepalive_timeout
        self.request_head_timeout = request_head_timeout
        self.request_body_timeout = request_body_timeout
        self.timer_period = min(keepalive_timeout, request_head_timeout, request_body_timeout)
        self.logger = logger
        self.on_error: ErrorHook = on_error or self.default_on_error
        self.not_found: NotFoundHook = not_found or _default_not_found
        self.method_not_allowed: MethodNotAllowedHook = method_not_allowed or _default_method_not_allowed
        self.connections: set[ServedConnection] = set()
        self.closing = False
        self.all_gone: asyncio.Future[None] | None = None

    def default_on_error(self, request: Request | None, exc: BaseException) -> Response:
        """HttpError → its status as JSON; anything else → logged with its traceback and a generic 500.

        Args:
            request: the request being served, or None when it could not be parsed.
            exc: what went wrong.

        Returns:
            The error response.
        """
        if isinstance(exc, HttpError):
            return error_response(exc.status, exc.error, exc.message)
        where = f"{request.method} {request.path}" if request is not None else "a request"
        self.logger.error("error serving %s", where, exc_info=exc)
        return error_response(500, "internal_error", "The server could not handle the request.")

    def method_not_allowed_handler(self, allowed: list[str]) -> Callable[[Request], Response]:
        """A handler answering with the ``method_not_allowed`` hook, adding ``Allow`` if it lacks it
        (RFC 9110 §15.5.6).

        Args:
            allowed: the methods the path accepts.

        Returns:
            The handler.
        """

        def handler(request: Request) -> Response:
            response = self.method_not_allowed(request, allowed)
            if isinstance(response, Response) and not any(
                name.lower() == "allow" for name, _ in response.headers or ()
            ):
                response.headers = [*(response.headers or []), ("Allow", ", ".join(allowed))]
            return response

        return handler

    def forget(self, connection: ServedConnection) -> None:
        """``connection`` closed or was handed to another protocol; wake the server if it was the last.

        Args:
            connection: the connection that is gone.
        """
        connections = self.connections
        connections.discard(connection)
        if not connections and self.all_gone is not None and not self.all_gone.done():
            self.all_gone.set_result(None)


def _default_not_found(request: Request) -> Response:
    return error_response(404, "not_found", f"No resource at {request.method} {request.path}.")


def _default_method_not_allowed(request: Request, allowed: list[str]) -> Response:
    return error_response(
        405,
        "method_not_allowed",
        f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}.",
        headers=[("Allow", ", ".join(allowed))],
    )
