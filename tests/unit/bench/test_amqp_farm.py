"""The benchmark's AMQP device farm (bench/amqp_farm.py): its hand-built frames decode with the codec
to what the wire doc says a device sends, its hand-rolled reader gets a hub request's fields right,
and one farm device, driven in memory against a server-role AmqpConnection standing in for the hub,
does the whole device dance and keeps answering past its first credit and session window (it renews
both itself)."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from bench.amqp_farm import (
    METHODS_SENDER,
    RECEIVE_CREDIT,
    RECEIVE_WINDOW,
    AmqpDevice,
    accept_frame,
    correlation_of,
    read_transfer,
    response_frame,
    skip_value,
)
from bench.hubproc import new_device_key

from methodhub.amqp import (
    Accepted,
    AmqpConnection,
    ConnectionRole,
    Disposition,
    Int,
    LinkRef,
    Message,
    Properties,
    Role,
    Transfer,
    ULong,
    decode_frame,
    decode_message,
    encode,
    encode_frame,
    encode_message,
)
from methodhub.amqp.events import LinkAttached, MessageReceived
from methodhub.amqp.message import AmqpValue

RID = uuid.UUID("0d28684f-5f6b-4c51-9d35-0c3461e4a1b2")


def request_frame(
    delivery_id: int, correlation: Any = RID, *, handle: int = 1, settled: bool = True, more: bool = False
) -> bytes:
    """A method request as the hub's codec sends it (wire doc §4.1)."""
    message = Message(
        properties=Properties(correlation_id=correlation),
        application_properties={"IoThub-methodname": "reboot"},
        body=[b'{"delay": 1}'],
    )
    transfer = Transfer(handle, delivery_id, uuid.uuid4().bytes, 0, settled, more=more)
    return encode_frame(0, transfer, encode_message(message))


@pytest.mark.parametrize("delivery_id", [0, 7, 300, 0xFFFF_FFFF])
@pytest.mark.parametrize("settled", [True, False])
def test_response_frame_is_the_answer_the_wire_doc_describes(delivery_id: int, settled: bool) -> None:
    frame_bytes = response_frame(delivery_id, encode(RID), settled)
    frame, end = decode_frame(frame_bytes)
    assert frame is not None and end == len(frame_bytes)
    transfer = frame.body
    assert isinstance(transfer, Transfer)
    assert (transfer.handle, transfer.delivery_id) == (METHODS_SENDER, delivery_id)
    assert transfer.delivery_tag == delivery_id.to_bytes(4, "big")
    assert transfer.message_format == 0 and bool(transfer.settled) is settled and not transfer.more
    message = decode_message(frame.payload)
    assert message.properties is not None and message.properties.correlation_id == RID
    status = (message.application_properties or {})["IoThub-status"]
    assert type(status) is Int and status == 200  # an AMQP int (§4.2), not a long
    assert message.body == [b'{"ok":true}']


def test_response_frame_copies_a_correlation_id_of_another_type() -> None:
    for value in ("0d28684f-5f6b-4c51-9d35-0c3461e4a1b2", ULong(12), RID.bytes):
        frame, _ = decode_frame(response_frame(5, encode(value), True))
        assert frame is not None
        properties = decode_message(frame.payload).properties
        assert properties is not None and properties.correlation_id == value


@pytest.mark.parametrize("delivery_id", [0, 9, 70_000])
def test_accept_frame_settles_the_request(delivery_id: int) -> None:
    frame, _ = decode_frame(accept_frame(delivery_id))
    assert frame is not None
    assert frame.body == Disposition(Role.RECEIVER, delivery_id, None, True, Accepted())


@pytest.mark.parametrize("delivery_id", [0, 200, 70_000])
@pytest.mark.parametrize("settled", [True, False])
def test_read_transfer_and_correlation_of_a_hub_request(delivery_id: int, settled: bool) -> None:
    data = request_frame(delivery_id, handle=3, settled=settled, more=True)
    handle, got_id, got_settled, more, payload = read_transfer(data, 8 + 3)  # after the descriptor
    assert (handle, got_id, got_settled, more) == (3, delivery_id, settled, True)
    frame, _ = decode_frame(data)
    assert frame is not None and data[payload:] == frame.payload
    assert correlation_of(data, payload, len(data)) == encode(RID)


def test_correlation_of_a_message_without_one_is_none() -> None:
    payload = encode_message(Message(properties=Properties(message_id="x"), body=[b"{}"]))
    assert correlation_of(payload, 0, len(payload)) is None
    payload = encode_message(Message(body=[b"{}"]))
    assert correlation_of(payload, 0, len(payload)) is None


def test_skip_value_steps_over_each_encoding() -> None:
    for value in (
        None,
        True,
        7,
        Int(-5),
        ULong(2**40),
        RID,
        "text",
        "x" * 300,
        b"\x00" * 300,
        [1, "a"],
        {"k": 1},
    ):
        data = encode(value) + b"\xff"
        assert skip_value(data, 0) == len(data) - 1, value


# -- one device against an in-memory hub ---------------------------------------------------------


