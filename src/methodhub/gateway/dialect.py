"""What an MQTT dialect is: the translation between one cloud's MQTT conventions and methodhub's calls.

A dialect decides, for the connections it claims: who the device is (authentication), which
topics it may subscribe and publish (ACL), how a :class:`~methodhub.calls.Call` is put on the wire
and how the device's answer is recognised, and when the device is *ready* to receive calls.

A dialect sees a device through :class:`DeviceView` (implemented by
:class:`~methodhub.gateway.session.DeviceSession`): who it is, what it subscribed, a slot for the
dialect's own per-session state, and the means to complete a call. It never touches the session's
table, its pending calls or the connection carrying it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from methodhub.calls.model import Call, CallOutcome
from methodhub.errors import HubError

if TYPE_CHECKING:
    from methodhub.auth.x509 import ClientCertificate
    from methodhub.gateway.auth import AuthContext
    from methodhub.mqtt import ConnackCode, Connect, Publish, ReasonCode
    from methodhub.registry.twins import Twin

SUBSCRIPTION_REFUSED = 0x80
"""SUBACK return code "Failure" [MQTT-3.9.3]; v5 calls it 0x80 "Unspecified error" too, and the
gateway upgrades it to 0x87 "Not authorized" for MQTT 5 clients."""

Reply = tuple[str, bytes]
"""A message to send back to the device at once: ``(topic, payload)``."""

PendingReply = Coroutine[Any, Any, "Reply | None"]
"""A message to send back once the dialect has it (e.g. after a registry read), or None for none."""


class ConnectRefused(Exception):
    """Authentication failed: answer CONNACK with ``code`` (an MQTT 3.1.1 return code) and close.

    Codes [MQTT-3.2.2.3]: 2 identifier rejected, 3 server unavailable, 4 bad user name or password,
    5 not authorized. The gateway maps them to MQTT 5 reason codes for v5 clients.
    """

    def __init__(self, code: ConnackCode, reason: str, v5_code: ReasonCode | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.v5_code = v5_code
        """The MQTT 5 reason code, where it says more than the mapping of ``code`` does."""


@dataclass(slots=True)
class Principal:
    """Who is on the other end of an authenticated connection.

    Attributes:
        device_id / module_id: the identity in the registry.
        key: the call-target key (``identity_key(device_id, module_id)``), also the session key.
        dialect: the dialect that authenticated it and speaks for it from now on.
        expires_at: epoch seconds when its credential expires (the connection is closed then), or
            None for credentials without expiry.
        attributes: dialect-specific facts learned at CONNECT (e.g. Alibaba ``ext=1``).
    """

    device_id: str
    module_id: str | None
    key: str
    dialect: Dialect
    expires_at: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


class DeviceView(Protocol):
    """What a dialect sees of one device's session."""

    @property
    def principal(self) -> Principal: ...

    @property
    def key(self) -> str: ...

    @property
    def subscriptions(self) -> Mapping[str, int]:
        """Topic filter → granted QoS."""
        ...

    @property
    def max_in_flight(self) -> int:
        """Calls the device may have pending at once."""
        ...

    dialect_state: object | None
    """The dialect's own per-session state (None until it stores some)."""

    def complete(self, rid: str, result: CallOutcome | HubError) -> None:
        """The device answered request ``rid`` (unknown or finished ids are dropped and counted)."""
        ...

    def is_pending(self, rid: str) -> bool:
        """Whether request ``rid`` still waits for its answer."""
        ...

    def count_stray(self) -> None:
        """Count a response that matches no call in flight."""
        ...

    def count_telemetry(self) -> None:
        """Count a device-to-cloud message accepted and dropped."""
        ...


class Dialect(ABC):
    """One cloud's MQTT conventions. Instances are shared by all connections they claim."""

    name: str

    @abstractmethod
    def claims(self, connect: Connect) -> bool:
        """Whether this CONNECT is in this dialect (decided from client id / username shapes)."""

    @abstractmethod
    async def authenticate(
        self,
        connect: Connect,
        ctx: AuthContext,
        *,
        use_cache: bool = True,
        client_certificate: ClientCertificate | None = None,
    ) -> Principal:
        """Verify the CONNECT's credentials (and the TLS client certificate the connection
        presented, if any); raise :class:`ConnectRefused` if they do not hold."""

    def initial_subscriptions(self, principal: Principal) -> dict[str, int]:
        """Subscriptions the server makes for the device at connect (none unless it auto-subscribes)."""
        return {}

    @abstractmethod
    def grant(self, device: DeviceView, topic_filter: str, qos: int) -> int:
        """The QoS granted for a SUBSCRIBE of ``topic_filter``, or :data:`SUBSCRIPTION_REFUSED`."""

    @abstractmethod
    def on_publish(self, device: DeviceView, publish: Publish) -> bool | Reply | PendingReply:
        """Handle a device PUBLISH (e.g. a call response): True accepted, a :data:`Reply` accepted
        and to be answered at once, a :data:`PendingReply` accepted and to be answered when it is
        done (the connection runs it, a bounded number at a time), False not allowed (the
        connection is closed)."""

    @abstractmethod
    def encode_call(self, device: DeviceView, call: Call, seq: int) -> tuple[str, str, bytes]:
        """Put ``call`` on the wire: returns ``(request id, topic, payload)``. ``seq`` is unique per
        node; the request id is what the device's answer will carry. Raises ``HubError`` when this
        device cannot take this call (e.g. not subscribed to that method)."""

    def request_properties(self, device: DeviceView, rid: str) -> dict[str, Any] | None:
        """The MQTT 5 PUBLISH properties of the request :meth:`encode_call` just made with ``rid``
        (e.g. a Response Topic and Correlation Data), or None for none. Asked only of MQTT 5
        connections, after ``encode_call``: 3.1.1 has no properties and pays nothing for this."""
        return None

    def twin_notifications(self, device: DeviceView, twin: Twin) -> list[Reply]:
        """What to send the device now that its desired properties changed (``twin`` is the twin
        now): none unless the dialect has twins and the device subscribed to their changes."""
        return []

    @abstractmethod
    def is_ready(self, device: DeviceView) -> bool:
        """Whether the device can receive calls now (e.g. subscribed to method requests)."""
