"""MQTT over WebSocket (RFC 6455; MQTT 3.1.1 §6), as Azure IoT Hub serves it at ``/$iothub/websocket``.

The HTTP server accepts the upgrade (:func:`accept_websocket` builds the 101's fields and says why a
handshake is refused); from then on :class:`MqttOverWebSocket` owns the socket: it unwraps binary
frames with ``wsproto``'s frame layer and streams their bytes into an ordinary
:class:`~methodhub.gateway.mqtt_connection.DeviceConnection`, which writes through a
:class:`WebSocketTransport` that wraps every write in one binary frame. MQTT packets may span
frames and a frame may hold several packets (MQTT 3.1.1 §6), so frame boundaries are ignored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import Any

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError, generate_accept_token

log = logging.getLogger("methodhub.gateway.websocket")

MQTT_SUBPROTOCOLS = ("mqtt", "mqttv3.1")
"""``mqtt`` (MQTT 3.1.1 and 5); ``mqttv3.1`` is what clients of MQTT 3.1 offer."""


class HandshakeRefused(Exception):
    """The upgrade request is not a WebSocket handshake we accept: answer ``status`` with the message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def accept_websocket(method: str, headers: dict[str, str]) -> list[tuple[str, str]]:
    """Check a WebSocket opening handshake (RFC 6455 §4.2.1); return the 101 response's fields.

    Args:
        method: the request method (must be GET).
        headers: the request's fields, lower-cased names.

    Raises:
        HandshakeRefused: with 400 (not a valid handshake: not GET, no ``Upgrade: websocket`` or
            ``Connection: Upgrade``, a bad key), 426 (wrong version) or 400 when the client
            offers subprotocols but not ``mqtt``.
    """
    if method != "GET":
        raise HandshakeRefused(400, "a WebSocket handshake is a GET request")
    if "websocket" not in headers.get("upgrade", "").lower():
        raise HandshakeRefused(400, "send 'Upgrade: websocket' to open MQTT over WebSocket here")
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
    if offered:
        chosen = next((p for p in offered if p.lower() in MQTT_SUBPROTOCOLS), None)
        if chosen is None:
            raise HandshakeRefused(400, f"subprotocol must be 'mqtt'; offered {', '.join(offered)}")
        fields.append(("sec-websocket-protocol", chosen))
    return fields


class WebSocketTransport(asyncio.Transport):
    """What the MQTT connection writes to: each write becomes one binary WebSocket frame."""

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


class MqttOverWebSocket(asyncio.Protocol):
    """Owns an upgraded connection: WebSocket frames in and out, MQTT bytes to and from ``inner``."""

    def __init__(self, inner: asyncio.Protocol) -> None:
        self.inner = inner
        self.ws = Connection(ConnectionType.SERVER)
        self.raw: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport  # type: ignore[assignment]
        assert self.raw is not None
        self.inner.connection_made(WebSocketTransport(self.raw, self.ws))

    def data_received(self, data: bytes) -> None:
        raw = self.raw
        assert raw is not None
        try:
            self.ws.receive_data(data)
            for event in self.ws.events():
                if raw.is_closing():
                    # The hub closed (an MQTT error, a takeover...: our CLOSE went out) while this read
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
                    self._fail(CloseReason.UNSUPPORTED_DATA, "MQTT over WebSocket uses binary frames only")
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
