"""One device's AMQP 1.0 connection: the asyncio adapter around the sans-I/O AMQP state machine, the
AMQP device transport (azure-amqp-wire.md).

Bytes from the transport (TCP, TLS, or a WebSocket's byte stream) go into a server-role
:class:`~methodhub.amqp.AmqpConnection`; the events that come out are handled here, and what the
state machine queues goes into the connection's :class:`~methodhub.burst.Burst` after each batch:
one ``transport.write`` per loop iteration. What the links, CBS
put-tokens and method messages mean is the cloud's, asked through an
:class:`~methodhub.gateway.amqp_dialect.AmqpDialect` (Azure's:
:class:`~methodhub.dialects.azure.amqp.AzureAmqpDialect`); this module carries them. A connection may
carry several identities (C# and Java multiplex devices on one connection): each is authorized by
its own put-token (:mod:`methodhub.gateway.amqp_cbs`), and each identity's pair of methods links is
one :class:`AmqpMethodsChannel`, the :class:`~methodhub.gateway.channel.DeviceChannel` of its
session.

Rules every connection keeps, as the MQTT connection does:

* It ends within a bounded time: an identity must be authorized (CBS put-token, or SASL PLAIN)
  within ``ctx.connect_timeout`` of the connection being made (the protocol header and ``open``
  included), a silent peer is closed at the idle time-out, a closed connection that does not
  drain is aborted after :data:`CLOSE_GRACE` seconds, and any task or callback serving it that
  fails closes it (logged once, counted in ``methodhub_connection_failures_total``).
* It gets a work budget: at most :data:`WORK_BUDGET` frames per loop iteration, the rest stays
  buffered while reading is paused. At most :data:`MAX_WRITE_BUFFER` bytes queued for a device
  (in its burst and its transport).
* One timer: the state machine's next deadline (idle time-out, heartbeat) or the authorization
  deadline, re-armed when it fires or when the deadline moves earlier. Each authorized identity
  has one more, at its token's expiry: its links are then detached ``amqp:unauthorized-access``
  unless a renewal put-token moved the expiry later.
* Planned shutdown and takeover detach links with ``amqp:link:detach-forced`` and drop TCP, never
  an AMQP ``close`` (Node stalls 45 s after one, wire doc §7.2).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from methodhub.amqp import (
    Accepted,
    AmqpConnection,
    ConnectionRole,
    DecodeError,
    Error,
    ErrorCondition,
    LinkRef,
    Message,
    Rejected,
    SenderSettleMode,
    decode_message,
    encode_message,
)
from methodhub.amqp.events import (
    BadProtocolHeader,
    ConnectionClosed,
    ConnectionOpened,
    CreditGranted,
    DeliverySettled,
    LinkAttached,
    LinkDetached,
    MessageReceived,
    ProtocolFailure,
    SaslInitReceived,
    SessionEnded,
)
from methodhub.burst import Burst, flusher_for
from methodhub.errors import ErrorKind, HubError
from methodhub.gateway.amqp_cbs import CbsAuthorization, HubGrant
from methodhub.gateway.amqp_channel import CREDIT, AmqpMethodsChannel, AuthorizedIdentity, LinkState
from methodhub.gateway.amqp_dialect import AmqpDialect, LinkHandling
from methodhub.gateway.context import CLOSE_GRACE, MAX_WRITE_BUFFER, WORK_BUDGET
from methodhub.gateway.dialect import Principal

if TYPE_CHECKING:
    from methodhub.admission import Admission
    from methodhub.gateway.context import ConnectionContext

log = logging.getLogger("methodhub.gateway")
_METHOD_RESPONSES = LinkHandling.METHOD_RESPONSES
"""(Read once per message: an Enum member read costs ~90 ns on Python 3.11, a global ~10.)"""


IDLE_TIMEOUT = 120.0
"""Seconds of silence after which a peer is closed; advertised in ``open`` (Node and C then send
empty frames every 60 s)."""


_RECEIVING = frozenset(
    {LinkHandling.METHOD_RESPONSES, LinkHandling.TWIN_REQUESTS, LinkHandling.ACCEPT_AND_DROP}
)
"""The device's links we receive on (and grant credit to) besides $cbs."""


