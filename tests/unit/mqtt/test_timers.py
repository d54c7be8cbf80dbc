"""Timers in the sans-I/O core: keep-alive (both roles) and the CONNECT deadline, driven with explicit
times (no clock, no sleeps)."""

from __future__ import annotations

import pytest

from methodhub.mqtt import (
    Connack,
    Connect,
    ConnectionState,
    ConnectTimeout,
    Disconnect,
    KeepAliveTimeout,
    LocalProtocolError,
    MqttConnection,
    PacketReceived,
    PingDue,
    Pingreq,
    Pingresp,
    ProtocolError,
    Publish,
    ReasonCode,
    Role,
    Subscribe,
    encode,
)

PINGREQ = b"\xc0\x00"


def connected_server(keepalive: int = 10, at: float = 100.0, level: int = 4) -> MqttConnection:
    conn = MqttConnection(Role.SERVER)
    conn.receive_data(encode(Connect("dev1", keepalive=keepalive, protocol_level=level), level), now=at)
    conn.send(Connack(False, 0))
    return conn


def connected_client(keepalive: int = 10, sent: float = 0.0, received: float = 0.5) -> MqttConnection:
    conn = MqttConnection(Role.CLIENT)
    conn.send(Connect("dev1", keepalive=keepalive), now=sent)
    conn.receive_data(encode(Connack(False, 0), 4), now=received)
    assert conn.state is ConnectionState.CONNECTED
    return conn


# -- server: keep-alive [MQTT-3.1.2-24] ---------------------------------------------------------------


def test_server_disconnects_after_one_and_a_half_keepalives_of_silence_and_not_before() -> None:
    conn = connected_server(keepalive=10, at=100.0)
    assert conn.get_timer() == 115.0
    assert conn.handle_timer(114.999) == []
    assert conn.state is ConnectionState.CONNECTED
    (event,) = conn.handle_timer(115.0)
    assert event == KeepAliveTimeout("keep-alive expired (10 s × 1.5)", ReasonCode.KEEP_ALIVE_TIMEOUT)
    assert event.reason_code == 0x8D
    assert conn.state is ConnectionState.CLOSED
    assert conn.get_timer() is None and conn.handle_timer(1000.0) == []
    assert conn.receive_data(PINGREQ, now=116.0) == []  # nothing is read after it


def test_a_v5_server_may_still_send_its_disconnect_after_a_keepalive_timeout() -> None:
    conn = connected_server(keepalive=10, at=0.0, level=5)
    (event,) = conn.handle_timer(15.0)
    assert isinstance(event, KeepAliveTimeout)
    assert conn.send(Disconnect(event.reason_code)) == encode(Disconnect(0x8D), 5)


def test_any_packet_resets_the_servers_keepalive_clock() -> None:
    conn = connected_server(keepalive=10, at=100.0)
    events = conn.receive_data(PINGREQ, now=110.0)
    assert [type(e) for e in events] == [PacketReceived]
    assert conn.get_timer() == 125.0
    assert conn.handle_timer(115.0) == []  # the old deadline passes harmlessly
    events = conn.receive_data(encode(Publish("t", b"x"), 4), now=124.0)
    assert conn.get_timer() == 139.0
    assert conn.handle_timer(138.9) == []
    assert isinstance(conn.handle_timer(139.0)[0], KeepAliveTimeout)


def test_part_of_a_packet_counts_as_activity() -> None:
    """A device sending a large packet in pieces is not silent (as the gateway counted it before)."""
    data = encode(Publish("t", b"x" * 1000), 4)
    conn = connected_server(keepalive=10, at=0.0)
    assert conn.receive_data(data[:500], now=14.0) == []
    assert conn.get_timer() == 29.0


def test_input_without_a_time_moves_no_deadline() -> None:
    conn = connected_server(keepalive=10, at=100.0)
    conn.receive_data(PINGREQ)
    assert conn.get_timer() == 115.0


def test_keepalive_zero_means_no_timer() -> None:
    conn = connected_server(keepalive=0, at=100.0)
    assert conn.keepalive == 0
    assert conn.get_timer() is None
    assert conn.handle_timer(1e9) == []
    assert conn.state is ConnectionState.CONNECTED


