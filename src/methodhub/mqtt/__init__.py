"""A sans-I/O MQTT 3.1 / 3.1.1 / 5.0 codec and connection state machine.

No sockets and no asyncio: feed bytes with :meth:`MqttConnection.receive_data`, get events; give
packets to :meth:`MqttConnection.send`, get bytes. Nothing here imports the rest of methodhub.
"""

from methodhub.mqtt.codec import decode, encode, encode_varint
from methodhub.mqtt.connection import (
    DEFAULT_MAX_PACKET_SIZE,
    ConnectionClosed,
    ConnectionState,
    Event,
    MqttConnection,
    PacketReceived,
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
    "MAX_TOPIC_LENGTH",
    "Auth",
    "Connack",
    "ConnackCode",
    "Connect",
    "ConnectionClosed",
    "ConnectionState",
    "Disconnect",
    "Event",
    "LocalProtocolError",
    "MalformedPacket",
    "MqttConnection",
    "MqttError",
    "Packet",
    "PacketReceived",
    "PacketType",
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
