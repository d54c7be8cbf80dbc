"""Azure's AMQP device protocol (dialects/azure/amqp.py) against the wire doc (azure-amqp-wire.md):
link addresses in every SDK's spelling, CBS put-tokens as Node, C, C# and Java send them (through
the codec's bytes, so AMQP types are the decoded ones) verified against a real SQLite registry
with real SAS tokens, method requests and responses, and the detach errors."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from methodhub.amqp import (
    AmqpSequence,
    AmqpValue,
    Attach,
    DecodeError,
    Detach,
    Error,
    Header,
    Int,
    Long,
    Message,
    Properties,
    Role,
    Source,
    Symbol,
    Target,
    ULong,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
    read_plain_message,
)
from methodhub.calls import Call, CallKind, CallOutcome
from methodhub.config import MAX_METHOD_PAYLOAD
from methodhub.dialects.azure.amqp import (
    SHUTTING_DOWN,
    SIGNATURE_MISMATCH,
    THROTTLED,
    TOKEN_INVALID,
    CbsError,
    CbsGrant,
    LinkAddress,
    LinkHandling,
    LinkKind,
    PutToken,
    attach_address,
    classify_address,
    link_handling,
    method_request,
    parse_method_response,
    parse_put_token,
    put_token_response,
    rejected_message,
    request_key,
    taken_over,
    unauthorized_link,
    unknown_address,
    verify_put_token,
)
from methodhub.dialects.azure.sas import generate_sas_token
from methodhub.errors import ErrorKind, HubError
from methodhub.registry import AccessPolicy, Identity, SqliteRegistry, SymmetricKeys

HOST = "localhost"  # what the Node captures used (§2.2)
NODE_MESSAGE_ID = "0c3461e4-5b1e-4d3a-9f27-8d1c2b3a4f50"
JAVA_MESSAGE_ID = uuid.UUID("7a9e2b10-3c4d-4e5f-8a6b-1c2d3e4f5a6b")
REQUEST_ID = uuid.UUID("0d28684f-5f6b-4c51-9d35-0c3461e4a1b2")
RID = REQUEST_ID.bytes
KEY = REQUEST_ID.hex
"""A request's key: what the session knows it by, from any form of its id."""


# -- fixtures and helpers --------------------------------------------------------------------------


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[SqliteRegistry]:
    reg = SqliteRegistry(tmp_path / "registry.db")
    await reg.open()
    await reg.ensure_default_policies()
    yield reg
    await reg.close()


@pytest.fixture
async def dev1(registry: SqliteRegistry) -> Identity:
    return await registry.create_identity("dev1")


def later() -> int:
    return int(time.time()) + 3600


def token_for(
    identity: Identity, *, host: str = HOST, expiry: int | None = None, key: str | None = None
) -> str:
    resource = f"{host}/devices/{identity.device_id}" + (
        f"/modules/{identity.module_id}" if identity.module_id else ""
    )
    return generate_sas_token(resource, key or identity.keys.primary, expiry or later())


def put_token_message(
    token: str,
    name: str,
    *,
    message_id: Any = NODE_MESSAGE_ID,
    token_type: str = "servicebus.windows.net:sastoken",
    to: str | None = "$cbs",
    reply_to: str | None = "cbs",
    operation: Any = "put-token",
) -> Message:
    """A put-token as it arrives: encoded by the codec and decoded again, so every value has the
    AMQP type the wire gave it (Int, ULong, Symbol, ...)."""
    sent = Message(
        properties=Properties(message_id=message_id, to=to, reply_to=reply_to),
        application_properties={"operation": operation, "type": token_type, "name": name},
        body=AmqpValue(token),
    )
    return decode_message(encode_message(sent))


def on_the_wire(message: Message) -> Message:
    return decode_message(encode_message(message))


STATUS_200 = Int(200)


def response(correlation_id: Any, status: Any = STATUS_200, body: Any = None) -> bytes:
    """A method answer's bytes, as encode_message writes them."""
    app = {} if status is None else {"IoThub-status": status}
    return encode_message(
        Message(properties=Properties(correlation_id=correlation_id), application_properties=app, body=body)
    )


def method_call(payload: bytes = b'{"delay": 1}', *, kind: CallKind = CallKind.METHOD) -> Call:
    return Call(target="dev1", method="reboot", payload=payload, response_timeout=30.0, kind=kind)


def parsed(message: Message) -> PutToken:
    result = parse_put_token(message)
    assert isinstance(result, PutToken), result
    return result


async def refused(
    result: PutToken, registry: Any, hostname: str = HOST, now: float | None = None
) -> CbsError:
    answer = await verify_put_token(result, registry, hostname, now)
    assert isinstance(answer, CbsError), answer
    return answer


