"""Messages (part 3 §3.2), and the Azure method request and response of the wire doc §4."""

from __future__ import annotations

import pickle
import uuid
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from methodhub.amqp import (
    AmqpSequence,
    AmqpValue,
    DecodeError,
    Described,
    Header,
    Int,
    Message,
    PlainMessage,
    Properties,
    Symbol,
    Timestamp,
    UByte,
    UInt,
    ULong,
    decode,
    decode_message,
    encode,
    encode_application_properties,
    encode_message,
    encode_plain_message,
    read_plain_message,
)
from methodhub.amqp import message as message_module
from methodhub.amqp.composite import encode_composite

from .strategies import same, scalars, values

REQUEST_ID = uuid.UUID("0d28684f-5f6b-4c51-9d35-0c3461e4a1b2")


def test_method_request_is_what_the_wire_doc_describes() -> None:
    """§4.1: correlation-id a uuid (0x98), IoThub-methodname a string, one data section (0x75)."""
    request = Message(
        properties=Properties(correlation_id=REQUEST_ID),
        application_properties={"IoThub-methodname": "reboot"},
        body=[b'{"delay": 1}'],
    )
    expected = (
        "005373" "c017" "06" "4040404040" "98" + REQUEST_ID.hex  # properties [null x5, uuid]
        + "005374" "c11c02" "a111" + b"IoThub-methodname".hex() + "a106" + b"reboot".hex()
        + "005375" "a00c" + b'{"delay": 1}'.hex()
    )  # fmt: skip
    assert encode_message(request).hex() == expected
    assert decode_message(bytes.fromhex(expected)) == request


def test_method_response_is_what_the_wire_doc_describes() -> None:
    """§4.2: correlation-id uuid, IoThub-status an AMQP int (0x71), the payload in a data section."""
    response = Message(
        properties=Properties(correlation_id=REQUEST_ID),
        application_properties={"IoThub-status": Int(200)},
        body=[b'{"rebooted":true}'],
    )
    expected = (
        "005373c017064040404040" "98" + REQUEST_ID.hex
        + "005374" "c11502" "a10d" + b"IoThub-status".hex() + "71000000c8"
        + "005375" "a011" + b'{"rebooted":true}'.hex()
    )  # fmt: skip
    assert encode_message(response).hex() == expected
    decoded = decode_message(bytes.fromhex(expected))
    assert type(decoded.application_properties["IoThub-status"]) is Int  # type: ignore[index]
    assert type(decoded.properties.correlation_id) is uuid.UUID  # type: ignore[union-attr]
    # Node sends no body section at all for an undefined payload (§4.2).
    assert (
        decode_message(encode_message(Message(properties=Properties(correlation_id=REQUEST_ID)))).body is None
    )


def test_put_token_request_with_an_amqp_value_body() -> None:
    """§2.2: a string message-id, to $cbs, reply-to cbs, the token as an amqp-value string."""
    put_token = Message(
        properties=Properties(message_id="0c3461e4-aaaa", to="$cbs", reply_to="cbs"),
        application_properties={
            "operation": "put-token",
            "type": "servicebus.windows.net:sastoken",
            "name": "h",
        },
        body=AmqpValue("SharedAccessSignature sr=h&sig=x&se=1"),
    )
    data = encode_message(put_token)
    # properties: list8 of 5, size 29: the count, str8 id (15), null, str8 "$cbs" (6), null, str8 "cbs" (5)
    assert data.startswith(bytes.fromhex("005373c01d05a10d") + b"0c3461e4-aaaa" + b"\x40\xa1\x04$cbs")
    token = b"SharedAccessSignature sr=h&sig=x&se=1"
    assert data.endswith(b"\x00\x53\x77\xa1" + bytes((len(token),)) + token)  # amqp-value, str8
    assert decode_message(data) == put_token


def test_message_ids_of_every_type() -> None:
    for message_id in (ULong(7), 7, REQUEST_ID, b"\x01" * 16, "text"):
        data = encode_message(
            Message(properties=Properties(message_id=message_id, correlation_id=message_id))
        )
        decoded = decode_message(data).properties
        assert decoded is not None
        expected_type = ULong if type(message_id) is int else type(message_id)  # a plain int is a ulong id
        assert type(decoded.message_id) is expected_type and decoded.message_id == message_id
        assert type(decoded.correlation_id) is expected_type


