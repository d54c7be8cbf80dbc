"""What an input means to the hub's MQTT or AMQP state machine, for grouping findings into distinct bugs.

The harness generates bytes on its own; here (and, for the hub's answers, in :mod:`fuzz.amqpread`)
it asks ``methodhub.mqtt`` and ``methodhub.amqp`` (sans-I/O, no sockets) what the hub's parser
makes of an input: a hang after "CONNECT, then a protocol error in the same read" is one bug however
the error came about. An AMQP dialogue is run through a server-role ``AmqpConnection`` stage by
stage, every SASL init answered ok and every link accepted (the hub's gateway may refuse some).
"""

from __future__ import annotations

import re

from fuzz.inputs import AMQP_TARGETS, MQTT_TARGETS, FuzzInput
from methodhub.amqp import AmqpConnection, ConnectionRole
from methodhub.amqp import events as amqp_events
from methodhub.mqtt import ConnectionClosed, MqttConnection, PacketReceived, ProtocolError, Role


def _first_read(inp: FuzzInput) -> tuple[bytes, bytes]:
    """(bytes that reach the hub together with the CONNECT, bytes sent after waiting for CONNACK)."""
    datas = [u.data for u in inp.units]
    if inp.plan == "connack-first":
        return datas[0], b"".join(datas[1:])
    if inp.plan in ("packet-per-write", "byte-at-a-time"):
        return datas[0] if datas else b"", b"".join(datas[1:])
    return b"".join(datas), b""


def _shape(events: list[object]) -> list[str]:
    out: list[str] = []
    for event in events:
        if isinstance(event, PacketReceived):
            name = type(event.packet).__name__.upper()
            token = name if name in ("CONNECT", "DISCONNECT") else "packets"
        elif isinstance(event, ProtocolError):
            token = "protocol error"
        elif isinstance(event, ConnectionClosed):
            token = "EOF"
        else:
            token = type(event).__name__
        if not out or out[-1] != token:
            out.append(token)
    return out


def reason_template(reason: str) -> str:
    return re.sub(r"\d+", "N", reason)[:90]


def mqtt_shape(inp: FuzzInput) -> tuple[str, str]:
    """A coarse shape (for grouping) and the protocol error the hub's parser reports, if any."""
    first, rest = _first_read(inp)
    machine = MqttConnection(Role.SERVER)
    try:
        events = list(machine.receive_data(first)) if first else []
        if rest:
            events += machine.receive_data(rest)
    except Exception as exc:  # the parser itself failed: worth its own group
        return f"parser raised {type(exc).__name__}", str(exc)[:120]
    reason = next((e.reason for e in events if isinstance(e, ProtocolError)), "")
    shape = " + ".join(_shape(events)) or "nothing parsed"
    return shape, reason_template(reason)


_AMQP_TOKENS = {
    amqp_events.SaslInitReceived: "SASL",
    amqp_events.ConnectionOpened: "open",
    amqp_events.SessionBegun: "begin",
    amqp_events.LinkAttached: "links",
    amqp_events.CreditGranted: "links",
    amqp_events.MessageReceived: "messages",
    amqp_events.DeliverySettled: "messages",
    amqp_events.LinkDetached: "detach/end",
    amqp_events.SessionEnded: "detach/end",
    amqp_events.ConnectionClosed: "close",
}


def amqp_events_of(inp: FuzzInput) -> list[object]:
    """The events of a server-role ``AmqpConnection`` fed ``inp``'s units stage by stage (SASL
    answered ok, links accepted with credit, as far as the state machine goes)."""
    machine = AmqpConnection(ConnectionRole.SERVER, container_id="fuzz-classify")
    events: list[object] = []
    stage = b""

    def feed(data: bytes) -> None:
        fresh: list[object] = list(machine.receive_data(data, 0.0))
        while fresh:
            events.extend(fresh)
            more = False
            for event in fresh:
                if isinstance(event, amqp_events.SaslInitReceived):
                    machine.sasl_outcome(True)
                    more = True
                elif isinstance(event, amqp_events.LinkAttached) and event.needs_answer:
                    machine.accept_link(event.link, credit=0 if event.link.is_sender else 100)
            fresh = list(machine.next_events()) if more else []
        machine.data_to_send()

    for unit in inp.units:
        stage += unit.data
        if unit.wait_after and inp.plan != "one-write":
            feed(stage)
            stage = b""
    feed(stage)
    return events


def amqp_shape(inp: FuzzInput) -> tuple[str, str]:
    """A coarse shape of what the AMQP state machine made of ``inp`` (for grouping) and the first
    protocol error it reports, if any."""
    try:
        events = amqp_events_of(inp)
    except Exception as exc:  # the state machine itself failed: worth its own group
        return f"state machine raised {type(exc).__name__}", str(exc)[:120]
    out: list[str] = []
    reason = ""
    for event in events:
        if isinstance(event, amqp_events.ProtocolFailure):
            scope = "connection" if event.channel is None else "session" if event.link is None else "link"
            token = f"{scope} error {event.error.condition}"
            reason = reason or reason_template(f"{event.error.condition}: {event.error.description}")
        elif isinstance(event, amqp_events.BadProtocolHeader):
            token = "bad protocol header"
            reason = reason or "bad protocol header"
        else:
            token = _AMQP_TOKENS.get(type(event), type(event).__name__)
        if token not in out:  # each kind once, in order of first appearance: coarse groups
            out.append(token)
    return " + ".join(out) or "nothing parsed", reason


def signature(inp: FuzzInput, hang: str) -> tuple[str, str]:
    """The group of a hang (how the connection ended and what the hub's parser saw; MQTT over TCP,
    TLS and WebSocket share groups, as AMQP over TCP, TLS and WebSocket do) and the parser's
    protocol error as a variant."""
    how = "silent" if "no FIN sent" in hang else "trickling" if "trickled" in hang else "after FIN"
    if inp.no_tls:
        kind = "AMQP" if inp.target in AMQP_TARGETS else "MQTT"
        return f"{kind}/TLS port, {how}: a TCP connection without a TLS handshake", ""
    if inp.target in AMQP_TARGETS:
        shape, reason = amqp_shape(inp)
        return f"AMQP, {how}, {inp.plan}: {shape}", reason
    if inp.target in MQTT_TARGETS:
        shape, reason = mqtt_shape(inp)
        plan = "CONNACK awaited" if inp.plan == "connack-first" else "CONNECT pipelined"
        return f"MQTT, {how}, {plan}: {shape}", reason
    if inp.target == "http":
        kind = "incomplete request" if inp.silent_ok else "complete request(s)"
        return f"HTTP, {how}: {kind}", ""
    return f"WebSocket, {how}: {'upgraded' if inp.prelude else 'handshake refused'}", ""
