"""Device transports over WebSocket without sockets: the handshake check (and the subprotocol that
picks MQTT or AMQP) and the frame layer's edge cases."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping
from wsproto.frame_protocol import CloseReason

from methodhub.gateway.websocket import (
    BytesOverWebSocket,
    DeviceTransport,
    HandshakeRefused,
    accept_websocket,
)

KEY = base64.b64encode(b"k" * 16).decode()
HANDSHAKE = {
    "upgrade": "websocket",
    "connection": "Upgrade",
    "sec-websocket-version": "13",
    "sec-websocket-key": KEY,
}


class RawTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing, "write after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


class ClosesOnFirstBytes(asyncio.Protocol):
    """An MQTT connection that refuses what it reads (a protocol error) and closes its transport."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        assert self.transport is not None
        self.transport.close()


def client_frames(*events: Any) -> bytes:
    client = Connection(ConnectionType.CLIENT)
    return b"".join(client.send(event) for event in events)


def test_a_handshake_without_connection_upgrade_is_refused_with_400() -> None:
    assert accept_websocket("GET", HANDSHAKE).fields[0] == ("upgrade", "websocket")
    assert accept_websocket("GET", {**HANDSHAKE, "connection": "keep-alive, upgrade"})
    for connection in (None, "keep-alive", "upgraded"):
        headers = {k: v for k, v in HANDSHAKE.items() if k != "connection"}
        if connection is not None:
            headers["connection"] = connection
        with pytest.raises(HandshakeRefused) as refused:
            accept_websocket("GET", headers)
        assert refused.value.status == 400 and "Connection: Upgrade" in refused.value.message


@pytest.mark.parametrize(
    ("offered", "echoed", "transport"),
    [
        (None, None, DeviceTransport.MQTT),  # no subprotocol: MQTT, as before AMQP was served
        ("mqtt", "mqtt", DeviceTransport.MQTT),
        ("mqttv3.1", "mqttv3.1", DeviceTransport.MQTT),
        ("AMQPWSB10", "AMQPWSB10", DeviceTransport.AMQP),  # what every Azure SDK sends (wire doc §6)
        ("amqpwsb10", "amqpwsb10", DeviceTransport.AMQP),
        ("chat, AMQPWSB10, mqtt", "AMQPWSB10", DeviceTransport.AMQP),  # the first one served wins
        ("mqtt, AMQPWSB10", "mqtt", DeviceTransport.MQTT),
    ],
)
def test_the_subprotocol_picks_the_transport_and_is_echoed(
    offered: str | None, echoed: str | None, transport: DeviceTransport
) -> None:
    headers = dict(HANDSHAKE) if offered is None else {**HANDSHAKE, "sec-websocket-protocol": offered}
    handshake = accept_websocket("GET", headers)
    assert handshake.transport is transport
    protocols = [value for name, value in handshake.fields if name == "sec-websocket-protocol"]
    assert protocols == ([] if echoed is None else [echoed])  # Node's ws aborts without the echo


def test_an_unknown_subprotocol_is_refused_naming_the_ones_served() -> None:
    with pytest.raises(HandshakeRefused) as refused:
        accept_websocket("GET", {**HANDSHAKE, "sec-websocket-protocol": "chat, AMQPWSB11"})
    assert refused.value.status == 400
    assert "'mqtt'" in refused.value.message and "'AMQPWSB10'" in refused.value.message
    assert "chat, AMQPWSB11" in refused.value.message


def test_a_ping_read_after_the_hub_closed_is_not_answered_and_raises_nothing() -> None:
    inner = ClosesOnFirstBytes()
    raw = RawTransport()
    ws = BytesOverWebSocket(inner)
    ws.connection_made(raw)
    # One read: MQTT bytes the connection refuses (it closes: the hub sends CLOSE), then a ping and
    # more bytes from a client that has not seen the CLOSE yet.
    ws.data_received(client_frames(BytesMessage(b"\x6b\x00"), Ping(b"hi"), BytesMessage(b"more")))
    assert raw.closing
    assert inner.received == [b"\x6b\x00"]  # nothing is fed after the close
    server = Connection(ConnectionType.CLIENT)  # reads the server's frames
    server.receive_data(b"".join(raw.writes))
    events = list(server.events())
    assert len(events) == 1 and isinstance(events[0], CloseConnection)
    assert events[0].code == CloseReason.NORMAL_CLOSURE