# -- link addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address, expected",
    [
        # Node and Java (§3.1): a path, the id not encoded
        ("/devices/dev1/methods/devicebound", LinkAddress(LinkKind.METHODS, "dev1", None, "dev1")),
        (
            "/devices/dev1/modules/mod1/methods/devicebound",
            LinkAddress(LinkKind.METHODS, "dev1", "mod1", "dev1/mod1"),
        ),
        # C: the absolute URI
        (
            "amqps://hub.example/devices/dev1/methods/devicebound",
            LinkAddress(LinkKind.METHODS, "dev1", None, "dev1"),
        ),
        # C#: absolute URI with the port, the id URL-encoded, capital B
        (
            "amqps://hub.example:5671/devices/dev%3A1/methods/deviceBound",
            LinkAddress(LinkKind.METHODS, "dev:1", None, "dev:1"),
        ),
        (
            "amqps://hub.example:5671/devices/dev%3A1/modules/m%401/methods/deviceBound",
            LinkAddress(LinkKind.METHODS, "dev:1", "m@1", "dev:1/m@1"),
        ),
        # the scheme and the fixed words in any case; the ids keep theirs
        ("AMQPS://HUB/Devices/Dev1/Methods/DeviceBound", LinkAddress(LinkKind.METHODS, "Dev1", None, "Dev1")),
        ("devices/dev1/methods/devicebound/", LinkAddress(LinkKind.METHODS, "dev1", None, "dev1")),
        # the other links (§5)
        ("/devices/dev1/messages/events", LinkAddress(LinkKind.EVENTS, "dev1", None, "dev1")),
        (
            "amqps://hub.example/devices/dev1/messages/events",
            LinkAddress(LinkKind.EVENTS, "dev1", None, "dev1"),
        ),
        (
            "/devices/dev1/modules/mod1/messages/events",
            LinkAddress(LinkKind.EVENTS, "dev1", "mod1", "dev1/mod1"),
        ),
        ("/devices/dev1/messages/deviceBound", LinkAddress(LinkKind.CLOUD_TO_DEVICE, "dev1", None, "dev1")),
        ("amqps://hub.example/devices/dev1/twin", LinkAddress(LinkKind.TWIN, "dev1", None, "dev1")),
        ("/devices/dev1/modules/mod1/twin", LinkAddress(LinkKind.TWIN, "dev1", "mod1", "dev1/mod1")),
        # CBS (§2.1)
        ("$cbs", LinkAddress(LinkKind.CBS)),
        ("$CBS", LinkAddress(LinkKind.CBS)),
        ("amqps://hub.example:5671/$cbs", LinkAddress(LinkKind.CBS)),
        ("%24cbs", LinkAddress(LinkKind.CBS)),
    ],
)
def test_addresses_in_every_sdks_spelling(address: str, expected: LinkAddress) -> None:
    assert classify_address(address) == expected


@pytest.mark.parametrize(
    "address",
    [
        "",
        "/",
        "cbs",
        "/$cbs/x",
        "/devices/dev1",
        "/devices/dev1/methods",
        "/devices/dev1/methods/devicebound/extra",
        "/devices//methods/devicebound",
        "/devices/dev1/modules//methods/devicebound",
        "/devices/dev%2F1/methods/devicebound",  # an encoded / cannot make a segment
        "/devices/dev%ff/methods/devicebound",  # not UTF-8 once decoded
        "/things/dev1/methods/devicebound",
        "/devices/dev1/messages/events/extra",
        "amqps://hub.example",
    ],
)
def test_unknown_addresses_are_none(address: str) -> None:
    assert classify_address(address) is None


@pytest.mark.parametrize(
    "kind, role, handling",
    [
        (LinkKind.CBS, Role.SENDER, LinkHandling.CBS_REQUESTS),
        (LinkKind.CBS, Role.RECEIVER, LinkHandling.CBS_RESPONSES),
        (LinkKind.METHODS, Role.SENDER, LinkHandling.METHOD_RESPONSES),
        (LinkKind.METHODS, Role.RECEIVER, LinkHandling.METHOD_REQUESTS),
        (LinkKind.EVENTS, Role.SENDER, LinkHandling.ACCEPT_AND_DROP),
        (LinkKind.EVENTS, Role.RECEIVER, LinkHandling.NEVER_SEND),
        (LinkKind.CLOUD_TO_DEVICE, Role.RECEIVER, LinkHandling.NEVER_SEND),
        (LinkKind.TWIN, Role.SENDER, LinkHandling.TWIN_REQUESTS),
        (LinkKind.TWIN, Role.RECEIVER, LinkHandling.TWIN_RESPONSES),
    ],
)
def test_what_the_server_does_with_each_link(kind: LinkKind, role: bool, handling: LinkHandling) -> None:
    assert link_handling(kind, role) is handling


