"""Idle time-outs both ways (explicit clock values, nothing timed) and fuzzing after a valid open."""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from methodhub.amqp import (
    AMQP_HEADER,
    Accepted,
    Attach,
    Begin,
    Close,
    Detach,
    Disposition,
    End,
    ErrorCondition,
    Flow,
    Open,
    Role,
    Transfer,
    encode_frame,
)
from methodhub.amqp.events import (
    ConnectionClosed,
    CreditGranted,
    LinkAttached,
    MessageReceived,
    ProtocolFailure,
)

from .conn_support import Pair, bodies, client, one, server


def test_server_heartbeats_at_half_the_peers_idle_timeout_and_closes_a_silent_peer() -> None:
    srv = server(idle_timeout=60.0)
    cli = client(idle_timeout=30.0)  # the client asks for a frame at least every 30 s
    pair = Pair(srv, cli)
    pair.pump(now=100.0)
    assert srv.peer_idle_timeout == 30.0
    assert srv.get_timer() == 115.0  # half of 30 s after the server's last frame
    assert srv.handle_timer(114.0) == [] and srv.data_to_send() == b""
    assert srv.handle_timer(115.0) == []
    empty = srv.data_to_send()
    assert empty == b"\x00\x00\x00\x08\x02\x00\x00\x00"  # an empty frame
    assert cli.receive_data(empty, 115.0) == [] and cli.get_timer() == 130.0  # its heartbeat: 100 + 30
    assert srv.get_timer() == 130.0
    # The client heartbeats too (the server advertised 60 s): at 130, after its last send at 100.
    assert cli.get_timer() == 130.0
    assert cli.handle_timer(130.0) == []
    heartbeat = cli.data_to_send()
    assert bodies(heartbeat) == [None]
    srv.receive_data(heartbeat, 130.0)
    # Silent from 130: the server heartbeats on (130, 145, 160, 175), and at 190 (our 60 s) closes.
    for due in (130.0, 145.0, 160.0, 175.0):
        assert srv.get_timer() == due
        assert srv.handle_timer(due) == [] and bodies(srv.data_to_send()) == [None]
    assert srv.get_timer() == 190.0
    failure = one(srv.handle_timer(190.0), ProtocolFailure)
    assert failure.error.condition == ErrorCondition.RESOURCE_LIMIT_EXCEEDED and "idle" in str(failure.error)
    close = bodies(srv.data_to_send())[-1]
    assert type(close) is Close and close.error == failure.error
    assert srv.finished and srv.get_timer() is None
    assert one(
        cli.receive_data(b"", 190.0) + cli.receive_data(encode_frame(0, close), 190.0), ConnectionClosed
    )


def test_client_closes_a_silent_server() -> None:
    srv = server(idle_timeout=None)
    cli = client(idle_timeout=30.0)
    Pair(srv, cli).pump(now=0.0)
    assert srv.get_timer() is not None  # the server heartbeats for the client
    assert cli.get_timer() == 30.0  # no heartbeat asked of the client; its own deadline
    failure = one(cli.handle_timer(30.0), ProtocolFailure)
    assert failure.error.condition == ErrorCondition.RESOURCE_LIMIT_EXCEEDED


def test_no_clock_no_timers() -> None:
    srv = server()
    srv.receive_data(AMQP_HEADER + encode_frame(0, Open("dev", idle_time_out=1000)))
    assert srv.get_timer() is None


def _opened() -> tuple[object, bytes]:
    srv = server(max_frame_size=4096)
    srv.receive_data(AMQP_HEADER + encode_frame(0, Open("dev")), 0.0)
    return srv, srv.data_to_send()


def _check_garbage(data: bytes) -> None:
    srv, _ = _opened()
    events = srv.receive_data(data, 1.0)  # type: ignore[attr-defined]
    events += srv.receive_data(data, 2.0)  # type: ignore[attr-defined]
    out = srv.data_to_send()  # type: ignore[attr-defined]
    closing = [event for event in events if type(event) is ProtocolFailure and event.channel is None]
    if closing:
        assert srv.finished  # type: ignore[attr-defined]
        close = bodies(out)[-1]
        assert type(close) is Close and close.error == closing[0].error
    else:
        bodies(out)  # whatever it answered is well-formed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=400))
def test_random_bytes_after_open_never_raise(data: bytes) -> None:
    _check_garbage(data)


