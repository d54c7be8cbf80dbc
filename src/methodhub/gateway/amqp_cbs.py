"""The authorization half of an AMQP device connection: CBS put-tokens and SASL PLAIN.

:class:`CbsAuthorization` is mixed into :class:`~methodhub.gateway.amqp_connection.AmqpDeviceConnection`
(split out by job: that module is the protocol, the links and the timers). It keeps which identities
are authorized on the connection and until when: a put-token on a ``$cbs`` sender (or a SASL PLAIN
initial response) is parsed and verified by the connection's
:class:`~methodhub.gateway.amqp_dialect.AmqpDialect` and answered on the ``$cbs`` receiver of the
same session; each authorized identity gets a timer at its token's expiry (its links are detached
with the dialect's ``token_invalid`` unless a renewal moved it later); a registry change verifies
the latest token again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from methodhub.amqp import AmqpConnection, Error, ErrorCondition, LinkRef, encode_message
from methodhub.amqp.events import LinkAttached, SaslInitReceived
from methodhub.gateway.amqp_channel import MAX_IDENTITIES, AmqpMethodsChannel, AuthorizedIdentity, LinkState
from methodhub.gateway.amqp_dialect import AmqpDialect, LinkRoute, TokenClaim, TokenGrant, TokenRefusal
from methodhub.gateway.auth import client_certificate

if TYPE_CHECKING:
    from methodhub.admission import Admission
    from methodhub.gateway.context import ConnectionContext

log = logging.getLogger("methodhub.gateway")

STATUS_OK = 200
STATUS_FORBIDDEN = 403
"""The put-token status for an identity over :data:`~methodhub.gateway.amqp_channel.MAX_IDENTITIES`."""


@dataclass(slots=True)
class HubGrant:
    """A hub-wide token that held (:attr:`TokenClaim.hub_wide`): it may authorize any registered,
    enabled identity a link names until ``expires_at`` (epoch seconds)."""

    token: str
    expires_at: float


class CbsAuthorization:
    """Authorizing identities on one AMQP connection (see the module docstring). The connection
    provides the state and the methods declared here."""

    ctx: ConnectionContext
    dialect: AmqpDialect
    amqp: AmqpConnection
    admission: Admission | None
    transport: asyncio.Transport | None
    loop: asyncio.AbstractEventLoop
    wall: Callable[[], float]
    peer: str
    closing: bool
    waiting: bool
    deadline: float | None
    identities: dict[str, AuthorizedIdentity]
    hub_grant: HubGrant | None
    unanswerable_put_tokens: int
    links: dict[LinkRef, LinkState]
    cbs_responses: dict[int, LinkRef]
    backlog: dict[LinkRef, list[bytes]]
    _established: bool

    # What the connection itself does for this half (declared for the type checker; AmqpDeviceConnection
    # defines them).
    flush: Callable[[], None]
    send_answer: Callable[[LinkRef, bytes], None]
    _spawn: Callable[[Coroutine[Any, Any, None], str], None]
    _drop: Callable[..., None]
    _failed: Callable[..., None]
    _arm_timer: Callable[[], None]
    _resume: Callable[[], None]
    _open_channel: Callable[..., AmqpMethodsChannel | None]
    _open_session: Callable[[AmqpMethodsChannel], Coroutine[Any, Any, None]]
    _on_attach: Callable[[LinkAttached], None]

    # -- CBS ------------------------------------------------------------------------------------------

    def _on_put_token(self, channel: int, message: Any) -> None:
        parsed = self.dialect.parse_put_token(message)
        if isinstance(parsed, TokenRefusal):
            self._answer_put_token(channel, parsed.message_id, parsed.status, parsed.description)
            return
        if (
            not parsed.hub_wide
            and parsed.key not in self.identities
            and len(self.identities) >= MAX_IDENTITIES
        ):
            self._answer_put_token(
                channel,
                parsed.message_id,
                STATUS_FORBIDDEN,
                f"This connection already carries {MAX_IDENTITIES} identities; open another connection.",
            )
            return
        self._spawn(self._verify_put_token(channel, parsed), "verifying a put-token")

    async def _verify_put_token(self, channel: int, claim: TokenClaim) -> None:
        verdict = await self.dialect.verify(claim, self.ctx.auth, self.wall())
        if self.closing:
            return
        if isinstance(verdict, TokenGrant) and claim.hub_wide:
            self._grant_hub(verdict, claim)
            self._answer_put_token(channel, verdict.message_id, STATUS_OK, "OK")
        elif isinstance(verdict, TokenGrant):
            new = self._authorize(verdict, claim)
            if new is not None:
                # The session opens (taking over the device's other connections, as an MQTT CONNECT
                # does) before the device hears "OK": a backend calling as soon as the device says
                # "connected" then waits for this connection's methods links instead of reaching
                # the connection being replaced (whose calls fail as it is taken over).
                opening = self._open_channel(new, spawn=False)
                if opening is not None:
                    await self._open_session(opening)
                if self.closing:
                    return
            self._answer_put_token(channel, verdict.message_id, STATUS_OK, "OK")
        elif verdict.retryable:  # the registry is down: Node retries a dropped TCP at once, not a 503
            log.warning(
                "put-token not verified, dropping the connection: %s",
                verdict.description,
                extra={"ctx": {"peer": self.peer, "device": claim.key}},
            )
            self._drop(None)
            return
        else:
            self.ctx.metrics.amqp_auth_refused.inc("put_token")
            self.ctx.metrics.auth_failed("device", "amqp_put_token")
            log.info(
                "put-token refused",
                extra={"ctx": {"peer": self.peer, "device": claim.key, "reason": verdict.description}},
            )
            self._answer_put_token(channel, verdict.message_id, verdict.status, verdict.description)
        self.flush()
        self._arm_timer()

    def _answer_put_token(self, channel: int, message_id: Any, status: int, description: str) -> None:
        link = self.cbs_responses.get(channel)
        if link is None:
            self.unanswerable_put_tokens += 1
            if self.unanswerable_put_tokens == 1:  # once per connection: a device may send many
                log.info(
                    "put-token not answered: no $cbs receiver link in its session (logged once "
                    "per connection)",
                    extra={"ctx": {"peer": self.peer}},
                )
            return
        # With no credit yet (the device's flow for this link may be on its way: the put-token was
        # verified first) the answer waits for it; the put-token deadline bounds the wait.
        self.send_answer(
            link, encode_message(self.dialect.put_token_response(message_id, status, description))
        )

    def _authorize(self, grant: TokenGrant, claim: TokenClaim) -> AuthorizedIdentity | None:
        """``grant.key`` may attach links on this connection until ``grant.expires_at``. Returns the
        identity when it is new here: the caller then opens its session (:meth:`_open_channel`)."""
        new = None
        identity = self.identities.get(grant.key)
        if identity is None:
            identity = new = self.identities[grant.key] = AuthorizedIdentity(
                grant.key, grant.device_id, grant.module_id, claim, grant.expires_at
            )
        else:  # a renewal
            identity.claim = claim
            identity.expires_at = grant.expires_at
            if identity.expiry_timer is not None:
                identity.expiry_timer.cancel()
        delay = max(0.0, grant.expires_at - self.wall())
        identity.expiry_timer = self.loop.call_at(self.loop.time() + delay, self._token_expired, identity)
        self._mark_established()
        return new

    def _mark_established(self) -> None:
        if not self._established:
            self._established = True
            self.deadline = None
            if self.admission is not None:  # an authenticated device is never shed for a newcomer
                self.admission.mark_established(self)
                self.admission.mark_busy(self)

    def _grant_hub(self, grant: TokenGrant, claim: TokenClaim) -> None:
        """A hub-wide token held: links may name any identity it covers (verified as each is
        named, :meth:`authorize_for_link`); it renews those it authorized before."""
        self.hub_grant = HubGrant(claim.token, grant.expires_at)
        self._mark_established()
        for identity in [i for i in self.identities.values() if i.via_hub]:
            renewal = TokenClaim(None, identity.device_id, identity.module_id, identity.key, claim.token)
            grant = TokenGrant(None, identity.device_id, identity.module_id, identity.key, grant.expires_at)
            self._authorize(grant, renewal)

    def authorize_for_link(self, event: LinkAttached, route: LinkRoute, address: str) -> bool:
        """A link names an identity no put-token authorized: when a hub-wide token holds, verify the
        identity with it — or, on a TLS connection with a client certificate, verify the
        certificate for it (X.509 devices send no put-token) — reading paused meanwhile, then handle
        the attach again. False when neither can (the caller refuses the link)."""
        if route.key is None or not route.device_id or len(self.identities) >= MAX_IDENTITIES:
            return False
        hub = self.hub_grant
        if hub is not None and hub.expires_at > self.wall():
            claim = TokenClaim(None, route.device_id, route.module_id, route.key, hub.token)
        elif (certificate := client_certificate(self.transport)) is not None:
            claim = TokenClaim(None, route.device_id, route.module_id, route.key, "", certificate=certificate)
        else:
            return False
        self.waiting = True
        if self.transport is not None:
            self.transport.pause_reading()
        self._spawn(self._verify_for_link(event, claim, address), "verifying an identity of a hub-wide token")
        return True

    async def _verify_for_link(self, event: LinkAttached, claim: TokenClaim, address: str) -> None:
        verdict = await self.dialect.verify(claim, self.ctx.auth, self.wall())
        if self.closing:
            return
        if isinstance(verdict, TokenGrant):
            self._authorize(verdict, claim)
            self.identities[claim.key].via_hub = claim.certificate is None
            self._on_attach(event)  # now authorized
        elif verdict.retryable:
            log.warning(
                "identity not verified, dropping the connection: %s",
                verdict.description,
                extra={"ctx": {"peer": self.peer, "device": claim.key}},
            )
            self._drop(None)
            return
        else:
            self.ctx.metrics.amqp_auth_refused.inc("hub_token")
            self.ctx.metrics.auth_failed("device", "amqp_hub_token")
            log.info(
                "link refused: the client certificate does not prove its identity"
                if claim.certificate is not None
                else "link refused: the hub-wide token does not authorize its identity",
                extra={"ctx": {"peer": self.peer, "device": claim.key, "reason": verdict.description}},
            )
            error = Error(ErrorCondition.UNAUTHORIZED_ACCESS, f"{verdict.description} (link '{address}')")
            self.amqp.refuse_link(event.link, error)
        self.flush()
        self._resume()

    def _token_expired(self, identity: AuthorizedIdentity) -> None:
        try:
            if self.closing or self.identities.get(identity.key) is not identity:
                return
            x509 = identity.claim.certificate is not None
            log.info(
                "detaching an identity: its client certificate expired"
                if x509
                else "detaching an identity: its SAS token expired with no renewal put-token",
                extra={"ctx": {"peer": self.peer, "device": identity.key}},
            )
            reason = "its client certificate expired" if x509 else "its SAS token expired"
            self._deauthorize(identity, self.dialect.token_invalid, reason)
        except Exception:
            self._failed("expiring a token")

    def _deauthorize(self, identity: AuthorizedIdentity, error: Error, reason: str) -> None:
        """Forget ``identity`` and detach every link it has on this connection with ``error``."""
        del self.identities[identity.key]
        if identity.expiry_timer is not None:
            identity.expiry_timer.cancel()
        for link in identity.links:
            self.amqp.detach(link, error)
            self.links.pop(link, None)
        identity.links.clear()
        identity.responses = identity.requests = None
        channel, identity.channel = identity.channel, None
        if channel is not None:
            channel.end(reason)
        self.flush()

    async def reverify_identity(self, key: str) -> None:
        """The registry changed ``key``: check its token again; detach it if it no longer holds."""
        identity = self.identities.get(key)
        if identity is None or self.closing:
            return
        verdict = await self.dialect.verify(identity.claim, self.ctx.auth, self.wall())
        if (
            isinstance(verdict, TokenRefusal)
            and not verdict.retryable
            and self.identities.get(key) is identity
        ):
            log.info(
                "detaching an identity: credentials no longer valid",
                extra={"ctx": {"device": key, "reason": verdict.description}},
            )
            self._deauthorize(
                identity,
                Error(ErrorCondition.UNAUTHORIZED_ACCESS, verdict.description),
                "credentials revoked",
            )

    # -- SASL -----------------------------------------------------------------------------------------

    def _on_sasl(self, event: SaslInitReceived) -> None:
        if event.mechanism != "PLAIN":  # ANONYMOUS, MSSBCBS, EXTERNAL: authorization comes by CBS
            self.amqp.sasl_outcome(True)
            return
        claim = self.dialect.plain_credentials(event.initial_response, self.ctx.auth.hostname)
        if claim is None:
            self._sasl_refused(
                "-", "the PLAIN user is not '{deviceId}@sas.{hubName}' with a SAS token password"
            )
            return
        self.waiting = True
        if self.transport is not None:
            self.transport.pause_reading()
        self._spawn(self._verify_plain(claim), "verifying SASL PLAIN")

    async def _verify_plain(self, claim: TokenClaim) -> None:
        verdict = await self.dialect.verify(claim, self.ctx.auth, self.wall())
        if self.closing:
            return
        if isinstance(verdict, TokenGrant):
            if claim.hub_wide:
                self._grant_hub(verdict, claim)
            else:
                new = self._authorize(verdict, claim)
                if new is not None:
                    self._open_channel(new)
            self.amqp.sasl_outcome(True)
            self.flush()
            self._resume()
            if self.transport is not None and not self.waiting and not self.closing:
                self.transport.resume_reading()
        else:
            self._sasl_refused(claim.key, verdict.description)

    def _sasl_refused(self, who: str, reason: str) -> None:
        self.ctx.metrics.amqp_auth_refused.inc("sasl_plain")
        self.ctx.metrics.auth_failed("device", "amqp_sasl_plain")
        log.info("SASL PLAIN refused", extra={"ctx": {"peer": self.peer, "device": who, "reason": reason}})
        self.amqp.sasl_outcome(False)
        self._drop(None)