def test_the_devices_end_of_an_attach_is_its_target_when_sending_and_its_source_when_receiving() -> None:
    """Node's methods sender: target the address, source ``[]``; its receiver the other way (§3.1)."""
    address = "/devices/dev1/methods/devicebound"
    sender = Attach(name="rheaSender_1", handle=0, role=Role.SENDER, source=Source(), target=Target(address))
    receiver = Attach(
        name="rheaReceiver_1", handle=1, role=Role.RECEIVER, source=Source(address), target=Target()
    )
    # C names both termini (source "responses"/"requests"): the role picks the right one.
    c_sender = Attach(
        name="methods_responses_link-dev1",
        handle=2,
        role=Role.SENDER,
        source=Source("responses"),
        target=Target(address),
    )
    assert attach_address(sender) == address
    assert attach_address(receiver) == address
    assert attach_address(c_sender) == address
    assert attach_address(Attach(name="x", handle=3, role=Role.SENDER)) is None


# -- CBS put-token ---------------------------------------------------------------------------------


async def test_nodes_put_token_authorizes_the_device(registry: SqliteRegistry, dev1: Identity) -> None:
    """[LIVE] Node: string message-id, to ``$cbs``, reply-to ``cbs``, the name URL-encoded (§2.2)."""
    expiry = later()
    message = put_token_message(token_for(dev1, expiry=expiry), "localhost%2Fdevices%2Fdev1")
    request = parsed(message)
    assert (request.device_id, request.module_id, request.key) == ("dev1", None, "dev1")
    assert request.name == "localhost/devices/dev1"
    assert request.token_type == "servicebus.windows.net:sastoken"
    assert type(request.message_id) is str and request.message_id == NODE_MESSAGE_ID
    grant = await verify_put_token(request, registry, HOST)
    assert grant == CbsGrant(NODE_MESSAGE_ID, "dev1", None, "dev1", float(expiry))


def test_the_put_token_response_node_expects() -> None:
    """[LIVE] properties ``[null×5, "0c3461e4-…"]`` (a str8 correlation-id), ``status-code`` an AMQP
    int 200 (0x71, not a long), ``status-description`` "OK", no body (§2.3)."""
    data = encode_message(put_token_response(NODE_MESSAGE_ID, 200, "OK"))
    properties = "005373" "c02c" "06" "4040404040" "a124" + NODE_MESSAGE_ID.encode().hex()  # fmt: skip
    app = (
        "005374" "c12b" "04"
        "a10b" + b"status-code".hex() + "71000000c8"
        + "a112" + b"status-description".hex() + "a102" + b"OK".hex()
    )  # fmt: skip
    assert data.hex() == properties + app
    decoded = decode_message(data)
    assert decoded.body is None
    assert type(decoded.application_properties["status-code"]) is Int  # type: ignore[index]


async def test_cs_ulong_message_id_comes_back_as_a_ulong(registry: SqliteRegistry, dev1: Identity) -> None:
    """C: a ulong counter from 0, no to/reply-to, the name not encoded; C demands a ulong back (§2.3)."""
    message = put_token_message(
        token_for(dev1), "localhost/devices/dev1", message_id=ULong(0), to=None, reply_to=None
    )
    request = parsed(message)
    assert type(request.message_id) is ULong and request.message_id == 0
    grant = await verify_put_token(request, registry, HOST)
    assert isinstance(grant, CbsGrant) and grant.key == "dev1"
    answer = on_the_wire(put_token_response(grant.message_id, 200, "OK"))
    assert answer.properties is not None
    assert type(answer.properties.correlation_id) is ULong and answer.properties.correlation_id == 0
    # ulong0 (0x44) is the correlation-id's encoding: the sixth field of the properties list
    assert encode_message(put_token_response(ULong(0), 200, "OK")).startswith(
        bytes.fromhex("005373c00706404040404044")
    )


async def test_csharps_put_token_with_its_own_token_type_and_an_encoded_id(registry: SqliteRegistry) -> None:
    """C#: a string message-id ``<linkname><n>``, type ``azure-devices.net:sastoken``, the name
    ``{HostName}/devices/{UrlEncode(id)}`` (§2.2)."""
    device = await registry.create_identity("dev:1")
    link_id = "duplex6:1:3:sender1"
    message = put_token_message(
        token_for(device),
        "localhost/devices/dev%3A1",
        message_id=link_id,
        token_type="azure-devices.net:sastoken",
        to=None,
        reply_to="6f1c2d3e4a5b6c7d8e9f0a1b2c3d4e5f",
    )
    request = parsed(message)
    assert (request.device_id, request.key, request.token_type) == (
        "dev:1",
        "dev:1",
        "azure-devices.net:sastoken",
    )
    grant = await verify_put_token(request, registry, HOST)
    assert isinstance(grant, CbsGrant) and grant.key == "dev:1"
    answer = on_the_wire(put_token_response(grant.message_id, 200, "OK"))
    assert answer.properties is not None and type(answer.properties.correlation_id) is str
    assert answer.properties.correlation_id == link_id


