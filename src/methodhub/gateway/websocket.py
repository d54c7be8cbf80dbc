"""Device transports over WebSocket (RFC 6455), as Azure IoT Hub serves them at ``/$iothub/websocket``.

The subprotocol picks the transport: ``mqtt`` (MQTT 3.1.1 §6; also ``mqttv3.1``, and a client that
offers none) is MQTT, ``AMQPWSB10`` is AMQP 1.0 (wire doc §6). The HTTP server accepts the upgrade
(:func:`accept_websocket` checks the handshake, says why one is refused, and gives the 101's fields
and the transport chosen); from then on :class:`BytesOverWebSocket` owns the socket: it unwraps
binary frames with ``wsproto``'s frame layer and streams their bytes into the transport's ordinary
connection (MQTT's :class:`~methodhub.gateway.mqtt_connection.DeviceConnection`, or the AMQP device
connection), which writes through a :class:`FramingTransport` that wraps every write in one binary
frame. MQTT packets and AMQP frames may span WebSocket frames and a frame may hold several, so frame
boundaries are ignored: both ride a byte stream, as over TCP.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from dataclasses import dataclass
from enum import Enum
from typing import Any

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError, generate_accept_token

log = logging.getLogger("methodhub.gateway.websocket")

MQTT_SUBPROTOCOLS = ("mqtt", "mqttv3.1")
"""``mqtt`` (MQTT 3.1.1 and 5); ``mqttv3.1`` is what clients of MQTT 3.1 offer."""
AMQP_SUBPROTOCOL = "AMQPWSB10"
"""What every Azure SDK offers for AMQP over WebSocket (wire doc §6); Node's ``ws`` aborts unless
the 101 echoes it."""


class DeviceTransport(Enum):
    """The device transport a WebSocket carries, chosen by its subprotocol."""

    MQTT = "mqtt"
    AMQP = "amqp"


@dataclass(slots=True, frozen=True)
class AcceptedHandshake:
    """What :func:`accept_websocket` decided: the 101 response's fields and the transport inside."""

    fields: list[tuple[str, str]]
    transport: DeviceTransport


