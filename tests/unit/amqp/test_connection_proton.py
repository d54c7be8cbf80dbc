"""Our server state machine against proton's client engine as a real peer (sans-I/O on both sides).

``proton_client.py`` runs in the proton side venv (see test_proton_peer.py) and talks JSON lines over
stdin/stdout: we hand it our bytes, it answers with its own. Proton opens with max-frame-size 4096,
attaches a sender and a receiver, takes a 20 KB method request (split by us into frames of at most
4096 bytes, reassembled by proton), answers it, and closes links, session and connection once we
settle its answer.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from methodhub.amqp import Accepted, Message, Properties, decode_message, encode_message
from methodhub.amqp.events import (
    ConnectionClosed,
    ConnectionOpened,
    CreditGranted,
    DeliverySettled,
    Event,
    LinkAttached,
    LinkDetached,
    MessageReceived,
    ProtocolFailure,
    SessionBegun,
    SessionEnded,
)
from tests.interop.support import side_venv

from .conn_support import frames, of, server

PROTON = "python-qpid-proton==0.40.0"
CLIENT = Path(__file__).with_name("proton_client.py")
REQUEST_ID = uuid.UUID("0d28684f-5f6b-4c51-9d35-0c3461e4a1b2")


def _proton_python() -> Path:
    try:
        return side_venv("proton", [PROTON])
    except subprocess.CalledProcessError as exc:
        pytest.fail(
            f"could not build {PROTON} in a side venv ({exc}): the proton peer did not run", pytrace=False
        )


def test_proton_client_against_our_server() -> None:
    srv = server(idle_timeout=60.0)
    process = subprocess.Popen(
        [str(_proton_python()), str(CLIENT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    ours: list[Event] = []
    theirs: list[dict[str, Any]] = []
    to_proton: list[bytes] = []
    request_sent = False
    payload = b'{"blob":"' + b"x" * 20000 + b'"}'
    try:
        down = b""
        for _ in range(50):
            to_proton.append(down)
            process.stdin.write(json.dumps({"bytes": down.hex()}) + "\n")
            process.stdin.flush()
            line = process.stdout.readline()
            if not line:
                process.wait(timeout=30)
                pytest.fail(f"the proton client died:\n{process.stderr.read() if process.stderr else ''}")
            answer = json.loads(line)
            theirs += answer["events"]
            events = srv.receive_data(bytes.fromhex(answer["bytes"]), 1.0)
            ours += events
            for event in events:
                if type(event) is LinkAttached:
                    srv.accept_link(event.link, credit=0 if event.link.is_sender else 5)
                elif type(event) is CreditGranted and not request_sent:
                    request = Message(
                        properties=Properties(correlation_id=REQUEST_ID),
                        application_properties={"IoThub-methodname": "reboot"},
                        body=[payload],
                    )
                    assert srv.send_message(event.link, encode_message(request), b"\x01") is not None
                    request_sent = True
                elif type(event) is MessageReceived:
                    srv.settle(event.link, event.delivery_id, Accepted())
            down = srv.data_to_send()
            if srv.finished and not down:
                break
    finally:
        process.stdin.close()
        process.wait(timeout=30)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""

    assert not [event for event in ours if type(event) is ProtocolFailure], ours
    assert not [seen for seen in theirs if seen["event"] == "transport-error"], theirs
    opened = next(event for event in ours if type(event) is ConnectionOpened).open
    assert opened.container_id == "proton-client" and opened.max_frame_size == 4096
    assert [type(event) for event in ours if type(event) in (SessionBegun, LinkAttached)] == [
        SessionBegun,
        LinkAttached,
        LinkAttached,
    ]
    [response] = [event for event in ours if type(event) is MessageReceived]
    seen = decode_message(response.payload)
    assert seen.properties is not None and seen.properties.correlation_id == REQUEST_ID
    assert seen.application_properties == {"IoThub-status": 200} and seen.body == [b'{"ok":true}']
    [settled] = [event for event in ours if type(event) is DeliverySettled]
    assert settled.state == Accepted() and settled.settled
    assert len([event for event in ours if type(event) is LinkDetached]) == 2
    assert any(type(event) is SessionEnded for event in ours)
    assert any(type(event) is ConnectionClosed for event in ours) and srv.finished

    kinds = [seen["event"] for seen in theirs]
    assert kinds[0] == "open" and theirs[0]["container"] == "methodhub"
    assert theirs[0]["max_frame_size"] == 65536 and theirs[0]["idle_timeout"] == 60.0
    assert [seen["name"] for seen in theirs if seen["event"] == "attach"] == [
        "methods-responses",
        "methods-requests",
    ]
    [request] = [seen for seen in theirs if seen["event"] == "request"]
    assert request["correlation_id"] == str(REQUEST_ID) and request["method"] == "reboot"
    assert request["body_size"] == len(payload) and request["settled"] is False
    [response_settled] = [seen for seen in theirs if seen["event"] == "response-settled"]
    assert response_settled["state"] == 0x24 and response_settled["settled"] is True  # ACCEPTED
    assert kinds.count("detach") == 2 and "end" in kinds and kinds[-1] == "close"
    # Everything we sent fit proton's 4096-byte frames: the request went in pieces.
    sent = [frame for chunk in to_proton for frame in frames(chunk, 4096)]
    assert sum(1 for frame in sent if frame.payload) >= 5


FLOW_CLIENT = Path(__file__).with_name("proton_flow_client.py")
FLOW_COUNT, FLOW_SIZE = 12, 14_000  # proton_flow_client.py's COUNT and SIZE


def test_multi_frame_messages_both_ways_through_small_session_windows() -> None:
    """Session windows and transfer-ids count transfer frames (AMQP 1.0 §2.5.6), as proton does:
    12 messages of 14 KB each way (4 frames each) through windows of 4 frames (ours) and 3
    (proton's: the last frame of each of ours waits for its flow) all arrive, with neither side
    stalled or over its window."""
    srv = server(idle_timeout=60.0, max_frame_size=4096, incoming_window=4)
    process = subprocess.Popen(
        [str(_proton_python()), str(FLOW_CLIENT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    ours: list[Event] = []
    theirs: list[dict[str, Any]] = []
    down_link = None
    sent = 0
    try:
        down = b""
        for _ in range(300):
            process.stdin.write(json.dumps({"bytes": down.hex()}) + "\n")
            process.stdin.flush()
            line = process.stdout.readline()
            if not line:
                process.wait(timeout=30)
                pytest.fail(f"the proton client died:\n{process.stderr.read() if process.stderr else ''}")
            answer = json.loads(line)
            theirs += answer["events"]
            events = srv.receive_data(bytes.fromhex(answer["bytes"]), 1.0)
            ours += events
            for event in events:
                if type(event) is LinkAttached:
                    srv.accept_link(event.link, credit=0 if event.link.is_sender else FLOW_COUNT)
                    if event.link.is_sender:
                        down_link = event.link
                elif type(event) is MessageReceived:
                    srv.settle(event.link, event.delivery_id, Accepted())
            while down_link is not None and sent < FLOW_COUNT:
                tag = b"d%d" % sent
                if srv.send_message(down_link, bytes([sent]) * FLOW_SIZE, tag, settled=True) is None:
                    break
                sent += 1
            down = srv.data_to_send()
            received = [seen for seen in theirs if seen["event"] == "received"]
            if len(received) == FLOW_COUNT and len(of(ours, MessageReceived)) == FLOW_COUNT and not down:
                break
    finally:
        process.stdin.close()
        process.wait(timeout=30)

    assert not of(ours, ProtocolFailure), of(ours, ProtocolFailure)
    assert not [seen for seen in theirs if seen["event"] == "transport-error"], theirs
    assert [(event.delivery_tag, event.payload) for event in of(ours, MessageReceived)] == [
        (b"u%d" % n, bytes([n]) * FLOW_SIZE) for n in range(FLOW_COUNT)
    ]
    assert [
        (seen["tag"], bytes.fromhex(seen["payload"])) for seen in theirs if seen["event"] == "received"
    ] == [(f"d{n}", bytes([n]) * FLOW_SIZE) for n in range(FLOW_COUNT)]
