"""A sans-I/O MQTT 3.1 / 3.1.1 / 5.0 codec and connection state machine.

No sockets and no asyncio: feed bytes with :meth:`MqttConnection.receive_data`, get events; give
packets to :meth:`MqttConnection.send`, get bytes; keep-alive and CONNECT deadlines are timers the
caller drives (:meth:`MqttConnection.get_timer` / :meth:`MqttConnection.handle_timer`). Nothing
here imports the rest of methodhub.
"""

from methodhub.mqtt.codec import decode, encode, encode_varint
from methodhub.mqtt.connection import (
    DEFAULT_MAX_PACKET_SIZE,
    KEEPALIVE_FACTOR,
    ConnectionClosed,
    ConnectionState,
    ConnectTimeout,
    Event,
    KeepAliveTimeout,
    MqttConnection,
    PacketReceived,
    PingDue,
    ProtocolError,
    Role,
)
from methodhub.mqtt.errors import LocalProtocolError, MalformedPacket, MqttError
from methodhub.mqtt.packets import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
    Properties,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
)
from methodhub.mqtt.reason_codes import ConnackCode, ReasonCode
from methodhub.mqtt.topics import (
    MAX_TOPIC_LENGTH,
    topic_filter_error,
    topic_matches,
    topic_name_error,
    validate_topic_filter,
    validate_topic_name,
)

__all__ = [
    "DEFAULT_MAX_PACKET_SIZE",
    "KEEPALIVE_FACTOR",
    "MAX_TOPIC_LENGTH",
    "Auth",
    "Connack",
    "ConnackCode",
    "Connect",
    "ConnectTimeout",
    "ConnectionClosed",
    "ConnectionState",
    "Disconnect",
    "Event",
    "KeepAliveTimeout",
    "LocalProtocolError",
    "MalformedPacket",
    "MqttConnection",
    "MqttError",
    "Packet",
    "PacketReceived",
    "PacketType",
    "PingDue",
    "Pingreq",
    "Pingresp",
    "Properties",
    "ProtocolError",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "ReasonCode",
    "Role",
    "Suback",
    "Subscribe",
    "Unsuback",
    "Unsubscribe",
    "Will",
    "decode",
    "encode",
    "encode_varint",
    "topic_filter_error",
    "topic_matches",
    "topic_name_error",
    "validate_topic_filter",
    "validate_topic_name",
]
