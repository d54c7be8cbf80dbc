"""Run in a side venv with python-qpid-proton: an independent AMQP 1.0 implementation as a peer.

Reads one JSON request on stdin, prints one JSON answer on stdout:
- ``values``: hex encodings (ours) -> what ``proton.Data`` decodes each to, as typed JSON trees;
- ``messages``: hex message encodings (ours) -> what ``proton.Message`` sees;
- ``frames``: hex bytes (AMQP header + frames, ours) pushed into a server ``proton.Transport``
  -> the connection / link / delivery events it raised, and the bytes it wrote back;
- and what proton itself encodes (``proton_values``, ``proton_messages``) for us to decode.
Standard library plus proton only: this file is not imported by the tests, only run.
"""

from __future__ import annotations

import json
import sys
import uuid

import proton
from proton import (
    Collector,
    Connection,
    Data,
    Described,
    Message,
    Transport,
    char,
    decimal32,
    float32,
    int32,
    symbol,
    timestamp,
    ubyte,
    uint,
    ulong,
    ushort,
)


def walk(data: Data) -> dict:
    """The current node of ``data`` as {"t": AMQP type name, "v": value}."""
    kind = data.type()
    name = Data.type_name(kind)
    if kind == Data.LIST or kind == Data.MAP:
        count = data.get_list() if kind == Data.LIST else data.get_map()
        data.enter()
        items = []
        for _ in range(count):
            data.next()
            items.append(walk(data))
        data.exit()
        return {"t": name, "v": items}
    if kind == Data.ARRAY:
        count, described, element = data.get_array()
        data.enter()
        descriptor = None
        if described:
            data.next()
            descriptor = walk(data)
        items = []
        for _ in range(count):
            data.next()
            items.append(walk(data))
        data.exit()
        return {"t": name, "element": Data.type_name(element), "descriptor": descriptor, "v": items}
    if kind == Data.DESCRIBED:
        data.enter()
        data.next()
        descriptor = walk(data)
        data.next()
        value = walk(data)
        data.exit()
        return {"t": name, "descriptor": descriptor, "v": value}
    getters = {
        Data.NULL: lambda: None,
        Data.BOOL: data.get_bool,
        Data.UBYTE: data.get_ubyte,
        Data.BYTE: data.get_byte,
        Data.USHORT: data.get_ushort,
        Data.SHORT: data.get_short,
        Data.UINT: data.get_uint,
        Data.INT: data.get_int,
        Data.CHAR: lambda: str(data.get_char()),
        Data.ULONG: data.get_ulong,
        Data.LONG: data.get_long,
        Data.TIMESTAMP: lambda: int(data.get_timestamp()),
        Data.FLOAT: data.get_float,
        Data.DOUBLE: data.get_double,
        Data.DECIMAL32: data.get_decimal32,
        Data.DECIMAL64: data.get_decimal64,
        Data.UUID: lambda: str(data.get_uuid()),
        Data.BINARY: lambda: bytes(data.get_binary()).hex(),
        Data.STRING: data.get_string,
        Data.SYMBOL: lambda: str(data.get_symbol()),
    }
    value = getters[kind]()
    if isinstance(value, int) and not isinstance(value, bool):
        value = int(value)
    elif isinstance(value, float):
        value = float(value)
    return {"t": name, "v": value}


def decode_value(encoded: str) -> dict:
    data = Data()
    raw = bytes.fromhex(encoded)
    used = data.decode(raw)
    data.rewind()
    data.next()
    return {"used": used, "size": len(raw), "value": walk(data)}


def typed(value: object) -> dict:
    """A Python value proton handed us, with its proton type's name."""
    if isinstance(value, dict):
        return {"t": "map", "v": [[typed(k), typed(v)] for k, v in value.items()]}
    if isinstance(value, (bytes, memoryview)):
        return {"t": type(value).__name__, "v": bytes(value).hex()}
    if isinstance(value, uuid.UUID):
        return {"t": "uuid", "v": str(value)}
    if isinstance(value, Described):
        return {"t": "described", "descriptor": typed(value.descriptor), "v": typed(value.value)}
    if value is None:
        return {"t": "null", "v": None}
    return {"t": type(value).__name__, "v": value if isinstance(value, (bool, str)) else int(value)}


def decode_message(encoded: str) -> dict:
    message = Message()
    message.decode(bytes.fromhex(encoded))
    body = message.body
    return {
        "correlation_id": typed(message.correlation_id),
        "id": typed(message.id),
        "to": message.address,
        "subject": message.subject,
        "reply_to": message.reply_to,
        "content_type": message.content_type,
        "durable": message.durable,
        "priority": message.priority,
        "ttl": message.ttl,
        "properties": typed(message.properties or {}),
        "annotations": typed(message.annotations or {}),
        "body": typed(body),
        "inferred": message.inferred,
    }


