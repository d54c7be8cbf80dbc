"""One device's MQTT connection: the thin asyncio adapter around the sans-I/O state machine.

Bytes from the socket go into :class:`~methodhub.mqtt.MqttConnection`; the events that come out
are handled here (authenticate CONNECT, answer PINGREQ, pass SUBSCRIBE/PUBLISH to the session's
dialect); packets we send are encoded by the state machine and written in one ``transport.write``.
Everything that can go wrong on one connection ends that connection only, with a log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from methodhub.gateway.dialects.base import SUBSCRIPTION_REFUSED, ConnectRefused
from methodhub.mqtt import (
    Connack,
    Connect,
    ConnectionClosed,
    Disconnect,
    MqttConnection,
    PacketReceived,
    Pingreq,
    Pingresp,
    ProtocolError,
    Puback,
    Publish,
    Role,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)

if TYPE_CHECKING:
    from methodhub.gateway.gateway import Gateway
    from methodhub.gateway.session import DeviceSession

log = logging.getLogger("methodhub.gateway")

MAX_WRITE_BUFFER = 4 * 1024 * 1024
"""A device that stops reading while we keep writing to it is cut off once this many bytes are
queued for it, so one stuck device cannot grow the hub's memory without bound."""

KEEPALIVE_FACTOR = 1.5
"""[MQTT-3.1.2-24]: the server disconnects a client silent for one and a half keep-alive periods."""

V5_REASON_FOR_CONNACK = {1: 0x84, 2: 0x85, 3: 0x88, 4: 0x86, 5: 0x87}
"""MQTT 3.1.1 CONNACK return codes → MQTT 5 reason codes (unsupported protocol version, client
identifier not valid, server unavailable, bad user name or password, not authorized)."""

REASON_NOT_AUTHORIZED = 0x87
REASON_SESSION_TAKEN_OVER = 0x8E
REASON_KEEPALIVE_TIMEOUT = 0x8D
REASON_QOS_NOT_SUPPORTED = 0x9B
REASON_SERVER_SHUTTING_DOWN = 0x8B
REASON_ADMINISTRATIVE_ACTION = 0x98


