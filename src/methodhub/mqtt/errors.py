"""The MQTT package's exceptions."""

from __future__ import annotations


class MqttError(Exception):
    """Base class of everything ``methodhub.mqtt`` raises."""


class MalformedPacket(MqttError):
    """The peer sent bytes that are not a valid packet (or break a protocol rule).

    Attributes:
        reason: what is wrong, naming the normative statement.
        reason_code: the MQTT 5 reason code for a DISCONNECT (0x81 malformed, 0x82 protocol error, ...).
        connack_code: when the problem is in a CONNECT, the CONNACK code to answer with before
            closing (v3: 1 bad protocol level, 2 identifier rejected; v5: a reason code), or None
            when the connection should just be closed.
        protocol_level: for a CONNECT, the protocol level it names if that much could be read (the
            CONNACK refusing it is encoded for that level).
    """

    def __init__(self, reason: str, reason_code: int, connack_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reason_code = int(reason_code)
        self.connack_code = connack_code
        self.protocol_level: int | None = None


class LocalProtocolError(MqttError):
    """We (the caller of ``send``) tried something the protocol does not allow: a bug on our side."""