async def test_javas_uuid_message_id_comes_back_as_a_uuid(registry: SqliteRegistry, dev1: Identity) -> None:
    """Java casts the correlation-id to UUID (§2.3): the response's is an AMQP uuid (0x98)."""
    request = parsed(put_token_message(token_for(dev1), "localhost/devices/dev1", message_id=JAVA_MESSAGE_ID))
    assert type(request.message_id) is uuid.UUID
    grant = await verify_put_token(request, registry, HOST)
    assert isinstance(grant, CbsGrant)
    data = encode_message(put_token_response(grant.message_id, 200, "OK"))
    assert data.startswith(bytes.fromhex("005373c01706404040404098") + JAVA_MESSAGE_ID.bytes)


async def test_a_module_audience_authorizes_the_module(registry: SqliteRegistry, dev1: Identity) -> None:
    """[LIVE] Node as a module: ``…%2Fdevices%2Fdev1%2Fmodules%2Fmod1``."""
    module = await registry.create_identity("dev1", "mod1")
    request = parsed(put_token_message(token_for(module), "localhost%2Fdevices%2Fdev1%2Fmodules%2Fmod1"))
    assert (request.device_id, request.module_id, request.key) == ("dev1", "mod1", "dev1/mod1")
    grant = await verify_put_token(request, registry, HOST)
    assert isinstance(grant, CbsGrant) and (grant.device_id, grant.module_id, grant.key) == (
        "dev1",
        "mod1",
        "dev1/mod1",
    )


async def test_a_module_audience_with_the_devices_token_is_refused(
    registry: SqliteRegistry, dev1: Identity
) -> None:
    await registry.create_identity("dev1", "mod1")
    request = parsed(put_token_message(token_for(dev1), "localhost/devices/dev1/modules/mod1"))
    answer = await refused(request, registry)
    assert answer.status == 401 and "not for 'localhost/devices/dev1/modules/mod1'" in answer.description


async def test_a_host_with_a_port_in_audience_and_token(registry: SqliteRegistry, dev1: Identity) -> None:
    """[LIVE cap_hostport] ``HostName=localhost:15671``: ``localhost%3A15671%2Fdevices%2Fdev1``."""
    token = token_for(dev1, host="localhost:15671")
    assert "sr=localhost%3A15671%2Fdevices%2Fdev1&" in token
    request = parsed(put_token_message(token, "localhost%3A15671%2Fdevices%2Fdev1"))
    assert request.name == "localhost:15671/devices/dev1" and request.key == "dev1"
    assert isinstance(await verify_put_token(request, registry, HOST), CbsGrant)


async def test_the_audience_host_is_not_checked_but_the_tokens_is(
    registry: SqliteRegistry, dev1: Identity
) -> None:
    """C# and Java may put the gateway host in the name (§2.2); the token's ``sr`` must still name
    this hub."""
    request = parsed(put_token_message(token_for(dev1), "gateway.example/devices/dev1"))
    assert isinstance(await verify_put_token(request, registry, HOST), CbsGrant)
    other_hub = parsed(put_token_message(token_for(dev1, host="other.example"), "localhost/devices/dev1"))
    answer = await refused(other_hub, registry)
    assert answer.status == 401 and "'other.example/devices/dev1'" in answer.description


async def test_a_forged_signature_gets_iot_hubs_401(registry: SqliteRegistry, dev1: Identity) -> None:
    forged = token_for(dev1, key=SymmetricKeys.generate().primary)
    request = parsed(put_token_message(forged, "localhost%2Fdevices%2Fdev1"))
    answer = await refused(request, registry)
    assert answer == CbsError(
        NODE_MESSAGE_ID,
        401,
        "The specified SAS token has an invalid signature. "
        "It does not match either the primary or secondary key.",
    )
    assert answer.description == SIGNATURE_MISMATCH and not answer.retryable
    reply = on_the_wire(put_token_response(answer.message_id, answer.status, answer.description))
    assert reply.application_properties == {"status-code": Int(401), "status-description": SIGNATURE_MISMATCH}
    assert type(reply.application_properties["status-code"]) is Int


