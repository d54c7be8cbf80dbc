"""The connection state machine: roles, states, framing, errors, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from methodhub.mqtt import (
    Connack,
    Connect,
    ConnectionClosed,
    ConnectionState,
    Disconnect,
    LocalProtocolError,
    MqttConnection,
    PacketReceived,
    Pingreq,
    Pingresp,
    ProtocolError,
    Puback,
    Publish,
    Role,
    Suback,
    Subscribe,
    encode,
)

CONNECT = encode(Connect("dev1", clean_session=False, username="u", password=b"p"), 4)
STREAM = CONNECT + b"".join(
    encode(p, 4)
    for p in (
        Subscribe(1, [("$iothub/methods/POST/#", 1)]),
        Publish("$iothub/methods/res/200/?$rid=1", b'{"a": 1}' * 50, qos=1, packet_id=2),
        Pingreq(),
        Publish("devices/dev1/messages/events/", b"", qos=0),
        Disconnect(),
    )
)


def server() -> MqttConnection:
    return MqttConnection(Role.SERVER)


def connected_server() -> MqttConnection:
    conn = server()
    conn.receive_data(CONNECT)
    conn.send(Connack(False, 0))
    return conn


def packets(events) -> list:
    return [e.packet for e in events if isinstance(e, PacketReceived)]


def receive_all(conn: MqttConnection, data: bytes) -> list:
    """Events of ``data``, answering a CONNECT with CONNACK 0 (the server reads on after it)."""
    events = conn.receive_data(data)
    if events and isinstance(events[-1], PacketReceived) and isinstance(events[-1].packet, Connect):
        conn.send(Connack(False, 0))
        events += conn.next_events()
    return events


def test_whole_stream_at_once() -> None:
    conn = server()
    events = receive_all(conn, STREAM)
    assert [type(p).__name__ for p in packets(events)] == [
        "Connect",
        "Subscribe",
        "Publish",
        "Pingreq",
        "Publish",
        "Disconnect",
    ]
    assert conn.state is ConnectionState.CLOSED  # after DISCONNECT
    assert conn.receive_data(b"\xc0\x00") == []


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), unique=True).map(sorted))
def test_any_chunking_gives_the_same_packets(cuts: list[int]) -> None:
    expected = packets(receive_all(server(), STREAM))
    conn = server()
    got = []
    for start, end in zip([0, *cuts], [*cuts, len(STREAM)], strict=True):
        got.extend(packets(receive_all(conn, STREAM[start:end])))
    assert got == expected


def test_one_byte_at_a_time() -> None:
    conn = server()
    got = []
    for i in range(len(STREAM)):
        got.extend(packets(receive_all(conn, STREAM[i : i + 1])))
    assert got == packets(receive_all(server(), STREAM))


def test_packets_before_an_error_are_still_delivered() -> None:
    conn = connected_server()
    good = encode(Publish("$iothub/methods/res/200/?$rid=9", b"{}", qos=1, packet_id=3), 4)
    events = conn.receive_data(good + b"\x00\x00")
    assert isinstance(events[0], PacketReceived) and events[0].packet.topic.endswith("rid=9")
    assert isinstance(events[-1], ProtocolError)
    assert conn.state is ConnectionState.CLOSED


@pytest.mark.parametrize(
    "data, reason, code",
    [
        (b"\x30\x05\x00\x01a\x00\x00", "[MQTT-3.1.0-1]", 0x82),
        (b"\x82\x06\x00\x01\x00\x01a\x01", "[MQTT-3.1.0-1]", 0x82),
        (b"\x20\x02\x00\x00", "must not send", 0x82),  # CONNACK to a server
        (b"\x00\x00", "packet type 0", 0x81),
        (b"G", "[MQTT-3.1.0-1]", 0x82),  # "GET / HTTP/1.1" on the MQTT port: refused at its first byte
        (b"\x30", "[MQTT-3.1.0-1]", 0x82),  # a lone first byte of a PUBLISH
    ],
)
def test_errors_before_connect(data: bytes, reason: str, code: int) -> None:
    events = server().receive_data(data)
    assert len(events) == 1 and isinstance(events[0], ProtocolError)
    assert reason in events[0].reason and events[0].reason_code == code and events[0].connack_code is None


def test_second_connect_is_a_protocol_error() -> None:
    events = connected_server().receive_data(CONNECT)
    assert isinstance(events[-1], ProtocolError) and "[MQTT-3.1.0-2]" in events[-1].reason


def test_packet_type_15_is_reserved_before_v5() -> None:
    events = connected_server().receive_data(b"\xf0\x00")
    assert isinstance(events[-1], ProtocolError) and events[-1].reason_code == 0x81


def test_oversized_packet_is_refused_from_its_header() -> None:
    conn = MqttConnection(Role.SERVER, max_packet_size=1024)
    conn.receive_data(CONNECT)
    conn.send(Connack(False, 0))
    events = conn.receive_data(b"\x30\x80\x80\x01")  # announces 16 KiB; not one body byte sent
    assert isinstance(events[-1], ProtocolError) and events[-1].reason_code == 0x95


def test_remaining_length_longer_than_four_bytes() -> None:
    events = connected_server().receive_data(b"\x30\x80\x80\x80\x80\x01")
    assert isinstance(events[-1], ProtocolError) and "4 bytes" in events[-1].reason


def test_unsupported_level_can_be_refused_with_connack_1() -> None:
    conn = server()
    events = conn.receive_data(b"\x10\x0d\x00\x04MQTT\x09\x02\x00\x3c\x00\x01x")
    assert events[-1].connack_code == 1
    assert conn.send(Connack(False, 1)) == b"\x20\x02\x00\x01"
    with pytest.raises(LocalProtocolError):
        conn.send(Connack(False, 1))  # only once


def test_refusing_connack_closes_and_accepting_one_opens() -> None:
    conn = server()
    conn.receive_data(CONNECT)
    assert conn.state is ConnectionState.AWAIT_CONNACK
    with pytest.raises(LocalProtocolError):
        conn.send(Publish("a", b""))  # nothing before CONNACK
    conn.send(Connack(False, 5))
    assert conn.state is ConnectionState.CLOSED


def test_packets_sent_right_after_connect_wait_for_the_connack() -> None:
    conn = server()
    events = conn.receive_data(CONNECT + encode(Subscribe(1, [("a", 0)]), 4))
    assert [type(p).__name__ for p in packets(events)] == ["Connect"]
    assert not conn.has_pending_events and conn.buffered > 0
    assert conn.next_events() == []  # nothing is read until the CONNECT is answered
    conn.send(Connack(False, 0))
    assert conn.has_pending_events
    assert [type(p).__name__ for p in packets(conn.next_events())] == ["Subscribe"]


def test_a_refused_connect_discards_what_followed_it() -> None:
    conn = server()
    conn.receive_data(CONNECT + b"\x6b\x00")
    conn.send(Connack(False, 5))
    assert conn.state is ConnectionState.CLOSED and conn.next_events() == []


def test_an_error_after_a_connect_is_reported_after_the_connack_and_may_be_answered() -> None:
    """Issue 9 defect 1: CONNECT + a rejected packet in one read. The CONNECT is answered (the
    state machine used to refuse the CONNACK, which wedged the connection), then the error comes,
    and an MQTT 5 server may still send its DISCONNECT."""
    v5 = encode(Connect("x", protocol_level=5), 5)
    conn = server()
    assert [type(p).__name__ for p in packets(conn.receive_data(v5 + b"\x6b\x00"))] == ["Connect"]
    conn.send(Connack(False, 0))
    (error,) = conn.next_events()
    assert isinstance(error, ProtocolError) and conn.state is ConnectionState.CLOSED
    assert conn.send(Disconnect(error.reason_code)) == encode(Disconnect(error.reason_code), 5)
    with pytest.raises(LocalProtocolError):
        conn.send(Pingresp())  # nothing after our DISCONNECT


def test_packets_before_a_disconnect_can_still_be_answered() -> None:
    """Issue 9 defect 2: SUBSCRIBE (or a QoS 1 PUBLISH) then DISCONNECT in one read raised
    LocalProtocolError when the SUBACK was sent: the reply was lost in a transport traceback."""
    conn = connected_server()
    data = encode(Subscribe(1, [("a", 0)]), 4) + encode(Publish("t", b"x", 1, packet_id=2), 4)
    events = conn.receive_data(data + encode(Disconnect(), 4))
    assert [type(p).__name__ for p in packets(events)] == ["Subscribe", "Publish", "Disconnect"]
    assert conn.state is ConnectionState.CLOSED
    assert conn.send(Suback(1, [0])) == encode(Suback(1, [0]), 4)
    assert conn.send(Puback(2)) == encode(Puback(2), 4)
    with pytest.raises(LocalProtocolError):
        conn.send(Disconnect())  # MQTT 3.1.1 has no DISCONNECT from the server


def test_max_events_leaves_the_rest_for_next_events() -> None:
    conn = connected_server()
    events = conn.receive_data(b"\xc0\x00" * 10 + b"\xc0", max_events=4)
    assert len(events) == 4 and conn.has_pending_events
    assert len(conn.next_events(4)) == 4
    assert len(conn.next_events(4)) == 2 and not conn.has_pending_events
    assert len(conn.receive_data(b"\x00")) == 1  # the split PINGREQ completes


def test_eof_comes_after_the_buffered_events() -> None:
    conn = connected_server()
    assert len(conn.receive_data(b"\xc0\x00" * 3, max_events=1)) == 1
    events = conn.receive_data(b"")
    assert [type(e).__name__ for e in events] == ["PacketReceived", "PacketReceived", "ConnectionClosed"]


def test_cost_is_linear_in_bytes_however_they_are_split() -> None:
    """A 200 KB PUBLISH fed one byte at a time is decoded once, not once per byte (the old buffer
    was re-joined and re-framed on every read: quadratic). Counted, not timed: decode calls."""
    import methodhub.mqtt.connection as connection_module

    calls = 0
    real = connection_module.decode

    def counting(*args):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return real(*args)

    conn = connected_server()
    data = encode(Publish("t", b"x" * 200_000, 0), 4)
    connection_module.decode = counting
    try:
        events = []
        for i in range(len(data)):
            events += conn.receive_data(data[i : i + 1])
    finally:
        connection_module.decode = real
    assert len(events) == 1 and events[0].packet.payload == b"x" * 200_000
    assert calls == 1
    assert conn._pos == 0 and len(conn._buffer) == 0


def test_roles_are_enforced_on_send() -> None:
    conn = connected_server()
    with pytest.raises(LocalProtocolError):
        conn.send(Subscribe(1, [("a", 0)]))
    client = MqttConnection(Role.CLIENT)
    with pytest.raises(LocalProtocolError):
        client.send(Suback(1, [0]))
    with pytest.raises(LocalProtocolError):
        client.send(Puback(1))  # before CONNECT


def test_client_flow() -> None:
    client = MqttConnection(Role.CLIENT)
    data = client.send(Connect("c", protocol_level=5, properties={"session_expiry_interval": 60}))
    assert client.protocol_level == 5
    srv = server()
    (connect_event,) = srv.receive_data(data)
    assert connect_event.packet.properties == {"session_expiry_interval": 60}
    events = client.receive_data(srv.send(Connack(False, 0, {"maximum_qos": 1})))
    assert client.state is ConnectionState.CONNECTED and events[0].packet.properties == {"maximum_qos": 1}
    events = client.receive_data(srv.send(Disconnect(0x8E)))
    assert events[0].packet == Disconnect(0x8E) and client.state is ConnectionState.CLOSED


def test_client_must_get_connack_first() -> None:
    client = MqttConnection(Role.CLIENT)
    client.send(Connect("c"))
    events = client.receive_data(encode(Publish("a", b""), 4))
    assert isinstance(events[-1], ProtocolError) and "[MQTT-3.2.0-1]" in events[-1].reason


def test_eof() -> None:
    conn = connected_server()
    assert conn.receive_data(b"") == [ConnectionClosed()]
    assert conn.state is ConnectionState.CLOSED


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_fuzz_server_never_crashes(data: bytes) -> None:
    conn = server()
    events = conn.receive_data(data)
    for event in events[:-1]:
        assert isinstance(event, PacketReceived)
    if events and not isinstance(events[-1], PacketReceived):
        assert conn.state is ConnectionState.CLOSED


@settings(max_examples=400)
@given(st.binary(min_size=1, max_size=300))
def test_fuzz_after_connect(data: bytes) -> None:
    conn = connected_server()
    events = conn.receive_data(data)
    assert all(isinstance(e, PacketReceived | ProtocolError) for e in events)


@settings(max_examples=200)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=255))
def test_fuzz_mutated_valid_stream(noise: bytes, position: int) -> None:
    index = position % len(STREAM)
    data = STREAM[:index] + noise + STREAM[index:]
    conn = server()
    events = conn.receive_data(data)
    assert all(isinstance(e, PacketReceived | ProtocolError) for e in events)


def test_a_malformed_v5_connect_is_refused_with_a_v5_connack() -> None:
    """Found by the fuzzer: a v5 CONNECT whose properties are malformed carries a v5 reason code as
    its CONNACK code, but the state machine did not know the level yet and tried to encode it as
    3.1.1 (LocalProtocolError: "CONNACK code 129 does not exist before MQTT 5")."""
    good = encode(Connect("x", protocol_level=5), 5)
    bad = good[:12] + b"\x02\xff\x00" + good[13:]  # property length 2: an unknown property 0xff
    bad = bad[:1] + bytes([len(bad) - 2]) + bad[2:]
    conn = server()
    (error,) = conn.receive_data(bad)
    assert isinstance(error, ProtocolError) and error.connack_code is not None and error.connack_code >= 0x80
    assert conn.send(Connack(False, error.connack_code)) == encode(Connack(False, error.connack_code), 5)
