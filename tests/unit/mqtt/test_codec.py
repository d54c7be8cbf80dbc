"""The MQTT codec: round trips at every level, byte-exact frames, property types."""

from __future__ import annotations

import pytest

from methodhub.mqtt import (
    Auth,
    Connack,
    Connect,
    Disconnect,
    MalformedPacket,
    Pingreq,
    Pingresp,
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
    decode,
    encode,
    encode_varint,
)

PACKETS = [
    Connect("dev1", clean_session=False, keepalive=60, username="hub/dev1/?api-version=1", password=b"tok"),
    Connect("", clean_session=True, keepalive=0),
    Connect("w", will=Will("last/will", b"bye", qos=1, retain=True), username="u"),
    Connack(True, 0),
    Connack(False, 5),
    Publish("a/b", b"payload", qos=0),
    Publish("a/b", b"", qos=1, packet_id=7, retain=True, dup=True),
    Publish("$iothub/methods/POST/reboot/?$rid=1", b'{"x": 1}', qos=1, packet_id=65535),
    Puback(9),
    Pubrec(10),
    Pubrel(11),
    Pubcomp(12),
    Subscribe(3, [("$iothub/methods/POST/#", 1), ("a/+/c", 0)]),
    Suback(3, [1, 0, 0x80]),
    Unsubscribe(4, ["a/#", "b"]),
    Unsuback(4),
    Pingreq(),
    Pingresp(),
    Disconnect(),
]


def roundtrip(packet, level):
    data = encode(packet, level)
    first, rest = data[0], data[1:]
    length, used = 0, 0
    for shift in (0, 7, 14, 21):
        byte = rest[used]
        used += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
    body = rest[used:]
    assert len(body) == length
    return decode(first, body, level)


def _cases():
    for packet in PACKETS:
        for level in (3, 4, 5):
            if isinstance(packet, Connect):
                if level == 3 and not packet.client_id:
                    continue  # MQTT 3.1 requires a client id (refusal tested in test_malformed_connect)
                packet = Connect(
                    **{
                        **{f: getattr(packet, f) for f in packet.__slots__},
                        "protocol_level": level,
                        "protocol_name": "MQIsdp" if level == 3 else "MQTT",
                    }
                )
            yield pytest.param(packet, level, id=f"{type(packet).__name__}-v{level}")


@pytest.mark.parametrize("packet, level", list(_cases()))
def test_roundtrip(packet, level) -> None:
    decoded = roundtrip(packet, level)
    if isinstance(packet, Connack) and level == 3:
        assert not decoded.session_present  # MQTT 3.1 has no session-present flag
        assert decoded.reason_code == packet.reason_code
        return
    if isinstance(packet, Subscribe) and level == 5:
        assert decoded.options == [qos for _, qos in packet.subscriptions]
        decoded.options = None
    assert decoded == packet


def test_v5_properties_of_every_type_roundtrip() -> None:
    props = {
        "payload_format_indicator": 1,  # byte
        "message_expiry_interval": 3600,  # four-byte
        "topic_alias": 5,  # two-byte
        "subscription_identifier": [1, 268435455],  # varint, repeatable
        "content_type": "application/json",  # utf-8
        "correlation_data": b"\x00\x01\xff",  # binary
        "user_property": [("k", "v"), ("k", "v2")],  # string pair, repeatable, order kept
        "response_topic": "reply/here",
    }
    decoded = roundtrip(Publish("t", b"p", qos=1, packet_id=1, properties=props), 5)
    assert decoded.properties == props


def test_v5_connack_and_reason_codes() -> None:
    connack = Connack(
        False, 0x87, {"reason_string": "nope", "maximum_packet_size": 1024, "server_keep_alive": 30}
    )
    assert roundtrip(connack, 5) == connack
    assert roundtrip(Puback(1, 0x10, {"reason_string": "no subscribers"}), 5) == Puback(
        1, 0x10, {"reason_string": "no subscribers"}
    )
    assert roundtrip(Disconnect(0x8E), 5) == Disconnect(0x8E)
    assert roundtrip(Auth(0x18, {"authentication_method": "SCRAM"}), 5) == Auth(
        0x18, {"authentication_method": "SCRAM"}
    )
    assert roundtrip(Unsuback(2, [0, 0x11]), 5) == Unsuback(2, [0, 0x11])
    sub = Subscribe(5, [("a", 1)], options=[0x1D], properties={"subscription_identifier": [9]})
    decoded = roundtrip(sub, 5)
    assert decoded.subscriptions == [("a", 1)] and decoded.options == [0x1D]