def test_the_server_enforces_the_keepalive_it_is_told() -> None:
    """A gateway caps keep-alive (0 and > 1767 s become 1767 s) whatever the protocol level."""
    conn = connected_server(keepalive=0, at=100.0)
    conn.keepalive = 1767.0
    assert conn.get_timer() == 100.0 + 1767 * 1.5
    conn = connected_server(keepalive=60, at=100.0)
    conn.keepalive = 20.0  # told after the CONNACK: the next get_timer() has it
    assert conn.get_timer() == 130.0


def test_the_server_keep_alive_of_our_connack_is_the_one_enforced() -> None:
    conn = MqttConnection(Role.SERVER)
    conn.receive_data(encode(Connect("dev1", keepalive=0, protocol_level=5), 5), now=0.0)
    assert conn.keepalive == 0
    conn.send(Connack(False, 0, {"server_keep_alive": 30}))
    assert conn.keepalive == 30 and conn.get_timer() == 45.0


def test_no_keepalive_timer_before_the_connack_or_after_a_refusal_or_error() -> None:
    conn = MqttConnection(Role.SERVER)
    conn.receive_data(encode(Connect("dev1", keepalive=10), 4), now=0.0)
    assert conn.get_timer() is None  # no CONNECT deadline given, and keep-alive starts with CONNACK
    conn.send(Connack(False, 5))
    assert conn.get_timer() is None and conn.handle_timer(100.0) == []
    conn = connected_server(keepalive=10, at=0.0)
    (error,) = conn.receive_data(b"\x00\x00", now=1.0)
    assert isinstance(error, ProtocolError)
    assert conn.get_timer() is None and conn.handle_timer(100.0) == []


# -- server: CONNECT deadline ------------------------------------------------------------------------


def test_no_connect_by_the_deadline() -> None:
    conn = MqttConnection(Role.SERVER, connect_deadline=10.0)
    assert conn.get_timer() == 10.0
    assert conn.receive_data(b"\x10", now=5.0) == []  # a byte of CONNECT is not a CONNECT
    assert conn.get_timer() == 10.0
    assert conn.handle_timer(9.99) == []
    assert conn.handle_timer(10.0) == [ConnectTimeout("no CONNECT in time")]
    assert conn.state is ConnectionState.CLOSED and conn.get_timer() is None
    with pytest.raises(LocalProtocolError):
        conn.send(Connack(False, 0))


def test_a_connect_not_answered_by_the_deadline() -> None:
    conn = MqttConnection(Role.SERVER)
    conn.connect_deadline = 10.0  # may be set after construction
    conn.receive_data(encode(Connect("dev1", keepalive=60), 4), now=1.0)
    assert conn.get_timer() == 10.0  # received bytes do not move it: the CONNACK must go out
    assert conn.handle_timer(10.0) == [ConnectTimeout("its CONNECT could not be answered in time")]
    with pytest.raises(LocalProtocolError):  # the late answer of an authentication is refused
        conn.send(Connack(False, 0))


def test_the_connack_replaces_the_connect_deadline_with_keepalive() -> None:
    conn = MqttConnection(Role.SERVER, connect_deadline=10.0)
    conn.receive_data(encode(Connect("dev1", keepalive=2), 4), now=1.0)
    conn.send(Connack(False, 0))
    assert conn.get_timer() == 4.0  # earlier than the CONNECT deadline
    conn = MqttConnection(Role.SERVER, connect_deadline=10.0)
    conn.receive_data(encode(Connect("dev1", keepalive=60), 4), now=1.0)
    conn.send(Connack(False, 0))
    assert conn.get_timer() == 91.0  # later than it
    assert conn.handle_timer(10.0) == [] and conn.state is ConnectionState.CONNECTED


# -- client: PINGREQ and giving up [MQTT-3.1.2-23] -----------------------------------------------------


def test_client_pings_one_keepalive_after_it_last_sent() -> None:
    conn = connected_client(keepalive=10, sent=0.0, received=0.5)
    assert conn.get_timer() == 10.0  # the CONNECT was the last packet sent
    conn.send(Subscribe(1, [("a", 1)]), now=3.0)
    conn.receive_data(encode(Publish("a", b""), 4), now=4.0)
    assert conn.get_timer() == 13.0
    assert conn.handle_timer(12.9) == []
    assert conn.handle_timer(13.0) == [PingDue()]
    conn.send(Pingreq(), now=13.0)
    conn.receive_data(encode(Pingresp(), 4), now=13.2)
    assert conn.get_timer() == 23.0  # a ping answered: the next one a period after it