async def test_the_secondary_key_verifies(registry: SqliteRegistry, dev1: Identity) -> None:
    request = parsed(put_token_message(token_for(dev1, key=dev1.keys.secondary), "localhost/devices/dev1"))
    assert isinstance(await verify_put_token(request, registry, HOST), CbsGrant)


async def test_an_expired_token_is_401(registry: SqliteRegistry, dev1: Identity) -> None:
    expiry = later()
    request = parsed(put_token_message(token_for(dev1, expiry=expiry), "localhost/devices/dev1"))
    assert isinstance(await verify_put_token(request, registry, HOST, now=expiry - 1), CbsGrant)
    answer = await refused(request, registry, now=expiry)
    assert answer.status == 401
    assert answer.description == f"The SAS token expired at {expiry}; generate a new one."


async def test_an_unregistered_or_disabled_device_is_401(registry: SqliteRegistry, dev1: Identity) -> None:
    ghost = generate_sas_token(f"{HOST}/devices/ghost", dev1.keys.primary, later())
    answer = await refused(parsed(put_token_message(ghost, "localhost/devices/ghost")), registry)
    assert answer.status == 401 and "'ghost' is not registered" in answer.description
    await registry.update_identity("dev1", status="disabled")
    answer = await refused(parsed(put_token_message(token_for(dev1), "localhost/devices/dev1")), registry)
    assert answer.status == 401 and "disabled" in answer.description


async def test_a_policy_token_with_device_connect_authorizes(
    registry: SqliteRegistry, dev1: Identity
) -> None:
    policy = await registry.get_policy("device")
    assert policy is not None
    token = generate_sas_token(f"{HOST}/devices", policy.keys.primary, later(), key_name="device")
    grant = await verify_put_token(parsed(put_token_message(token, "localhost/devices/dev1")), registry, HOST)
    assert isinstance(grant, CbsGrant) and grant.key == "dev1"
    service = await registry.get_policy("service")
    assert service is not None
    token = generate_sas_token(f"{HOST}/devices/dev1", service.keys.primary, later(), key_name="service")
    answer = await refused(parsed(put_token_message(token, "localhost/devices/dev1")), registry)
    assert answer.status == 401 and "lacks DeviceConnect" in answer.description


async def test_a_body_that_is_no_sas_token_is_401(registry: SqliteRegistry, dev1: Identity) -> None:
    answer = await refused(parsed(put_token_message("hunter2", "localhost/devices/dev1")), registry)
    assert answer.status == 401 and answer.description.startswith("The put-token is not a valid SAS token")


class BrokenRegistry:
    async def get_identity(self, device_id: str, module_id: str | None = None) -> Identity | None:
        raise OSError("disk on fire")

    async def get_policy(self, name: str) -> AccessPolicy | None:
        raise OSError("disk on fire")


async def test_an_unreadable_registry_is_a_retryable_503(dev1: Identity) -> None:
    request = parsed(put_token_message(token_for(dev1), "localhost/devices/dev1"))
    answer = await refused(request, BrokenRegistry())
    assert (answer.status, answer.retryable) == (503, True)
    assert "registry is unavailable: disk on fire" in answer.description


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"operation": "delete-token"}, "put-token' only"),
        ({"operation": None}, "put-token' only"),
        ({"token_type": "jwt"}, "token type 'jwt' is not supported"),
        ({"name": "/devices/x/y"}, "names no device"),
        ({"name": "localhost/devices/dev1/modules/"}, "names no device"),
        ({"name": "localhost/things/dev1"}, "names no device"),
        ({"name": "localhost%2Fdevices%2Fdev%ff"}, "names no device"),
    ],
)
def test_a_malformed_put_token_is_400_keeping_its_message_id(changes: dict[str, Any], words: str) -> None:
    fields: dict[str, Any] = {"name": "localhost/devices/dev1"} | changes
    name = fields.pop("name")
    result = parse_put_token(put_token_message("SharedAccessSignature sr=x&sig=y&se=1", name, **fields))
    assert isinstance(result, CbsError) and result.status == 400 and words in result.description
    assert result.message_id == NODE_MESSAGE_ID


def test_a_put_token_without_a_name_or_with_a_data_body_is_400() -> None:
    no_name = Message(
        properties=Properties(message_id=ULong(3)),
        application_properties={"operation": "put-token", "type": "servicebus.windows.net:sastoken"},
        body=AmqpValue("SharedAccessSignature sr=x&sig=y&se=1"),
    )
    result = parse_put_token(on_the_wire(no_name))
    assert isinstance(result, CbsError) and result.status == 400 and "no 'name'" in result.description
    assert type(result.message_id) is ULong
    data_body = Message(
        properties=Properties(message_id="m"),
        application_properties={
            "operation": "put-token",
            "type": "servicebus.windows.net:sastoken",
            "name": "localhost/devices/dev1",
        },
        body=[b"SharedAccessSignature sr=x&sig=y&se=1"],
    )
    result = parse_put_token(on_the_wire(data_body))
    assert isinstance(result, CbsError) and "amqp-value string" in result.description
    result = parse_put_token(Message())  # no properties at all: still answerable
    assert isinstance(result, CbsError) and result.message_id is None