@st.composite
def framed(draw: st.DrawFn) -> bytes:
    """A frame header that passes the size checks around a random body (so the body decoder runs)."""
    body = draw(st.binary(max_size=300))
    if draw(st.booleans()):  # a described list with a performative descriptor, random contents
        code = draw(st.integers(0x10, 0x18))
        body = b"\x00\x53" + bytes([code]) + body
    channel = draw(st.integers(0, 3))
    return struct.pack(">IBBH", 8 + len(body), 2, 0, channel) + body


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(framed(), min_size=1, max_size=4))
def test_random_frames_after_open_never_raise(chunks: list[bytes]) -> None:
    _check_garbage(b"".join(chunks))


def test_garbage_closes_with_decode_error() -> None:
    srv, _ = _opened()
    events = srv.receive_data(struct.pack(">IBBH", 11, 2, 0, 0) + b"\x00\x53\xff", 1.0)  # type: ignore[attr-defined]
    failure = one(events, ProtocolFailure)
    assert failure.error.condition in (ErrorCondition.DECODE_ERROR, ErrorCondition.INVALID_FIELD)
    assert type(bodies(srv.data_to_send())[-1]) is Close  # type: ignore[attr-defined]


u32 = st.integers(0, 0xFFFF_FFFF)
small = st.integers(0, 3)
maybe = st.none() | u32


@st.composite
def performative_frames(draw: st.DrawFn) -> bytes:
    """Well-formed performatives with arbitrary field values, on the session and link the peer set up."""
    channel = draw(st.sampled_from([0, 0, 0, 1]))
    kind = draw(
        st.sampled_from(["transfer", "flow", "disposition", "detach", "attach", "begin", "end", "empty"])
    )
    if kind == "transfer":
        body: Any = Transfer(
            draw(small),
            draw(maybe),
            draw(st.none() | st.binary(max_size=4)),
            settled=draw(st.none() | st.booleans()),
            more=draw(st.booleans()),
            aborted=draw(st.booleans()),
        )
        return encode_frame(channel, body, draw(st.binary(max_size=600)))
    if kind == "flow":
        body = Flow(
            next_incoming_id=draw(maybe),
            incoming_window=draw(u32),
            next_outgoing_id=draw(u32),
            outgoing_window=draw(u32),
            handle=draw(st.none() | small),
            delivery_count=draw(maybe),
            link_credit=draw(maybe),
            drain=draw(st.booleans()),
            echo=draw(st.booleans()),
        )
    elif kind == "disposition":
        body = Disposition(draw(st.booleans()), draw(u32), draw(maybe), draw(st.booleans()), Accepted())
    elif kind == "detach":
        body = Detach(draw(small), draw(st.booleans()))
    elif kind == "attach":
        body = Attach(draw(st.sampled_from(["a", "b"])), draw(st.integers(0, 300)), draw(st.booleans()))
    elif kind == "begin":
        body = Begin(
            remote_channel=draw(st.none() | small), next_outgoing_id=0, incoming_window=5, outgoing_window=5
        )
    elif kind == "end":
        body = End()
    else:
        body = None
    return encode_frame(channel, body)


def _server_with_link() -> Any:
    srv = server(max_frame_size=4096, incoming_window=4, max_message_size=1000)
    setup = [
        encode_frame(0, Open("dev")),
        encode_frame(0, Begin(next_outgoing_id=0, incoming_window=10, outgoing_window=10)),
        encode_frame(0, Attach("a", 0, Role.SENDER)),
        encode_frame(0, Attach("b", 1, Role.RECEIVER)),
    ]
    events = srv.receive_data(AMQP_HEADER + b"".join(setup), 0.0)
    for event in events:
        if type(event) is LinkAttached:
            srv.accept_link(event.link, credit=0 if event.link.is_sender else 3)
    srv.data_to_send()
    return srv


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(performative_frames(), min_size=1, max_size=12))
def test_arbitrary_performatives_on_live_links_never_raise(chunks: list[bytes]) -> None:
    srv = _server_with_link()
    events = []
    for chunk in chunks:
        new = srv.receive_data(chunk, 1.0)
        events += new
        for event in new:
            if type(event) is LinkAttached and event.needs_answer:
                srv.accept_link(event.link, credit=0 if event.link.is_sender else 2)
            elif type(event) is MessageReceived and not event.settled:
                srv.settle(event.link, event.delivery_id)
            elif type(event) is CreditGranted:
                srv.send_message(event.link, b"m" * 5000, b"t")  # split to the peer's 512
    out = srv.data_to_send()
    parsed = bodies(out)  # everything we wrote is well-formed
    for event in events:
        if type(event) is MessageReceived:
            assert len(event.payload) <= 1000
    if any(type(event) is ProtocolFailure and event.channel is None for event in events):
        assert srv.finished and type(parsed[-1]) is Close
