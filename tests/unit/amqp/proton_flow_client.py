"""A proton client moving many multi-frame messages each way through small session windows, run in
the proton side venv by test_connection_proton.py (the same stdin/stdout JSON lines as
proton_client.py).

Proton announces max-frame-size 4096 and an incoming capacity of three frames (so an incoming
window of 3), sends ``COUNT`` messages of ``SIZE`` bytes on its sender (four transfer frames
each at our max-frame-size) and takes as many on its receiver. Proton counts session windows and
transfer-ids per transfer frame (AMQP 1.0 §2.5.6): a peer counting deliveries instead stalls it or
overruns its window.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import proton
from proton import Collector, Connection, Transport

COUNT = 12
SIZE = 14_000


def _tag(delivery: proton.Delivery) -> str:
    tag = delivery.tag
    return tag.decode() if isinstance(tag, bytes) else str(tag)


def main() -> None:
    transport = Transport()
    transport.max_frame_size = 4096
    connection = Connection()
    connection.container = "proton-flow"
    connection.hostname = "localhost"
    collector = Collector()
    connection.collect(collector)
    transport.bind(connection)
    connection.open()
    session = connection.session()
    session.incoming_capacity = 3 * 4096
    session.open()
    sender = session.sender("up")
    sender.target.address = "/up"
    sender.open()
    receiver = session.receiver("down")
    receiver.source.address = "/down"
    receiver.flow(COUNT)
    receiver.open()
    state: dict[str, Any] = {"sent": 0, "partial": b""}

    def send_what_credit_allows() -> None:
        while state["sent"] < COUNT and sender.credit > 0:
            number = state["sent"]
            sender.delivery(f"u{number}")
            sender.send(bytes([number]) * SIZE)
            sender.advance()
            state["sent"] += 1

    def handle(seen: list[dict]) -> None:
        while (event := collector.peek()) is not None:
            kind = event.type
            if kind == proton.Event.LINK_FLOW and event.link.is_sender:
                send_what_credit_allows()
            elif kind == proton.Event.DELIVERY:
                delivery = event.delivery
                if delivery.link.is_receiver:  # read as it comes: the window is less than a message
                    state["partial"] += delivery.link.recv(delivery.pending) or b""
                    if delivery.partial:
                        collector.pop()
                        continue
                    payload, state["partial"] = state["partial"], b""
                    delivery.link.advance()
                    seen.append({"event": "received", "tag": _tag(delivery), "payload": payload.hex()})
                    delivery.update(proton.Delivery.ACCEPTED)
                    delivery.settle()
                elif delivery.link.is_sender and delivery.remote_state:
                    seen.append({"event": "settled", "tag": _tag(delivery)})
                    delivery.settle()
            elif kind == proton.Event.TRANSPORT_ERROR:
                seen.append({"event": "transport-error", "condition": str(transport.condition)})
            collector.pop()

    for line in sys.stdin:
        raw = bytes.fromhex(json.loads(line)["bytes"])
        seen: list[dict] = []
        while raw:
            room = transport.capacity()
            if room <= 0:
                break
            transport.push(raw[:room])
            raw = raw[room:]
            handle(seen)
        handle(seen)
        out = b""
        while (pending := transport.pending()) > 0:
            out += transport.peek(pending)
            transport.pop(pending)
            handle(seen)
        print(json.dumps({"bytes": out.hex(), "events": seen, "closed": transport.closed}), flush=True)


if __name__ == "__main__":
    main()
