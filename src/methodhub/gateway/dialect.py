"""What a dialect is: the translation between one cloud's MQTT conventions and methodhub's calls.

A dialect decides, for the connections it claims: who the device is (authentication), which
topics it may subscribe and publish (ACL), how a :class:`~methodhub.calls.Call` is put on the wire
and how the device's answer is recognised, and when the device is *ready* to receive calls.
Sessions and connections are protocol plumbing shared by every dialect.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from methodhub.calls.model import Call

if TYPE_CHECKING:
    from methodhub.gateway.auth import AuthContext
    from methodhub.gateway.session import DeviceSession
    from methodhub.mqtt import Connect, Publish

SUBSCRIPTION_REFUSED = 0x80
"""SUBACK return code "Failure" [MQTT-3.9.3]; v5 calls it 0x80 "Unspecified error" too, and the
gateway upgrades it to 0x87 "Not authorized" for MQTT 5 clients."""


class ConnectRefused(Exception):
    """Authentication failed: answer CONNACK with ``code`` (an MQTT 3.1.1 return code) and close.

    Codes [MQTT-3.2.2.3]: 2 identifier rejected, 3 server unavailable, 4 bad user name or password,
    5 not authorized. The gateway maps them to MQTT 5 reason codes for v5 clients.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


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


class Dialect(ABC):
    """One cloud's MQTT conventions. Instances are shared by all connections they claim."""

    name: str

    @abstractmethod
    def claims(self, connect: Connect) -> bool:
        """Whether this CONNECT is in this dialect (decided from client id / username shapes)."""

    @abstractmethod
    async def authenticate(self, connect: Connect, ctx: AuthContext, *, use_cache: bool = True) -> Principal:
        """Verify the CONNECT's credentials; raise :class:`ConnectRefused` if they do not hold."""

    def initial_subscriptions(self, principal: Principal) -> dict[str, int]:
        """Subscriptions the server makes for the device at connect (none unless it auto-subscribes)."""
        return {}

    @abstractmethod
    def grant(self, session: DeviceSession, topic_filter: str, qos: int) -> int:
        """The QoS granted for a SUBSCRIBE of ``topic_filter``, or :data:`SUBSCRIPTION_REFUSED`."""

    @abstractmethod
    def on_publish(self, session: DeviceSession, publish: Publish) -> bool:
        """Handle a device PUBLISH (e.g. a call response). False: not allowed — close the connection."""

    @abstractmethod
    def encode_call(self, session: DeviceSession, call: Call, seq: int) -> tuple[str, str, bytes]:
        """Put ``call`` on the wire: returns ``(request id, topic, payload)``. ``seq`` is unique per
        node; the request id is what the device's answer will carry. Raises ``HubError`` when this
        device cannot take this call (e.g. not subscribed to that method)."""

    @abstractmethod
    def is_ready(self, session: DeviceSession) -> bool:
        """Whether the session can receive calls now (e.g. subscribed to method requests)."""