def test_every_section_round_trips_in_order() -> None:
    message = Message(
        header=Header(durable=True, priority=9, ttl=60000, first_acquirer=True, delivery_count=2),
        delivery_annotations={"x-opt-lock": UInt(1)},
        message_annotations={Symbol("x-opt-enqueued-time"): Timestamp(1700000000000), 5: "numeric key"},
        properties=Properties(
            message_id=ULong(1),
            user_id=b"user",
            to="/devices/d/messages/events",
            subject="s",
            reply_to="r",
            correlation_id=REQUEST_ID,
            content_type="application/json",
            content_encoding="utf-8",
            absolute_expiry_time=Timestamp(2),
            creation_time=Timestamp(1),
            group_id="g",
            group_sequence=3,
            reply_to_group_id="rg",
        ),
        application_properties={"a": UByte(1), "b": None, "c": [1, 2]},
        body=[b"one", b"two" * 200],
        footer={"x-hash": b"\x00"},
    )
    decoded = decode_message(encode_message(message))
    assert decoded == message
    assert list(decoded.message_annotations or {}) == [Symbol("x-opt-enqueued-time"), ULong(5)]
    assert type(decoded.properties.content_type) is Symbol  # type: ignore[union-attr]


def test_sequence_bodies() -> None:
    message = Message(body=[AmqpSequence([UInt(1), "x"]), AmqpSequence([])])
    assert decode_message(encode_message(message)) == message


@given(values(max_leaves=20))
@settings(max_examples=200, deadline=None)
def test_any_value_body_round_trips_with_its_types(value: Any) -> None:
    decoded = decode_message(encode_message(Message(body=AmqpValue(value))))
    assert isinstance(decoded.body, AmqpValue)
    assert same(decoded.body.value, value) or (type(value) is int and decoded.body.value == value)


@given(
    st.lists(st.binary(max_size=400), min_size=1, max_size=4),
    st.dictionaries(st.text(max_size=30), st.text()),
)
@settings(max_examples=200, deadline=None)
def test_data_messages_round_trip(sections: list[bytes], properties: dict[str, str]) -> None:
    message = Message(
        properties=Properties(correlation_id=REQUEST_ID), application_properties=properties, body=sections
    )
    assert decode_message(encode_message(message)) == message


def _section(code: int, value: Any) -> bytes:
    return encode(Described(ULong(code), value))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_section(0x74, {}) + _section(0x73, []), "out of order"),
        (_section(0x73, []) + _section(0x73, []), "out of order, repeated"),
        (_section(0x75, b"a") + _section(0x77, "v"), "mixed with another body"),
        (_section(0x77, "v") + _section(0x77, "v"), "repeated"),
        (_section(0x78, {}) + _section(0x75, b"a"), "out of order"),
        (_section(0x79, {}), "not a message section"),
        (encode(UInt(1)), "described sections"),
        (_section(0x75, "text"), "data section holds a str"),
        (_section(0x74, []), "application-properties section holds a list"),
        (_section(0x73, [None, "not binary"]), "Properties.user_id: expected binary"),
        (_section(0x70, [UInt(1)]), "Header.durable: expected boolean"),
        (_section(0x75, b"abc")[:-1], "runs past the end"),
    ],
)
def test_malformed_messages(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_message(data)


def test_sections_by_symbolic_descriptor() -> None:
    data = encode(Described(Symbol("amqp:data:binary"), b"x")) + encode(
        Described(Symbol("amqp:footer:map"), {})
    )
    assert decode_message(data) == Message(body=[b"x"], footer={})


def test_encoding_refuses_what_has_no_amqp_form() -> None:
    with pytest.raises(TypeError, match="keys are strings"):
        encode_message(Message(application_properties={1: "x"}))  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="data section is bytes"):
        encode_message(Message(body=["text"]))  # type: ignore[list-item]


_ULONGS = st.integers(0, ULong.HIGH).map(ULong)
_IDS = st.one_of(st.none(), st.uuids(), st.text(max_size=60), st.binary(max_size=20), _ULONGS)
_SIMPLE_MESSAGES = st.builds(
    Message,
    properties=st.one_of(
        st.none(),
        st.builds(Properties, message_id=_IDS, correlation_id=_IDS),
        st.builds(Properties, correlation_id=_IDS, subject=st.one_of(st.none(), st.text(max_size=10))),
    ),
    application_properties=st.one_of(st.none(), st.dictionaries(st.text(max_size=30), scalars, max_size=6)),
    body=st.one_of(st.none(), st.lists(st.binary(max_size=300), min_size=1, max_size=3)),
)