class DeviceConnection(asyncio.Protocol):
    """asyncio protocol for one MQTT connection (TCP, TLS or WebSocket underneath)."""

    def __init__(self, gateway: Gateway, listener: str) -> None:
        self.gateway = gateway
        self.listener = listener
        self.mqtt = MqttConnection(Role.SERVER, max_packet_size=gateway.max_packet_size)
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.peer = "-"
        self.session: DeviceSession | None = None
        self.connect_packet: Connect | None = None
        self.backlog: list[object] | None = None
        self.closing = False
        self.last_activity = 0.0
        self.keepalive = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.expiry_timer: asyncio.TimerHandle | None = None
        self.auth_task: asyncio.Task[None] | None = None
        self.level = 4

    # -- asyncio.Protocol -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        self.last_activity = self.loop.time()
        self.timer = self.loop.call_later(self.gateway.connect_packet_timeout, self._connect_deadline)
        self.gateway.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        events = self.mqtt.receive_data(data)
        if self.backlog is not None:
            self.backlog.extend(events)
            return
        self._handle(events)

    def eof_received(self) -> bool | None:
        self._handle(self.mqtt.receive_data(b""))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        for timer in (self.timer, self.expiry_timer):
            if timer is not None:
                timer.cancel()
        if self.auth_task is not None and not self.auth_task.done():
            self.auth_task.cancel()
        self.gateway.connections.discard(self)
        if self.session is not None:
            reason = "connection lost" if exc is None else f"connection lost: {exc}"
            self.session.detach(self, reason)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "device disconnected", extra={"ctx": {"device": self.session.key, "peer": self.peer}}
                )

    # -- SessionTransport -----------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes) -> None:
        """Send a QoS 0 PUBLISH (method requests are QoS 0, as on Azure IoT Hub)."""
        transport = self.transport
        if self.closing or transport is None:
            return
        transport.write(self.mqtt.send(Publish(topic=topic, payload=payload, qos=0)))
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            self._close("the device is not reading; its write buffer is full", REASON_ADMINISTRATIVE_ACTION)

    def close_taken_over(self) -> None:
        log.debug("session taken over by a new connection", extra={"ctx": {"peer": self.peer}})
        self._close(
            "another connection took over the session", REASON_SESSION_TAKEN_OVER, level=logging.DEBUG
        )

    # -- events ---------------------------------------------------------------------------------------

    def _handle(self, events: list[object]) -> None:
        for index, event in enumerate(events):
            if self.closing:
                return
            if type(event) is PacketReceived:
                packet = event.packet
                kind = type(packet)
                if kind is Publish:
                    self._on_publish(packet)
                elif kind is Pingreq:
                    self._send(Pingresp())
                elif kind is Subscribe:
                    self._on_subscribe(packet)
                elif kind is Unsubscribe:
                    self._on_unsubscribe(packet)
                elif kind is Connect:
                    self.backlog = list(events[index + 1 :])
                    self._start_auth(packet)
                    return
                elif kind is Disconnect:
                    self._close(None, None)
                    return
                # PUBACK (we send QoS 0 only) and others need no action.
            elif type(event) is ProtocolError:
                self._on_protocol_error(event)
                return
            elif type(event) is ConnectionClosed:
                self._close(None, None)
                return

    def _on_protocol_error(self, event: ProtocolError) -> None:
        self.gateway.metrics.protocol_errors.inc()
        log.warning(
            "protocol error, closing connection",
            extra={"ctx": {"peer": self.peer, "client_id": self._client_id(), "reason": event.reason}},
        )
        transport = self.transport
        if transport is not None:
            try:
                if self.session is None and event.connack_code is not None:
                    transport.write(
                        self.mqtt.send(Connack(session_present=False, reason_code=event.connack_code))
                    )
                elif self.session is not None and self.level >= 5:
                    transport.write(self.mqtt.send(Disconnect(reason_code=event.reason_code)))
            except Exception:  # the state machine may refuse to send after an error; closing is enough
                pass
        self._close(None, None)

    def _client_id(self) -> str:
        return self.connect_packet.client_id if self.connect_packet is not None else "-"

    # -- CONNECT --------------------------------------------------------------------------------------

    def _start_auth(self, connect: Connect) -> None:
        self.connect_packet = connect
        self.level = connect.protocol_level
        if self.transport is not None:
            self.transport.pause_reading()
        self.auth_task = self.loop.create_task(self._authenticate(connect))

    async def _authenticate(self, connect: Connect) -> None:
        gateway = self.gateway
        try:
            principal = await gateway.authenticate(connect)
        except ConnectRefused as refused:
            gateway.metrics.connects_refused.inc(_refusal_label(refused.code))
            log.info(
                "connection refused",
                extra={
                    "ctx": {
                        "client_id": connect.client_id,
                        "peer": self.peer,
                        "code": refused.code,
                        "reason": refused.reason,
                    }
                },
            )
            self._refuse(refused.code)
            return
        except Exception:
            log.exception(
                "authentication failed unexpectedly", extra={"ctx": {"client_id": connect.client_id}}
            )
            self._refuse(3)
            return
        if self.closing:
            return
        clean_start = connect.clean_session
        persistent = _persistent(connect)
        try:
            session, present = await gateway.sessions.open(principal, clean_start, persistent)
        except Exception as exc:  # the stored session could not be loaded: the registry is down
            log.warning(
                "connection refused: cannot load the session",
                extra={"ctx": {"client_id": connect.client_id, "peer": self.peer, "reason": str(exc)}},
            )
            gateway.metrics.connects_refused.inc(_refusal_label(3))
            if not self.closing:
                self._refuse(3)
            return
        if self.closing:
            return
        router = gateway.sessions.router
        reachable = router.reachable(principal.key)
        if reachable is not None:  # a cluster: other nodes must see the device before it hears CONNACK
            await asyncio.shield(reachable)  # shared by the connects of a loop iteration
            if self.closing:
                router.abandon(principal.key)
                return
        self.session = session
        self.keepalive = gateway.effective_keepalive(connect.keepalive)
        self._send(
            Connack(
                session_present=present and not clean_start,
                reason_code=0,
                properties=gateway.connack_properties(connect, self.keepalive) if self.level >= 5 else None,
            )
        )
        session.attach(self)
        gateway.metrics.connections.inc()
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(
            self.last_activity + self.keepalive * KEEPALIVE_FACTOR, self._keepalive_check
        )
        if principal.expires_at is not None:
            self.expiry_timer = self.loop.call_at(
                self.loop.time() + max(0.0, principal.expires_at - time.time()), self._credential_expired
            )
        if log.isEnabledFor(logging.DEBUG):  # once per connect: skip building the context otherwise
            log.debug(
                "device connected",
                extra={
                    "ctx": {
                        "device": principal.key,
                        "peer": self.peer,
                        "dialect": principal.dialect.name,
                        "listener": self.listener,
                    }
                },
            )
        backlog, self.backlog = self.backlog or [], None
        if self.transport is not None:
            self.transport.resume_reading()
        self._handle(backlog)

    def _refuse(self, code: int) -> None:
        reason_code = V5_REASON_FOR_CONNACK.get(code, 0x80) if self.level >= 5 else code
        self._send(Connack(session_present=False, reason_code=reason_code))
        self._close(None, None)

    async def reverify(self) -> None:
        """Check this connection's credentials again (after a registry change); close if they fail."""
        if self.connect_packet is None or self.session is None or self.closing:
            return
        try:
            await self.gateway.authenticate(self.connect_packet, use_cache=False)
        except ConnectRefused as refused:
            log.info(
                "closing connection: credentials no longer valid",
                extra={"ctx": {"device": self.session.key, "reason": refused.reason}},
            )
            self._close(refused.reason, REASON_NOT_AUTHORIZED)

    # -- SUBSCRIBE / UNSUBSCRIBE / PUBLISH ------------------------------------------------------------

    def _on_subscribe(self, packet: Subscribe) -> None:
        session = self.session
        assert session is not None
        codes: list[int] = []
        changed = False
        for topic_filter, qos in packet.subscriptions:
            granted = session.dialect.grant(session, topic_filter, qos)
            if granted == SUBSCRIPTION_REFUSED:
                log.info(
                    "subscription refused",
                    extra={"ctx": {"device": session.key, "filter": topic_filter}},
                )
                codes.append(REASON_NOT_AUTHORIZED if self.level >= 5 else SUBSCRIPTION_REFUSED)
                continue
            codes.append(granted)
            if session.subscriptions.get(topic_filter) != granted:
                session.subscriptions[topic_filter] = granted
                changed = True
        self._send(Suback(packet_id=packet.packet_id, reason_codes=codes))
        if changed:
            session.subscriptions_changed()

    def _on_unsubscribe(self, packet: Unsubscribe) -> None:
        session = self.session
        assert session is not None
        changed = False
        codes: list[int] = []
        for topic_filter in packet.topic_filters:
            if session.subscriptions.pop(topic_filter, None) is not None:
                changed = True
                codes.append(0x00)
            else:
                codes.append(0x11)  # v5 "No subscription existed"; dropped when encoding for v3
        self._send(Unsuback(packet_id=packet.packet_id, reason_codes=codes))
        if changed:
            session.subscriptions_changed()

    def _on_publish(self, packet: Publish) -> None:
        session = self.session
        assert session is not None
        if packet.qos == 2:
            # Azure IoT Hub closes the connection on QoS 2; MQTT 5 says so with 0x9B.
            self._close(f"QoS 2 PUBLISH to '{packet.topic}' is not supported", REASON_QOS_NOT_SUPPORTED)
            return
        if not session.dialect.on_publish(session, packet):
            self._close(
                f"publishing to '{packet.topic}' is not allowed for this device", REASON_NOT_AUTHORIZED
            )
            return
        if packet.qos == 1:
            self._send(Puback(packet_id=packet.packet_id))

    # -- timers, sending, closing ---------------------------------------------------------------------

    def _connect_deadline(self) -> None:
        if self.session is None and self.auth_task is None:
            log.info("closing connection: no CONNECT in time", extra={"ctx": {"peer": self.peer}})
            self._close(None, None)

    def _keepalive_check(self) -> None:
        deadline = self.last_activity + self.keepalive * KEEPALIVE_FACTOR
        now = self.loop.time()
        if now < deadline:
            self.timer = self.loop.call_at(deadline, self._keepalive_check)
            return
        self._close(
            f"keep-alive expired ({self.keepalive:g} s × {KEEPALIVE_FACTOR})", REASON_KEEPALIVE_TIMEOUT
        )

    def _credential_expired(self) -> None:
        self._close("its SAS token expired; the device must reconnect with a new one", REASON_NOT_AUTHORIZED)

    def _send(self, packet: object) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(self.mqtt.send(packet))

    def _close(self, why: str | None, v5_reason: int | None, level: int = logging.INFO) -> None:
        """Close the connection; ``why`` is logged, ``v5_reason`` is sent to MQTT 5 clients."""
        if self.closing:
            return
        if why is not None:
            key = self.session.key if self.session is not None else self._client_id()
            log.log(level, "closing connection: %s", why, extra={"ctx": {"device": key, "peer": self.peer}})
        if v5_reason is not None and self.level >= 5 and self.session is not None:
            try:
                self._send(Disconnect(reason_code=v5_reason))
            except Exception:
                pass
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def shutdown(self) -> None:
        """The hub is stopping."""
        self._close(None, REASON_SERVER_SHUTTING_DOWN)


def _persistent(connect: Connect) -> bool:
    if connect.protocol_level >= 5:
        expiry = (connect.properties or {}).get("session_expiry_interval", 0)
        return bool(expiry)
    return not connect.clean_session


def _refusal_label(code: int) -> str:
    return {
        1: "protocol_version",
        2: "client_id",
        3: "unavailable",
        4: "bad_credentials",
        5: "not_authorized",
    }.get(code, str(code))
