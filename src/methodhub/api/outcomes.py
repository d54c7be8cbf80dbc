"""From the engine's future of a call outcome to the HTTP server's future of a response.

Every front door answers a call the same way: the engine's ``Future[CallOutcome]`` becomes a
``Future[Response]`` through a done-callback (no task per call), a typed ``HubError`` becomes that
front door's error response, and an HTTP client that goes away abandons the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from methodhub.calls import CallOutcome
from methodhub.errors import HubError
from methodhub.http.messages import Deferred, Response


def response_future(
    source: asyncio.Future[CallOutcome],
    on_outcome: Callable[[CallOutcome], Response],
    on_error: Callable[[HubError], Response],
) -> asyncio.Future[Response]:
    """A future of the HTTP response for ``source``; cancelling it abandons ``source``.

    Args:
        source: the engine's future for the call.
        on_outcome: the response for the device's answer.
        on_error: the response for a :class:`HubError` (offline, timeout, ...); any other exception
            propagates (the HTTP server answers 500 and logs it).
    """
    out: asyncio.Future[Response] = source.get_loop().create_future()

    def done(fut: asyncio.Future[CallOutcome]) -> None:
        if fut.cancelled():
            if not out.done():
                out.cancel()
            return
        # Retrieved even when nobody waits any more: the caller may have gone away in the same loop
        # iteration the engine answered (``abandoned`` had not run yet), and an exception never
        # retrieved is logged with a traceback when the future is collected.
        exc = fut.exception()
        if out.done():
            return
        if exc is None:
            out.set_result(on_outcome(fut.result()))
        elif isinstance(exc, HubError):
            out.set_result(on_error(exc))
        else:
            out.set_exception(exc)

    def abandoned(fut: asyncio.Future[Response]) -> None:
        if fut.cancelled() and not source.done():
            source.cancel()

    source.add_done_callback(done)
    out.add_done_callback(abandoned)
    return out


def deferred_response(
    source: asyncio.Future[CallOutcome],
    on_outcome: Callable[[CallOutcome], Response],
    on_error: Callable[[HubError], Response],
) -> Deferred:
    """The same as :func:`response_future` for a handler that returns it to the HTTP server
    directly: the response is made in ``source``'s own done-callback (no second future, one loop
    turn sooner); the connection going away cancels ``source``. Not awaitable."""

    def respond(fut: asyncio.Future[CallOutcome]) -> Response:
        exc = fut.exception()
        if exc is None:
            return on_outcome(fut.result())
        if isinstance(exc, HubError):
            return on_error(exc)
        raise exc

    return Deferred(source, respond)
