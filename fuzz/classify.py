"""What an input means to the hub's MQTT state machine, for grouping findings into distinct bugs.

The harness generates bytes on its own; here, and only here, it asks ``methodhub.mqtt`` (sans-I/O,
no sockets) what the hub's parser makes of the first read: a hang after "CONNECT, then a protocol
error in the same read" is one bug however the error came about.
"""

from __future__ import annotations

import re

from fuzz.inputs import MQTT_TARGETS, FuzzInput
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


def signature(inp: FuzzInput, hang: str) -> tuple[str, str]:
    """The group of a hang (how the connection ended and what the hub's parser saw; MQTT over TCP,
    TLS and WebSocket share groups) and, for MQTT, the parser's protocol error as a variant."""
    how = "silent" if "no FIN sent" in hang else "after FIN"
    if inp.no_tls:
        return f"MQTT/TLS port, {how}: a TCP connection without a TLS handshake", ""
    if inp.target in MQTT_TARGETS:
        shape, reason = mqtt_shape(inp)
        plan = "CONNACK awaited" if inp.plan == "connack-first" else "CONNECT pipelined"
        return f"MQTT, {how}, {plan}: {shape}", reason
    if inp.target == "http":
        kind = "incomplete request" if inp.silent_ok else "complete request(s)"
        return f"HTTP, {how}: {kind}", ""
    return f"WebSocket, {how}: {'upgraded' if inp.prelude else 'handshake refused'}", ""
