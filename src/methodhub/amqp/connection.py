"""The AMQP 1.0 connection state machine, sans I/O: protocol headers, SASL, open, sessions, links.

``receive_data(bytes, now) -> list[Event]`` reads the peer's protocol header, SASL frames and AMQP
frames and checks them against the state; commands (``accept_link``, ``send_message``, ``settle``,
``grant_credit``, ``detach``, ...) queue frames; ``data_to_send()`` hands back the bytes. The caller
owns the socket. Our side of each endpoint is kept apart from the peer's (what we sent vs what it
sent), so an ``end`` or ``close`` crossing ours on the wire completes both.

A peer's protocol violation becomes one :class:`ProtocolFailure` event and the spec's answer:
a connection error closes the connection (``open`` first when we have not sent ours) and nothing
more is read (:attr:`AmqpConnection.finished`: write ``data_to_send()``, then close the socket);
a session error ends that session; a link error detaches that link. No exception escapes
``receive_data`` for anything the peer sends.

Timers live here, in the manner of aioquic: pass the caller's clock as ``now``, ask
:meth:`~AmqpConnection.get_timer`, and call :meth:`~AmqpConnection.handle_timer` at that time.
We send an empty frame when we have sent nothing for half the peer's idle-time-out, and close with
``amqp:resource-limit-exceeded`` when the peer has sent nothing for our ``idle_timeout``.

The server does the hub's job (answers header, SASL, open, begin by itself; links, credit and
settlement are the application's); the client role drives a server in tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any

from methodhub.amqp.endpoints import ConnectionFault, Endpoints, make_error
from methodhub.amqp.errors import DecodeError, FramingError
from methodhub.amqp.events import (
    BadProtocolHeader,
    ConnectionClosed,
    ConnectionOpened,
    Event,
    LinkRef,
    ProtocolFailure,
    SaslInitReceived,
    SaslOutcomeReceived,
)
from methodhub.amqp.frames import (
    AMQP_HEADER,
    FRAME_HEADER_SIZE,
    MIN_MAX_FRAME_SIZE,
    SASL_FRAME,
    SASL_HEADER,
    ProtocolHeader,
    decode_frame,
    decode_protocol_header,
    encode_frame,
    read_transfer_frame,
)
from methodhub.amqp.performatives import (
    Close,
    Error,
    ErrorCondition,
    Open,
    ReceiverSettleMode,
    SaslCode,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    SenderSettleMode,
)
from methodhub.amqp.values import Symbol

DEFAULT_SASL_MECHANISMS = ("ANONYMOUS", "MSSBCBS", "PLAIN", "EXTERNAL")
"""What the SDKs need (wire doc §1.2): Java ANONYMOUS, C MSSBCBS, custom clients PLAIN, X.509 EXTERNAL."""

DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024 + 4 * 1024
"""Largest message accepted on a receiving link: 256 KiB (Azure's device-message cap, twice the
128 KB method payload) plus room for properties, as the MQTT side allows."""

SASL_MAX_INCOMING_FRAME = 4096
"""SASL frames we read: 512 is the spec's floor (part 5 §5.3.1), but a PLAIN init carrying a SAS token
for a module identity can pass 512 bytes; 4 KiB is room without letting a peer make us buffer more."""

_HALF = 0x8000_0000


class ConnectionRole(Enum):
    SERVER = "server"
    CLIENT = "client"


class _Phase:
    """Where the connection is (plain constants, not an Enum: on Python 3.11 reading an Enum member
    costs ~90 ns against ~10, and the receive loop reads the phase several times per frame)."""

    HEADER = "header"  # awaiting the peer's protocol header
    SASL = "sasl"
    SASL_OUTCOME = "sasl-outcome"  # server: the application decides (sasl_outcome)
    OPEN = "open"  # header exchanged, awaiting the peer's open
    OPENED = "opened"
    CLOSING = "closing"  # we sent close; awaiting the peer's
    FINISHED = "finished"  # nothing more is read


class AmqpConnection:
    """One AMQP 1.0 connection, server or client side.

    Args:
        role: which side we are.
        container_id: ours, sent in ``open``.
        hostname: client: the ``open`` hostname.
        max_frame_size: the largest frame we accept (announced in ``open``); larger ones close the
            connection with ``amqp:connection:framing-error``.
        channel_max: the highest channel (session) number the peer may use.
        handle_max: the highest link handle per session the peer may use.
        idle_timeout: seconds; the peer silent this long is closed. Announced in ``open`` (ms).
            None: no idle time-out.
        sasl_mechanisms: server: the mechanisms offered after a SASL header; None: SASL refused.
        sasl_init: client: the SASL init to send (None: no SASL layer, the AMQP header straight away).
        max_message_size: the largest message accepted on a receiving link (0: no limit).
        incoming_window: per session, in deliveries; topped up when half is used.
    """

    def __init__(
        self,
        role: ConnectionRole,
        *,
        container_id: str,
        hostname: str | None = None,
        max_frame_size: int = 65536,
        channel_max: int = 255,
        handle_max: int = 255,
        idle_timeout: float | None = 60.0,
        sasl_mechanisms: Iterable[str] | None = DEFAULT_SASL_MECHANISMS,
        sasl_init: SaslInit | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        incoming_window: int = 2048,
    ) -> None:
        if max_frame_size < MIN_MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be at least {MIN_MAX_FRAME_SIZE}")
        self.role = role
        self.container_id = container_id
        self.hostname = hostname
        self.max_frame_size = max_frame_size
        self.channel_max = channel_max
        self.handle_max = handle_max
        self.idle_timeout = idle_timeout
        self.sasl_mechanisms = tuple(sasl_mechanisms) if sasl_mechanisms is not None else None
        self.sasl_init = sasl_init
        self.max_message_size = max_message_size
        self.incoming_window = incoming_window
        self.remote_container_id: str | None = None
        """From the peer's ``open`` (the ``Open`` itself is not kept: it is handed on in
        :class:`ConnectionOpened`)."""
        self.peer_max_frame_size = MIN_MAX_FRAME_SIZE
        """What we split outgoing transfers to: the peer's max-frame-size (at least 512)."""
        self.peer_idle_timeout: float | None = None
        """Seconds, from the peer's ``open``; we send a frame at least every half of it."""
        self._phase = _Phase.HEADER
        self._sasl_done = False
        self._open_sent = False
        self._close_sent = False
        self._buffer = bytearray()
        self._pos = 0
        self._out = bytearray()
        self._now: float | None = None
        self._received_at: float | None = None
        self._sent_at: float | None = None
        self._endpoints = Endpoints(
            self._send,
            self._send_frame,
            channel_max=channel_max,
            handle_max=handle_max,
            max_message_size=max_message_size,
            incoming_window=incoming_window,
        )
        if role is ConnectionRole.CLIENT:
            if sasl_init is not None:
                self._out += SASL_HEADER
            else:
                self._out += AMQP_HEADER
                self._send_open()

    # -- state ---------------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Nothing more is read or sent after ``data_to_send()``: close the socket once it is written."""
        return self._phase is _Phase.FINISHED

    @property
    def opened(self) -> bool:
        return self._phase is _Phase.OPENED

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    # -- receiving -------------------------------------------------------------------------------------

    def receive_data(
        self, data: bytes, now: float | None = None, max_frames: int | None = None
    ) -> list[Event]:
        """Feed bytes from the peer; returns the events they complete.

        At most ``max_frames`` frames are decoded (a work budget); the rest stay buffered for
        :meth:`next_events`, as does everything after a SASL init until :meth:`sasl_outcome`.
        """
        if now is not None:
            self._now = now
            if data:
                self._received_at = now
            if self._sent_at is None and self._open_sent:
                self._sent_at = now  # an open sent before the first clock counts from it
        if self._phase is _Phase.FINISHED:
            return []
        self._buffer += data
        return self._process(max_frames)

    def next_events(self, max_frames: int | None = None) -> list[Event]:
        """Events from bytes already received (after a ``max_frames`` budget or a SASL outcome)."""
        if self._phase is _Phase.FINISHED:
            return []
        return self._process(max_frames)

    @property
    def has_pending_events(self) -> bool:
        """Whether :meth:`next_events` would make progress without more input: a whole protocol
        header or frame is buffered (left by a ``max_frames`` budget, or read while a SASL outcome
        was awaited). Part of a frame is not: only more bytes complete it, so a caller that read it
        must go on reading (a transfer larger than one read arrives in several)."""
        if self._phase in (_Phase.FINISHED, _Phase.SASL_OUTCOME):
            return False
        buffered = len(self._buffer) - self._pos
        if self._phase is _Phase.HEADER:
            return buffered >= 8
        if buffered < FRAME_HEADER_SIZE:  # (decode_frame reads nothing before the whole header)
            return False
        size = int.from_bytes(self._buffer[self._pos : self._pos + 4], "big")
        return buffered >= size  # a malformed size (under 8) counts: decoding it closes the connection

    def _process(self, max_frames: int | None) -> list[Event]:
        events: list[Event] = []
        buf = self._buffer
        pos = self._pos
        frames = 0
        try:
            while self._phase not in (_Phase.FINISHED, _Phase.SASL_OUTCOME) and pos < len(buf):
                if self._phase is _Phase.HEADER:
                    try:
                        header, after = decode_protocol_header(buf, pos)
                    except FramingError:
                        self._bad_header(bytes(buf[pos : pos + 8]), events)
                        break
                    if header is None:
                        break
                    pos = after
                    self._on_header(header, events)
                    continue
                if max_frames is not None and frames >= max_frames:
                    break
                if self._phase is _Phase.OPENED:  # every message's frame: no Frame, no Transfer
                    plain = read_transfer_frame(buf, pos, self.max_frame_size)
                    if plain is not None:
                        pos = plain.end
                        frames += 1
                        self._endpoints.on_plain_transfer(plain, events)
                        continue
                sasl = self._phase is _Phase.SASL
                limit = min(SASL_MAX_INCOMING_FRAME, self.max_frame_size) if sasl else self.max_frame_size
                frame, after = decode_frame(buf, pos, limit)
                if frame is None:
                    break
                pos = after
                frames += 1
                if sasl:
                    if frame.frame_type != SASL_FRAME or frame.body is None:
                        self._fail(events, ErrorCondition.FRAMING_ERROR, "expected a SASL frame")
                    else:
                        self._on_sasl(frame.body, events)
                elif frame.frame_type == SASL_FRAME:
                    self._fail(events, ErrorCondition.FRAMING_ERROR, "a SASL frame after the SASL layer")
                elif frame.body is not None:
                    self._on_frame(frame.channel, frame.body, frame.payload, events)
        except DecodeError as exc:
            self._fail(events, exc.condition, exc.reason)
        except ConnectionFault as exc:
            self._fail(events, exc.condition, exc.description)
        if pos >= len(buf):
            self._buffer = bytearray()
            self._pos = 0
        elif pos > 65536 and pos * 2 > len(buf):
            del buf[:pos]
            self._pos = 0
        else:
            self._pos = pos
        return events

    def _bad_header(self, header: bytes, events: list[Event]) -> None:
        events.append(BadProtocolHeader(header))
        if self.role is ConnectionRole.SERVER:
            self._out += AMQP_HEADER  # the version we speak (§2.2), then close
        self._phase = _Phase.FINISHED

    def _on_header(self, header: ProtocolHeader, events: list[Event]) -> None:
        raw = header.to_bytes()
        if self.role is ConnectionRole.CLIENT:
            expected = SASL_HEADER if self.sasl_init is not None and not self._sasl_done else AMQP_HEADER
            if raw != expected:
                self._bad_header(raw, events)
            else:
                self._phase = _Phase.SASL if raw == SASL_HEADER else _Phase.OPEN
            return
        if raw == AMQP_HEADER:
            self._out += AMQP_HEADER
            self._phase = _Phase.OPEN
        elif raw == SASL_HEADER and self.sasl_mechanisms is not None and not self._sasl_done:
            self._out += SASL_HEADER
            mechanisms = tuple(Symbol(name) for name in self.sasl_mechanisms)
            self._out += encode_frame(0, SaslMechanisms(mechanisms), frame_type=SASL_FRAME)
            self._phase = _Phase.SASL
        else:
            self._bad_header(raw, events)

    def _on_sasl(self, body: Any, events: list[Event]) -> None:
        if self.role is ConnectionRole.SERVER:
            if type(body) is not SaslInit:
                self._fail(events, ErrorCondition.NOT_ALLOWED, f"unexpected {type(body).__name__}")
            elif self.sasl_mechanisms is None or body.mechanism not in self.sasl_mechanisms:
                self._out += encode_frame(0, SaslOutcome(SaslCode.AUTH), frame_type=SASL_FRAME)
                self._fail(
                    events, ErrorCondition.UNAUTHORIZED_ACCESS, f"mechanism {body.mechanism} not offered"
                )
            else:
                self._phase = _Phase.SASL_OUTCOME
                events.append(SaslInitReceived(str(body.mechanism), body.initial_response, body.hostname))
            return
        assert self.sasl_init is not None
        if type(body) is SaslMechanisms:
            if self.sasl_init.mechanism not in body.sasl_server_mechanisms:
                self._fail(
                    events, ErrorCondition.NOT_FOUND, f"server does not offer {self.sasl_init.mechanism}"
                )
            else:
                self._out += encode_frame(0, self.sasl_init, frame_type=SASL_FRAME)
        elif type(body) is SaslOutcome:
            events.append(SaslOutcomeReceived(body.code, body.additional_data))
            if body.code == SaslCode.OK:
                self._sasl_done = True
                self._phase = _Phase.HEADER
                self._out += AMQP_HEADER
                self._send_open()
            else:
                self._phase = _Phase.FINISHED
        else:
            self._fail(events, ErrorCondition.NOT_ALLOWED, f"unexpected {type(body).__name__}")

    def sasl_outcome(self, ok: bool, additional_data: bytes | None = None) -> None:
        """Server: answer the :class:`SaslInitReceived`. Not ok: finished after ``data_to_send()``."""
        if self._phase is not _Phase.SASL_OUTCOME:
            raise RuntimeError("no SASL init is awaiting an outcome")
        code = SaslCode.OK if ok else SaslCode.AUTH
        self._out += encode_frame(0, SaslOutcome(code, additional_data), frame_type=SASL_FRAME)
        self._sasl_done = ok
        self._phase = _Phase.HEADER if ok else _Phase.FINISHED

    def _on_frame(self, channel: int, body: Any, payload: bytes, events: list[Event]) -> None:
        kind = type(body)
        phase = self._phase
        if phase is _Phase.OPEN:
            if kind is not Open:
                self._fail(events, ErrorCondition.ILLEGAL_STATE, f"{kind.__name__} before open")
            else:
                self._on_open(body, events)
            return
        if phase is _Phase.CLOSING:
            if kind is Close:
                events.append(ConnectionClosed(body.error))
                self._phase = _Phase.FINISHED
            return
        if kind is Close:
            events.append(ConnectionClosed(body.error))
            if not self._close_sent:
                self._send(0, Close())
            self._phase = _Phase.FINISHED
            self._endpoints.usable = False
        elif kind is Open:
            self._fail(events, ErrorCondition.ILLEGAL_STATE, "a second open")
        else:
            self._endpoints.on_frame(channel, body, payload, events)

    def _on_open(self, open_: Open, events: list[Event]) -> None:
        self.remote_container_id = open_.container_id
        self.peer_max_frame_size = max(MIN_MAX_FRAME_SIZE, int(open_.max_frame_size))
        self.peer_idle_timeout = open_.idle_time_out / 1000 if open_.idle_time_out else None
        self._endpoints.peer_channel_max = open_.channel_max
        self._endpoints.peer_max_frame_size = self.peer_max_frame_size
        self._phase = _Phase.OPENED
        self._endpoints.usable = True
        if not self._open_sent:
            self._send_open()
        events.append(ConnectionOpened(open_))

    # -- errors ----------------------------------------------------------------------------------------

    def _fail(self, events: list[Event], condition: str, description: str) -> None:
        """A connection error: close with it (opening first if we have not); nothing more is read."""
        failure = ProtocolFailure(make_error(condition, description))
        events.append(failure)
        if self._phase in (_Phase.OPEN, _Phase.OPENED) and not self._close_sent:
            if not self._open_sent:
                self._send_open()
            self._send(0, Close(failure.error))
            self._close_sent = True
        self._phase = _Phase.FINISHED
        self._endpoints.usable = False

    # -- timers ----------------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should next run (the caller's clock), or None."""
        if self._phase is _Phase.FINISHED:
            return None
        at = None
        if self.idle_timeout and self._received_at is not None:
            at = self._received_at + self.idle_timeout
        if self.peer_idle_timeout and self._sent_at is not None and self._open_sent:
            beat = self._sent_at + self.peer_idle_timeout / 2
            if at is None or beat < at:
                at = beat
        return at

    def handle_timer(self, now: float) -> list[Event]:
        """Close a silent peer (our idle-time-out); send an empty frame when one is due."""
        self._now = now
        events: list[Event] = []
        if self._phase is _Phase.FINISHED:
            return events
        if self._received_at is None:
            self._received_at = now
        if self.idle_timeout and now >= self._received_at + self.idle_timeout:
            silent = f"idle timeout: nothing from the peer for {self.idle_timeout:g} s"
            self._fail(events, ErrorCondition.RESOURCE_LIMIT_EXCEEDED, silent)
            return events
        heartbeat = self.peer_idle_timeout and self._open_sent and self._sent_at is not None
        if heartbeat and now >= self._sent_at + self.peer_idle_timeout / 2:  # type: ignore[operator]
            self._send(0, None)
        return events

    # -- sending -----------------------------------------------------------------------------------------

    def _send(self, channel: int, body: Any, payload: bytes | memoryview = b"") -> None:
        self._out += encode_frame(channel, body, payload)
        if self._now is not None:
            self._sent_at = self._now

    def _send_frame(self, frame: bytes) -> None:
        self._out += frame
        if self._now is not None:
            self._sent_at = self._now

    def _send_open(self) -> None:
        idle = int(self.idle_timeout * 1000) if self.idle_timeout else None
        open_ = Open(
            self.container_id,
            hostname=self.hostname,
            max_frame_size=self.max_frame_size,
            channel_max=self.channel_max,
            idle_time_out=idle,
        )
        self._send(0, open_)
        self._open_sent = True

    def _usable(self) -> bool:
        return self._phase is _Phase.OPENED and not self._close_sent

    def close(self, error: Error | None = None) -> None:
        """Close the connection (:class:`ConnectionClosed` follows the peer's close)."""
        if self._phase in (_Phase.OPEN, _Phase.OPENED) and not self._close_sent:
            if not self._open_sent:
                self._send_open()
            self._send(0, Close(error))
            self._close_sent = True
            self._phase = _Phase.CLOSING
            self._endpoints.usable = False
        elif self._phase is not _Phase.CLOSING:
            self._phase = _Phase.FINISHED

    # -- commands on sessions and links (see :class:`~methodhub.amqp.endpoints.Endpoints`) -----------

    def begin_session(self) -> int:
        """Begin a session; returns our channel (:class:`SessionBegun` follows the peer's begin)."""
        return self._endpoints.begin_session()

    def attach(
        self,
        channel: int,
        name: str,
        *,
        sender: bool,
        source: Any = None,
        target: Any = None,
        snd_settle_mode: int = SenderSettleMode.MIXED,
        rcv_settle_mode: int = ReceiverSettleMode.FIRST,
        properties: dict[Any, Any] | None = None,
    ) -> LinkRef:
        """Attach a link of ours (``sender``: we send on it); :class:`LinkAttached` follows the answer."""
        return self._endpoints.attach(
            channel,
            name,
            sender=sender,
            source=source,
            target=target,
            snd_settle_mode=snd_settle_mode,
            rcv_settle_mode=rcv_settle_mode,
            properties=properties,
        )

    def accept_link(
        self, link: LinkRef, *, credit: int = 0, properties: dict[Any, Any] | None = None
    ) -> None:
        """Answer a peer's attach: ours mirrors it (the other role, its source, target and settle modes);
        ``credit`` (a receiving link): grant that much at once."""
        self._endpoints.accept_link(link, credit=credit, properties=properties)

    def refuse_link(self, link: LinkRef, error: Error) -> None:
        """Refuse a peer's attach: an attach with no source and target, then detach(closed, error)."""
        self._endpoints.refuse_link(link, error)

    def grant_credit(self, link: LinkRef, credit: int, drain: bool = False) -> None:
        """Let the peer send ``credit`` more deliveries on our receiving link (a flow with the total;
        ``drain``: ask the sender to use it up or give it back, :meth:`drain`)."""
        self._endpoints.grant_credit(link, credit, drain)

    def credit(self, link: LinkRef) -> int:
        """Deliveries we may still send on this link (sender) or have granted (receiver)."""
        return self._endpoints.credit(link)

    def drain(self, link: LinkRef) -> None:
        """Answer a :class:`CreditGranted` with ``drain`` set once there is nothing more to send on
        our sending link: the remaining credit is used up and a flow with drain set tells the peer."""
        self._endpoints.drain(link)

    def send_message(
        self, link: LinkRef, payload: bytes, delivery_tag: bytes, settled: bool = False
    ) -> int | None:
        """Send one message on our sending link, split to the peer's max-frame-size; its delivery-id.

        None when it cannot go now: no credit, the session's window is shut, or the link, its session
        or the connection is gone or going. Raises ValueError over the peer's max-message-size.
        """
        return self._endpoints.send_message(link, payload, delivery_tag, settled)

    def settle(self, link: LinkRef, delivery_id: int, state: Any = None) -> None:
        """Settle a delivery (ours or the peer's) with ``state`` (default Accepted) in a disposition."""
        self._endpoints.settle(link, delivery_id, state)

    def detach(self, link: LinkRef, error: Error | None = None, closed: bool = True) -> None:
        """Detach our link (:class:`LinkDetached` follows the peer's detach)."""
        self._endpoints.detach(link, error, closed)

    def end_session(self, channel: int, error: Error | None = None) -> None:
        """End our session (:class:`SessionEnded` follows the peer's end)."""
        self._endpoints.end_session(channel, error)
