"""Cross-check against an independent AMQP 1.0 implementation: python-qpid-proton, as a peer.

Proton has no Linux wheel: ``side_venv`` builds it from the sdist once (about 20-30 s with gcc)
and caches the venv under ``.venv-interop/proton``. ``proton_peer.py`` runs there: it decodes what
we encoded (values, a message, and a whole connection pushed into a proton server Transport) and
encodes values and messages for us to decode. If proton cannot be built the test fails and says
why: a missing cross-check is not a pass.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from methodhub.amqp import (
    AMQP_HEADER,
    Accepted,
    Array,
    Attach,
    Begin,
    Char,
    Close,
    Decimal32,
    Described,
    Disposition,
    Float,
    Flow,
    Int,
    Long,
    Message,
    Open,
    Properties,
    Role,
    Source,
    Symbol,
    Target,
    Timestamp,
    Transfer,
    UByte,
    UInt,
    ULong,
    UShort,
    decode,
    decode_frame,
    decode_message,
    decode_protocol_header,
    encode,
    encode_frame,
    encode_message,
)
from tests.interop.support import side_venv

from .strategies import same

PROTON = "python-qpid-proton==0.40.0"
PEER = Path(__file__).with_name("proton_peer.py")
REQUEST_ID = uuid.UUID("0d28684f-5f6b-4c51-9d35-0c3461e4a1b2")

VALUES: dict[str, Any] = {
    "scalars": [
        None,
        True,
        False,
        UByte(200),
        UShort(60000),
        UInt(0),
        UInt(7),
        UInt(70000),
        ULong(0),
        ULong(9),
        ULong(2**40),
        Int(-5),
        Int(200),
        Long(-3),
        2**40,
        Float(1.5),
        2.25,
        Char("é"),
        Timestamp(1700000000000),
        REQUEST_ID,
        b"\x00\x01",
        b"x" * 300,
        "grüße",
        "s" * 300,
        Symbol("amqp:not-found"),
    ],
    "nested": {Symbol("k"): [UInt(1), {"inner": [None, []]}], "list32": [UInt(70000)] * 70},
    "symbols": Array([Symbol("ANONYMOUS"), Symbol("MSSBCBS"), Symbol("PLAIN")], Symbol),
    "uints": Array([UInt(1), UInt(256)], UInt),
    "described": Described(ULong(0x24), []),
}
REQUEST = Message(
    properties=Properties(correlation_id=REQUEST_ID),
    application_properties={"IoThub-methodname": "reboot"},
    body=[b'{"delay": 1}'],
)


def _connection_frames() -> list[bytes]:
    open_ = Open(
        container_id="methodhub", hostname="localhost", idle_time_out=60000, offered_capabilities=("x",)
    )
    attach = Attach(
        name="methods-sender",
        handle=0,
        role=Role.SENDER,
        source=Source(address="responses"),
        target=Target(address="/devices/dev1/methods/devicebound"),
        initial_delivery_count=0,
        properties={"com.microsoft:api-version": "2021-04-12"},
    )
    transfer = Transfer(handle=0, delivery_id=0, delivery_tag=b"t0", message_format=0)
    return [
        AMQP_HEADER + encode_frame(0, open_),
        encode_frame(0, Begin(next_outgoing_id=0, incoming_window=2048, outgoing_window=0xFFFFFFFF)),
        encode_frame(0, attach),
        encode_frame(0, transfer, encode_message(REQUEST)),
        encode_frame(0, None),
    ]


@pytest.fixture(scope="module")
def peer() -> dict[str, Any]:
    try:
        python = side_venv("proton", [PROTON])
    except subprocess.CalledProcessError as exc:
        pytest.fail(
            f"could not build {PROTON} in a side venv ({exc}); it builds from the sdist, needing gcc and the "
            "Python headers. The proton cross-check of the AMQP codec did not run.",
            pytrace=False,
        )
    request = {
        "values": {name: encode(value).hex() for name, value in VALUES.items()},
        "messages": {"request": encode_message(REQUEST).hex()},
        "frames": [frame.hex() for frame in _connection_frames()],
        "correlation": str(REQUEST_ID),
    }
    done = subprocess.run(
        [str(python), str(PEER)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"proton peer failed:\n{done.stderr[-3000:]}"
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def _t(name: str, value: Any) -> dict[str, Any]:
    return {"t": name, "v": value}


def test_proton_decodes_our_scalars_with_their_types(peer: dict[str, Any]) -> None:
    seen = peer["values"]["scalars"]
    assert seen["used"] == seen["size"]
    expected = [
        _t("null", None),
        _t("bool", True),
        _t("bool", False),
        _t("ubyte", 200),
        _t("ushort", 60000),
        _t("uint", 0),
        _t("uint", 7),
        _t("uint", 70000),
        _t("ulong", 0),
        _t("ulong", 9),
        _t("ulong", 2**40),
        _t("int", -5),
        _t("int", 200),
        _t("long", -3),
        _t("long", 2**40),
        _t("float", 1.5),
        _t("double", 2.25),
        _t("char", "é"),
        _t("timestamp", 1700000000000),
        _t("uuid", str(REQUEST_ID)),
        _t("binary", "0001"),
        _t("binary", "78" * 300),
        _t("string", "grüße"),
        _t("string", "s" * 300),
        _t("symbol", "amqp:not-found"),
    ]
    assert seen["value"] == _t("list", expected)


def test_proton_decodes_our_compounds(peer: dict[str, Any]) -> None:
    values = peer["values"]
    nested = values["nested"]["value"]
    assert nested["t"] == "map"
    assert nested["v"][0] == _t("symbol", "k")
    assert nested["v"][1] == _t(
        "list",
        [_t("uint", 1), _t("map", [_t("string", "inner"), _t("list", [_t("null", None), _t("list", [])])])],
    )
    assert nested["v"][3] == _t("list", [_t("uint", 70000)] * 70)
    assert values["symbols"]["value"] == {
        "t": "array",
        "element": "symbol",
        "descriptor": None,
        "v": [_t("symbol", "ANONYMOUS"), _t("symbol", "MSSBCBS"), _t("symbol", "PLAIN")],
    }
    assert values["uints"]["value"]["v"] == [_t("uint", 1), _t("uint", 256)]
    assert values["described"]["value"] == {
        "t": "described",
        "descriptor": _t("ulong", 0x24),
        "v": _t("list", []),
    }


def test_proton_reads_our_method_request_message(peer: dict[str, Any]) -> None:
    for seen in (peer["messages"]["request"], peer["transport"]["events"][3]["message"]):
        assert seen["correlation_id"] == _t("uuid", str(REQUEST_ID))
        assert seen["properties"] == {
            "t": "map",
            "v": [[_t("str", "IoThub-methodname"), _t("str", "reboot")]],
        }
        assert seen["body"] == {"t": "memoryview", "v": b'{"delay": 1}'.hex()}
        assert seen["inferred"] is True  # a data section, not an amqp-value of binary


def test_proton_accepts_our_connection_link_and_transfer(peer: dict[str, Any]) -> None:
    transport = peer["transport"]
    assert transport["condition"] == ""  # no transport error
    events = [event["event"] for event in transport["events"]]
    assert events == [
        "PN_CONNECTION_REMOTE_OPEN",
        "PN_SESSION_REMOTE_OPEN",
        "PN_LINK_REMOTE_OPEN",
        "PN_DELIVERY",
    ]
    opened, _, link, delivery = transport["events"]
    assert opened["container"] == "methodhub" and opened["hostname"] == "localhost"
    assert opened["remote_idle_timeout"] == 60.0 and opened["offered"] == ["x"]
    assert opened["remote_max_frame_size"] == 0xFFFFFFFF  # left off: the default
    assert link["name"] == "methods-sender" and link["is_receiver"] is True
    assert link["target"] == "/devices/dev1/methods/devicebound" and link["source"] == "responses"
    assert (link["snd_settle_mode"], link["rcv_settle_mode"]) == (2, 0)
    assert link["properties"]["v"] == [[_t("symbol", "com.microsoft:api-version"), _t("str", "2021-04-12")]]
    assert delivery["tag"] == "t0" and delivery["settled"] is False


def test_we_decode_what_proton_wrote_back(peer: dict[str, Any]) -> None:
    written = bytes.fromhex(peer["transport"]["written"])
    header, offset = decode_protocol_header(written)
    assert header is not None and header.protocol_id == 0
    bodies = []
    while offset < len(written):
        frame, offset = decode_frame(written, offset, 65536)
        assert frame is not None
        bodies.append(frame.body)
    kinds = [type(body) for body in bodies]
    assert kinds[:2] == [Open, Begin] and Attach in kinds and Close not in kinds
    opened = bodies[0]
    assert opened.container_id == "proton-peer" and opened.max_frame_size == 65536
    attach = next(body for body in bodies if type(body) is Attach)
    assert attach.role is Role.RECEIVER and attach.name == "methods-sender"
    assert attach.target == Target(address="/devices/dev1/methods/devicebound")
    flows = [body for body in bodies if type(body) is Flow and body.handle == 0]
    assert flows and flows[-1].link_credit == 10
    [disposition] = [body for body in bodies if type(body) is Disposition]
    assert disposition.settled is True and disposition.state == Accepted() and disposition.first == 0


EXPECTED_FROM_PROTON: dict[str, Any] = {
    "uint-small": UInt(7),
    "uint-big": UInt(70000),
    "ulong": ULong(2**40),
    "int": Int(-5),
    "long": Long(2**40),
    "ubyte": UByte(200),
    "ushort": UShort(60000),
    "float": Float(1.5),
    "double": 2.25,
    "char": Char("é"),
    "timestamp": Timestamp(1700000000000),
    "decimal32": Decimal32(b"\x00\x00\x00\x07"),
    "symbol": Symbol("amqp:not-found"),
    "string": "grüße" * 60,
    "binary": b"\x00\x01" * 200,
    "uuid": uuid.UUID("0d28684f-1111-4222-8333-444455556666"),
    "list": [UInt(1), "two", [Symbol("three")], None, True, False],
    "map": {Symbol("a"): Int(1), "b": [Long(1), Long(2)]},
    "described": Described(ULong(0x24), []),
    "symbol-array": Array([Symbol("ANONYMOUS"), Symbol("PLAIN")], Symbol),
    "int-array": Array([Int(1), Int(-2), Int(300)], Int),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_FROM_PROTON))
def test_we_decode_proton_values_with_their_types(peer: dict[str, Any], name: str) -> None:
    data = bytes.fromhex(peer["proton_values"][name])
    value, end = decode(data)
    assert end == len(data)
    assert same(value, EXPECTED_FROM_PROTON[name]), (name, value)


def test_we_decode_proton_messages(peer: dict[str, Any]) -> None:
    messages = peer["proton_messages"]
    response = decode_message(bytes.fromhex(messages["response"]))
    assert response.properties is not None and response.properties.correlation_id == REQUEST_ID
    assert response.application_properties == {"IoThub-status": 200}
    assert type(response.application_properties["IoThub-status"]) is Int
    assert response.body == [b'{"rebooted":true}']
    request = decode_message(bytes.fromhex(messages["request"]))
    assert (request.properties, request.application_properties, request.body) == (
        REQUEST.properties,
        REQUEST.application_properties,
        REQUEST.body,
    )
    put_token = decode_message(bytes.fromhex(messages["put_token"]))
    assert put_token.properties is not None
    assert put_token.properties.message_id == "0c3461e4-aaaa-bbbb-cccc-ddddeeeeffff"
    assert (put_token.properties.to, put_token.properties.reply_to) == ("$cbs", "cbs")
    assert put_token.application_properties is not None
    assert put_token.application_properties["operation"] == "put-token"
    assert put_token.body is not None and not isinstance(put_token.body, list)
    assert put_token.body.value == "SharedAccessSignature sr=h%2Fdevices%2Fd&sig=x&se=1"
    # proton writes a header section (list0: every field its default) first.
    assert response.header is not None and response.header.priority == 4
    assert decode_message(encode_message(response)) == response
