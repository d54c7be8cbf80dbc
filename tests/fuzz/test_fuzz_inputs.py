"""The fuzz harness's inputs: the same seed gives the same bytes; its frames and packets are what
they claim to be (checked with wsproto and methodhub's MQTT parser; the AMQP generator has its own
tests in test_amqpgen.py)."""

from __future__ import annotations

import random

from fuzz.amqpgen import AmqpGenerator
from fuzz.hub import LogRecord
from fuzz.inputs import TARGETS, InputFactory, render
from fuzz.mqttgen import Credentials, MqttGenerator, connect, publish, subscribe
from fuzz.wsgen import OP_BINARY, ws_frame
from wsproto.frame_protocol import FrameProtocol, Opcode

from methodhub.mqtt import Connack, Connect, MqttConnection, PacketReceived, Publish, Role, Subscribe

DEVICES = [Credentials(f"fuzz-{i}", f"SharedAccessSignature sr=x&sig=s{i}&se=4102444800") for i in range(8)]


def factory(seed: int) -> InputFactory:
    return InputFactory(
        seed,
        list(TARGETS),
        MqttGenerator(DEVICES, str(seed)),
        "127.0.0.1:1",
        "token",
        AmqpGenerator(DEVICES, "localhost"),
        "localhost:2",
    )


def test_same_seed_same_inputs() -> None:
    a, b = factory(5), factory(5)
    for i in range(300):
        assert render(a.make(i)) == render(b.make(i)), i


def test_another_seed_other_inputs() -> None:
    a, b = factory(5), factory(6)
    assert [render(a.make(i)) for i in range(50)] != [render(b.make(i)) for i in range(50)]


def test_every_target_and_mutation_occurs() -> None:
    inputs = [factory(1).make(i) for i in range(400)]
    assert {inp.target for inp in inputs} == set(TARGETS)
    labels = {label for inp in inputs for u in inp.units for label in u.mutated.split("+")}
    for name in ("value", "flip-bits", "truncate", "wrong-length", "bad-utf8", "bad-properties", "duplicate"):
        assert name in labels, name


def test_hand_built_packets_parse_as_methodhub_reads_them() -> None:
    for level in (4, 5):
        server = MqttConnection(Role.SERVER)
        data = connect("dev", level=level, username="u", password="p", clean=False, keepalive=30)
        data += subscribe([("$iothub/methods/POST/#", 1)], level=level, packet_id=7)
        data += publish("a/b", b"{}", level=level, qos=1, packet_id=9)
        events = server.receive_data(data)
        server.send(Connack(False, 0))  # the server reads on after a CONNECT once it answered it
        events += server.next_events()
        packets = [e.packet for e in events if isinstance(e, PacketReceived)]
        assert packets[0] == Connect("dev", False, 30, "u", b"p", protocol_level=level)
        assert isinstance(packets[1], Subscribe)
        assert packets[1].subscriptions == [("$iothub/methods/POST/#", 1)]
        assert isinstance(packets[2], Publish) and (packets[2].topic, packets[2].packet_id) == ("a/b", 9)


def test_websocket_frames_decode_to_their_payload() -> None:
    rng = random.Random(3)
    for size in (0, 5, 125, 126, 65535, 65536):
        payload = rng.randbytes(size)
        server = FrameProtocol(client=False, extensions=[])
        server.receive_bytes(ws_frame(OP_BINARY, payload, mask=rng.randbytes(4)))
        (frame,) = list(server.received_frames())
        assert frame.opcode is Opcode.BINARY and bytes(frame.payload) == payload


def test_traceback_signature_ignores_numbers_and_names() -> None:
    def record(port: int, name: str) -> LogRecord:
        return LogRecord(
            0.0,
            [
                "Fatal error on transport TCPTransport",
                f"transport: <TCPTransport closed=False 0x{port:x}>",
                "Traceback (most recent call last):",
                '  File "/x/src/methodhub/mqtt/connection.py", line 266, in send',
                f"methodhub.mqtt.errors.LocalProtocolError: {name} on a closed connection '{port}'",
            ],
        )

    assert record(1, "Suback").signature() == record(99, "Suback").signature()
    assert record(1, "Suback").signature() != record(1, "Puback").signature()
    assert record(1, "Suback").is_problem()
