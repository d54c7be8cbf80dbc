"""What the AMQP device transport needs from a cloud: :class:`AmqpDialect`.

The transport (:mod:`methodhub.gateway.amqp_connection`) carries links, CBS put-tokens and method
messages; what a link's address names, whether a token proves an identity, and what a method
request and its answer look like are the cloud's (Azure's: :mod:`methodhub.dialects.azure.amqp`).
The types crossing here are the AMQP codec's (:class:`~methodhub.amqp.Message`,
:class:`~methodhub.amqp.Error`) and the calls' (:class:`~methodhub.calls.Call`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from methodhub.amqp import Attach, Error, Message
    from methodhub.auth.x509 import ClientCertificate
    from methodhub.calls.model import Call, CallOutcome
    from methodhub.errors import HubError
    from methodhub.gateway.auth import AuthContext
    from methodhub.registry.twins import Twin


class LinkHandling(StrEnum):
    """What the server does with a link the device attached (azure-amqp-wire.md §5, §9.5-§9.8).
    Nothing a healthy device opens is refused: refusing a link tears down a Node client's whole
    connection (§5)."""

    CBS_REQUESTS = "cbs-requests"
    """The device's ``$cbs`` sender: attach, grant credit (and top it up); each message is a
    put-token — accept and settle it, then answer on the same session's ``$cbs`` receiver."""
    CBS_RESPONSES = "cbs-responses"
    """The device's ``$cbs`` receiver (source ``$cbs``): put-token responses go out here, in the
    session of the request (not routed by reply-to)."""
    METHOD_RESPONSES = "method-responses"
    """The device's methods sender: attach, grant credit and top it up (Node's response callback
    never fires without it); accept and settle each unsettled response, take pre-settled ones
    (C#) as done."""
    METHOD_REQUESTS = "method-requests"
    """The device's methods receiver: method requests go out here as the device gives credit;
    while it is attached the identity is ready for calls."""
    TWIN_REQUESTS = "twin-requests"
    """The device's twin sender: attach, grant credit and top it up; accept and settle each request,
    then answer it (:meth:`AmqpDialect.twin_response`) on the identity's twin receiver."""
    TWIN_RESPONSES = "twin-responses"
    """The device's twin receiver: twin answers go out here (the newest such link of the identity)."""
    ACCEPT_AND_DROP = "accept-and-drop"
    """A device sender to telemetry: attach, grant credit, accept and settle each message and drop
    it (as MQTT drops telemetry)."""
    NEVER_SEND = "never-send"
    """A device receiver on cloud-to-device messages: attach and never send (there are no
    cloud-to-device messages in methodhub)."""


@dataclass(frozen=True, slots=True)
class LinkRoute:
    """What to do with a link: its :class:`LinkHandling` and the identity key it belongs to (None
    for the CBS node's links, which need no authorized identity)."""

    handling: LinkHandling
    key: str | None
    device_id: str | None = None
    module_id: str | None = None
    """The identity ``key`` names (for a hub-wide token to authorize it when its link attaches)."""


@dataclass(frozen=True, slots=True)
class TokenClaim:
    """An identity's claim to be authorized on a connection, with the token proving it (from a CBS
    put-token or a SASL PLAIN initial response).

    Attributes:
        message_id: the put-token's message-id as received, AMQP type kept (None for SASL PLAIN):
            what the answer is correlated with.
        device_id / module_id / key: the identity claimed (``key`` = ``identity_key(...)``).
        token: the credential, kept to verify it again when the registry changes.
        hub_wide: the token is for the whole hub, signed with a shared access policy (the C# SDK
            with a policy key, a gateway): ``device_id`` and ``key`` are empty, and each identity
            a link later names is verified with this token when the link attaches.
        certificate: an X.509 claim: the connection's TLS client certificate proves the identity
            a link names (``token`` is empty; no put-token is sent).
    """

    message_id: Any
    device_id: str
    module_id: str | None
    key: str
    token: str
    hub_wide: bool = False
    certificate: ClientCertificate | None = None


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """A token that holds: ``key`` is authorized on this connection until ``expires_at`` (epoch
    seconds); answer the put-token ``message_id`` with status 200. For a hub-wide claim ``key`` is
    empty: the token may authorize identities until ``expires_at``."""

    message_id: Any
    device_id: str
    module_id: str | None
    key: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class TokenRefusal:
    """A put-token that does not hold: answer ``message_id`` with ``status`` and ``description``
    and keep the connection. ``retryable``: the device is not at fault (the registry could not be
    read); the transport then drops TCP rather than answer (a client retries that at once)."""

    message_id: Any
    status: int
    description: str
    retryable: bool = False


