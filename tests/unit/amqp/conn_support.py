"""Helpers for the connection tests: run two AmqpConnections against each other in memory."""

from __future__ import annotations

from typing import Any, TypeVar

from methodhub.amqp import decode_frame
from methodhub.amqp.connection import AmqpConnection, ConnectionRole
from methodhub.amqp.events import Event

E = TypeVar("E")


def server(**options: Any) -> AmqpConnection:
    return AmqpConnection(ConnectionRole.SERVER, container_id="methodhub", **options)


def client(**options: Any) -> AmqpConnection:
    options.setdefault("hostname", "localhost")
    options.setdefault("idle_timeout", None)  # Node asks for no heartbeats (wire doc §1.3)
    return AmqpConnection(
        ConnectionRole.CLIENT, container_id="ac02ba44-a4b8-b549-add7-f8ba40d05409", **options
    )


class Pair:
    """A client and a server wired back to back; ``pump`` moves bytes until both are quiet."""

    def __init__(self, srv: AmqpConnection, cli: AmqpConnection) -> None:
        self.server = srv
        self.client = cli
        self.server_events: list[Event] = []
        self.client_events: list[Event] = []
        self.to_server: list[bytes] = []
        self.to_client: list[bytes] = []

    def pump(self, now: float = 0.0) -> tuple[list[Event], list[Event]]:
        """Exchange until neither side has bytes to send; the (server, client) events of this pump."""
        server_events: list[Event] = []
        client_events: list[Event] = []
        for _ in range(1000):
            up = self.client.data_to_send()
            if up:
                self.to_server.append(up)
                server_events += self.server.receive_data(up, now)
            down = self.server.data_to_send()
            if down:
                self.to_client.append(down)
                client_events += self.client.receive_data(down, now)
            if not up and not down:
                break
        self.server_events += server_events
        self.client_events += client_events
        return server_events, client_events


def of(events: list[Event], kind: type[E]) -> list[E]:
    return [event for event in events if type(event) is kind]


def one(events: list[Event], kind: type[E]) -> E:
    found = of(events, kind)
    assert len(found) == 1, (kind.__name__, events)
    return found[0]


def frames(data: bytes, max_frame_size: int = 0xFFFF_FFFF) -> list[Any]:
    """The frame bodies in ``data`` (protocol headers skipped; None for an empty frame)."""
    bodies: list[Any] = []
    offset = 0
    while offset < len(data):
        if data[offset : offset + 4] == b"AMQP":
            offset += 8
            continue
        frame, offset = decode_frame(data, offset, max_frame_size)
        assert frame is not None, "incomplete frame in output"
        bodies.append(frame)
    return bodies


def bodies(data: bytes, max_frame_size: int = 0xFFFF_FFFF) -> list[Any]:
    return [frame.body for frame in frames(data, max_frame_size)]