def test_client_pings_when_it_hears_nothing_for_a_keepalive_though_it_sends() -> None:
    """A client that only sends QoS 0 hears nothing back; it must not give up on a live server."""
    conn = connected_client(keepalive=10, sent=0.0, received=0.5)
    conn.send(Publish("t", b""), now=6.0)
    conn.send(Publish("t", b""), now=9.0)
    assert conn.get_timer() == 10.5  # a period after the CONNACK, the last packet received
    assert conn.handle_timer(10.5) == [PingDue()]
    conn.send(Pingreq(), now=10.5)
    conn.receive_data(encode(Pingresp(), 4), now=10.6)
    assert conn.handle_timer(15.5) == []  # the old give-up time: the PINGRESP came


def test_client_gives_up_without_a_pingresp() -> None:
    conn = connected_client(keepalive=10, sent=0.0, received=0.5)
    assert conn.handle_timer(10.0) == [PingDue()]
    conn.send(Pingreq(), now=10.0)
    assert conn.get_timer() == 15.5  # 1.5 periods after the last packet received
    assert conn.handle_timer(15.4) == []
    (event,) = conn.handle_timer(15.5)
    assert isinstance(event, KeepAliveTimeout) and "10 s × 1.5" in event.reason
    assert conn.state is ConnectionState.CLOSED and conn.get_timer() is None


def test_a_client_that_does_not_send_the_ping_is_not_asked_again_and_again() -> None:
    conn = connected_client(keepalive=10, sent=0.0, received=0.5)
    assert conn.handle_timer(10.0) == [PingDue()]
    assert conn.get_timer() == 15.5 and conn.handle_timer(12.0) == []


def test_client_takes_the_server_keep_alive() -> None:
    conn = MqttConnection(Role.CLIENT)
    conn.send(Connect("dev1", keepalive=0, protocol_level=5), now=0.0)
    assert conn.keepalive == 0
    conn.receive_data(encode(Connack(False, 0, {"server_keep_alive": 20}), 5), now=1.0)
    assert conn.keepalive == 20 and conn.get_timer() == 20.0


def test_client_keepalive_zero_means_no_timer() -> None:
    conn = connected_client(keepalive=0)
    assert conn.get_timer() is None and conn.handle_timer(1e9) == []


def test_client_connect_deadline() -> None:
    conn = MqttConnection(Role.CLIENT, connect_deadline=30.0)
    conn.send(Connect("dev1", keepalive=10), now=0.0)
    assert conn.get_timer() == 30.0
    assert conn.handle_timer(30.0) == [ConnectTimeout("no CONNACK in time")]
    assert conn.receive_data(encode(Connack(False, 0), 4), now=31.0) == []


# -- both together -----------------------------------------------------------------------------------


def run(
    client: MqttConnection, server: MqttConnection, until: float, answer: bool = True
) -> list[tuple[float, str, object]]:
    """Advance time from timer to timer, carrying bytes between the two with no delay; the server
    answers PINGREQ while ``answer``. Returns (when, who, event) of the events that end a connection."""
    ends: list[tuple[float, str, object]] = []
    while True:
        timers = [t for t in (client.get_timer(), server.get_timer()) if t is not None]
        if not timers or min(timers) > until:
            return ends
        now = min(timers)
        for event in client.handle_timer(now):
            if isinstance(event, PingDue):
                for server_event in server.receive_data(client.send(Pingreq(), now), now=now):
                    if isinstance(server_event, PacketReceived) and answer:
                        client.receive_data(server.send(Pingresp()), now=now)
            else:
                ends.append((now, "client", event))
        ends += [(now, "server", event) for event in server.handle_timer(now)]


def test_a_pinging_client_keeps_a_server_from_timing_out_and_a_dead_link_is_found_by_both() -> None:
    client = MqttConnection(Role.CLIENT)
    server = MqttConnection(Role.SERVER)
    server.receive_data(client.send(Connect("dev1", keepalive=10), now=0.0), now=0.0)
    client.receive_data(server.send(Connack(False, 0)), now=0.0)
    assert run(client, server, until=10_000.0) == []
    assert client.state is server.state is ConnectionState.CONNECTED
    ends = run(client, server, until=20_000.0, answer=False)  # the server stops answering at 10,000
    # The client pings at 10,010 and gives up 1.5 periods after the last PINGRESP; the server, pinged
    # last at 10,010, 1.5 periods after that.
    assert [(when, who, type(event)) for when, who, event in ends] == [
        (10_015.0, "client", KeepAliveTimeout),
        (10_025.0, "server", KeepAliveTimeout),
    ]