def test_v5_fields_are_dropped_for_v3() -> None:
    assert encode(Puback(1, 0x10, {"reason_string": "x"}), 4) == b"\x40\x02\x00\x01"
    assert encode(Disconnect(0x8E), 4) == b"\xe0\x00"
    assert encode(Unsuback(2, [0x11]), 4) == b"\xb0\x02\x00\x02"
    assert encode(Suback(1, [0x87]), 4) == b"\x90\x03\x00\x01\x80"


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (268435455, b"\xff\xff\xff\x7f"),
    ],
)
def test_varint_spec_examples(value, expected) -> None:
    assert encode_varint(value) == expected  # the table in MQTT 3.1.1 §2.2.3


def test_byte_exact_against_known_frames() -> None:
    # Frames written out by hand from the specification, independent of our encoder.
    assert encode(Connect("dev1", clean_session=False, keepalive=60, username="u", password=b"p"), 4) == (
        b"\x10\x16\x00\x04MQTT\x04\xc0\x00\x3c\x00\x04dev1\x00\x01u\x00\x01p"
    )
    assert (
        encode(Subscribe(1, [("$iothub/methods/POST/#", 1)]), 4)
        == b"\x82\x1b\x00\x01\x00\x16$iothub/methods/POST/#\x01"
    )
    assert encode(Publish("a", b"xy", qos=1, packet_id=2), 4) == b"\x32\x07\x00\x01a\x00\x02xy"
    assert encode(Connack(True, 0), 4) == b"\x20\x02\x01\x00"
    assert encode(Pingresp(), 4) == b"\xd0\x00"


def test_paho_frames_decode() -> None:
    """Frames produced by paho-mqtt's encoder decode to what paho meant."""
    import paho.mqtt.client as paho

    out: list[bytes] = []

    class Sock:
        def send(self, data):
            out.append(bytes(data))
            return len(data)

        def recv(self, n):
            raise BlockingIOError

        def setblocking(self, flag):
            pass

        def close(self):
            pass

        def fileno(self):
            return -1

    if hasattr(paho, "CallbackAPIVersion"):
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="dev1", clean_session=False)
    else:
        client = paho.Client(client_id="dev1", clean_session=False)
    client.username_pw_set("hub/dev1/?api-version=2021-04-12", "SharedAccessSignature sr=x&sig=y&se=1")
    client._sock = Sock()
    client._send_connect(60)  # paho's own CONNECT encoder
    client._state = (
        getattr(paho, "_ConnectionState", None).MQTT_CS_CONNECTED if hasattr(paho, "_ConnectionState") else 1
    )
    client._send_subscribe(False, [(b"$iothub/methods/POST/#", 1)])
    client._send_publish(5, b"$iothub/methods/res/200/?$rid=1", b'{"ok":1}', 1, False, False)
    for _ in range(10):
        try:
            client._packet_write()
        except Exception:
            break
    data = b"".join(out)
    from methodhub.mqtt import MqttConnection, PacketReceived, Role

    server = MqttConnection(Role.SERVER)
    events = server.receive_data(data)
    server.send(Connack(False, 0))  # what follows a CONNECT is decoded once it is accepted
    events += server.next_events()
    packets = [e.packet for e in events if isinstance(e, PacketReceived)]
    assert [type(p).__name__ for p in packets] == ["Connect", "Subscribe", "Publish"], events
    connect, subscribe, publish = packets
    assert connect.client_id == "dev1" and not connect.clean_session and connect.keepalive == 60
    assert connect.username == "hub/dev1/?api-version=2021-04-12"
    assert connect.password == b"SharedAccessSignature sr=x&sig=y&se=1"
    assert subscribe.subscriptions == [("$iothub/methods/POST/#", 1)]
    assert (publish.topic, publish.payload, publish.qos, publish.packet_id) == (
        "$iothub/methods/res/200/?$rid=1",
        b'{"ok":1}',
        1,
        5,
    )