# -- method requests -------------------------------------------------------------------------------


def test_a_method_request_is_the_wire_docs_bytes() -> None:
    """§4.1 [LIVE]: properties ``[null×5, uuid]``, ``{"IoThub-methodname": "reboot"}``, data
    ``{"delay": 1}``."""
    data = method_request(RID, method_call())
    expected = (
        "005373" "c017" "06" "4040404040" "98" + REQUEST_ID.hex
        + "005374" "c11c02" "a111" + b"IoThub-methodname".hex() + "a106" + b"reboot".hex()
        + "005375" "a00c" + b'{"delay": 1}'.hex()
    )  # fmt: skip
    assert data.hex() == expected
    decoded = decode_message(data)
    assert decoded.properties is not None and type(decoded.properties.correlation_id) is uuid.UUID
    assert decoded.body == [b'{"delay": 1}']


def test_a_method_request_keeps_the_method_names_case_and_a_large_payload_in_one_section() -> None:
    payload = b'"' + b"x" * (MAX_METHOD_PAYLOAD - 2) + b'"'
    call = Call(target="dev1", method="GetStatus", payload=payload, response_timeout=5.0)
    decoded = decode_message(method_request(RID, call))
    assert decoded.application_properties == {"IoThub-methodname": "GetStatus"}
    assert decoded.body == [payload]


def test_a_raw_message_call_is_refused_as_the_mqtt_dialect_refuses_it() -> None:
    with pytest.raises(HubError) as raised:
        method_request(RID, method_call(b"\x00\x01", kind=CallKind.MESSAGE))
    assert raised.value.kind is ErrorKind.INVALID_ARGUMENT
    assert "Azure's AMQP dialect, which carries JSON methods only" in str(raised.value)


# -- method responses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "correlation_id",
    [
        REQUEST_ID,  # every SDK (§4.2)
        str(REQUEST_ID),  # a string UUID
        str(REQUEST_ID).upper(),
        REQUEST_ID.bytes,  # 16-byte binary
    ],
)
def test_responses_match_by_uuid_value_whatever_the_type(correlation_id: Any) -> None:
    answer = parse_method_response(response(correlation_id, body=[b'{"rebooted":true}']))
    assert answer == (KEY, CallOutcome(200, b'{"rebooted":true}'))


@pytest.mark.parametrize("correlation_id", [None, ULong(7), "not-a-uuid", b"\x01" * 15])
def test_a_response_whose_correlation_id_is_no_uuid_is_none(correlation_id: Any) -> None:
    assert parse_method_response(response(correlation_id, body=[b"{}"])) is None
    assert request_key(correlation_id) is None


def test_a_response_without_properties_is_none() -> None:
    assert (
        parse_method_response(encode_message(Message(application_properties={"IoThub-status": Int(200)})))
        is None
    )


def test_nodes_live_response_bytes() -> None:
    """[LIVE] ``properties [null×5, uuid]``, ``{"IoThub-status": int 200}``, ``data '{"rebooted":true}'``."""
    data = bytes.fromhex(
        "005373c017064040404040" "98" + REQUEST_ID.hex
        + "005374" "c11502" "a10d" + b"IoThub-status".hex() + "71000000c8"
        + "005375" "a011" + b'{"rebooted":true}'.hex()
    )  # fmt: skip
    assert parse_method_response(data) == (KEY, CallOutcome(200, b'{"rebooted":true}'))


def test_an_absent_or_empty_body_is_null() -> None:
    """Node sends no body section for an undefined payload, C# none for null (§4.2)."""
    assert parse_method_response(response(REQUEST_ID, Int(404))) == (KEY, CallOutcome(404, b"null"))
    assert parse_method_response(response(REQUEST_ID, body=[b""])) == (KEY, CallOutcome(200, b"null"))


def test_data_sections_are_joined() -> None:
    answer = parse_method_response(response(REQUEST_ID, body=[b'{"a":', b"1}"]))
    assert answer == (KEY, CallOutcome(200, b'{"a":1}'))


