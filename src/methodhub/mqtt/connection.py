"""The MQTT connection state machine, sans I/O (in the manner of h11 and aioquic).

``receive_data(bytes) -> list[Event]`` frames the byte stream into packets, decodes them and checks
them against the role and state; ``send(packet) -> bytes`` checks and encodes what we send. The
caller owns the socket. A peer's protocol violation ends in one :class:`ProtocolError` event, after
which the connection is CLOSED and ignores further input — no half-broken state lingers.

The caller sets the pace: ``receive_data(data, max_events=N)`` decodes at most N events and keeps
the rest buffered for :meth:`MqttConnection.next_events` (a work budget per loop iteration), and a
server decodes nothing after a CONNECT until it has sent the CONNACK, so what follows a CONNECT is
read at the protocol level the server accepted. Our side keeps its own state: packets read before
the peer's error or DISCONNECT can still be answered.

Timers live here too, in the manner of aioquic: the caller passes the time (its own clock, e.g.
``loop.time()``) into ``receive_data(..., now=)`` and ``send(..., now=)``, asks :meth:`get_timer`
when the next deadline is, and calls :meth:`handle_timer` at (or after) that time. A server
enforces keep-alive [MQTT-3.1.2-24] and, if given one, a CONNECT deadline; a client learns when a
PINGREQ is due and when to give up on a silent server. No input without ``now`` moves a deadline,
and a connection that was never given a time has no timers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from methodhub.mqtt.codec import decode, encode, encode_publish
from methodhub.mqtt.errors import LocalProtocolError, MalformedPacket
from methodhub.mqtt.packets import Connack, Connect, Disconnect, Packet, Publish
from methodhub.mqtt.reason_codes import ReasonCode

KEEPALIVE_FACTOR = 1.5
"""[MQTT-3.1.2-24]: a server disconnects a client silent for one and a half keep-alive periods; a
client gives up on a server silent that long (a PINGREQ it sent after one period went unanswered)."""

DEFAULT_MAX_PACKET_SIZE = 256 * 1024 + 4 * 1024
"""Largest packet accepted from the peer, fixed header included (→ ProtocolError 0x95).

Method payloads are limited to 128 KiB (Azure); Alibaba and Azure both cap device messages at
256 KB. 256 KiB plus 4 KiB for topic, properties and header leaves every legal message room, while
a peer announcing a 256 MB packet is refused from its fixed header alone, before we buffer a byte
of it. MQTT's own maximum is 268,435,455 bytes [MQTT-2.2.3]."""

_SERVER_RECEIVES = frozenset((1, 3, 4, 5, 6, 7, 8, 10, 12, 14, 15))
"""Packet types a client may send [MQTT-2.2.1]: CONNECT, PUBLISH, PUB*, SUBSCRIBE, UNSUBSCRIBE,
PINGREQ, DISCONNECT, AUTH."""
_CLIENT_RECEIVES = frozenset((2, 3, 4, 5, 6, 7, 9, 11, 13, 14, 15))
_PACKET_TYPE_OF = {
    "Connect": 1, "Connack": 2, "Publish": 3, "Puback": 4, "Pubrec": 5, "Pubrel": 6, "Pubcomp": 7,
    "Subscribe": 8, "Suback": 9, "Unsubscribe": 10, "Unsuback": 11, "Pingreq": 12, "Pingresp": 13,
    "Disconnect": 14, "Auth": 15,
}  # fmt: skip


class Role(Enum):
    SERVER = "server"
    CLIENT = "client"


class ConnectionState(Enum):
    AWAIT_CONNECT = "await-connect"  # server: nothing received yet; client: nothing sent yet
    AWAIT_CONNACK = "await-connack"  # server: CONNECT received, CONNACK not sent; client: CONNECT sent
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(slots=True)
class PacketReceived:
    """A valid packet from the peer."""

    packet: Packet