@pytest.mark.parametrize(
    "first, body, level, reason",
    [
        (0x30 | 0x06, b"\x00\x01a", 4, "QoS 3"),
        (0x38, b"\x00\x01a", 4, "DUP"),
        (0x32, b"\x00\x01a\x00\x00", 4, "packet identifier 0"),
        (0x30, b"\x00\x01+", 4, "wildcards"),
        (0x30, b"\x00\x00", 4, "at least one character"),
        (0x30, b"\x00\x02\xc3\x28", 4, "UTF-8"),
        (0x30, b"\x00\x02\xed\xa0", 4, "UTF-8"),  # a UTF-16 surrogate
        (0x30, b"\x00\x01\x00", 4, "U+0000"),
        (0x80, b"\x00\x01\x00\x01a\x01", 4, "flags"),  # SUBSCRIBE must have flags 0x2
        (0x82, b"\x00\x01", 4, "without topic filters"),
        (0x82, b"\x00\x01\x00\x01a\x03", 4, "QoS 3"),
        (0x82, b"\x00\x01\x00\x01a\x05", 4, "reserved bits"),
        (0x82, b"\x00\x01\x00\x03a#b\x01", 4, "'#'"),
        (0x82, b"\x00\x01\x00\x03a+b\x01", 4, "'+'"),
        (0xA2, b"\x00\x01", 4, "without topic filters"),
        (0x40, b"\x00\x01\x00", 4, "trailing"),
        (0x40, b"\x00", 4, "middle"),
        (0xC0, b"\x00", 4, "no body"),
        (0x32, b"\x00\x01a\x00\x01\x02\x7f\x00", 5, "unknown property"),
        (0x32, b"\x00\x01a\x00\x01\x04\x01\x01\x01\x01", 5, "more than once"),
        (0x32, b"\x00\x01a\x00\x01\x02\x24\x01", 5, "not allowed"),
    ],
)
def test_malformed_packets(first, body, level, reason) -> None:
    with pytest.raises(MalformedPacket) as error:
        decode(first, body, level)
    assert reason in error.value.reason
    assert error.value.reason_code >= 0x80


@pytest.mark.parametrize(
    "body, reason, connack",
    [
        (b"\x00\x04MQTT\x04\x03\x00\x3c\x00\x01x", "reserved CONNECT flag", None),
        (b"\x00\x04MQTT\x04\x42\x00\x3c\x00\x01x\x00\x01p", "without the user name", None),
        (b"\x00\x04MQTT\x04\x18\x00\x3c\x00\x01x", "Will", None),
        (b"\x00\x04MQTT\x04\x00\x00\x3c\x00\x00", "empty client id", 2),
        (b"\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x00", "requires a client id", 2),
        (b"\x00\x04MQTT\x07\x02\x00\x3c\x00\x01x", "protocol level", 1),
        (b"\x00\x04ABCD\x04\x02\x00\x3c\x00\x01x", "protocol name", None),
        (b"\x00\x04MQTT\x05\x03\x00\x3c\x00\x00\x01x", "reserved CONNECT flag", 0x81),
    ],
)
def test_malformed_connect(body, reason, connack) -> None:
    with pytest.raises(MalformedPacket) as error:
        decode(0x10, body, 4)
    assert reason in error.value.reason
    assert error.value.connack_code == connack


def test_mqtt31_connect_with_a_long_client_id_is_accepted() -> None:
    client_id = (
        "a1PK&dev1|securemode=3,signmethod=hmacsha1,ext=1,_ss=1,lan=Python,_v=1.2.13,timestamp=1795350342|"
    )
    packet = Connect(
        client_id, protocol_name="MQIsdp", protocol_level=3, username="dev1&a1PK", password=b"ab"
    )
    assert roundtrip(packet, 3) == packet
