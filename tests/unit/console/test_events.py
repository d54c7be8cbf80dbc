"""ConsoleEvents without a hub: the stream limit, fan-out, a client that stops reading, heartbeats."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from methodhub.console import events as console_events
from methodhub.console.events import ConsoleEvents
from methodhub.dialects.azure.service_auth import ServiceAuthenticator
from methodhub.errors import ErrorKind, HubError
from methodhub.http.messages import Request, Response, StreamResponse
from methodhub.registry import Right


class FakeAuth:
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.asked: list[tuple[str | None, Right]] = []

    async def authenticate(self, header: str | None, host: str | None, right: Right) -> str:
        self.asked.append((header, right))
        if not self.ok:
            raise HubError(ErrorKind.UNAUTHORIZED, "no")
        return "p"


class FakeTransport:
    def __init__(self, buffered: int = 0) -> None:
        self.written: list[bytes] = []
        self.pinged = asyncio.Event()
        self.buffered = buffered
        self.aborted = self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)
        if self.written.count(b": ping\n\n") >= 2:
            self.pinged.set()

    def is_closing(self) -> bool:
        return self.aborted or self.closed

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closed = True


def _events(auth: FakeAuth, connected: list[str] | None = None) -> ConsoleEvents:
    return ConsoleEvents(cast(ServiceAuthenticator, auth), "node-1", lambda: list(connected or []))


async def test_hello_then_connection_events_for_every_stream() -> None:
    auth = FakeAuth()
    owner = _events(auth, ["b", "a"])
    result = await owner._events(Request("GET", "/console/events", query={"sas": "tok"}))
    assert isinstance(result, StreamResponse) and result.content_type == "text/event-stream"
    assert auth.asked == [("tok", Right.REGISTRY_READ)]
    first, second = FakeTransport(), FakeTransport()
    result.protocol.connection_made(cast(asyncio.BaseTransport, first))
    other = await owner._events(Request("GET", "/console/events", query={"sas": "tok"}))
    assert isinstance(other, StreamResponse)
    other.protocol.connection_made(cast(asyncio.BaseTransport, second))
    assert first.written == [b'event: hello\ndata: {"node":"node-1","connected":["a","b"]}\n\n']
    owner.connection_changed("dev", True)
    expected = b'event: connection\ndata: {"target":"dev","connected":true,"at":'
    for transport in (first, second):
        assert transport.written[-1].startswith(expected)
    result.protocol.connection_lost(None)
    owner.connection_changed("dev", False)
    assert len(first.written) == 2 and len(second.written) == 3
    owner.close()
    assert second.closed


async def test_a_refused_token_gets_the_azure_error() -> None:
    owner = _events(FakeAuth(ok=False))
    result = await owner._events(Request("GET", "/console/events"))
    assert isinstance(result, Response) and result.status == 401


async def test_streams_are_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_events, "MAX_STREAMS", 1)
    owner = _events(FakeAuth())
    first = await owner._events(Request("GET", "/console/events"))
    assert isinstance(first, StreamResponse)
    first.protocol.connection_made(cast(asyncio.BaseTransport, FakeTransport()))
    refused = await owner._events(Request("GET", "/console/events"))
    assert isinstance(refused, Response) and refused.status == 503
    assert refused.headers == [("retry-after", "5")]
    first.protocol.connection_lost(None)
    assert isinstance(await owner._events(Request("GET", "/console/events")), StreamResponse)


async def test_a_client_that_stops_reading_is_dropped() -> None:
    owner = _events(FakeAuth())
    result = await owner._events(Request("GET", "/console/events"))
    assert isinstance(result, StreamResponse)
    transport = FakeTransport()
    result.protocol.connection_made(cast(asyncio.BaseTransport, transport))
    transport.buffered = 256 * 1024 + 1
    owner.connection_changed("dev", True)
    assert transport.aborted and len(transport.written) == 1  # the hello only


async def test_heartbeat_comments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_events, "HEARTBEAT_SECONDS", 0.01)
    owner = _events(FakeAuth())
    result = await owner._events(Request("GET", "/console/events"))
    assert isinstance(result, StreamResponse)
    transport = FakeTransport()
    result.protocol.connection_made(cast(asyncio.BaseTransport, transport))
    await asyncio.wait_for(transport.pinged.wait(), 5)
    result.protocol.connection_lost(None)
    assert owner.streams == set()