def _general(data: bytes) -> Message | DecodeError:
    """decode_message without its plain-message path."""
    with patch.object(message_module, "_decode_plain", lambda data: None):
        try:
            return decode_message(data)
        except DecodeError as exc:
            return exc


@given(_SIMPLE_MESSAGES, st.integers(0, 1 << 16), st.integers(0, 255), st.booleans())
@example(  # a correlation-id's code damaged into uuid's (0x98) with fewer than 16 bytes after it
    message=Message(properties=Properties(correlation_id=b"\x00" * 8)), where=14039, byte=152, damage=True
)
@settings(max_examples=400, deadline=None)
def test_the_plain_path_decodes_what_the_general_one_does(
    message: Message, where: int, byte: int, damage: bool
) -> None:
    """Method requests and responses take a shortcut through decode_message (no composites built):
    it gives the same message, value types included, or leaves the bytes to the general decoder
    (damaged bytes too: the same message or the same error)."""
    data = encode_message(message)
    if damage and data:
        spoiled = bytearray(data)
        spoiled[where % len(spoiled)] = byte
        data = bytes(spoiled)
    else:
        assert repr(decode_message(data)) == repr(message)
    general = _general(data)
    try:
        decoded: Message | DecodeError = decode_message(data)
    except DecodeError as exc:
        decoded = exc
    assert repr(decoded) == repr(general)


def test_a_method_response_takes_the_plain_path() -> None:
    data = encode_message(
        Message(
            properties=Properties(correlation_id=REQUEST_ID),
            application_properties={"IoThub-status": Int(200)},
            body=[b"{}"],
        )
    )
    with patch.object(message_module, "decode_all", side_effect=AssertionError("the general path")):
        assert decode_message(data).application_properties == {"IoThub-status": 200}


@given(st.builds(Properties, correlation_id=_IDS, message_id=st.one_of(st.none(), st.just(REQUEST_ID))))
@settings(max_examples=100, deadline=None)
def test_properties_with_a_uuid_correlation_id_encode_as_the_general_encoder_does(
    properties: Properties,
) -> None:
    out = bytearray()
    encode_composite(out, properties)
    assert encode_message(Message(properties=properties)) == bytes(out)


@given(
    st.uuids(),
    st.dictionaries(
        st.text(max_size=300), st.one_of(st.text(max_size=300), st.integers(-(2**63), 2**63 - 1))
    ),
    st.binary(max_size=600),
)
@settings(max_examples=200, deadline=None)
def test_a_plain_message_is_what_encode_message_writes(
    correlation_id: uuid.UUID, application_properties: dict[str, Any], data: bytes
) -> None:
    """encode_plain_message (every method request) writes the bytes encode_message does."""
    expected = Message(
        properties=Properties(correlation_id=correlation_id),
        application_properties=application_properties,
        body=[data],
    )
    section = encode_application_properties(application_properties)
    assert encode_plain_message(correlation_id.bytes, section, data) == encode_message(expected)


def test_a_plain_message_reads_as_its_parts() -> None:
    data = encode_message(
        Message(
            properties=Properties(message_id="m", correlation_id=REQUEST_ID),
            application_properties={"IoThub-status": Int(200)},
            body=[b"{", b"}"],
        )
    )
    plain = read_plain_message(data)
    assert plain == PlainMessage(True, "m", REQUEST_ID, {"IoThub-status": 200}, [b"{", b"}"])
    assert plain is not None and type(plain.correlation_id) is uuid.UUID
    assert read_plain_message(encode_message(Message())) == PlainMessage(False, None, None, None, None)
    assert read_plain_message(encode_message(Message(header=Header(durable=True)))) is None


def test_a_decoded_uuid_is_a_whole_uuid() -> None:
    """The decoder builds uuids without UUID.__init__: equal, hashed, printed and pickled alike."""
    value = uuid.uuid4()
    decoded, _ = decode(encode(value))
    assert type(decoded) is uuid.UUID and decoded == value and hash(decoded) == hash(value)
    assert str(decoded) == str(value) and decoded.is_safe is value.is_safe and decoded.version == 4
    assert pickle.loads(pickle.dumps(decoded)) == value


def test_a_plain_message_cut_inside_an_int_property_is_left_to_the_general_decoder() -> None:
    cut = bytes.fromhex("005374c11502a10d") + b"IoThub-status" + bytes.fromhex("7100")
    assert read_plain_message(cut) is None
    with pytest.raises(DecodeError):
        decode_message(cut)
