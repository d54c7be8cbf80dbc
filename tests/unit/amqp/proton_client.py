"""A proton client driven over stdin/stdout, run in the proton side venv by test_connection_proton.py.

Sans-I/O proton: a client ``Transport``/``Connection`` (max-frame-size 4096, like Java's SDK) that
opens a session, a sender (the device's method responses) and a receiver (the method requests,
credit 10). Each stdin line is ``{"bytes": hex}`` from our server; each stdout line answers with the
bytes proton wrote and what it saw. When a request arrives it is accepted and settled and a response
goes back on the sender; when the response is settled by the server, proton closes the links,
the session and the connection.
"""

from __future__ import annotations

import json
import sys

import proton
from proton import Collector, Connection, Message, Transport

METHODS = "/devices/dev1/methods/devicebound"


def main() -> None:
    transport = Transport()
    transport.max_frame_size = 4096
    connection = Connection()
    connection.container = "proton-client"
    connection.hostname = "localhost"
    collector = Collector()
    connection.collect(collector)
    transport.bind(connection)
    connection.open()
    session = connection.session()
    session.open()
    sender = session.sender("methods-responses")
    sender.target.address = METHODS
    sender.open()
    receiver = session.receiver("methods-requests")
    receiver.source.address = METHODS
    receiver.flow(10)
    receiver.open()
    state = {"responded": False, "closing": False}

    def handle(seen: list[dict]) -> None:
        while (event := collector.peek()) is not None:
            kind = event.type
            if kind == proton.Event.CONNECTION_REMOTE_OPEN:
                seen.append(
                    {
                        "event": "open",
                        "container": connection.remote_container,
                        "max_frame_size": transport.remote_max_frame_size,
                        "idle_timeout": transport.remote_idle_timeout,
                    }
                )
            elif kind == proton.Event.LINK_REMOTE_OPEN:
                link = event.link
                seen.append(
                    {
                        "event": "attach",
                        "name": link.name,
                        "source": link.remote_source.address,
                        "target": link.remote_target.address,
                    }
                )
            elif kind == proton.Event.LINK_FLOW and event.link.is_sender:
                seen.append({"event": "credit", "credit": event.link.credit})
            elif kind == proton.Event.DELIVERY:
                delivery = event.delivery
                if delivery.link.is_receiver and not delivery.partial:
                    payload = delivery.link.recv(delivery.pending)
                    delivery.link.advance()
                    message = Message()
                    message.decode(payload)
                    seen.append(
                        {
                            "event": "request",
                            "size": len(payload),
                            "correlation_id": str(message.correlation_id),
                            "method": (message.properties or {}).get("IoThub-methodname"),
                            "body_size": len(bytes(message.body)),
                            "settled": delivery.settled,
                        }
                    )
                    delivery.update(proton.Delivery.ACCEPTED)
                    delivery.settle()
                    reply = Message(
                        correlation_id=message.correlation_id,
                        properties={"IoThub-status": proton.int32(200)},
                        body=b'{"ok":true}',
                    )
                    reply.inferred = True
                    sender.delivery(b"r0")
                    sender.send(reply.encode())
                    sender.advance()
                    state["responded"] = True
                elif delivery.link.is_sender and delivery.remote_state:
                    seen.append(
                        {
                            "event": "response-settled",
                            "state": int(delivery.remote_state),
                            "settled": delivery.settled,  # proton has no remote_settled (wire doc §8.2)
                        }
                    )
                    delivery.settle()
                    if not state["closing"]:
                        state["closing"] = True
                        sender.close()
                        receiver.close()
                        session.close()
                        connection.close()
            elif kind == proton.Event.LINK_REMOTE_CLOSE:
                seen.append({"event": "detach", "name": event.link.name})
            elif kind == proton.Event.SESSION_REMOTE_CLOSE:
                seen.append({"event": "end"})
            elif kind == proton.Event.CONNECTION_REMOTE_CLOSE:
                condition = connection.remote_condition
                seen.append({"event": "close", "condition": condition.name if condition else None})
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