class AmqpDialect(ABC):
    """One cloud's AMQP device protocol, as the AMQP transport asks it. Shared by all connections.

    ``name`` is also the name of the MQTT :class:`~methodhub.gateway.dialect.Dialect` (in the
    connection context's dialects) whose sessions the AMQP identities have: a device's MQTT and
    AMQP sessions are one session table entry of one dialect, so they take each other over.
    """

    name: str

    # -- links ----------------------------------------------------------------------------------------

    @abstractmethod
    def link_address(self, attach: Attach) -> str | None:
        """The address of the device's end of ``attach`` (None when it has none)."""

    @abstractmethod
    def classify_link(self, address: str, device_role: bool) -> LinkRoute | None:
        """What to do with a link to ``address`` the device attached in ``device_role``
        (:class:`~methodhub.amqp.Role`), or None when the address names nothing here."""

    # -- authorization --------------------------------------------------------------------------------

    @abstractmethod
    def parse_put_token(self, message: Message) -> TokenClaim | TokenRefusal:
        """The claim of a CBS put-token request, or the refusal to answer a malformed one with."""

    @abstractmethod
    def plain_credentials(self, initial_response: bytes | None, hostname: str) -> TokenClaim | None:
        """The claim of a SASL PLAIN initial response, or None when it is not in this cloud's form."""

    @abstractmethod
    async def verify(self, claim: TokenClaim, auth: AuthContext, now: float) -> TokenGrant | TokenRefusal:
        """Whether ``claim``'s token proves its identity at ``now`` (epoch seconds)."""

    @abstractmethod
    def put_token_response(self, message_id: Any, status: int, description: str) -> Message:
        """The answer to the put-token ``message_id``."""

    # -- methods --------------------------------------------------------------------------------------

    @abstractmethod
    def method_request(self, rid: bytes, call: Call) -> bytes:
        """The request message for ``call`` with request id ``rid`` (16 bytes), encoded; raises
        ``HubError`` when the call cannot go to an AMQP device."""

    @abstractmethod
    def parse_method_response(self, data: bytes) -> tuple[str, CallOutcome | HubError] | None:
        """The device's answer (the bytes of its message) as ``(request key, result)``, or None when
        it names no request; raises ``DecodeError`` when ``data`` is no AMQP message. The key is
        :meth:`request_key` of the request's id."""

    @abstractmethod
    def request_key(self, rid: bytes) -> str:
        """The key the session knows request ``rid`` by (its answer's key must equal it)."""

    # -- twin -----------------------------------------------------------------------------------------

    @abstractmethod
    async def twin_response(self, device_id: str, module_id: str | None, request: Message) -> Message | None:
        """The answer to identity ``device_id``/``module_id``'s twin request, or None when it cannot be
        answered (no correlation-id)."""

    @abstractmethod
    def twin_subscription(self, request: Message) -> bool | None:
        """Whether twin ``request`` subscribes the device to desired-property notifications (True),
        unsubscribes it (False), or neither (None)."""

    @abstractmethod
    def desired_notifications(
        self, twin: Twin, last_sent: int | None, subscribed_at: float
    ) -> tuple[list[Message], int | None]:
        """The notifications of the desired-property changes after ``last_sent`` (a version; None
        for none sent yet: those made since ``subscribed_at``, epoch seconds), and the version the
        device then has."""

    # -- the errors links are refused or detached with ------------------------------------------------

    @abstractmethod
    def unknown_link(self, address: str | None) -> Error:
        """Refuse a link whose address :meth:`classify_link` does not know."""

    @abstractmethod
    def unauthorized_link(self, address: str, key: str | None) -> Error:
        """Refuse a link whose identity no token on this connection authorized."""

    @abstractmethod
    def taken_over(self, key: str) -> Error:
        """Detach ``key``'s links when a newer connection took the identity over."""

    shutting_down: Error
    """Detach every link with it at a planned shutdown."""

    token_invalid: Error
    """Detach an identity's links with it when its token expired with no renewal."""
