"""One device's MQTT connection: the thin asyncio adapter around the sans-I/O state machine.

Bytes from the socket go into :class:`~methodhub.mqtt.MqttConnection`; the events that come out
are handled here (authenticate CONNECT, answer PINGREQ, pass SUBSCRIBE/PUBLISH to the session's
dialect); packets we send are encoded by the state machine and written in this loop iteration's burst.
Everything that can go wrong on one connection ends that connection only, with a log line.

Rules every connection keeps (issue 9):

* It ends within a bounded time whatever happens: a CONNECT must be *answered* within the CONNECT
  deadline (authentication included), a closed connection that does not drain is aborted after
  :data:`CLOSE_GRACE` seconds, and any task or callback serving it that fails closes it (logged
  once, counted in ``methodhub_connection_failures_total``).
* It gets a work budget: at most :data:`WORK_BUDGET` packets are handled per loop iteration; the
  rest stays buffered in the state machine while reading is paused, so one device sending
  megabytes of PINGREQs cannot starve the others.
* Everything written to it goes through its :class:`~methodhub.burst.Burst`: one ``transport.write``
  per loop iteration (the replies of a batch and the calls delivered in the same turn together), in
  order; flushed before a close, dropped on abort; the bytes queued there count against
  :data:`MAX_WRITE_BUFFER`.
* It has an inbound packet-rate limit (a token bucket, :class:`~methodhub.config.DeviceLimits`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, cast

from methodhub.burst import Burst, flusher_for
from methodhub.config import MAX_KEEPALIVE
from methodhub.gateway.auth import client_certificate
from methodhub.gateway.context import CLOSE_GRACE, MAX_WRITE_BUFFER, WORK_BUDGET
from methodhub.gateway.dialect import SUBSCRIPTION_REFUSED, ConnectRefused, PendingReply
from methodhub.mqtt import (
    Connack,
    ConnackCode,
    Connect,
    ConnectionClosed,
    ConnectTimeout,
    Disconnect,
    KeepAliveTimeout,
    LocalProtocolError,
    MqttConnection,
    PacketReceived,
    Pingreq,
    Pingresp,
    ProtocolError,
    Puback,
    Publish,
    ReasonCode,
    Role,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
)

if TYPE_CHECKING:
    from methodhub.admission import Admission
    from methodhub.calls.model import Call
    from methodhub.gateway.context import ConnectionContext
    from methodhub.gateway.dialect import Principal
    from methodhub.gateway.session import DeviceSession
    from methodhub.registry.twins import Twin

log = logging.getLogger("methodhub.gateway")

MAX_PENDING_REPLIES = 16
"""Device requests one connection may have waiting for their answers (twin reads and writes); a
device sending more before the answers come is closed (MQTT 5: 0x97 Quota exceeded)."""


V5_REASON_FOR_CONNACK = {
    ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION: ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
    ConnackCode.IDENTIFIER_REJECTED: ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
    ConnackCode.SERVER_UNAVAILABLE: ReasonCode.SERVER_UNAVAILABLE,
    ConnackCode.BAD_USERNAME_OR_PASSWORD: ReasonCode.BAD_USERNAME_OR_PASSWORD,
    ConnackCode.NOT_AUTHORIZED: ReasonCode.NOT_AUTHORIZED,
}
"""MQTT 3.1.1 CONNACK return codes → MQTT 5 reason codes."""


class DeviceConnection(asyncio.Protocol):
    """asyncio protocol for one MQTT connection (TCP, TLS or WebSocket underneath)."""

    def __init__(self, ctx: ConnectionContext, listener: str, admission: Admission | None = None) -> None:
        self.ctx = ctx
        self.listener = listener
        self.admission = admission
        """The listener's connection caps (None: not counted, e.g. in tests)."""
        self.mqtt = MqttConnection(Role.SERVER, max_packet_size=ctx.max_packet_size)
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.peer = "-"
        self.session: DeviceSession | None = None
        self.connect_packet: Connect | None = None
        self.closing = False
        self.replies_pending = 0
        """Device requests (twin) being answered by a task."""
        self.timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self.timer_at = 0.0
        """The loop time the timer is armed for."""
        """The connection's one timer: armed at the state machine's next deadline (CONNECT deadline,
        keep-alive; see :meth:`_arm_timer`), then the close grace period once closing."""
        self.expiry_timer: asyncio.TimerHandle | None = None
        self.auth_task: asyncio.Task[None] | None = None
        self.level = 4
        self.limits = ctx.limits
        self.waiting = False
        """Reading is paused: the CONNECT is being authenticated, or the work budget ran out and
        the rest of the buffered packets are handled in a later loop iteration."""
        self.out = Burst(flusher_for(self.loop))
        """What we write: one ``transport.write`` per loop iteration."""
        self._tokens = float(self.limits.packet_burst)
        self._tokens_at = self.loop.time()

    # -- asyncio.Protocol -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.out.transport = self.transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        self.mqtt.connect_deadline = self.loop.time() + self.ctx.connect_timeout
        self._arm_timer()
        self.ctx.connections.add(self)
        admission = self.admission
        if admission is not None:
            sock = transport.get_extra_info("socket")
            fd = None
            if sock is not None:
                try:
                    fd = sock.fileno()
                except (OSError, ValueError):
                    pass
            if not admission.register(self, self._shed, fd):
                self._abort()  # every connection the listener holds is an authenticated device

    def _shed(self) -> None:
        """The listener is full: this unauthenticated connection makes room for a newer one."""
        self.ctx.metrics.device_limits.inc("connections")
        self._abort()

    def data_received(self, data: bytes) -> None:
        # The time goes in with the bytes (the keep-alive clock restarts); the armed timer stays: the
        # deadline only moved later, and the timer asks again when it fires.
        if self.waiting:  # keep it for later; reading is paused, so this is one read at most
            self.mqtt.receive_data(data, 0, self.loop.time())
            return
        self._serve(self.mqtt.receive_data(data, WORK_BUDGET, self.loop.time()))

    def eof_received(self) -> bool | None:
        if self.waiting:
            self.mqtt.receive_data(b"", 0)
        else:
            self._serve(self.mqtt.receive_data(b"", WORK_BUDGET))
        # Stay half-open until the packets before the EOF are answered (asyncio cannot keep a TLS
        # transport half-open, and warns when asked to).
        transport = self.transport
        return not self.closing and transport is not None and transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.out.discard()
        self.out.transport = None
        if self.admission is not None:
            self.admission.release(self)
        for timer in (self.timer, self.expiry_timer):
            if timer is not None:
                timer.cancel()
        if self.auth_task is not None and not self.auth_task.done():
            self.auth_task.cancel()
        self.ctx.connections.discard(self)
        if self.session is not None:
            self.ctx.metrics.device_disconnected("mqtt", self.listener)
            reason = "connection lost" if exc is None else f"connection lost: {exc}"
            self.session.detach(self, reason)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "device disconnected", extra={"ctx": {"device": self.session.key, "peer": self.peer}}
                )

    # -- DeviceChannel --------------------------------------------------------------------------------

    def deliver(self, call: Call, seq: int) -> str:
        """Put ``call`` on the wire as its dialect says: one QoS 0 PUBLISH (method requests are
        QoS 0, as on Azure IoT Hub), with the dialect's request properties on MQTT 5 connections.
        Returns the request id the device's answer will carry."""
        session = self.session
        assert session is not None  # only an attached session delivers
        dialect = session.dialect
        rid, topic, payload = dialect.encode_call(session, call, seq)
        if self.closing or self.transport is None:
            return rid
        if self.level >= 5:
            publish = Publish(topic, payload, 0, properties=dialect.request_properties(session, rid))
        else:
            publish = Publish(topic=topic, payload=payload, qos=0)
        try:
            data = self.mqtt.send(publish)
        except LocalProtocolError as exc:
            # A bug if it happens; the caller must not get a 500 for it (it did in a reconnect storm
            # when the state machine refused to send after a DISCONNECT). The connection ends; the
            # call fails with DEVICE_DISCONNECTED when the session detaches.
            self._failed("sending a call", exc)
            return rid
        self._write(data)
        return rid

    def ready_for_calls(self) -> bool:
        session = self.session
        return session is not None and session.dialect.is_ready(session)

    def close_taken_over(self) -> None:
        log.debug("session taken over by a new connection", extra={"ctx": {"peer": self.peer}})
        self._close(
            "another connection took over the session", ReasonCode.SESSION_TAKEN_OVER, level=logging.DEBUG
        )

    # -- events ---------------------------------------------------------------------------------------

    def _serve(self, events: Sequence[object]) -> None:
        """Handle a batch of events (at most :data:`WORK_BUDGET`); replies go out in the burst. If
        more packets are buffered, pause reading and go on in the next loop iteration."""
        count = len(events)
        if not count:
            if self.mqtt.has_pending_events:  # e.g. bytes kept while the CONNECT was authenticated
                self._serve_later()
            return
        rate = self.limits.max_packets_per_second
        if rate:  # the inbound packet-rate limit: a token bucket, refilled at ``rate`` per second
            now = self.loop.time()
            tokens = self._tokens + (now - self._tokens_at) * rate
            burst = self.limits.packet_burst
            self._tokens = (tokens if tokens < burst else burst) - count
            self._tokens_at = now
            if self._tokens < 0:
                self._rate_exceeded()
                return
        try:
            self._handle(events)
        except Exception:
            self._failed("handling packets")  # aborts: what it queued is dropped
            return
        # Fewer events than the budget: the state machine stopped for want of bytes (or at a CONNECT,
        # an error, a DISCONNECT), so there is nothing more to do now.
        if count >= WORK_BUDGET and not (self.closing or self.waiting) and self.mqtt.has_pending_events:
            self._serve_later()

    def _serve_later(self) -> None:
        self.waiting = True
        if self.transport is not None:
            self.transport.pause_reading()
        self.loop.call_soon(self._serve_more)

    def _serve_more(self) -> None:
        self.waiting = False
        if self.closing:
            return
        self._serve(self.mqtt.next_events(WORK_BUDGET))
        if not self.waiting and not self.closing and self.transport is not None:
            self.transport.resume_reading()

    def _rate_exceeded(self) -> None:
        self.ctx.metrics.device_limits.inc("packet_rate")
        self._close(
            f"more than {self.limits.max_packets_per_second:g} packets/s (burst {self.limits.packet_burst}); "
            "raise --max-packets-per-second if this device needs it",
            ReasonCode.MESSAGE_RATE_TOO_HIGH,
            level=logging.WARNING,
        )

    def _handle(self, events: Sequence[object]) -> None:
        for event in events:
            if self.closing:
                return
            if type(event) is PacketReceived:
                packet = event.packet
                kind = type(packet)
                if kind is Publish:
                    self._on_publish(cast(Publish, packet))
                elif kind is Pingreq:
                    self._send(Pingresp())
                elif kind is Subscribe:
                    self._on_subscribe(cast(Subscribe, packet))
                elif kind is Unsubscribe:
                    self._on_unsubscribe(cast(Unsubscribe, packet))
                elif kind is Connect:
                    self._start_auth(cast(Connect, packet))  # nothing more is read until CONNACK
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

    def _failed(self, what: str, exc: BaseException | None = None) -> None:
        """Serving this connection raised: a bug. Log it once with its traceback, count it, and end
        the connection at once (its state can no longer be trusted)."""
        self.ctx.metrics.connection_failures.inc()
        log.error(
            "unexpected error %s; closing the connection",
            what,
            exc_info=exc if exc is not None else True,
            extra={"ctx": {"peer": self.peer, "client_id": self._client_id()}},
        )
        self._abort()

    def _on_protocol_error(self, event: ProtocolError) -> None:
        self.ctx.metrics.protocol_errors.inc()
        log.warning(
            "protocol error, closing connection",
            extra={"ctx": {"peer": self.peer, "client_id": self._client_id(), "reason": event.reason}},
        )
        if self.session is None and event.connack_code is not None:
            self._send(Connack(session_present=False, reason_code=event.connack_code))
            self._close(None, None)
        else:
            self._close(None, event.reason_code)

    def _client_id(self) -> str:
        return self.connect_packet.client_id if self.connect_packet is not None else "-"

    # -- CONNECT --------------------------------------------------------------------------------------

    def _start_auth(self, connect: Connect) -> None:
        self.connect_packet = connect
        self.level = connect.protocol_level
        self.waiting = True
        if self.transport is not None:
            self.transport.pause_reading()
        self.auth_task = self._spawn(self._authenticate(connect), "authenticating a CONNECT")

    def _spawn(self, coroutine: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        """A task serving this connection: if it fails, the connection is closed (and it is logged)."""
        task = self.loop.create_task(coroutine)
        task.add_done_callback(lambda done: self._task_done(done, what))
        return task

    def _task_done(self, task: asyncio.Task[None], what: str) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._failed(what, exc)

    async def _authenticate(self, connect: Connect) -> None:
        principal = await self._verify(connect)
        if principal is None or self.closing:
            return
        async with self.ctx.sessions.opening(principal.key):
            await self._open_session(connect, principal)
        if self.closing or self.session is None:
            return
        self.waiting = False
        if self.transport is not None:
            self.transport.resume_reading()
        self._serve(self.mqtt.next_events(WORK_BUDGET))  # what the device sent after its CONNECT

    async def _verify(self, connect: Connect) -> Principal | None:
        """The CONNECT's principal, or None after refusing it with a CONNACK."""
        ctx = self.ctx
        try:
            return await ctx.authenticate(connect, client_certificate=client_certificate(self.transport))
        except ConnectRefused as refused:
            ctx.metrics.connects_refused.inc(_refusal_label(refused.code))
            if refused.code in (ConnackCode.BAD_USERNAME_OR_PASSWORD, ConnackCode.NOT_AUTHORIZED):
                ctx.metrics.auth_failed("device", "mqtt_" + _refusal_label(refused.code))
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
            self._refuse(refused.code, refused.v5_code)
            return None
        except Exception:
            log.exception(
                "authentication failed unexpectedly", extra={"ctx": {"client_id": connect.client_id}}
            )
            self._refuse(ConnackCode.SERVER_UNAVAILABLE)
            return None

    async def _open_session(self, connect: Connect, principal: Principal) -> None:
        """Open the identity's session and answer CONNACK. The caller holds the identity's lock:
        of simultaneous CONNECTs of one device, each takes the session over from the one before,
        so exactly one ends up connected."""
        ctx = self.ctx
        clean_start = connect.clean_session
        persistent = _persistent(connect)
        try:
            session, present = await ctx.sessions.open(principal, clean_start, persistent)
        except Exception as exc:  # the stored session could not be loaded: the registry is down
            log.warning(
                "connection refused: cannot load the session",
                extra={"ctx": {"client_id": connect.client_id, "peer": self.peer, "reason": str(exc)}},
            )
            ctx.metrics.connects_refused.inc(_refusal_label(ConnackCode.SERVER_UNAVAILABLE))
            if not self.closing:
                self._refuse(ConnackCode.SERVER_UNAVAILABLE)
            return
        if self.closing:
            session.abandon()
            return
        router = ctx.sessions.router
        reachable = router.reachable(principal.key)
        if reachable is not None:  # a cluster: other nodes must see the device before it hears CONNACK
            try:
                await asyncio.shield(reachable)  # shared by the connects of a loop iteration
            finally:
                if self.closing:  # closed meanwhile (connection_lost cancels this task)
                    router.abandon(principal.key)
                    session.abandon()
            if self.closing:
                return
        self.session = session
        keepalive = effective_keepalive(connect.keepalive)
        self.mqtt.keepalive = keepalive  # what the hub enforces (MQTT 5 clients hear it in the CONNACK)
        self._send(
            Connack(
                session_present=present and not clean_start,
                reason_code=0,
                properties=connack_properties(connect, keepalive, ctx.max_packet_size)
                if self.level >= 5
                else None,
            )
        )
        session.attach(self)  # calls it delivers now follow the CONNACK in the same burst
        if self.admission is not None:  # an authenticated device is never shed for a newcomer
            self.admission.mark_established(self)
            self.admission.mark_busy(self)
        ctx.metrics.connections.inc()
        ctx.metrics.device_connected("mqtt", self.listener)
        self._arm_timer()  # the CONNECT deadline gives way to keep-alive
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

    def _refuse(self, code: ConnackCode, v5_code: ReasonCode | None = None) -> None:
        reason_code: int = code
        if self.level >= 5:
            reason_code = v5_code or V5_REASON_FOR_CONNACK.get(code, ReasonCode.UNSPECIFIED_ERROR)
        self._send(Connack(session_present=False, reason_code=reason_code))
        self._close(None, None)

    async def reverify(self) -> None:
        """Check this connection's credentials again (after a registry change); close if they fail."""
        if self.connect_packet is None or self.session is None or self.closing:
            return
        try:
            await self.ctx.authenticate(
                self.connect_packet,
                use_cache=False,
                new=False,
                client_certificate=client_certificate(self.transport),
            )
        except ConnectRefused as refused:
            log.info(
                "closing connection: credentials no longer valid",
                extra={"ctx": {"device": self.session.key, "reason": refused.reason}},
            )
            self._close(refused.reason, ReasonCode.NOT_AUTHORIZED)

    # -- SUBSCRIBE / UNSUBSCRIBE / PUBLISH ------------------------------------------------------------

    def _on_subscribe(self, packet: Subscribe) -> None:
        session = self.session
        assert session is not None
        codes: list[int] = []
        granted_filters: dict[str, int] = {}
        limits = self.limits
        v5 = self.level >= 5
        for topic_filter, qos in packet.subscriptions:
            refusal = None
            if len(topic_filter) > limits.max_topic_filter_length // 4 and (
                len(topic_filter.encode()) > limits.max_topic_filter_length
            ):
                refusal = (
                    "filter_length",
                    ReasonCode.TOPIC_FILTER_INVALID,
                    (f"the filter is longer than {limits.max_topic_filter_length} bytes"),
                )
            elif (
                topic_filter not in session.subscriptions
                and topic_filter not in granted_filters
                and len(session.subscriptions) + len(granted_filters) >= limits.max_subscriptions
            ):
                refusal = (
                    "subscriptions",
                    ReasonCode.QUOTA_EXCEEDED,
                    (f"the session already holds {limits.max_subscriptions} filters, the most allowed"),
                )
            if refusal is not None:
                limit, v5_code, why = refusal
                self.ctx.metrics.device_limits.inc(limit)
                log.info(
                    "subscription refused: %s",
                    why,
                    extra={"ctx": {"device": session.key, "filter": topic_filter[:200]}},
                )
                codes.append(v5_code if v5 else SUBSCRIPTION_REFUSED)
                continue
            granted = session.dialect.grant(session, topic_filter, qos)
            if granted == SUBSCRIPTION_REFUSED:
                log.info(
                    "subscription refused",
                    extra={"ctx": {"device": session.key, "filter": topic_filter}},
                )
                codes.append(ReasonCode.NOT_AUTHORIZED if self.level >= 5 else SUBSCRIPTION_REFUSED)
                continue
            codes.append(granted)
            granted_filters[topic_filter] = granted
        self._send(Suback(packet_id=packet.packet_id, reason_codes=codes))
        if granted_filters:
            session.update_subscriptions(granted_filters)

    def _on_unsubscribe(self, packet: Unsubscribe) -> None:
        session = self.session
        assert session is not None
        subscriptions = session.subscriptions
        removed: set[str] = set()
        codes: list[int] = []
        for topic_filter in packet.topic_filters:
            if topic_filter in subscriptions and topic_filter not in removed:
                removed.add(topic_filter)
                codes.append(0x00)
            else:
                codes.append(0x11)  # v5 "No subscription existed"; dropped when encoding for v3
        self._send(Unsuback(packet_id=packet.packet_id, reason_codes=codes))
        if removed:
            session.update_subscriptions({}, removed)

    def _on_publish(self, packet: Publish) -> None:
        session = self.session
        assert session is not None
        if packet.qos == 2:
            # Azure IoT Hub closes the connection on QoS 2; MQTT 5 says so with 0x9B.
            self._close(f"QoS 2 PUBLISH to '{packet.topic}' is not supported", ReasonCode.QOS_NOT_SUPPORTED)
            return
        verdict = session.dialect.on_publish(session, packet)
        if verdict is False:
            self._close(
                f"publishing to '{packet.topic}' is not allowed for this device", ReasonCode.NOT_AUTHORIZED
            )
            return
        if type(verdict) is tuple:  # the dialect answers at once
            topic, payload = verdict
            self._send(Publish(topic=topic, payload=payload, qos=0))
        elif verdict is not True:  # the dialect answers later (e.g. Azure's twin requests)
            self._reply_later(verdict)  # type: ignore[arg-type]
        if packet.qos == 1 and packet.packet_id is not None:  # QoS 1 always has one (the codec checks)
            self._send(Puback(packet_id=packet.packet_id))

    def desired_changed(self, twin: Twin) -> None:
        session = self.session
        if session is None or self.closing:
            return
        for topic, payload in session.dialect.twin_notifications(session, twin):
            self._send(Publish(topic=topic, payload=payload, qos=0))

    def _reply_later(self, pending: PendingReply) -> None:
        if self.replies_pending >= MAX_PENDING_REPLIES:
            pending.close()
            self._close(
                f"more than {MAX_PENDING_REPLIES} requests (e.g. twin) waiting for their answers",
                ReasonCode.QUOTA_EXCEEDED,
            )
            return
        self.replies_pending += 1
        self._spawn(self._reply(pending), "answering a device request")

    async def _reply(self, pending: PendingReply) -> None:
        try:
            reply = await pending
        finally:
            self.replies_pending -= 1
        if reply is not None and not self.closing:
            self._send(Publish(topic=reply[0], payload=reply[1], qos=0))

    # -- timers, sending, closing ---------------------------------------------------------------------

    def _arm_timer(self) -> None:
        """(Re-)arm the one timer at the state machine's next deadline: when the connection is made,
        when the CONNACK turns the CONNECT deadline into keep-alive, and when the timer fires. Not
        per packet: received bytes only move the keep-alive deadline later, which the armed timer
        finds when it fires."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        at = self.mqtt.get_timer()
        if at is not None:
            self.timer_at = at  # uvloop's call_at gives a Handle without when() for under 1 ms ahead
            self.timer = self.loop.call_at(at, self._timer_fired)

    def _timer_fired(self) -> None:
        fired = self.timer
        self.timer = None
        if self.closing:
            return
        # Not before the deadline it was armed for, should the loop fire it a hair early (as aioquic).
        now = self.loop.time() if fired is None else max(self.timer_at, self.loop.time())
        try:
            for event in self.mqtt.handle_timer(now):
                if type(event) is KeepAliveTimeout:
                    self._close(event.reason, event.reason_code)
                elif type(event) is ConnectTimeout:
                    self._connect_timed_out(event)
            if not self.closing:
                self._arm_timer()
        except Exception:
            self._failed("handling a timer")

    def _connect_timed_out(self, event: ConnectTimeout) -> None:
        """The CONNECT was not sent, or not *answered* (authentication included), by the deadline."""
        if self.auth_task is not None:
            self.auth_task.cancel()
        self.ctx.metrics.device_limits.inc("connect_deadline")
        log.info(
            "closing connection: %s (%g s)",
            event.reason,
            self.ctx.connect_timeout,
            extra={"ctx": {"peer": self.peer, "client_id": self._client_id()}},
        )
        self._close(None, None)

    def _credential_expired(self) -> None:
        self._close(
            "its SAS token expired; the device must reconnect with a new one", ReasonCode.NOT_AUTHORIZED
        )

    def _send(self, packet: object) -> None:
        if self.transport is not None and not self.closing:
            self._write(self.mqtt.send(packet))  # type: ignore[arg-type]

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        out = self.out
        out.write(data)
        if out.size + transport.get_write_buffer_size() > MAX_WRITE_BUFFER:  # queued here or there
            self._close(
                "the device is not reading; its write buffer is full", ReasonCode.ADMINISTRATIVE_ACTION
            )

    def _close(self, why: str | None, v5_reason: int | None, level: int = logging.INFO) -> None:
        """Close the connection; ``why`` is logged, ``v5_reason`` is sent to MQTT 5 clients."""
        if self.closing:
            return
        if why is not None:
            key = self.session.key if self.session is not None else self._client_id()
            log.log(level, "closing connection: %s", why, extra={"ctx": {"device": key, "peer": self.peer}})
        if v5_reason is not None and self.level >= 5 and self.session is not None and self.transport:
            # Past _write's buffer check: a close *for* a full buffer must not close again (recursion).
            self.out.write(self.mqtt.send(Disconnect(reason_code=v5_reason)))
        self.out.flush()
        self.closing = True
        for timer in (self.timer, self.expiry_timer):
            if timer is not None:
                timer.cancel()
        self.expiry_timer = None
        if self.transport is not None:
            self.transport.close()
            # A peer that does not read keeps the flush (and so the close) from finishing: bounded.
            self.timer = self.loop.call_later(CLOSE_GRACE, self._abort)

    def abort(self) -> None:
        """End the connection now, without flushing."""
        self._abort()

    def _abort(self) -> None:
        """End the connection now, without flushing."""
        self.closing = True
        self.out.discard()
        if self.transport is not None:
            self.transport.abort()

    def shutdown(self) -> None:
        """The hub is stopping."""
        self._close(None, ReasonCode.SERVER_SHUTTING_DOWN)


def effective_keepalive(requested: int) -> float:
    """The keep-alive the hub enforces: the client's, capped at Azure's 1767 s (0 = the cap)."""
    if requested <= 0 or requested > MAX_KEEPALIVE:
        return float(MAX_KEEPALIVE)
    return float(requested)


def connack_properties(connect: Connect, keepalive: float, max_packet_size: int) -> dict[str, Any]:
    """MQTT 5 CONNACK properties: what this server supports, so clients do not try the rest."""
    props: dict[str, Any] = {
        "maximum_qos": 1,
        "retain_available": 0,
        "maximum_packet_size": max_packet_size,
        "topic_alias_maximum": 0,
        "wildcard_subscription_available": 1,
        "subscription_identifier_available": 0,
        "shared_subscription_available": 0,
    }
    if keepalive != connect.keepalive:
        props["server_keep_alive"] = int(keepalive)
    return props


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