def test_the_128_kib_boundary() -> None:
    at_limit = b'"' + b"x" * (MAX_METHOD_PAYLOAD - 2) + b'"'
    assert parse_method_response(response(REQUEST_ID, body=[at_limit])) == (
        KEY,
        CallOutcome(200, at_limit),
    )
    over = b'"' + b"x" * (MAX_METHOD_PAYLOAD - 1) + b'"'
    answer = parse_method_response(response(REQUEST_ID, body=[over]))
    assert answer is not None and isinstance(answer[1], HubError)
    assert answer[1].kind is ErrorKind.PAYLOAD_TOO_LARGE and str(MAX_METHOD_PAYLOAD + 1) in str(answer[1])
    split_over = parse_method_response(response(REQUEST_ID, body=[at_limit, b" "]))  # over only when joined
    assert split_over is not None and isinstance(split_over[1], HubError)
    assert split_over[1].kind is ErrorKind.PAYLOAD_TOO_LARGE


@pytest.mark.parametrize(
    "body",
    [[b"not json"], [b"\xff\xfe"], [AmqpSequence(["{}"])], AmqpValue(ULong(1))],
)
def test_a_body_that_is_not_json_is_an_invalid_device_response(body: Any) -> None:
    answer = parse_method_response(response(REQUEST_ID, body=body))
    assert answer is not None and answer[0] == KEY
    assert isinstance(answer[1], HubError) and answer[1].kind is ErrorKind.INVALID_DEVICE_RESPONSE


@pytest.mark.parametrize("value", [b'{"x":1}', '{"x":1}'])
def test_an_amqp_value_body_of_binary_or_text_is_taken(value: Any) -> None:
    answer = parse_method_response(response(REQUEST_ID, body=AmqpValue(value)))
    assert answer == (KEY, CallOutcome(200, b'{"x":1}'))


@pytest.mark.parametrize("status", [None, "200", True, Long(2**40), 2.5])
def test_a_missing_or_bad_status_is_an_invalid_device_response(status: Any) -> None:
    answer = parse_method_response(response(REQUEST_ID, status=status, body=[b"{}"]))
    assert answer is not None and answer[0] == KEY
    assert isinstance(answer[1], HubError) and answer[1].kind is ErrorKind.INVALID_DEVICE_RESPONSE
    assert "IoThub-status" in str(answer[1])


def test_any_amqp_integer_status_in_ints_range_is_taken() -> None:
    assert parse_method_response(response(REQUEST_ID, status=Long(201), body=[b"1"])) == (
        KEY,
        CallOutcome(201, b"1"),
    )
    assert parse_method_response(response(REQUEST_ID, status=Int(-(2**31)), body=[b"1"])) == (
        KEY,
        CallOutcome(-(2**31), b"1"),
    )


def test_a_method_request_is_what_the_general_encoder_writes() -> None:
    """method_request builds its bytes directly (no Message): the same bytes as encode_message of the
    Message it stands for, across the str8/str32, map8/map32 and vbin8/vbin32 boundaries."""
    for name in ("r", "m" * 200, "m" * 255, "m" * 256, "Ünïcode-名前", "m" * 1000):
        for size in (0, 1, 255, 256, 70_000):
            call = Call(target="dev1", method=name, payload=b"x" * size, response_timeout=5.0)
            rid = uuid.uuid4()
            expected = Message(
                properties=Properties(correlation_id=rid),
                application_properties={"IoThub-methodname": name},
                body=[call.payload],
            )
            assert method_request(rid.bytes, call) == encode_message(expected), (len(name), size)


def test_the_method_names_kept_encoded_are_bounded() -> None:
    from methodhub.dialects.azure import amqp as azure_amqp

    for n in range(azure_amqp._METHOD_PROPERTIES_KEPT + 10):
        call = Call(target="dev1", method=f"m{n}", payload=b"1", response_timeout=5.0)
        decoded = decode_message(method_request(RID, call))
        assert decoded.application_properties == {"IoThub-methodname": f"m{n}"}
        assert len(azure_amqp._method_properties) <= azure_amqp._METHOD_PROPERTIES_KEPT


@pytest.mark.parametrize(
    "extra",
    [
        {"header": Header(durable=True)},  # a section before properties: not the plain shape
        {"message_annotations": {Symbol("x-opt"): 1}},
    ],
)
def test_an_answer_off_the_plain_shape_is_read_as_the_plain_one(extra: dict[str, Any]) -> None:
    """parse_method_response reads the shape every SDK sends without a Message, and anything else
    with the general decoder: both give the same answer."""
    plain = response(REQUEST_ID, body=[b'{"ok":true}'])
    assert read_plain_message(plain) is not None
    general = encode_message(
        Message(
            properties=Properties(correlation_id=REQUEST_ID),
            application_properties={"IoThub-status": STATUS_200},
            body=[b'{"ok":true}'],
            **extra,
        )
    )
    assert read_plain_message(general) is None
    assert (
        parse_method_response(plain)
        == parse_method_response(general)
        == (KEY, CallOutcome(200, b'{"ok":true}'))
    )


