"""MQTT control packets as plain data (MQTT 3.1, 3.1.1 and 5.0).

One dataclass per packet type. Fields that only exist in MQTT 5 (``properties``, most reason
codes) are present on every packet and simply not encoded for older protocol levels, so the
gateway can build one packet shape whatever the client speaks.

MQTT 5 properties are a ``dict`` keyed by the property's snake_case name from the specification
(§2.2.2.2), e.g. ``{"session_expiry_interval": 3600, "user_property": [("k", "v")]}``. Properties
that may appear more than once (``user_property``, ``subscription_identifier``) are lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

Properties = dict[str, Any]


class PacketType(IntEnum):
    """The control packet type, the high nibble of the first byte [MQTT-2.2.1]."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


@dataclass(slots=True)
class Will:
    """The Will Message of a CONNECT."""

    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    properties: Properties | None = None


@dataclass(slots=True)
class Connect:
    """CONNECT. ``clean_session`` is "Clean Start" in MQTT 5. ``protocol_level``: 3 (MQTT 3.1,
    name "MQIsdp"), 4 (3.1.1) or 5."""

    client_id: str
    clean_session: bool = True
    keepalive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    protocol_name: str = "MQTT"
    protocol_level: int = 4
    properties: Properties | None = None


@dataclass(slots=True)
class Connack:
    """CONNACK. ``reason_code``: the v3 return code (0-5) or the v5 reason code."""

    session_present: bool = False
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: Properties | None = None


@dataclass(slots=True)
class Puback:
    packet_id: int
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(slots=True)
class Pubrec:
    packet_id: int
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(slots=True)
class Pubrel:
    packet_id: int
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(slots=True)
class Pubcomp:
    packet_id: int
    reason_code: int = 0
    properties: Properties | None = None


@dataclass(slots=True)
class Subscribe:
    """SUBSCRIBE. ``subscriptions`` holds (topic filter, requested QoS); MQTT 5's full
    subscription options byte per filter (No Local, Retain As Published, Retain Handling) is kept
    in ``options`` when the packet came from an MQTT 5 client."""

    packet_id: int
    subscriptions: list[tuple[str, int]]
    options: list[int] | None = None
    properties: Properties | None = None


@dataclass(slots=True)
class Suback:
    packet_id: int
    reason_codes: list[int]
    properties: Properties | None = None


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    topic_filters: list[str]
    properties: Properties | None = None


@dataclass(slots=True)
class Unsuback:
    """UNSUBACK. ``reason_codes`` only exist in MQTT 5 (dropped when encoding for 3.x)."""

    packet_id: int
    reason_codes: list[int] = field(default_factory=list)
    properties: Properties | None = None


@dataclass(slots=True)
class Pingreq:
    pass


@dataclass(slots=True)
class Pingresp:
    pass


@dataclass(slots=True)
class Disconnect:
    """DISCONNECT. Reason code and properties only exist in MQTT 5."""

    reason_code: int = 0
    properties: Properties | None = None


@dataclass(slots=True)
class Auth:
    """AUTH (MQTT 5 only)."""

    reason_code: int = 0
    properties: Properties | None = None


Packet = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
    | Auth
)