@dataclass(slots=True)
class ProtocolError:
    """The peer broke the protocol; always the last event. The connection is now CLOSED.

    Attributes:
        reason: what happened, naming the normative statement.
        reason_code: the MQTT 5 reason code a DISCONNECT should carry.
        connack_code: for a server not yet connected: the CONNACK code to answer with before
            closing, or None to close without one.
    """

    reason: str
    reason_code: int
    connack_code: int | None = None


@dataclass(slots=True)
class ConnectionClosed:
    """The peer closed its side of the connection (``receive_data(b"")``)."""


@dataclass(slots=True)
class KeepAliveTimeout:
    """The peer sent nothing for :data:`KEEPALIVE_FACTOR` × keep-alive (from :meth:`~MqttConnection.
    handle_timer`); always the last event. Nothing more is read: the connection is now CLOSED, though
    our side may still send (an MQTT 5 server its DISCONNECT with ``reason_code``).

    Attributes:
        reason: what happened, e.g. ``keep-alive expired (60 s × 1.5)``.
        reason_code: the MQTT 5 reason code a server's DISCONNECT should carry (0x8D).
    """

    reason: str
    reason_code: int = ReasonCode.KEEP_ALIVE_TIMEOUT


@dataclass(slots=True)
class ConnectTimeout:
    """The connection was not accepted by its ``connect_deadline`` (server: no accepting CONNACK sent
    by then, whether the CONNECT did not come or was not answered; client: no CONNACK received).
    Always the last event; the connection is CLOSED on both sides: close it without a word."""

    reason: str


@dataclass(slots=True)
class PingDue:
    """A client should send PINGREQ now (``send(Pingreq(), now)``): it has sent nothing, or received
    nothing, for one keep-alive period [MQTT-3.1.2-23]."""


Event = PacketReceived | ProtocolError | ConnectionClosed | KeepAliveTimeout | ConnectTimeout | PingDue