def run_transport(chunks: list[str]) -> dict:
    """Push our bytes into a proton server transport; report what it understood."""
    transport = Transport(Transport.SERVER)
    transport.max_frame_size = 65536
    connection = Connection()
    collector = Collector()
    transport.bind(connection)
    connection.collect(collector)
    seen: list[dict] = []
    written = b""

    def pump() -> None:
        nonlocal written
        while (event := collector.peek()) is not None:
            kind = str(event.type)
            if event.type == proton.Event.CONNECTION_REMOTE_OPEN:
                seen.append(
                    {
                        "event": kind,
                        "container": connection.remote_container,
                        "hostname": connection.remote_hostname,
                        "remote_max_frame_size": transport.remote_max_frame_size,
                        "remote_idle_timeout": transport.remote_idle_timeout,
                        "offered": [str(c) for c in (connection.remote_offered_capabilities or [])],
                        "properties": typed(connection.remote_properties or {}),
                    }
                )
                connection.container = "proton-peer"
                connection.open()
            elif event.type == proton.Event.SESSION_REMOTE_OPEN:
                seen.append({"event": kind})
                event.session.incoming_capacity = 1 << 20  # a window: capacity / max-frame-size frames
                event.session.open()
            elif event.type == proton.Event.LINK_REMOTE_OPEN:
                link = event.link
                seen.append(
                    {
                        "event": kind,
                        "name": link.name,
                        "is_receiver": link.is_receiver,
                        "target": link.remote_target.address,
                        "source": link.remote_source.address,
                        "snd_settle_mode": link.remote_snd_settle_mode,
                        "rcv_settle_mode": link.remote_rcv_settle_mode,
                        "properties": typed(link.remote_properties or {}),
                    }
                )
                link.target.copy(link.remote_target)
                link.source.copy(link.remote_source)
                link.open()
                if link.is_receiver:
                    link.flow(10)
            elif event.type == proton.Event.DELIVERY:
                delivery = event.delivery
                link = delivery.link
                if link.is_receiver and not delivery.partial:
                    payload = link.recv(delivery.pending)
                    link.advance()
                    seen.append(
                        {
                            "event": kind,
                            "tag": delivery.tag
                            if isinstance(delivery.tag, str)
                            else bytes(delivery.tag).hex(),
                            "settled": delivery.settled,
                            "message": decode_message(payload.hex()),
                        }
                    )
                    delivery.update(proton.Delivery.ACCEPTED)
                    delivery.settle()
            elif event.type == proton.Event.TRANSPORT_ERROR:
                seen.append({"event": kind, "condition": str(transport.condition)})
            collector.pop()
        pending = transport.pending()
        if pending > 0:
            written += transport.peek(pending)
            transport.pop(pending)

    pump()
    for chunk in chunks:  # one frame at a time, so proton answers each before the next arrives
        raw = bytes.fromhex(chunk)
        while raw:
            room = transport.capacity()
            if room <= 0:
                break
            transport.push(raw[:room])
            raw = raw[room:]
            pump()
    return {"events": seen, "written": written.hex(), "condition": str(transport.condition or "")}


def proton_values() -> dict[str, str]:
    """Values proton encodes, for us to decode (hex)."""
    cases = {
        "uint-small": uint(7),
        "uint-big": uint(70000),
        "ulong": ulong(2**40),
        "int": int32(-5),
        "long": 2**40,
        "ubyte": ubyte(200),
        "ushort": ushort(60000),
        "float": float32(1.5),
        "double": 2.25,
        "char": char("é"),
        "timestamp": timestamp(1700000000000),
        "decimal32": decimal32(7),
        "symbol": symbol("amqp:not-found"),
        "string": "grüße" * 60,
        "binary": b"\x00\x01" * 200,
        "uuid": uuid.UUID("0d28684f-1111-4222-8333-444455556666"),
        "list": [uint(1), "two", [symbol("three")], None, True, False],
        "map": {symbol("a"): int32(1), "b": [1, 2]},
        "described": Described(ulong(0x24), []),
        "symbol-array": proton.Array(proton.UNDESCRIBED, Data.SYMBOL, symbol("ANONYMOUS"), symbol("PLAIN")),
        "int-array": proton.Array(proton.UNDESCRIBED, Data.INT, 1, -2, 300),
    }
    out = {}
    for name, value in cases.items():
        data = Data()
        data.put_object(value)
        out[name] = data.encode().hex()
    return out


def proton_messages(correlation: str) -> dict[str, str]:
    response = Message(
        correlation_id=uuid.UUID(correlation),
        properties={"IoThub-status": int32(200)},
        body=b'{"rebooted":true}',
    )
    response.inferred = True
    request = Message(
        correlation_id=uuid.UUID(correlation),
        properties={"IoThub-methodname": "reboot"},
        body=b'{"delay": 1}',
    )
    request.inferred = True
    put_token = Message(
        id="0c3461e4-aaaa-bbbb-cccc-ddddeeeeffff",
        address="$cbs",
        reply_to="cbs",
        properties={
            "operation": "put-token",
            "type": "servicebus.windows.net:sastoken",
            "name": "h%2Fdevices%2Fd",
        },
        body="SharedAccessSignature sr=h%2Fdevices%2Fd&sig=x&se=1",
    )
    return {
        "response": response.encode().hex(),
        "request": request.encode().hex(),
        "put_token": put_token.encode().hex(),
    }


def main() -> None:
    request = json.load(sys.stdin)
    answer = {
        "version": list(proton.VERSION),
        "values": {name: decode_value(hexed) for name, hexed in request.get("values", {}).items()},
        "messages": {name: decode_message(hexed) for name, hexed in request.get("messages", {}).items()},
        "transport": run_transport(request["frames"]) if "frames" in request else None,
        "proton_values": proton_values(),
        "proton_messages": proton_messages(request.get("correlation", str(uuid.uuid4()))),
    }
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
