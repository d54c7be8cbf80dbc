"""One identity's methods links on an AMQP connection: the DeviceChannel of its session.

:class:`AmqpMethodsChannel` puts calls on the device's methods receiver link and reports the link
pair's end to the session; the connection (:mod:`methodhub.gateway.amqp_connection`, the
:class:`ChannelHost` here) owns the links, the authorization of each identity
(:class:`AuthorizedIdentity`) and the socket; its :class:`~methodhub.gateway.amqp_dialect.AmqpDialect`
words the request messages and the detach errors. Also here: the request-id scheme
(:func:`request_id`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from methodhub.amqp import AmqpConnection, Error, LinkRef, encode_message
from methodhub.errors import ErrorKind, HubError
from methodhub.gateway.amqp_dialect import AmqpDialect, LinkHandling, TokenClaim

if TYPE_CHECKING:
    from methodhub.calls.model import Call
    from methodhub.gateway.context import ConnectionContext
    from methodhub.gateway.dialect import Principal
    from methodhub.gateway.session import DeviceSession
    from methodhub.registry.twins import Twin

log = logging.getLogger("methodhub.gateway")

_RID_BASE = uuid.uuid4().int & ~((1 << 48) - 1)
"""Request ids are this node's random version-4 UUID with the call's sequence number in the low 48
bits: unique per node (``seq`` is), valid UUIDs for C#'s ``new Guid`` and Java's ``UUID.fromString``,
and cheaper than a ``uuid4()`` (no ``os.urandom`` per call)."""
_RID_MASK = (1 << 48) - 1


def request_id(seq: int) -> bytes:
    """The AMQP correlation-id (a uuid's 16 bytes, also the delivery tag) of the call with node
    sequence number ``seq``."""
    return (_RID_BASE | (seq & _RID_MASK)).to_bytes(16, "big")


@dataclass(slots=True, eq=False)
class AuthorizedIdentity:
    """An identity a put-token (or SASL PLAIN) authorized on this connection."""

    key: str
    device_id: str
    module_id: str | None
    claim: TokenClaim
    """The latest claim that authorized it (verified again when the registry changes)."""
    expires_at: float
    expiry_timer: asyncio.TimerHandle | None = None
    links: set[LinkRef] = field(default_factory=set)
    responses: LinkRef | None = None
    """The device's methods sender (we receive responses on it)."""
    requests: LinkRef | None = None
    """The device's methods receiver (we send requests on it)."""
    presettle_requests: bool = False
    via_hub: bool = False
    """Authorized by the connection's hub-wide token (renewed with it), not a put-token of its own."""
    twin_responses: LinkRef | None = None
    """The device's newest twin receiver (we send twin answers on it)."""
    desired_subscribed_at: float | None = None
    """When (epoch seconds) the device asked for desired-property notifications (a twin PUT of
    their resource); None: it did not, or withdrew (DELETE)."""
    desired_sent: int | None = None
    """The desired ``$version`` of the last notification sent (None: none yet)."""
    channel: AmqpMethodsChannel | None = None


CREDIT = 100
"""Credit granted on each link the device sends on (CBS, method responses, twin, telemetry), topped
up when half is used. Also the most answers (put-token, twin) one of our links keeps waiting for
the device's credit."""

MAX_IDENTITIES = 64
"""Identities one connection may have authorized at once (C#/Java multiplex a few devices)."""


@dataclass(slots=True, eq=False)
class LinkState:
    """What the connection does with one of the device's links, and for which identity."""

    handling: LinkHandling
    key: str | None


class ChannelHost(Protocol):
    """What a channel needs of the AMQP connection carrying it."""

    amqp: AmqpConnection
    dialect: AmqpDialect
    closing: bool
    identities: dict[str, AuthorizedIdentity]
    ctx: ConnectionContext
    listener: str

    def flush(self) -> None: ...

    def send_answer(self, link: LinkRef, payload: bytes) -> None: ...

    def end_channel(self, channel: AmqpMethodsChannel, error: Error, reason: str) -> None: ...

    def drop_if_idle(self) -> None: ...

    async def reverify_identity(self, key: str) -> None: ...


class AmqpMethodsChannel:
    """One identity's methods links on one AMQP connection: the DeviceChannel of its session.

    The session's principal names the MQTT dialect of the AMQP dialect's name (Azure's, in
    ``ctx.dialects``): the identity is that cloud's identity whatever carries it, so an MQTT
    connection of the same device after this one finds a session of its own dialect and takes it
    over (and AMQP always opens with a clean start, which takes over any session).
    """

    __slots__ = ("closed", "conn", "identity", "key", "principal", "session")

    def __init__(self, conn: ChannelHost, identity: AuthorizedIdentity, principal: Principal) -> None:
        self.conn = conn
        self.identity = identity
        self.key = identity.key
        self.principal = principal
        self.session: DeviceSession | None = None
        self.closed = False

    def deliver(self, call: Call, seq: int) -> str:
        """Send ``call`` on the device's methods receiver link; returns the dialect's key of it."""
        conn = self.conn
        identity = self.identity
        link = identity.requests
        rid = request_id(seq)
        dialect = conn.dialect
        message = dialect.method_request(rid, call)  # raises HubError for a raw (RRPC) message call
        if self.closed or link is None or conn.closing:
            raise HubError(ErrorKind.DEVICE_OFFLINE)
        amqp = conn.amqp
        try:
            sent = amqp.send_message(link, message, rid, identity.presettle_requests)
        except ValueError as exc:  # over the device's max-message-size
            raise HubError(
                ErrorKind.PAYLOAD_TOO_LARGE, f"Device '{self.key}' cannot take it: {exc}."
            ) from None
        if sent is None:  # (nothing was sent: say why)
            if amqp.credit(link) <= 0:
                raise HubError(
                    ErrorKind.DEVICE_OFFLINE,
                    f"Device '{self.key}' has no link credit on its methods link; "
                    "it is not taking calls now.",
                )
            raise HubError(
                ErrorKind.DEVICE_OFFLINE, f"Device '{self.key}' has no room for a request on its session now."
            )
        conn.flush()
        return dialect.request_key(rid)

    def ready_for_calls(self) -> bool:
        identity = self.identity
        return (
            not self.closed
            and identity.requests is not None
            and identity.responses is not None
            and self.conn.identities.get(self.key) is identity
        )

    def close_taken_over(self) -> None:
        """Another connection (AMQP or MQTT, here or on another node) took the identity over."""
        log.debug("session taken over by a new connection", extra={"ctx": {"device": self.key}})
        conn = self.conn
        reason = "another connection took over the session"
        if any(i is not self.identity and i.channel is not None for i in conn.identities.values()):
            # A multiplexing client (C#, Java): only this identity's methods links go.
            conn.end_channel(self, conn.dialect.taken_over(self.key), reason)
            return
        # Alone on its connection: drop TCP at once, as MQTT's takeover closes the connection. The
        # Node SDK sees a dropped connection as a disconnect (and, retrying, reconnects at once); a
        # detach first leaves it connected with its methods link gone and nothing reported.
        if self.identity.channel is self:
            self.identity.channel = None
        self.end(reason)
        conn.drop_if_idle()

    async def reverify(self) -> None:
        """Check the identity's token against the registry again; detach it if it fails."""
        await self.conn.reverify_identity(self.key)

    def desired_changed(self, twin: Twin) -> None:
        """Send the device the desired-property changes it has not had, on its twin receiver, if
        it subscribed to them."""
        identity = self.identity
        link = identity.twin_responses
        since = identity.desired_subscribed_at
        if self.closed or since is None or link is None:
            return
        conn = self.conn
        messages, identity.desired_sent = conn.dialect.desired_notifications(
            twin, identity.desired_sent, since
        )
        for message in messages:
            conn.send_answer(link, encode_message(message))
        conn.flush()

    def end(self, reason: str) -> None:
        """The links are gone (detached by either side): the session loses this channel."""
        if self.closed:
            return
        self.closed = True
        session = self.session
        if session is not None:
            self.conn.ctx.metrics.device_disconnected("amqp", self.conn.listener)
            session.detach(self, reason)