class Wire:
    """The device's transport: what it writes, collected."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self.written = bytes(self.written), bytearray()
        return data


class MiniHub:
    """A server-role AmqpConnection doing the hub's part of the dance: accept every link (credit 100
    on the ones it receives on, topped up at half as the gateway does), answer put-token 200."""

    def __init__(self, device: AmqpDevice, wire: Wire) -> None:
        self.conn = AmqpConnection(ConnectionRole.SERVER, container_id="hub", idle_timeout=None)
        self.device = device
        self.wire = wire
        self.links: dict[str, LinkRef] = {}
        self.responses: list[Message] = []
        self.settled_flags: list[bool] = []

    def pump(self) -> None:
        """Move bytes both ways until neither side has anything to say."""
        while True:
            data = self.wire.take()
            if data:
                for event in self.conn.receive_data(data):
                    self.handle(event)
            answer = self.conn.data_to_send()
            if not data and not answer:
                return
            if answer:
                self.device.data_received(answer)

    def handle(self, event: object) -> None:
        conn = self.conn
        if isinstance(event, LinkAttached) and event.needs_answer:
            self.links[event.attach.name.rsplit("-", 2)[0]] = event.link
            receives = event.attach.role == Role.SENDER
            conn.accept_link(event.link, credit=100 if receives else 0)
        elif isinstance(event, MessageReceived):
            message = decode_message(event.payload)
            if not event.settled:
                conn.settle(event.link, event.delivery_id, Accepted())
            if conn.credit(event.link) < 50:
                conn.grant_credit(event.link, 100 - conn.credit(event.link))
            if event.link == self.links.get("cbs-sender"):
                assert message.properties is not None
                answer = Message(
                    properties=Properties(correlation_id=message.properties.message_id),
                    application_properties={"status-code": Int(200), "status-description": "OK"},
                )
                conn.send_message(self.links["cbs-receiver"], encode_message(answer), b"\x00")
            else:
                assert event.link == self.links["methods-sender"]
                self.responses.append(message)
                self.settled_flags.append(event.settled)

    def call(self, rid: uuid.UUID, presettled: bool) -> bool:
        """Send one request; False when the device gave no credit or window for it."""
        request = Message(
            properties=Properties(correlation_id=rid),
            application_properties={"IoThub-methodname": "reboot"},
            body=[b"{}"],
        )
        return (
            self.conn.send_message(
                self.links["methods-receiver"], encode_message(request), rid.bytes, presettled
            )
            is not None
        )


@pytest.mark.parametrize("presettled", [True, False])
def test_a_farm_device_does_the_dance_and_renews_its_credit(presettled: bool) -> None:
    loop = asyncio.new_event_loop()
    try:
        ready = loop.create_future()
        config = SimpleNamespace(presettled=presettled, hostname="localhost", key=new_device_key())
        farm = SimpleNamespace(
            config=config,
            expiry=2_000_000_000,
            answered=0,
            errors={},
            lost=0,
            queued=0,
            queued_s=0.0,
            queued_max_s=0.0,
        )
        device = AmqpDevice(farm, "amqp-000001", ready)  # type: ignore[arg-type]
        wire = Wire()
        hub = MiniHub(device, wire)
        device.connection_made(wire)  # type: ignore[arg-type]
        hub.pump()
        assert ready.done() and ready.result() is True, device.refused
        assert {"cbs-sender", "cbs-receiver", "methods-sender", "methods-receiver"} <= hub.links.keys()
        rids = [uuid.UUID(int=RID.int + n) for n in range(RECEIVE_WINDOW + RECEIVE_CREDIT)]
        for start in range(0, len(rids), 250):  # 250 in flight at a time: past 1,000 credit and the window
            for rid in rids[start : start + 250]:
                assert hub.call(rid, presettled), f"no credit or window for request {start}"
            hub.pump()
        assert len(hub.responses) == len(rids) == farm.answered
        assert [m.properties.correlation_id for m in hub.responses] == rids  # type: ignore[union-attr]
        assert all((m.application_properties or {}).get("IoThub-status") == 200 for m in hub.responses)
        assert set(hub.settled_flags) == {presettled}
        assert not wire.closed and not farm.errors
    finally:
        loop.close()


def test_a_farm_device_gives_up_on_a_refused_put_token() -> None:
    loop = asyncio.new_event_loop()
    try:
        ready = loop.create_future()
        config = SimpleNamespace(presettled=True, hostname="localhost", key=new_device_key())
        farm = SimpleNamespace(
            config=config,
            expiry=2_000_000_000,
            answered=0,
            errors={},
            lost=0,
            queued=0,
            queued_s=0.0,
            queued_max_s=0.0,
        )
        device = AmqpDevice(farm, "amqp-000001", ready)  # type: ignore[arg-type]
        wire = Wire()
        hub = MiniHub(device, wire)

        def refuse(event: object) -> None:
            if isinstance(event, MessageReceived):
                message = decode_message(event.payload)
                assert message.properties is not None
                answer = Message(
                    properties=Properties(correlation_id=message.properties.message_id),
                    application_properties={"status-code": Int(401), "status-description": "bad signature"},
                    body=AmqpValue(None),
                )
                hub.conn.send_message(hub.links["cbs-receiver"], encode_message(answer), b"\x00")
            else:
                MiniHub.handle(hub, event)

        hub.handle = refuse  # type: ignore[method-assign]
        device.connection_made(wire)  # type: ignore[arg-type]
        hub.pump()
        assert ready.done() and ready.result() is False
        assert device.refused == "put-token 401 bad signature" and wire.closed
    finally:
        loop.close()