class HandshakeRefused(Exception):
    """The upgrade request is not a WebSocket handshake we accept: answer ``status`` with the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def accept_websocket(method: str, headers: dict[str, str]) -> AcceptedHandshake:
    """Check a WebSocket opening handshake (RFC 6455 §4.2.1); return the 101's fields and transport.

    The first subprotocol the client offers that we serve wins, and the 101 echoes it: ``mqtt`` or
    ``mqttv3.1`` → MQTT, ``AMQPWSB10`` → AMQP (names compared without regard to case). A client that
    offers none gets MQTT, as before AMQP was served.

    Args:
        method: the request method (must be GET).
        headers: the request's fields, lower-cased names.

    Raises:
        HandshakeRefused: with 400 (not a valid handshake: not GET, no ``Upgrade: websocket`` or
            ``Connection: Upgrade``, a bad key), 426 (wrong version) or 400 when the client
            offers subprotocols but neither ``mqtt`` nor ``AMQPWSB10``.
    """
    if method != "GET":
        raise HandshakeRefused(400, "a WebSocket handshake is a GET request")
    if "websocket" not in headers.get("upgrade", "").lower():
        raise HandshakeRefused(400, "send 'Upgrade: websocket' to open MQTT or AMQP over WebSocket here")
    if not any(token.strip().lower() == "upgrade" for token in headers.get("connection", "").split(",")):
        # RFC 6455 §4.2.1: without it this is an ordinary request, which the server cannot switch.
        raise HandshakeRefused(400, "send 'Connection: Upgrade' with 'Upgrade: websocket' (RFC 6455)")
    if headers.get("sec-websocket-version", "").strip() != "13":
        raise HandshakeRefused(426, "only WebSocket version 13 (RFC 6455) is supported")
    key = headers.get("sec-websocket-key", "").strip()
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid_key = False
    if not valid_key:
        raise HandshakeRefused(400, "Sec-WebSocket-Key must be 16 random bytes in base64")
    fields = [
        ("upgrade", "websocket"),
        ("sec-websocket-accept", generate_accept_token(key.encode()).decode("ascii")),
    ]
    offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    if not offered:
        return AcceptedHandshake(fields, DeviceTransport.MQTT)
    for protocol in offered:
        transport = _transport_of(protocol)
        if transport is not None:
            fields.append(("sec-websocket-protocol", protocol))
            return AcceptedHandshake(fields, transport)
    raise HandshakeRefused(
        400,
        f"subprotocol must be 'mqtt' (MQTT) or '{AMQP_SUBPROTOCOL}' (AMQP); offered {', '.join(offered)}",
    )


def _transport_of(subprotocol: str) -> DeviceTransport | None:
    name = subprotocol.lower()
    if name in MQTT_SUBPROTOCOLS:
        return DeviceTransport.MQTT
    if name == AMQP_SUBPROTOCOL.lower():
        return DeviceTransport.AMQP
    return None


class FramingTransport(asyncio.Transport):
    """What the device connection writes to: each write becomes one binary WebSocket frame."""

    def __init__(self, raw: asyncio.Transport, ws: Connection) -> None:
        super().__init__()
        self._raw = raw
        self._ws = ws

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._ws.state is ConnectionState.OPEN and not self._raw.is_closing():
            self._raw.write(self._ws.send(Message(data if isinstance(data, bytes) else bytes(data))))

    def close(self) -> None:
        if self._raw.is_closing():
            return
        if self._ws.state is ConnectionState.OPEN:
            self._raw.write(self._ws.send(CloseConnection(CloseReason.NORMAL_CLOSURE)))
        self._raw.close()

    def abort(self) -> None:
        self._raw.abort()

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._raw.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)


class BytesOverWebSocket(asyncio.Protocol):
    """Owns an upgraded connection: WebSocket frames in and out, the device transport's bytes (MQTT or
    AMQP) to and from ``inner``."""

    def __init__(self, inner: asyncio.Protocol) -> None:
        self.inner = inner
        self.ws = Connection(ConnectionType.SERVER)
        self.raw: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport  # type: ignore[assignment]
        assert self.raw is not None
        self.inner.connection_made(FramingTransport(self.raw, self.ws))

    def data_received(self, data: bytes) -> None:
        raw = self.raw
        assert raw is not None
        try:
            self.ws.receive_data(data)
            for event in self.ws.events():
                if raw.is_closing():
                    # The hub closed (a protocol error, a takeover...: our CLOSE went out) while this read
                    # still held frames: nothing more is served, and wsproto could not answer a ping.
                    return
                if isinstance(event, BytesMessage):
                    if event.data:
                        self.inner.data_received(bytes(event.data))
                elif isinstance(event, Ping):
                    if self.ws.state is ConnectionState.OPEN:
                        raw.write(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if self.ws.state is ConnectionState.REMOTE_CLOSING:  # the client closes: echo it
                        raw.write(self.ws.send(event.response()))
                        raw.close()
                    else:  # still OPEN: wsproto could not parse a frame (it reports that as a close)
                        self._fail(CloseReason(event.code), f"WebSocket protocol error: {event.reason}")
                    return
                elif isinstance(event, TextMessage):
                    self._fail(CloseReason.UNSUPPORTED_DATA, "WebSocket frames here are binary only")
                    return
        except RemoteProtocolError as exc:
            self._fail(CloseReason.PROTOCOL_ERROR, f"WebSocket protocol error: {exc}")

    def _fail(self, code: CloseReason, why: str) -> None:
        raw = self.raw
        assert raw is not None
        log.info("closing a WebSocket connection: %s", why, extra={"ctx": {"peer": _peer(raw)}})
        if self.ws.state is ConnectionState.OPEN:
            raw.write(self.ws.send(CloseConnection(code, why[:120])))
        raw.close()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"