class AmqpDeviceConnection(CbsAuthorization, asyncio.Protocol):
    """asyncio protocol for one AMQP connection (TCP, TLS or WebSocket underneath)."""

    def __init__(
        self,
        ctx: ConnectionContext,
        dialect: AmqpDialect,
        listener: str,
        admission: Admission | None = None,
    ) -> None:
        self.ctx = ctx
        self.dialect = dialect
        """What the links, tokens and method messages mean (the cloud's AMQP device protocol)."""
        self.listener = listener
        self.admission = admission
        """The listener's connection caps (None: not counted, e.g. in tests)."""
        self.amqp = AmqpConnection(ConnectionRole.SERVER, container_id="methodhub", idle_timeout=IDLE_TIMEOUT)
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.out = Burst(flusher_for(self.loop))
        """What we write: one ``transport.write`` per loop iteration."""
        self.wall = time.time
        """Epoch seconds (token expiry); a test may replace it."""
        self.peer = "-"
        self.closing = False
        self.waiting = False
        """Reading is paused: a SASL PLAIN token is being verified, or the work budget ran out."""
        self._held: list[bytes] = []
        self._held_events: list[object] = []
        """Events decoded but not yet served when a verification paused the connection."""
        self._batch = False
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        """The loop time ``timer`` is armed for (uvloop's ``call_at`` gives a plain Handle, with no
        ``when()``, for a time under a millisecond away)."""
        self.deadline: float | None = None
        """Loop time by which an identity must be authorized (None once one was)."""
        self.identities: dict[str, AuthorizedIdentity] = {}
        self.replies_pending = 0
        """Twin requests being answered by a task."""
        self.hub_grant: HubGrant | None = None
        self.unanswerable_put_tokens = 0
        """put-tokens sent where no $cbs receiver could take the answer (logged once)."""
        """A hub-wide token (a shared access policy's) that holds on this connection, if any."""
        self.links: dict[LinkRef, LinkState] = {}
        self.cbs_responses: dict[int, LinkRef] = {}
        """Session channel → the device's ``$cbs`` receiver in it (put-token answers go there)."""
        self.backlog: dict[LinkRef, list[bytes]] = {}
        """Answers (put-token, twin) waiting for the device's credit on our link, in order."""
        self.tasks: set[asyncio.Task[None]] = set()
        self._established = False
        self._session_dialect = next((d for d in ctx.dialects if d.name == dialect.name), None)
        """The principal's dialect: the MQTT dialect of the AMQP dialect's name (Azure's), so MQTT and
        AMQP sessions of one device take each other over (see :class:`AmqpMethodsChannel`)."""

    # -- asyncio.Protocol -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.out.transport = self.transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        self.deadline = self.loop.time() + self.ctx.connect_timeout
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
                self._abort()

    def _shed(self) -> None:
        self.ctx.metrics.amqp_limits.inc("connections")
        self._abort()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.waiting:  # reading is paused: this is one read at most
            self._held.append(data)
            return
        self._serve(self.amqp.receive_data(data, self.loop.time(), WORK_BUDGET))

    def eof_received(self) -> bool | None:
        self._drop(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.out.discard()
        self.out.transport = None
        if self.admission is not None:
            self.admission.release(self)
        if self.timer is not None:
            self.timer.cancel()
        for task in self.tasks:
            task.cancel()
        self.ctx.connections.discard(self)
        reason = "connection lost" if exc is None else f"connection lost: {exc}"
        for identity in self.identities.values():
            if identity.expiry_timer is not None:
                identity.expiry_timer.cancel()
            if identity.channel is not None:
                identity.channel.end(reason)

    # -- serving events -------------------------------------------------------------------------------

    def _serve(self, events: Sequence[object]) -> None:
        self._batch = True
        try:
            for n, event in enumerate(events):
                if self.closing:
                    break
                if type(event) is MessageReceived:  # (most events: one call less)
                    self._on_message(event)
                else:
                    self._handle(event)
                if self.waiting:  # it paused the connection (a credential is being verified)
                    self._held_events = [*events[n + 1 :], *self._held_events]
                    break
        except Exception:
            self._batch = False
            self._failed("handling AMQP frames")
            return
        self._batch = False
        if self.closing:
            return
        self.flush()
        if self.amqp.finished:
            self._drop(None)
            return
        if not self.waiting and self.amqp.has_pending_events:
            self._serve_later()
        self._arm_timer()

    def _serve_later(self) -> None:
        self.waiting = True
        if self.transport is not None:
            self.transport.pause_reading()
        self.loop.call_soon(self._resume)

    def _resume(self) -> None:
        """Go on reading: after a work budget ran out, or a SASL outcome was sent."""
        self.waiting = False
        if self.closing:
            return
        held, self._held = self._held, []
        events, self._held_events = self._held_events, []
        now = self.loop.time()
        data = b"".join(held)
        if events:  # decoded before the pause: served first, in order; what was read since waits
            if data:  # in the core (served after them, by _serve_later)
                events += self.amqp.receive_data(data, now, 0)
            self._serve(events)
        else:
            self._serve(
                self.amqp.receive_data(data, now, WORK_BUDGET) if data else self.amqp.next_events(WORK_BUDGET)
            )
        if not self.waiting and not self.closing and self.transport is not None:
            self.transport.resume_reading()

    def _handle(self, event: object) -> None:
        kind = type(event)
        if kind is MessageReceived:
            self._on_message(event)  # type: ignore[arg-type]
        elif kind is LinkAttached:
            if event.needs_answer:  # type: ignore[attr-defined]
                self._on_attach(event)  # type: ignore[arg-type]
        elif kind is DeliverySettled:
            self._on_settled(event)  # type: ignore[arg-type]
        elif kind is LinkDetached:
            self._forget_link(event.link, "the device detached its methods link")  # type: ignore[attr-defined]
        elif kind is SessionEnded:
            self._forget_session(event.channel)  # type: ignore[attr-defined]
        elif kind is SaslInitReceived:
            self._on_sasl(event)  # type: ignore[arg-type]
        elif kind is ProtocolFailure:
            self._on_protocol_failure(event)  # type: ignore[arg-type]
        elif kind is BadProtocolHeader:
            self._protocol_error(f"not an AMQP 1.0 protocol header: {event.header!r}")  # type: ignore[attr-defined]
        elif kind is ConnectionClosed:
            log.debug("the device closed the connection", extra={"ctx": {"peer": self.peer}})
        elif kind is CreditGranted:
            self._on_credit(event)  # type: ignore[arg-type]
        elif kind is ConnectionOpened:
            self._on_opened()
        # SessionBegun: the state machine answered; nothing to do.

    def _on_opened(self) -> None:
        """A new connection opened: over the hub's device connect rate, close it at once with
        ``amqp:resource-limit-exceeded`` (the AMQP way to say "not now"; the SDKs retry)."""
        quotas = self.ctx.quotas
        if quotas is None:
            return
        wait = quotas.connect_wait()
        if wait:
            self.amqp.close(
                Error(
                    ErrorCondition.RESOURCE_LIMIT_EXCEEDED,
                    f"Too many new device connections per second; retry in {max(wait, 0.001):.3g} s.",
                )
            )

    def _on_credit(self, event: CreditGranted) -> None:
        link = event.link
        if self.backlog and link in self.backlog:
            self._send_backlog(link)
        if event.drain and link not in self.backlog:
            # Nothing waits to go on it: the requests link sends a call the moment it comes, and
            # none is queued for credit, so the credit is given back at once (AMQP 1.0 §2.6.7).
            self.amqp.drain(link)

    def send_answer(self, link: LinkRef, payload: bytes) -> None:
        """Send an answer (put-token, twin) on our ``link``, pre-settled, after those waiting for
        credit on it; it waits for credit too if there is none (:meth:`_send_backlog`). A device
        that lets more than ``CREDIT`` answers wait is not reading them: it is dropped."""
        backlog = self.backlog.get(link)
        if backlog is None:
            if self.amqp.send_message(link, payload, b"", settled=True) is not None:
                return
            backlog = self.backlog[link] = []
        if len(backlog) >= CREDIT:
            self._drop(f"{len(backlog)} answers wait for credit it never gives", logging.WARNING)
            return
        backlog.append(payload)

    def _send_backlog(self, link: LinkRef) -> None:
        """Credit arrived on ``link``: send the answers that waited for it, in order."""
        backlog = self.backlog.get(link, [])
        while backlog and self.amqp.send_message(link, backlog[0], b"", settled=True) is not None:
            backlog.pop(0)
        if not backlog:
            self.backlog.pop(link, None)

    def _protocol_error(self, reason: str) -> None:
        self.ctx.metrics.amqp_protocol_errors.inc()
        log.warning(
            "AMQP protocol error, closing connection",
            extra={"ctx": {"peer": self.peer, "device": self._who(), "reason": reason}},
        )

    def _on_protocol_failure(self, event: ProtocolFailure) -> None:
        error = event.error
        self._protocol_error(f"{error.condition}: {error.description}")
        if event.link is not None:
            self._forget_link(event.link, f"link error {error.condition}")
        elif event.channel is not None:
            self._forget_session(event.channel)
        # else: the state machine is closing the connection; _serve drops TCP once it is written.

    # -- links ----------------------------------------------------------------------------------------

    def _on_attach(self, event: LinkAttached) -> None:
        attach = event.attach
        link = event.link
        amqp = self.amqp
        dialect = self.dialect
        address = dialect.link_address(attach)
        named = dialect.classify_link(address, attach.role) if address is not None else None
        if named is None:
            log.info("link refused: unknown address", extra={"ctx": {"peer": self.peer, "address": address}})
            amqp.refuse_link(link, dialect.unknown_link(address))
            return
        handling = named.handling
        if named.key is None:  # $cbs
            if handling is LinkHandling.CBS_REQUESTS:
                amqp.accept_link(link, credit=CREDIT)
            else:
                amqp.accept_link(link)
                self.cbs_responses[link.channel] = link
            self.links[link] = LinkState(handling, None)
            return
        identity = self.identities.get(named.key)
        if identity is None and self.authorize_for_link(event, named, str(address)):
            return  # a hub-wide token or the client certificate is being verified; handled again after
        if identity is None:
            log.info(
                "link refused: identity not authorized",
                extra={"ctx": {"peer": self.peer, "device": named.key, "address": address}},
            )
            amqp.refuse_link(link, dialect.unauthorized_link(str(address), named.key))
            return
        receives = handling in _RECEIVING
        amqp.accept_link(link, credit=CREDIT if receives else 0)
        self.links[link] = LinkState(handling, named.key)
        identity.links.add(link)
        if handling is LinkHandling.TWIN_RESPONSES:
            identity.twin_responses = link  # the newest wins; an older one is left as it is
        elif handling is LinkHandling.METHOD_RESPONSES or handling is LinkHandling.METHOD_REQUESTS:
            self._methods_link(identity, link, handling, attach.snd_settle_mode == SenderSettleMode.SETTLED)

    def _methods_link(
        self, identity: AuthorizedIdentity, link: LinkRef, handling: LinkHandling, presettle: bool
    ) -> None:
        """A methods link of ``identity`` attached; the newest of each direction wins."""
        responses = handling is LinkHandling.METHOD_RESPONSES
        old = identity.responses if responses else identity.requests
        if old is not None and old != link:
            self.amqp.detach(old, self.dialect.taken_over(identity.key))
            self._forget_link(old, "a newer methods link replaced it")
        if responses:
            identity.responses = link
        else:
            identity.requests = link
            identity.presettle_requests = presettle
        channel = identity.channel
        if channel is None:  # its links were replaced or lost before: a new session
            self._open_channel(identity)
        elif channel.session is not None:  # ready once both links are there
            channel.session.readiness_changed()

    def _forget_link(self, link: LinkRef, reason: str) -> None:
        """``link`` is gone (detached by either side, its session ended)."""
        state = self.links.pop(link, None)
        if state is None:
            return
        self.backlog.pop(link, None)
        if state.key is None:
            if self.cbs_responses.get(link.channel) == link:
                del self.cbs_responses[link.channel]
            return
        identity = self.identities.get(state.key)
        if identity is None:
            return
        identity.links.discard(link)
        if link == identity.twin_responses:
            identity.twin_responses = None
        if link == identity.responses or link == identity.requests:
            if link == identity.responses:
                identity.responses = None
            else:
                identity.requests = None
            channel, identity.channel = identity.channel, None
            if channel is not None:
                channel.end(reason)

    def _forget_session(self, channel: int) -> None:
        for link in [ref for ref in self.links if ref.channel == channel]:
            self._forget_link(link, "the device ended its session")
        self.cbs_responses.pop(channel, None)

    def end_channel(self, channel: AmqpMethodsChannel, error: Error, reason: str) -> None:
        """Detach ``channel``'s methods links with ``error`` and end it."""
        identity = channel.identity
        if identity.channel is channel:
            for link in (identity.responses, identity.requests):
                if link is not None:
                    self.amqp.detach(link, error)
                    self.links.pop(link, None)
                    identity.links.discard(link)
            identity.responses = identity.requests = None
            identity.channel = None
        channel.end(reason)
        self.flush()

    def drop_if_idle(self) -> None:
        """Drop TCP (not an AMQP close: wire doc §7.2) when no methods channel is left on it."""
        if not self.closing and not any(i.channel is not None for i in self.identities.values()):
            self._drop("it carries no device any more", logging.DEBUG)

    # -- messages -------------------------------------------------------------------------------------

    def _on_message(self, event: MessageReceived) -> None:
        link = event.link
        state = self.links.get(link)
        if state is None:
            if not event.settled:
                self.amqp.settle(link, event.delivery_id, Accepted())
            return
        handling = state.handling
        try:
            if handling is _METHOD_RESPONSES:  # the hot path: the dialect reads the bytes
                parsed = self.dialect.parse_method_response(event.payload)
                message = None
            else:
                message = decode_message(event.payload)
        except DecodeError as exc:
            if not event.settled:
                self.amqp.settle(
                    link,
                    event.delivery_id,
                    Rejected(Error(ErrorCondition.DECODE_ERROR, f"not an AMQP message: {exc}")),
                )
            if handling is LinkHandling.METHOD_RESPONSES:
                self._count_stray()
            self._top_up(link, event.credit)
            return
        if not event.settled:  # accepted and settled before any answer (§2.3)
            self.amqp.settle(link, event.delivery_id, Accepted())
        self._top_up(link, event.credit)
        if message is None:
            identity = self.identities.get(state.key) if state.key is not None else None
            channel = identity.channel if identity is not None else None
            if parsed is None or channel is None or channel.session is None:
                self._count_stray()
                return
            channel.session.complete(*parsed)
        elif handling is LinkHandling.CBS_REQUESTS:
            self._on_put_token(link.channel, message)
        elif handling is LinkHandling.TWIN_REQUESTS:
            self._on_twin_request(state.key, message)
        elif handling is LinkHandling.ACCEPT_AND_DROP:
            self.ctx.metrics.telemetry.inc()

    def _on_twin_request(self, key: str | None, message: Message) -> None:
        identity = self.identities.get(key) if key is not None else None
        if identity is None:
            return
        if self.replies_pending >= CREDIT:
            self._drop(f"more than {CREDIT} twin requests wait for their answers", logging.WARNING)
            return
        subscribes = self.dialect.twin_subscription(message)
        if subscribes is not None:
            identity.desired_subscribed_at = self.wall() if subscribes else None
        self.replies_pending += 1
        self._spawn(self._answer_twin(identity, message), "answering a twin request")

    async def _answer_twin(self, identity: AuthorizedIdentity, message: Message) -> None:
        try:
            answer = await self.dialect.twin_response(identity.device_id, identity.module_id, message)
        finally:
            self.replies_pending -= 1
        if answer is None or self.closing:
            return
        key = identity.key
        link = identity.twin_responses
        if link is None:
            log.info(
                "twin request not answered: the device has no twin receiver link",
                extra={"ctx": {"peer": self.peer, "device": key}},
            )
            return
        self.send_answer(link, encode_message(answer))
        self.flush()

    def _count_stray(self) -> None:
        self.ctx.metrics.stray_responses.inc()

    def _top_up(self, link: LinkRef, credit: int) -> None:
        """Grant ``link`` up to :data:`CREDIT` when half is used (``credit``: what a delivery's
        event says it had left; a top-up for an earlier event of the batch may have changed it)."""
        if credit < CREDIT // 2 and (credit := self.amqp.credit(link)) < CREDIT // 2:
            self.amqp.grant_credit(link, CREDIT - credit)

    def _on_settled(self, event: DeliverySettled) -> None:
        """The device rejected a method request (C does for one it cannot read): fail that call."""
        state = event.state
        if not isinstance(state, Rejected) or len(event.delivery_tag) != 16:
            return
        link_state = self.links.get(event.link)
        identity = self.identities.get(link_state.key) if link_state and link_state.key else None
        channel = identity.channel if identity is not None else None
        if channel is None or channel.session is None:
            return
        rid = self.dialect.request_key(bytes(event.delivery_tag))
        if channel.session.is_pending(rid):
            why = state.error.description if state.error is not None else None
            channel.session.complete(
                rid, HubError(ErrorKind.INVALID_DEVICE_RESPONSE, f"The device rejected the request: {why}.")
            )

    # -- sessions -------------------------------------------------------------------------------------

    def _open_channel(self, identity: AuthorizedIdentity, spawn: bool = True) -> AmqpMethodsChannel | None:
        """``identity``'s channel, its session opened by a task (``spawn``) or by the caller
        (``await self._open_session(channel)``); None when the connection is being dropped."""
        dialect = self._session_dialect
        if dialect is None:  # a hub without the Azure dialect has nothing to speak AMQP for
            self._drop(f"no {self.dialect.name!r} dialect is configured for AMQP devices", logging.WARNING)
            return None
        principal = Principal(
            identity.device_id,
            identity.module_id,
            identity.key,
            dialect,
            identity.expires_at,
            attributes={"x509": True} if identity.claim.certificate is not None else {},
        )
        channel = identity.channel = AmqpMethodsChannel(self, identity, principal)
        if spawn:
            self._spawn(self._open_session(channel), "opening a session")
        return channel

    async def _open_session(self, channel: AmqpMethodsChannel) -> None:
        ctx = self.ctx
        key = channel.key
        async with ctx.sessions.opening(key):
            if channel.closed or self.closing:
                return
            try:
                session, _ = await ctx.sessions.open(channel.principal, True, False)
            except Exception as exc:  # the registry is down
                log.warning(
                    "methods links detached: cannot open the session",
                    extra={"ctx": {"device": key, "peer": self.peer, "reason": str(exc)}},
                )
                error = Error(ErrorCondition.INTERNAL_ERROR, "The hub cannot open the session now; retry.")
                self.end_channel(channel, error, "cannot open the session")
                return
            if self.closing or channel.closed:
                session.abandon()
                return
            router = ctx.sessions.router
            reachable = router.reachable(key)
            if reachable is not None:  # a cluster: other nodes must see the device first
                try:
                    await asyncio.shield(reachable)
                finally:
                    if self.closing or channel.closed:
                        router.abandon(key)
                        session.abandon()
                if self.closing or channel.closed:
                    return
            channel.session = session
            session.attach(channel)
        ctx.metrics.amqp_connections.inc()
        ctx.metrics.device_connected("amqp", self.listener)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "device connected",
                extra={
                    "ctx": {"device": key, "peer": self.peer, "transport": "amqp", "listener": self.listener}
                },
            )

    # -- tasks, timers, writing, closing --------------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, None], what: str) -> None:
        """A task serving this connection: if it fails, the connection is closed (and it is logged)."""
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(lambda done: self._task_done(done, what))

    def _task_done(self, task: asyncio.Task[None], what: str) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._failed(what, exc)

    def _failed(self, what: str, exc: BaseException | None = None) -> None:
        """Serving this connection raised: a bug. Log it once, count it, and end the connection."""
        if self.closing and self.transport is not None and self.transport.is_closing():
            return
        self.ctx.metrics.connection_failures.inc()
        log.error(
            "unexpected error %s; closing the connection",
            what,
            exc_info=exc if exc is not None else True,
            extra={"ctx": {"peer": self.peer, "device": self._who()}},
        )
        self._abort()

    def _who(self) -> str:
        return ",".join(self.identities) or "-"

    def _arm_timer(self) -> None:
        """Arm the one timer at the earlier of the state machine's deadline and the authorization
        deadline, unless it is armed at that time or earlier already (it asks again when it fires)."""
        if self.closing:
            return
        at = self.amqp.get_timer()
        deadline = self.deadline
        if deadline is not None and (at is None or deadline < at):
            at = deadline
        if at is None:
            return
        timer = self.timer
        if timer is not None:
            if not timer.cancelled() and self.timer_at <= at:
                return
            timer.cancel()
        self.timer_at = at
        self.timer = self.loop.call_at(at, self._timer_fired)

    def _timer_fired(self) -> None:
        fired = self.timer
        self.timer = None
        if self.closing:
            return
        now = self.loop.time() if fired is None else max(self.timer_at, self.loop.time())
        try:
            deadline = self.deadline
            if deadline is not None and now >= deadline:
                self.ctx.metrics.amqp_limits.inc("connect_deadline")
                timeout = self.ctx.connect_timeout
                self._drop(f"no identity authorized (CBS put-token or SASL PLAIN) within {timeout:g} s")
                return
            self._serve(self.amqp.handle_timer(now))
            if not self.closing:
                self._arm_timer()
        except Exception:
            self._failed("handling a timer")

    def flush(self) -> None:
        """Move what the state machine queued into this iteration's burst (at the end of a batch when
        one is being handled)."""
        if self._batch:
            return
        data = self.amqp.data_to_send()
        transport = self.transport
        if not data or transport is None or self.closing:
            return
        out = self.out
        out.write(data)
        if out.size + transport.get_write_buffer_size() > MAX_WRITE_BUFFER:  # queued here or there
            self._drop("the device is not reading; its write buffer is full")

    def _drop(self, why: str | None, level: int = logging.INFO) -> None:
        """Write what is queued, then close the transport (no AMQP ``close``)."""
        if self.closing:
            return
        if why is not None:
            log.log(
                level,
                "closing connection: %s",
                why,
                extra={"ctx": {"peer": self.peer, "device": self._who()}},
            )
        self._batch = False
        self.flush()
        if self.closing:  # that flush found the buffer full and closed already
            return
        self.out.flush()
        self.closing = True
        if self.timer is not None:
            self.timer.cancel()
        for identity in self.identities.values():
            if identity.expiry_timer is not None:
                identity.expiry_timer.cancel()
        if self.transport is not None:
            self.transport.close()
            # A peer that does not read keeps the flush (and so the close) from finishing: bounded.
            self.timer = self.loop.call_later(CLOSE_GRACE, self._abort)

    def shutdown(self) -> None:
        """The hub is stopping: detach every link ``amqp:link:detach-forced``, flush, drop TCP."""
        if self.closing:
            return
        for link in list(self.links):
            self.amqp.detach(link, self.dialect.shutting_down)
        self._drop(None)

    def abort(self) -> None:
        """End the connection now, without flushing."""
        self._abort()

    def _abort(self) -> None:
        self.closing = True
        self.out.discard()
        if self.transport is not None:
            self.transport.abort()