def test_an_answer_that_is_no_amqp_message_raises_decode_error() -> None:
    with pytest.raises(DecodeError):
        parse_method_response(b"\x00\x53\x75\xa0\x05ab")  # a data section cut short


# -- errors ----------------------------------------------------------------------------------------


def _through_a_detach(error: Error) -> Error:
    frame, _ = decode_frame(encode_frame(0, Detach(handle=0, closed=True, error=error)))
    assert frame is not None and isinstance(frame.body, Detach) and frame.body.error is not None
    return frame.body.error


def test_detach_errors_have_the_conditions_the_sdks_react_to() -> None:
    """§7.1/§7.2: expired token → unauthorized-access "Token Invalid." (IoT Hub's wording);
    shutdown and takeover → detach-forced (Node reconnects at once); throttling → Microsoft's."""
    sent = _through_a_detach(TOKEN_INVALID)
    assert sent.condition == "amqp:unauthorized-access" and type(sent.condition) is Symbol
    assert sent.description == "Token Invalid."
    assert _through_a_detach(SHUTTING_DOWN).condition == "amqp:link:detach-forced"
    assert _through_a_detach(taken_over("dev1")) == Error(
        Symbol("amqp:link:detach-forced"), "Another connection took over 'dev1'; this one is detached."
    )
    assert THROTTLED.condition == "com.microsoft:device-container-throttled"


def test_refusal_errors_name_what_to_do() -> None:
    unauthorized = unauthorized_link("/devices/dev2/methods/devicebound", "dev2")
    assert unauthorized.condition == "amqp:unauthorized-access"
    assert unauthorized.description is not None and unauthorized.description.startswith("Token Invalid.")
    assert "'dev2'" in unauthorized.description and "put-token" in unauthorized.description
    unknown = unknown_address("/foo")
    assert unknown.condition == "amqp:not-found" and "'/foo'" in (unknown.description or "")
    assert rejected_message("not a message").condition == "amqp:decode-error"


def test_a_twin_request_without_a_correlation_id_gets_no_answer() -> None:
    from methodhub.dialects.azure.amqp import twin_response

    get = Message(message_annotations={Symbol("operation"): "GET"}, properties=Properties(message_id="m"))
    assert twin_response(get) is None
    unknown = Message(
        message_annotations={Symbol("operation"): "POST", Symbol("resource"): "/x"},
        properties=Properties(correlation_id=ULong(9)),
    )
    answer = twin_response(unknown)
    assert answer is not None and answer.message_annotations == {Symbol("status"): Int(405)}
    assert answer.properties is not None and type(answer.properties.correlation_id) is ULong


def test_mqtt_and_amqp_twin_requests_get_one_answer() -> None:
    from methodhub.dialects.azure.twin import EMPTY_TWIN, answer_twin_request

    assert answer_twin_request("get", None).body == EMPTY_TWIN
    assert answer_twin_request("GET", "/").status == 200
    assert answer_twin_request("DELETE", "/notifications/twin/properties/desired/").status == 200
    assert answer_twin_request("PATCH", "/properties/reported").status == 405
    assert answer_twin_request("GET", "/properties/reported").status == 405


@pytest.mark.parametrize("name", ["localhost", "localhost%2Fdevices", "localhost/devices/", "localhost:5671"])
def test_a_hub_wide_audience_is_a_hub_wide_claim(name: str) -> None:
    """C# with a policy key sends the audience ``{HostName}`` alone (wire doc §2.2)."""
    from methodhub.dialects.azure.amqp import parse_put_token

    request = Message(
        properties=Properties(message_id="m1"),
        application_properties={
            "operation": "put-token",
            "type": "azure-devices.net:sastoken",
            "name": name,
        },
        body=AmqpValue("SharedAccessSignature sr=localhost&sig=x&se=1&skn=device"),
    )
    parsed = parse_put_token(request)
    assert not isinstance(parsed, CbsError)
    assert parsed.hub_wide and parsed.key == "" and parsed.device_id == ""


def test_sasl_plain_with_a_policy_is_hub_wide() -> None:
    from methodhub.dialects.azure.amqp import plain_credentials

    claim = plain_credentials(
        b"\0device@sas.root.hub\0SharedAccessSignature sr=hub&sig=x&se=1&skn=device", "hub"
    )
    assert claim is not None and claim.hub_wide and claim.token.endswith("skn=device")
    assert plain_credentials(b"\0device@sas.root.elsewhere\0t", "hub") is None