class MqttConnection:
    """One MQTT connection, server or client side.

    Args:
        role: which side we are.
        max_packet_size: the largest packet accepted from the peer, header included.
        connect_deadline: when (in the caller's clock) the connection must be accepted by, or None.
    """

    __slots__ = (
        "_buffer",
        "_eof",
        "_may_refuse",
        "_need",
        "_our_state",
        "_ping_asked_at",
        "_pos",
        "_received_at",
        "_sent_at",
        "connect_deadline",
        "keepalive",
        "max_packet_size",
        "protocol_level",
        "role",
        "state",
    )

    def __init__(
        self,
        role: Role,
        *,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        connect_deadline: float | None = None,
    ) -> None:
        self.role = role
        self.max_packet_size = max_packet_size
        self.connect_deadline = connect_deadline
        """When (caller's clock) the connection must be accepted: a server must have sent its
        accepting CONNACK, a client received one. None: no deadline. May be set at any time."""
        self.keepalive = 0.0
        """The keep-alive period this side enforces, in seconds; 0 turns keep-alive off. A server
        takes the CONNECT's value, or the ``server_keep_alive`` of the CONNACK it sends; a server
        that enforces another value without saying so (MQTT 3.1.1 has no way to) sets this itself,
        before or after its CONNACK. A client takes the value of its CONNECT, or the server's
        ``server_keep_alive`` [MQTT-3.1.2-21]."""
        self._received_at: float | None = None
        """The ``now`` of the last ``receive_data`` that brought bytes (any bytes: a device sending a
        large packet in pieces is not silent)."""
        self._sent_at: float | None = None
        """Client: the ``now`` of the last packet sent."""
        self._ping_asked_at: float | None = None
        """Client: when :class:`PingDue` was last returned; answered by anything received at or after
        it (the same ``now``: a coarse clock, a fast peer)."""
        self.protocol_level: int | None = None
        self.state = ConnectionState.AWAIT_CONNECT
        """The connection as the peer drives it; CLOSED once nothing more is read from it."""
        self._our_state = ConnectionState.AWAIT_CONNECT
        """Our side: what we may still send (see :meth:`send`)."""
        self._buffer = bytearray()
        self._pos = 0
        self._need = 0
        self._eof = False
        self._may_refuse = False

    # -- receiving ----------------------------------------------------------------------------------

    def receive_data(
        self, data: bytes, max_events: int | None = None, now: float | None = None
    ) -> list[Event]:
        """Feed bytes from the peer; returns the events they complete, at most ``max_events``.

        ``b""`` means the peer closed its side: :class:`ConnectionClosed` follows the events of the
        bytes before it. Packets decoded before a protocol error are returned before the
        :class:`ProtocolError`. Bytes not decoded yet (beyond ``max_events``, or after a CONNECT the
        server has not answered) stay buffered: :meth:`next_events` decodes them. The cost is linear
        in the bytes received, however they are split.

        ``now`` (the caller's clock) is when the bytes arrived: the peer is not silent. A caller that
        uses the timers passes it on every call; without it no deadline moves.
        """
        if self.state is ConnectionState.CLOSED:
            return []
        if now is not None:
            self._received_at = now
        if not data:
            self._eof = True
        elif self._pos < len(self._buffer):
            self._buffer += data
            if len(self._buffer) - self._pos < self._need:  # the packet is still incomplete
                return []
        else:
            return self._decode(data, 0, max_events)
        return self._decode(self._buffer, self._pos, max_events)

    def next_events(self, max_events: int | None = None) -> list[Event]:
        """Events from bytes already received (after a ``max_events`` limit or a CONNACK)."""
        if self.state is ConnectionState.CLOSED:
            return []
        return self._decode(self._buffer, self._pos, max_events)

    @property
    def has_pending_events(self) -> bool:
        """Whether :meth:`next_events` may return events without more bytes from the peer."""
        if self.state is ConnectionState.CLOSED or self._awaiting_our_connack():
            return False
        return self._eof or (self._need == 0 and self._pos < len(self._buffer))

    @property
    def buffered(self) -> int:
        """Bytes received and not decoded yet."""
        return len(self._buffer) - self._pos

    def _awaiting_our_connack(self) -> bool:
        return self.role is Role.SERVER and self.state is ConnectionState.AWAIT_CONNACK

    def _keep(self, buf: bytes | bytearray, pos: int, need: int) -> None:
        """Keep ``buf[pos:]`` for later; ``need``: bytes required before decoding can progress."""
        self._need = need
        if pos >= len(buf):
            self._buffer = bytearray()
            self._pos = 0
        elif buf is self._buffer:
            if pos > 65536 and pos * 2 > len(buf):  # compact now and then: amortised linear
                del self._buffer[:pos]
                pos = 0
            self._pos = pos
        else:
            self._buffer = bytearray(memoryview(buf)[pos:])
            self._pos = 0

    def _decode(self, buf: bytes | bytearray, pos: int, max_events: int | None) -> list[Event]:
        events: list[Event] = []
        end = len(buf)
        server = self.role is Role.SERVER
        if server and self.state is ConnectionState.AWAIT_CONNACK:
            self._keep(buf, pos, 0)  # nothing is read after a CONNECT until it is answered
            return events
        if server and pos < end and self.state is ConnectionState.AWAIT_CONNECT and buf[pos] >> 4 != 1:
            # Known from the first byte: do not wait for the rest of a packet that is refused anyway
            # (e.g. "GET / HTTP/1.1" on the MQTT port would otherwise wait for 69 bytes of body).
            kind = buf[pos] >> 4
            if kind not in _SERVER_RECEIVES:
                return self._fail(
                    events,
                    f"[MQTT-2.2.1] a client must not send packet type {kind}",
                    ReasonCode.PROTOCOL_ERROR if kind else ReasonCode.MALFORMED_PACKET,
                )
            return self._fail(
                events, "[MQTT-3.1.0-1] the first packet must be CONNECT", ReasonCode.PROTOCOL_ERROR
            )
        limit = max_events if max_events is not None else -1
        level = self.protocol_level or 4
        need = 0
        while True:
            if len(events) == limit:
                self._keep(buf, pos, 0)
                return events
            if end - pos < 2:
                need = 2
                break
            first = buf[pos]
            # Remaining Length: a variable byte integer of at most 4 bytes [MQTT-2.2.3].
            byte = buf[pos + 1]
            length = byte & 0x7F
            index = pos + 2
            if byte & 0x80:
                shift = 7
                incomplete = False
                while True:
                    if index >= end:
                        if index - pos - 1 >= 4:
                            return self._fail(
                                events,
                                "[MQTT-2.2.3] remaining length longer than 4 bytes",
                                ReasonCode.MALFORMED_PACKET,
                            )
                        incomplete = True
                        break
                    byte = buf[index]
                    index += 1
                    length |= (byte & 0x7F) << shift
                    if not byte & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        return self._fail(
                            events,
                            "[MQTT-2.2.3] remaining length longer than 4 bytes",
                            ReasonCode.MALFORMED_PACKET,
                        )
                if incomplete:
                    need = index - pos + 1
                    break
            if index - pos + length > self.max_packet_size:
                return self._fail(
                    events,
                    f"packet of {index - pos + length} bytes exceeds the maximum of {self.max_packet_size}",
                    ReasonCode.PACKET_TOO_LARGE,
                )
            if index + length > end:
                need = index - pos + length
                break
            kind = first >> 4
            body = buf[index : index + length]
            if type(body) is not bytes:
                body = bytes(body)
            pos = index + length
            if server:
                if kind not in _SERVER_RECEIVES:
                    return self._fail(
                        events,
                        f"[MQTT-2.2.1] a client must not send packet type {kind}",
                        ReasonCode.PROTOCOL_ERROR if kind else ReasonCode.MALFORMED_PACKET,
                    )
                if self.state is ConnectionState.AWAIT_CONNECT:
                    if kind != 1:
                        return self._fail(
                            events,
                            "[MQTT-3.1.0-1] the first packet must be CONNECT",
                            ReasonCode.PROTOCOL_ERROR,
                        )
                    try:
                        packet = decode(first, body, 4)
                    except MalformedPacket as exc:
                        self._may_refuse = exc.connack_code is not None
                        if exc.protocol_level is not None:  # the refusing CONNACK speaks its level
                            self.protocol_level = exc.protocol_level
                        return self._fail(events, exc.reason, exc.reason_code, exc.connack_code)
                    self.protocol_level = packet.protocol_level  # type: ignore[union-attr]
                    self.keepalive = float(packet.keepalive)  # type: ignore[union-attr]
                    self.state = self._our_state = ConnectionState.AWAIT_CONNACK
                    self._may_refuse = True
                    events.append(PacketReceived(packet))
                    self._keep(buf, pos, 0)  # the rest waits for our CONNACK
                    return events
                if kind == 1:
                    return self._fail(events, "[MQTT-3.1.0-2] a second CONNECT", ReasonCode.PROTOCOL_ERROR)
            else:
                if kind not in _CLIENT_RECEIVES:
                    return self._fail(
                        events,
                        f"a server must not send packet type {kind}",
                        ReasonCode.PROTOCOL_ERROR if kind else ReasonCode.MALFORMED_PACKET,
                    )
                if self.state is not ConnectionState.CONNECTED and kind != 2:
                    return self._fail(
                        events,
                        "[MQTT-3.2.0-1] the first packet from a server must be CONNACK",
                        ReasonCode.PROTOCOL_ERROR,
                    )
                if self.state is ConnectionState.CONNECTED and kind == 2:
                    return self._fail(events, "a second CONNACK", ReasonCode.PROTOCOL_ERROR)
            if kind == 15 and level != 5:
                return self._fail(events, "[MQTT-2.2.1] reserved packet type 15", ReasonCode.MALFORMED_PACKET)
            try:
                packet = decode(first, body, level)
            except MalformedPacket as exc:
                return self._fail(events, exc.reason, exc.reason_code)
            events.append(PacketReceived(packet))
            if kind == 14:  # DISCONNECT: nothing after it counts [MQTT-3.14.4-1]
                self._close_receiving()
                return events
            if kind == 2:
                if packet.reason_code == 0:  # type: ignore[union-attr]
                    self.state = self._our_state = ConnectionState.CONNECTED
                    self._take_server_keepalive(packet)  # type: ignore[arg-type]
                else:
                    self._close_receiving()
                    self._our_state = ConnectionState.CLOSED
                    return events
        if self._eof:
            self._close_receiving()
            events.append(ConnectionClosed())
            return events
        if pos < end:
            self._keep(buf, pos, need)
        elif self._buffer:  # all of it decoded (the common case: nothing to keep, nothing to copy)
            self._buffer = bytearray()
            self._pos = 0
        return events

    def _close_receiving(self) -> None:
        self.state = ConnectionState.CLOSED
        self._buffer = bytearray()
        self._pos = 0
        self._need = 0

    def _fail(
        self, events: list[Event], reason: str, reason_code: int, connack_code: int | None = None
    ) -> list[Event]:
        self._close_receiving()
        if connack_code is None:
            self._may_refuse = False
        events.append(ProtocolError(reason, int(reason_code), connack_code))
        return events

    # -- sending --------------------------------------------------------------------------------------

    def send(self, packet: Packet, now: float | None = None) -> bytes:
        """Encode ``packet`` for the negotiated protocol level.

        Our side has its own state: after the peer's DISCONNECT or protocol error nothing more is
        read, but the packets read before it may still be answered (SUBACK, PUBACK, PINGRESP, the
        CONNACK of a pending CONNECT) and an MQTT 5 server may still send its DISCONNECT.

        ``now``: when it is sent (a client's next PINGREQ is due one keep-alive after it); a server
        need not pass it.

        Raises:
            LocalProtocolError: the packet is not ours to send in this role or state.
        """
        kind = type(packet)
        ours = self._our_state
        if kind is Publish:
            if ours is not ConnectionState.CONNECTED:
                raise LocalProtocolError("PUBLISH before the connection is accepted")
            if now is not None:
                self._sent_at = now
            return encode_publish(packet, self.protocol_level or 4)  # type: ignore[arg-type]
        packet_type = _PACKET_TYPE_OF[kind.__name__]
        if self.role is Role.SERVER:
            if packet_type not in _CLIENT_RECEIVES:
                raise LocalProtocolError(f"a server cannot send {kind.__name__}")
            if kind is Connack:
                return self._send_connack(packet)  # type: ignore[arg-type]
            if ours is ConnectionState.CLOSED:
                raise LocalProtocolError(f"{kind.__name__} after the connection was closed")
            if ours is not ConnectionState.CONNECTED:
                raise LocalProtocolError(f"{kind.__name__} before CONNACK")
            if kind is Disconnect:
                if self.protocol_level != 5:
                    raise LocalProtocolError("a server sends DISCONNECT in MQTT 5 only")
                self._our_state = ConnectionState.CLOSED
                self._close_receiving()
            return encode(packet, self.protocol_level or 4)
        if packet_type not in _SERVER_RECEIVES:
            raise LocalProtocolError(f"a client cannot send {kind.__name__}")
        if kind is Connect:
            if ours is not ConnectionState.AWAIT_CONNECT:
                raise LocalProtocolError("CONNECT sent twice")
            self._sent_at = now
            self.protocol_level = packet.protocol_level  # type: ignore[union-attr]
            self.keepalive = float(packet.keepalive)  # type: ignore[union-attr]
            self.state = self._our_state = ConnectionState.AWAIT_CONNACK
            return encode(packet, self.protocol_level)
        if ours is ConnectionState.AWAIT_CONNECT or ours is ConnectionState.CLOSED:
            raise LocalProtocolError(f"{kind.__name__} without a connection")
        if now is not None:
            self._sent_at = now
        if kind is Disconnect:
            self._our_state = ConnectionState.CLOSED
            self._close_receiving()
        return encode(packet, self.protocol_level or 4)

    def _send_connack(self, packet: Connack) -> bytes:
        ours = self._our_state
        if ours is not ConnectionState.AWAIT_CONNACK and not (
            self._may_refuse and ours is ConnectionState.AWAIT_CONNECT
        ):
            raise LocalProtocolError("CONNACK without a pending CONNECT")
        self._may_refuse = False
        if packet.reason_code == 0:
            if ours is not ConnectionState.AWAIT_CONNACK:
                raise LocalProtocolError("accepting CONNACK after a malformed CONNECT")
            self._our_state = ConnectionState.CONNECTED
            if self.state is ConnectionState.AWAIT_CONNACK:
                self.state = ConnectionState.CONNECTED
            self._take_server_keepalive(packet)
        else:
            self._our_state = ConnectionState.CLOSED
            self._close_receiving()
        level = self.protocol_level if self.protocol_level in (3, 4, 5) else 4
        if level != 5 and packet.reason_code > 5:
            raise LocalProtocolError(f"CONNACK code {packet.reason_code} does not exist before MQTT 5")
        return encode(packet, level)

    def _take_server_keepalive(self, connack: Connack) -> None:
        """An accepting CONNACK's ``server_keep_alive`` is the keep-alive both sides keep."""
        properties = connack.properties
        if properties and "server_keep_alive" in properties:
            self.keepalive = float(properties["server_keep_alive"])

    # -- timers ---------------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When (the caller's clock) :meth:`handle_timer` must next be called; None: no timer.

        The answer moves only with the state, ``keepalive``, ``connect_deadline`` and the ``now`` of
        input (received bytes move it later), so a caller keeps one timer armed and asks again after
        it fires or after changing one of those (the CONNACK changes the kind of deadline).
        """
        if self.state is ConnectionState.CLOSED:
            return None
        ours = self._our_state
        if ours is not ConnectionState.CONNECTED:
            return self.connect_deadline if ours is not ConnectionState.CLOSED else None
        keepalive = self.keepalive
        received = self._received_at
        if keepalive <= 0 or received is None:
            return None
        if self.role is Role.SERVER:
            return received + keepalive * KEEPALIVE_FACTOR
        asked = self._ping_asked_at
        if asked is not None and asked > received:  # PINGREQ asked for: wait for anything at all
            return received + keepalive * KEEPALIVE_FACTOR
        sent = self._sent_at
        return (received if sent is None or sent > received else sent) + keepalive

    def handle_timer(self, now: float) -> list[Event]:
        """The events due at ``now``; an empty list if nothing is due yet (call :meth:`get_timer`
        again). :class:`KeepAliveTimeout` and :class:`ConnectTimeout` close the connection."""
        at = self.get_timer()
        if at is None or now < at:
            return []
        ours = self._our_state
        if ours is not ConnectionState.CONNECTED:  # the connect deadline
            if self.role is Role.CLIENT:
                reason = "no CONNACK in time"
            elif self.state is ConnectionState.AWAIT_CONNECT:
                reason = "no CONNECT in time"
            else:
                reason = "its CONNECT could not be answered in time"
            self._close_receiving()
            self._our_state = ConnectionState.CLOSED
            self._may_refuse = False
            return [ConnectTimeout(reason)]
        received = self._received_at
        assert received is not None  # a CONNECTED connection's timer is a keep-alive one
        if now >= received + self.keepalive * KEEPALIVE_FACTOR:
            self._close_receiving()
            return [KeepAliveTimeout(f"keep-alive expired ({self.keepalive:g} s × {KEEPALIVE_FACTOR:g})")]
        self._ping_asked_at = now  # a client; the server's one deadline is the one above
        return [PingDue()]
