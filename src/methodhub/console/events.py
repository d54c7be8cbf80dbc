"""``GET /console/events``: device connection changes as Server-Sent Events, and
``GET /console/session``: which rights the caller's SAS token grants.

A browser's ``EventSource`` cannot set headers, so the events endpoint takes the service SAS token
(the whole ``SharedAccessSignature sr=...`` text) in the ``sas`` query parameter; it is verified as
the ``Authorization`` header is everywhere else and needs ``RegistryRead``. A token in a URL can end
up in logs, so the console signs short-lived ones (docs/console.md).

The events are this node's: the gateway tells :class:`ConsoleEvents` when a device's session gets
or loses a connection here. The router offers no presence events to listen to across nodes, so the
console also re-reads ``GET /devices`` (cluster-wide connection states) every few seconds.

Stream::

    event: hello        data: {"node": "...", "connected": ["dev1", "dev2/mod"]}
    event: connection   data: {"target": "dev1", "connected": true, "at": 1764660000.5}
    : ping              (every 15 s, so proxies and the browser keep the stream open)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

import orjson

from methodhub.dialects.azure.errors import azure_error
from methodhub.dialects.azure.service_auth import ServiceAuthenticator
from methodhub.errors import HubError
from methodhub.http.messages import Request, Response, StreamResponse
from methodhub.http.routing import Routes
from methodhub.registry import Right

__all__ = ["HEARTBEAT_SECONDS", "MAX_STREAMS", "ConsoleEvents"]

HEARTBEAT_SECONDS = 15.0
MAX_STREAMS = 256
"""Event streams open at once on a node; more get 503 (each holds a connection)."""
_MAX_BUFFERED = 256 * 1024
"""A stream whose client reads nothing for this many bytes is closed."""


def _event(name: str, data: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class _Stream(asyncio.Protocol):
    def __init__(self, owner: ConsoleEvents) -> None:
        self.owner = owner
        self.transport: asyncio.WriteTransport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)  # uvloop's is not a subclass
        self.owner.streams.add(self)
        self.send(_event("hello", {"node": self.owner.node, "connected": sorted(self.owner.connected())}))
        self._arm()

    def _arm(self) -> None:
        self.timer = asyncio.get_running_loop().call_later(HEARTBEAT_SECONDS, self._ping)

    def _ping(self) -> None:
        self.send(b": ping\n\n")
        if self.transport is not None:
            self._arm()

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > _MAX_BUFFERED:
            transport.abort()
            return
        transport.write(data)

    def data_received(self, data: bytes) -> None:
        pass  # nothing is expected from the client

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.timer is not None:
            self.timer.cancel()
        self.owner.streams.discard(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class ConsoleEvents:
    """Fans device connection changes out to the open event streams.

    Args:
        auth: verifies the SAS tokens.
        node: this node's name (sent in ``hello``).
        connected: the identity keys connected to this node now (for ``hello``).
    """

    def __init__(self, auth: ServiceAuthenticator, node: str, connected: Callable[[], list[str]]) -> None:
        self.auth = auth
        self.node = node
        self.connected = connected
        self.streams: set[_Stream] = set()

    def register(self, routes: Routes) -> None:
        routes.add("GET", "/console/events", self._events)
        routes.add("GET", "/console/session", self._session)

    def connection_changed(self, target: str, connected: bool) -> None:
        """Called by the gateway when ``target``'s session gets (True) or loses a connection."""
        if not self.streams:
            return
        data = _event("connection", {"target": target, "connected": connected, "at": time.time()})
        for stream in list(self.streams):
            stream.send(data)

    async def _events(self, request: Request) -> Response | StreamResponse:
        try:
            sas, host = request.query.get("sas"), request.headers.get("host")
            await self.auth.authenticate(sas, host, Right.REGISTRY_READ)
        except HubError as exc:
            return azure_error(exc)
        if len(self.streams) >= MAX_STREAMS:
            return Response.json(
                {"error": "too_many_streams", "message": f"This node serves {MAX_STREAMS} event streams."},
                503,
                [("retry-after", "5")],
            )
        return StreamResponse(
            "text/event-stream",
            [("cache-control", "no-store"), ("x-accel-buffering", "no")],
            _Stream(self),
        )

    async def _session(self, request: Request) -> Response:
        """``{"policy": NAME, "rights": [...]}`` for the ``Authorization`` token (any right)."""
        header, host = request.headers.get("authorization"), request.headers.get("host")
        rights: list[str] = []
        policy = ""
        error: HubError | None = None
        for right in Right:
            try:
                policy = await self.auth.authenticate(header, host, right)
                rights.append(str(right))
            except HubError as exc:
                error = exc
        if not rights:
            assert error is not None
            return azure_error(error)
        return Response.json({"policy": policy, "rights": rights, "node": self.node})

    def close(self) -> None:
        """Close every stream (the hub is stopping)."""
        for stream in list(self.streams):
            stream.close()
