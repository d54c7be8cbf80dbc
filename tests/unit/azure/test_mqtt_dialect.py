"""Azure's MQTT dialect as a unit: authentication against a real SQLite registry with real SAS
tokens, the subscription ACL, readiness, putting calls on the wire and reading the device's
answers (through a recording DeviceView, or a real DeviceSession where counting matters), and the
``$iothub`` topic grammar of dialects/azure/topics.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from methodhub.auth import VerifiedTokenCache
from methodhub.calls import Call, CallKind, CallOutcome
from methodhub.config import MAX_METHOD_PAYLOAD
from methodhub.dialects.azure.mqtt import AzureDialect
from methodhub.dialects.azure.sas import generate_sas_token
from methodhub.dialects.azure.topics import (
    MAX_METHOD_NAME_LENGTH,
    MQTT5_RESPONSE_TOPIC,
    parse_request_topic,
    parse_response_topic,
    query_value,
    request_topic,
    response_status,
    response_topic,
    validate_method_name,
)
from methodhub.dialects.azure.twin import EMPTY_TWIN, TWIN_NOT_SUPPORTED
from methodhub.errors import ErrorKind, HubError
from methodhub.gateway.auth import AuthContext
from methodhub.gateway.dialect import SUBSCRIPTION_REFUSED, ConnectRefused, Principal
from methodhub.gateway.session import DeviceSession, SessionTable
from methodhub.metrics import Metrics
from methodhub.mqtt import Connect, Publish
from methodhub.registry import Identity, SqliteRegistry, SymmetricKeys
from methodhub.router import LocalRouter

HOST = "hub.example"
DIALECT = AzureDialect()
METHODS = "$iothub/methods/POST/#"


# -- fixtures and helpers --------------------------------------------------------------------------


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[SqliteRegistry]:
    reg = SqliteRegistry(tmp_path / "registry.db")
    await reg.open()
    await reg.ensure_default_policies()
    yield reg
    await reg.close()


@pytest.fixture
def ctx(registry: SqliteRegistry) -> AuthContext:
    return AuthContext(registry=registry, hostname=HOST, tokens=VerifiedTokenCache())


@pytest.fixture
async def dev1(registry: SqliteRegistry) -> Identity:
    return await registry.create_identity("dev1")


def later() -> int:
    return int(time.time()) + 3600


def connect(
    client_id: str,
    token: str | None,
    *,
    username: str | None = None,
) -> Connect:
    return Connect(
        client_id=client_id,
        username=username if username is not None else f"{HOST}/{client_id}/?api-version=2021-04-12",
        password=token.encode() if token is not None else None,
    )


def device_connect(identity: Identity, *, expiry: int | None = None, key: str | None = None) -> Connect:
    client_id = identity.key
    resource = f"{HOST}/devices/{identity.device_id}" + (
        f"/modules/{identity.module_id}" if identity.module_id else ""
    )
    token = generate_sas_token(resource, key or identity.keys.primary, expiry or later())
    return connect(client_id, token)


async def refusal(ctx: AuthContext, packet: Connect) -> ConnectRefused:
    with pytest.raises(ConnectRefused) as refused:
        await DIALECT.authenticate(packet, ctx)
    return refused.value


class FakeDevice:
    """A DeviceView that records what the dialect does with it."""

    def __init__(
        self,
        device_id: str = "dev1",
        module_id: str | None = None,
        subscriptions: Mapping[str, int] | None = None,
    ) -> None:
        key = device_id if module_id is None else f"{device_id}/{module_id}"
        self.principal = Principal(device_id, module_id, key, DIALECT)
        self.key = key
        self.subscriptions: dict[str, int] = dict(subscriptions or {})
        self.max_in_flight = 64
        self.dialect_state: object | None = None
        self.completed: list[tuple[str, CallOutcome | HubError]] = []
        self.strays = 0
        self.telemetry = 0

    def complete(self, rid: str, result: CallOutcome | HubError) -> None:
        self.completed.append((rid, result))

    def is_pending(self, rid: str) -> bool:
        return False

    def count_stray(self) -> None:
        self.strays += 1

    def count_telemetry(self) -> None:
        self.telemetry += 1


def publish(topic: str, payload: bytes = b"") -> Publish:
    return Publish(topic=topic, payload=payload)


def only_completion(device: FakeDevice) -> tuple[str, CallOutcome | HubError]:
    assert len(device.completed) == 1, device.completed
    return device.completed[0]


# -- claims ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "username, claimed",
    [
        (f"{HOST}/dev1/?api-version=2021-04-12", True),
        (f"{HOST}/dev1/mod1/?api-version=2021-04-12&DeviceClientType=x", True),
        (f"{HOST}/dev1", True),
        ("dev1&a1PK", False),  # Alibaba's deviceName&productKey
        ("a&b/c", False),
        ("plain", False),
        (None, False),
    ],
)
def test_claims_azure_user_names_only(username: str | None, claimed: bool) -> None:
    assert DIALECT.claims(Connect(client_id="dev1", username=username)) is claimed


# -- authenticate ----------------------------------------------------------------------------------


async def test_a_device_token_authenticates(ctx: AuthContext, dev1: Identity) -> None:
    expiry = later()
    principal = await DIALECT.authenticate(device_connect(dev1, expiry=expiry), ctx)
    assert (principal.device_id, principal.module_id, principal.key) == ("dev1", None, "dev1")
    assert principal.dialect is DIALECT
    assert principal.expires_at == float(expiry)
    assert DIALECT.initial_subscriptions(principal) == {}


async def test_the_secondary_key_authenticates(ctx: AuthContext, dev1: Identity) -> None:
    principal = await DIALECT.authenticate(device_connect(dev1, key=dev1.keys.secondary), ctx)
    assert principal.key == "dev1"


async def test_a_module_token_authenticates_the_module(
    ctx: AuthContext, registry: SqliteRegistry, dev1: Identity
) -> None:
    module = await registry.create_identity("dev1", "mod1")
    principal = await DIALECT.authenticate(device_connect(module), ctx)
    assert (principal.device_id, principal.module_id, principal.key) == ("dev1", "mod1", "dev1/mod1")


async def test_a_module_cannot_use_its_devices_token(
    ctx: AuthContext, registry: SqliteRegistry, dev1: Identity
) -> None:
    await registry.create_identity("dev1", "mod1")
    token = generate_sas_token(f"{HOST}/devices/dev1", dev1.keys.primary, later())
    refused = await refusal(ctx, connect("dev1/mod1", token))
    assert refused.code == 5 and "not for" in refused.reason


async def test_a_module_of_a_disabled_device_is_refused(
    ctx: AuthContext, registry: SqliteRegistry, dev1: Identity
) -> None:
    module = await registry.create_identity("dev1", "mod1")
    await registry.update_identity("dev1", status="disabled")
    refused = await refusal(ctx, device_connect(module))
    assert refused.code == 5 and "disabled" in refused.reason


async def test_a_host_name_with_a_port_and_other_case_matches(ctx: AuthContext, dev1: Identity) -> None:
    token = generate_sas_token(f"{HOST}/devices/dev1", dev1.keys.primary, later())
    packet = connect("dev1", token, username="HUB.example:8883/dev1/?api-version=2021-04-12")
    assert (await DIALECT.authenticate(packet, ctx)).key == "dev1"


@pytest.mark.parametrize(
    "username, words",
    [
        ("other.example/dev1/?api-version=2021-04-12", "names host 'other.example'"),
        (f"{HOST}/dev2/?api-version=2021-04-12", "user name must be"),
        ("/dev1/?api-version=2021-04-12", "user name must be"),
        ("dev1/?api-version=2021-04-12", "user name must be"),
    ],
)
async def test_a_user_name_not_naming_this_hub_and_client_is_refused(
    ctx: AuthContext, dev1: Identity, username: str, words: str
) -> None:
    token = generate_sas_token(f"{HOST}/devices/dev1", dev1.keys.primary, later())
    refused = await refusal(ctx, connect("dev1", token, username=username))
    assert refused.code == 4 and words in refused.reason


@pytest.mark.parametrize("client_id", ["", "/mod1", "dev1/mod1/extra"])
async def test_a_malformed_client_id_is_refused_as_identifier_rejected(
    ctx: AuthContext, dev1: Identity, client_id: str
) -> None:
    refused = await refusal(ctx, connect(client_id, "x", username=f"{HOST}/{client_id}/?api-version=1"))
    assert refused.code == 2


@pytest.mark.parametrize(
    "password, words",
    [
        (None, "no password"),
        (b"\xff\xfe", "not UTF-8"),
        (b"hunter2", "not a valid SAS token"),
        (b"SharedAccessSignature sr=x&se=1", "not a valid SAS token"),
    ],
)
async def test_a_password_that_is_no_sas_token_is_refused_as_bad_credentials(
    ctx: AuthContext, dev1: Identity, password: bytes | None, words: str
) -> None:
    packet = Connect(client_id="dev1", username=f"{HOST}/dev1/?api-version=1", password=password)
    refused = await refusal(ctx, packet)
    assert refused.code == 4 and words in refused.reason


async def test_a_token_for_another_device_is_refused(
    ctx: AuthContext, registry: SqliteRegistry, dev1: Identity
) -> None:
    dev2 = await registry.create_identity("dev2")
    token = generate_sas_token(f"{HOST}/devices/dev2", dev2.keys.primary, later())
    refused = await refusal(ctx, connect("dev1", token))
    assert refused.code == 5 and "not for 'hub.example/devices/dev1'" in refused.reason


async def test_a_token_for_another_hub_is_refused(ctx: AuthContext, dev1: Identity) -> None:
    token = generate_sas_token("other.example/devices/dev1", dev1.keys.primary, later())
    assert (await refusal(ctx, connect("dev1", token))).code == 5


async def test_a_token_signed_with_another_key_is_refused(ctx: AuthContext, dev1: Identity) -> None:
    refused = await refusal(ctx, device_connect(dev1, key=SymmetricKeys.generate().primary))
    assert refused.code == 5 and "signature does not match" in refused.reason


async def test_an_expired_token_is_refused(ctx: AuthContext, dev1: Identity) -> None:
    refused = await refusal(ctx, device_connect(dev1, expiry=int(time.time()) - 1))
    assert refused.code == 5 and "expired" in refused.reason


async def test_an_unregistered_device_is_refused(ctx: AuthContext, dev1: Identity) -> None:
    token = generate_sas_token(f"{HOST}/devices/ghost", dev1.keys.primary, later())
    refused = await refusal(ctx, connect("ghost", token))
    assert refused.code == 5 and "not registered" in refused.reason


async def test_a_disabled_device_is_refused(
    ctx: AuthContext, registry: SqliteRegistry, dev1: Identity
) -> None:
    await registry.update_identity("dev1", status="disabled")
    refused = await refusal(ctx, device_connect(dev1))
    assert refused.code == 5 and "disabled" in refused.reason


@pytest.mark.parametrize("resource", [f"{HOST}/devices/dev1", f"{HOST}/devices", HOST])
async def test_a_policy_token_with_device_connect_authenticates(
    ctx: AuthContext, registry: SqliteRegistry, dev1: Identity, resource: str
) -> None:
    policy = await registry.get_policy("device")
    assert policy is not None
    token = generate_sas_token(resource, policy.keys.primary, later(), key_name="device")
    principal = await DIALECT.authenticate(connect("dev1", token), ctx)
    assert principal.key == "dev1"
    assert len(ctx.tokens) == 0  # policy tokens are not cached: a policy change must take effect


async def test_a_hub_wide_token_needs_a_policy(ctx: AuthContext, dev1: Identity) -> None:
    token = generate_sas_token(HOST, dev1.keys.primary, later())  # a device key, no skn
    assert (await refusal(ctx, connect("dev1", token))).code == 5


@pytest.mark.parametrize("policy_name", ["service", "registryRead"])
async def test_a_policy_token_without_device_connect_is_refused(
    ctx: AuthContext, registry: SqliteRegistry, dev1: Identity, policy_name: str
) -> None:
    policy = await registry.get_policy(policy_name)
    assert policy is not None
    token = generate_sas_token(f"{HOST}/devices/dev1", policy.keys.primary, later(), key_name=policy_name)
    refused = await refusal(ctx, connect("dev1", token))
    assert refused.code == 5 and "lacks DeviceConnect" in refused.reason


async def test_a_token_naming_an_unknown_policy_is_refused(ctx: AuthContext, dev1: Identity) -> None:
    token = generate_sas_token(f"{HOST}/devices/dev1", dev1.keys.primary, later(), key_name="nobody")
    refused = await refusal(ctx, connect("dev1", token))
    assert refused.code == 5 and "'nobody' does not exist" in refused.reason


async def test_a_policy_tokens_signature_is_checked_against_the_policy_keys(
    ctx: AuthContext, dev1: Identity
) -> None:
    token = generate_sas_token(f"{HOST}/devices/dev1", dev1.keys.primary, later(), key_name="device")
    refused = await refusal(ctx, connect("dev1", token))
    assert refused.code == 5 and "signature does not match" in refused.reason


async def test_a_registry_that_cannot_be_read_is_server_unavailable(dev1: Identity) -> None:
    class BrokenRegistry:
        async def get_identity(self, device_id: str, module_id: str | None = None) -> Any:
            raise OSError("disk gone")

        async def get_policy(self, name: str) -> Any:
            raise OSError("disk gone")

    broken = AuthContext(registry=BrokenRegistry(), hostname=HOST, tokens=VerifiedTokenCache())  # type: ignore[arg-type]
    refused = await refusal(broken, device_connect(dev1))
    assert refused.code == 3 and "disk gone" in refused.reason


async def test_verified_device_tokens_are_cached_per_identity(
    ctx: AuthContext, registry: SqliteRegistry, dev1: Identity
) -> None:
    packet = device_connect(dev1)
    first = await DIALECT.authenticate(packet, ctx)
    assert len(ctx.tokens) == 1
    assert await DIALECT.authenticate(packet, ctx) is first  # no registry read, no HMAC
    await registry.update_identity("dev1", status="disabled")
    assert await DIALECT.authenticate(packet, ctx) is first  # until the registry change is seen:
    assert (await refusal_uncached(ctx, packet)).code == 5  # re-verification reads the registry
    ctx.tokens.invalidate("dev1")  # what the gateway does on the change feed's news
    assert (await refusal(ctx, packet)).code == 5


async def refusal_uncached(ctx: AuthContext, packet: Connect) -> ConnectRefused:
    with pytest.raises(ConnectRefused) as refused:
        await DIALECT.authenticate(packet, ctx, use_cache=False)
    return refused.value


async def test_the_cache_does_not_skip_the_user_name_check(ctx: AuthContext, dev1: Identity) -> None:
    packet = device_connect(dev1)
    await DIALECT.authenticate(packet, ctx)
    assert packet.password is not None
    other_host = connect("dev1", packet.password.decode(), username="other.example/dev1/?api-version=1")
    assert (await refusal(ctx, other_host)).code == 4


async def test_a_cached_token_is_not_accepted_for_another_identity(
    ctx: AuthContext, registry: SqliteRegistry, dev1: Identity
) -> None:
    await registry.create_identity("dev2")
    packet = device_connect(dev1)
    await DIALECT.authenticate(packet, ctx)
    assert packet.password is not None
    assert (await refusal(ctx, connect("dev2", packet.password.decode()))).code == 5


# -- grant (ACL) -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic_filter, qos, granted",
    [
        (METHODS, 0, 0),
        (METHODS, 1, 1),
        (METHODS, 2, 1),  # Azure grants QoS 1 for QoS 2
        ("$iothub/methods/POST/reboot/#", 0, 0),
        ("$iothub/twin/res/#", 1, 1),
        ("$iothub/twin/PATCH/properties/desired/#", 2, 1),
        ("devices/dev1/messages/devicebound/#", 1, 1),
        ("devices/dev2/messages/devicebound/#", 1, SUBSCRIPTION_REFUSED),
        ("devices/dev1/modules/m1/inputs/#", 0, SUBSCRIPTION_REFUSED),
        ("#", 0, SUBSCRIPTION_REFUSED),
        ("$iothub/#", 0, SUBSCRIPTION_REFUSED),
        ("$iothub/methods/res/#", 0, SUBSCRIPTION_REFUSED),
        ("devices/+/messages/devicebound/#", 0, SUBSCRIPTION_REFUSED),
    ],
)
def test_a_device_may_subscribe_in_its_own_namespace_only(topic_filter: str, qos: int, granted: int) -> None:
    assert DIALECT.grant(FakeDevice(), topic_filter, qos) == granted


@pytest.mark.parametrize(
    "topic_filter, granted",
    [
        ("devices/dev1/modules/m1/inputs/#", 1),
        ("devices/dev1/modules/m2/inputs/#", SUBSCRIPTION_REFUSED),
        ("devices/dev1/messages/devicebound/#", SUBSCRIPTION_REFUSED),
        (METHODS, 1),
    ],
)
def test_a_module_may_subscribe_to_its_own_inputs(topic_filter: str, granted: int) -> None:
    assert DIALECT.grant(FakeDevice(module_id="m1"), topic_filter, 1) == granted


# -- readiness and encode_call ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "subscriptions, ready",
    [
        ({}, False),
        ({"$iothub/twin/res/#": 0}, False),
        ({"devices/dev1/messages/devicebound/#": 1}, False),
        ({METHODS: 0}, True),
        ({"$iothub/methods/POST/reboot/#": 0}, True),
    ],
)
def test_ready_once_subscribed_to_method_requests(subscriptions: dict[str, int], ready: bool) -> None:
    assert DIALECT.is_ready(FakeDevice(subscriptions=subscriptions)) is ready


def test_a_call_goes_out_on_the_method_topic_with_a_hex_rid() -> None:
    device = FakeDevice(subscriptions={METHODS: 0})
    rid, topic, payload = DIALECT.encode_call(device, Call("dev1", "reboot", b'{"a":1}', 30), 255)
    assert (rid, topic, payload) == ("ff", "$iothub/methods/POST/reboot/?$rid=ff", b'{"a":1}')
    assert DIALECT.encode_call(device, Call("dev1", "m", b"", 30), 1)[0] == "1"
    assert device.completed == []  # encoding does not complete anything


def test_a_message_call_is_refused() -> None:
    device = FakeDevice(subscriptions={METHODS: 0})
    with pytest.raises(HubError) as raised:
        DIALECT.encode_call(device, Call("dev1", "rrpc", b"\x00", 30, kind=CallKind.MESSAGE), 1)
    assert raised.value.kind is ErrorKind.INVALID_ARGUMENT
    assert "JSON methods only" in raised.value.message


@pytest.mark.parametrize(
    "subscriptions, method, offline",
    [
        ({"$iothub/methods/POST/reboot/#": 0}, "reboot", False),
        ({"$iothub/methods/POST/reboot/#": 0}, "upgrade", True),
        ({"$iothub/methods/POST/+/#": 0}, "upgrade", False),
        ({"$iothub/twin/res/#": 0}, "reboot", True),
        ({}, "reboot", True),
    ],
)
def test_a_call_to_a_method_the_device_did_not_subscribe_to_is_offline(
    subscriptions: dict[str, int], method: str, offline: bool
) -> None:
    device = FakeDevice(subscriptions=subscriptions)
    call = Call("dev1", method, b"{}", 30)
    if offline:
        with pytest.raises(HubError) as raised:
            DIALECT.encode_call(device, call, 1)
        assert raised.value.kind is ErrorKind.DEVICE_OFFLINE
        assert f"method '{method}'" in raised.value.message
    else:
        assert DIALECT.encode_call(device, call, 1)[1] == f"$iothub/methods/POST/{method}/?$rid=1"


# -- on_publish: method responses -----------------------------------------------------------------


@pytest.mark.parametrize(
    "topic, status, rid",
    [
        ("$iothub/methods/res/200/?$rid=1a", 200, "1a"),
        ("$iothub/methods/res/404/?$rid=1a", 404, "1a"),
        ("$iothub/methods/res/500/?$rid=7&x=y", 500, "7"),
        ("$iothub/methods/res/200/?x=y&$rid=7", 200, "7"),
        ("$iothub/methods/res/200/?$rid=a%2Fb", 200, "a/b"),
    ],
)
def test_a_response_completes_its_call_with_status_and_payload(topic: str, status: int, rid: str) -> None:
    device = FakeDevice()
    assert DIALECT.on_publish(device, publish(topic, b'{"ok":true}')) is True
    assert only_completion(device) == (rid, CallOutcome(status, b'{"ok":true}'))
    assert device.strays == 0


def test_an_empty_response_body_is_json_null() -> None:
    device = FakeDevice()
    assert DIALECT.on_publish(device, publish("$iothub/methods/res/200/?$rid=1")) is True
    assert only_completion(device) == ("1", CallOutcome(200, b"null"))


def test_a_non_json_response_fails_its_call() -> None:
    device = FakeDevice()
    assert DIALECT.on_publish(device, publish("$iothub/methods/res/200/?$rid=1", b"{oops")) is True
    rid, result = only_completion(device)
    assert rid == "1" and isinstance(result, HubError)
    assert result.kind is ErrorKind.INVALID_DEVICE_RESPONSE


def test_a_response_over_128_kib_fails_its_call_and_one_at_the_limit_does_not() -> None:
    at_limit = b'"' + b"a" * (MAX_METHOD_PAYLOAD - 2) + b'"'
    assert len(at_limit) == MAX_METHOD_PAYLOAD
    device = FakeDevice()
    DIALECT.on_publish(device, publish("$iothub/methods/res/200/?$rid=1", at_limit))
    assert only_completion(device) == ("1", CallOutcome(200, at_limit))

    device = FakeDevice()
    DIALECT.on_publish(device, publish("$iothub/methods/res/200/?$rid=2", at_limit + b" "))
    rid, result = only_completion(device)
    assert rid == "2" and isinstance(result, HubError) and result.kind is ErrorKind.PAYLOAD_TOO_LARGE
    assert str(MAX_METHOD_PAYLOAD + 1) in result.message


@pytest.mark.parametrize(
    "topic",
    [
        "$iothub/methods/res/abc/?$rid=1",
        "$iothub/methods/res/200",
        "$iothub/methods/res/200/",
        "$iothub/methods/res/200/?rid=1",
        "$iothub/methods/res/200/?$rid=",
    ],
)
def test_a_malformed_response_topic_is_dropped_and_counted_as_stray(topic: str) -> None:
    device = FakeDevice()
    assert DIALECT.on_publish(device, publish(topic, b"{}")) is True
    assert device.completed == [] and device.strays == 1


# -- MQTT 5 answers: Response Topic, Correlation Data, the status user property ----------------------


def test_mqtt5_request_properties_name_the_response_topic_and_the_rid() -> None:
    device = FakeDevice(subscriptions={METHODS: 0})
    rid, _, _ = DIALECT.encode_call(device, Call("dev1", "m", b"{}", 30), 0xAB)
    assert DIALECT.request_properties(device, rid) == {
        "response_topic": "$iothub/methods/response",
        "correlation_data": b"ab",
    }


def mqtt5_answer(payload: bytes, correlation: bytes | None, status: list[str] | None = None) -> Publish:
    props: dict[str, Any] = {}
    if correlation is not None:
        props["correlation_data"] = correlation
    if status is not None:
        props["user_property"] = [("status", s) for s in status]
    return Publish(topic=MQTT5_RESPONSE_TOPIC, payload=payload, properties=props or None)


def test_an_mqtt5_answer_completes_its_call() -> None:
    device = FakeDevice()
    assert DIALECT.on_publish(device, mqtt5_answer(b"[1]", b"1a", ["404"])) is True
    assert only_completion(device) == ("1a", CallOutcome(404, b"[1]"))


def test_an_mqtt5_answer_over_128_kib_fails_its_call() -> None:
    device = FakeDevice()
    DIALECT.on_publish(device, mqtt5_answer(b'"' + b"a" * MAX_METHOD_PAYLOAD + b'"', b"2", ["200"]))
    rid, result = only_completion(device)
    assert rid == "2" and isinstance(result, HubError) and result.kind is ErrorKind.PAYLOAD_TOO_LARGE


@pytest.mark.parametrize("correlation", [None, b"", b"\x80"])
def test_an_mqtt5_answer_without_a_usable_correlation_is_stray(correlation: bytes | None) -> None:
    device = FakeDevice()
    assert DIALECT.on_publish(device, mqtt5_answer(b"{}", correlation, ["200"])) is True
    assert device.completed == [] and device.strays == 1


@pytest.mark.parametrize(
    "pairs, status",
    [
        (None, 200),
        ([], 200),
        ([("other", "x")], 200),
        ([("status", "200")], 200),
        ([("Status", "500"), ("status", "0")], 0),  # names are case-sensitive, as in MQTT
        ([("status", "-17")], -17),
        ([("status", "0042")], 42),
        ([("status", "2147483647")], 2**31 - 1),
        ([("status", "-2147483648")], -(2**31)),
        ([("status", "2147483648")], None),
        ([("status", "")], None),
        ([("status", "-")], None),
        ([("status", "1_000")], None),
        ([("status", "٣")], None),  # a digit, but not ASCII
        ([("status", "1"), ("status", "1")], None),
    ],
)
def test_the_status_user_property(pairs: list[tuple[str, str]] | None, status: int | None) -> None:
    assert response_status(pairs) == status


async def test_an_answer_to_no_pending_call_is_counted_as_stray() -> None:
    """Through a real session: an unknown rid is dropped and counted in the hub's metrics."""
    metrics = Metrics()
    table = SessionTable(LocalRouter(), NoStore(), metrics)
    session, _ = await table.open(Principal("dev1", None, "dev1", DIALECT), True, False)
    assert DIALECT.on_publish(session, publish("$iothub/methods/res/200/?$rid=99", b"{}")) is True
    assert metrics.stray_responses.get() == 1


async def test_a_response_to_a_pending_call_completes_the_sessions_reply() -> None:
    metrics = Metrics()
    table = SessionTable(LocalRouter(), NoStore(), metrics)
    session, _ = await table.open(Principal("dev1", None, "dev1", DIALECT), True, False)
    channel = RecordingChannel(session)
    session.attach(channel)
    session.update_subscriptions({METHODS: 0})
    assert session.ready
    reply: asyncio.Future[CallOutcome] = asyncio.get_running_loop().create_future()
    session.submit(Call("dev1", "m", b"{}", 30), reply)
    [(topic, _)] = channel.sent
    rid = topic.rpartition("=")[2]
    assert session.is_pending(rid)
    DIALECT.on_publish(session, publish(response_topic(202, rid), b"[1]"))
    assert reply.result() == CallOutcome(202, b"[1]")
    assert metrics.stray_responses.get() == 0


class NoStore:
    async def load_session(self, client_id: str) -> dict[str, int] | None:
        return None

    def save_session(self, client_id: str, subscriptions: Mapping[str, int]) -> None:
        pass

    def delete_session(self, client_id: str) -> None:
        pass


class RecordingChannel:
    def __init__(self, session: DeviceSession) -> None:
        self.session = session
        self.sent: list[tuple[str, bytes]] = []

    def deliver(self, call: Call, seq: int) -> str:
        rid, topic, payload = DIALECT.encode_call(self.session, call, seq)
        self.sent.append((topic, payload))
        return rid

    def ready_for_calls(self) -> bool:
        return DIALECT.is_ready(self.session)

    def close_taken_over(self) -> None:
        pass

    async def reverify(self) -> None:
        pass


# -- on_publish: telemetry, twin, anything else ----------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    [
        "devices/dev1/messages/events/",
        "devices/dev1/messages/events/%24.ct=json",
        "devices/dev1/messages/events",
    ],
)
def test_telemetry_is_accepted_and_counted(topic: str) -> None:
    device = FakeDevice()
    assert DIALECT.on_publish(device, publish(topic, b"23.5")) is True
    assert device.telemetry == 1 and device.completed == []


def test_module_telemetry_goes_to_the_modules_own_topic() -> None:
    module = FakeDevice(module_id="m1")
    assert DIALECT.on_publish(module, publish("devices/dev1/modules/m1/messages/events/", b"1")) is True
    assert DIALECT.on_publish(module, publish("devices/dev1/messages/events/", b"1")) is False
    assert DIALECT.on_publish(module, publish("devices/dev1/modules/m2/messages/events/", b"1")) is False
    assert module.telemetry == 1


@pytest.mark.parametrize(
    "topic",
    [
        "devices/dev2/messages/events/",
        "devices/dev1/messages/eventsx",
        "$iothub/methods/POST/m/?$rid=1",
        "somewhere/else",
        "devices/dev1/messages/devicebound/x",
    ],
)
def test_publishing_anywhere_else_is_not_allowed(topic: str) -> None:
    device = FakeDevice(subscriptions={METHODS: 0, "$iothub/twin/res/#": 0})
    assert DIALECT.on_publish(device, publish(topic, b"{}")) is False
    assert device.telemetry == 0 and device.completed == [] and device.strays == 0


def test_a_twin_get_is_answered_with_the_empty_twin_when_subscribed() -> None:
    device = FakeDevice(subscriptions={"$iothub/twin/res/#": 0})
    reply = DIALECT.on_publish(device, publish("$iothub/twin/GET/?$rid=abc"))
    assert reply == ("$iothub/twin/res/200/?$rid=abc", EMPTY_TWIN)


def test_a_reported_patch_is_answered_405() -> None:
    device = FakeDevice(subscriptions={"$iothub/twin/res/405/#": 0})
    reply = DIALECT.on_publish(device, publish("$iothub/twin/PATCH/properties/reported/?$rid=9", b"{}"))
    assert reply == ("$iothub/twin/res/405/?$rid=9", TWIN_NOT_SUPPORTED)


@pytest.mark.parametrize(
    "subscriptions, topic",
    [
        ({METHODS: 0}, "$iothub/twin/GET/?$rid=abc"),  # not subscribed to twin responses
        ({"$iothub/twin/res/404/#": 0}, "$iothub/twin/GET/?$rid=abc"),  # not to this status
        ({"$iothub/twin/res/#": 0}, "$iothub/twin/GET/"),  # no rid to answer
        ({"$iothub/twin/res/#": 0}, "$iothub/twin/GET/?$rid="),
    ],
)
def test_a_twin_request_that_cannot_be_answered_is_accepted_silently(
    subscriptions: dict[str, int], topic: str
) -> None:
    assert DIALECT.on_publish(FakeDevice(subscriptions=subscriptions), publish(topic)) is True


# -- dialects/azure/topics.py ----------------------------------------------------------------------


@pytest.mark.parametrize("method, rid", [("reboot", "1"), ("set_Config-2.x", "ffff"), ("~!*'", "0")])
def test_request_topics_round_trip(method: str, rid: str) -> None:
    topic = request_topic(method, rid)
    assert topic == f"$iothub/methods/POST/{method}/?$rid={rid}"
    assert parse_request_topic(topic) == (method, rid)


def test_request_topics_are_percent_decoded() -> None:
    assert parse_request_topic("$iothub/methods/POST/my%20m/?$rid=a%26b") == ("my m", "a&b")
    assert parse_request_topic("$iothub/methods/POST/m/?x=1&$rid=5") == ("m", "5")


@pytest.mark.parametrize(
    "topic",
    [
        "$iothub/methods/res/200/?$rid=1",
        "$iothub/methods/POST/m",
        "$iothub/methods/POST/m/?$rid=",
        "$iothub/methods/POST/m/?rid=1",
        "devices/dev1/messages/events/",
    ],
)
def test_what_is_not_a_request_topic(topic: str) -> None:
    assert parse_request_topic(topic) is None


@pytest.mark.parametrize("status, rid", [(200, "1"), (404, "a/b&c=d"), (500, "100%"), (0, "é")])
def test_response_topics_round_trip_with_percent_encoding(status: int, rid: str) -> None:
    topic = response_topic(status, rid)
    query = topic.partition("/?")[2]
    assert query.startswith("$rid=") and "/" not in query[5:] and "&" not in query[5:]
    assert parse_response_topic(topic) == (status, rid)


def test_query_value() -> None:
    assert query_value("$rid=1&$version=4", "$version") == "4"
    assert query_value("$rid=a%20b", "$rid") == "a%20b"  # still encoded
    assert query_value("$rid=", "$rid") is None
    assert query_value("x=1", "$rid") is None
    assert query_value("", "$rid") is None


@pytest.mark.parametrize(
    "name",
    ["reboot", "a", "set-Config_2.x", "~!*'&|^`", "a" * MAX_METHOD_NAME_LENGTH],
)
def test_valid_method_names(name: str) -> None:
    assert validate_method_name(name) == name


@pytest.mark.parametrize(
    "name, words",
    [
        ("", "required"),
        (None, "required"),
        (42, "required"),
        ("a" * (MAX_METHOD_NAME_LENGTH + 1), "longer than 128"),
        *[(f"a{char}b", "contains") for char in '$()<>@,;:\\"/[]?={} \t#+%'],
        ("caf\u00e9", "contains"),
        ("a\x00b", "contains"),
        ("a\x7fb", "contains"),
        ("a\nb", "contains"),
    ],
)
def test_invalid_method_names(name: object, words: str) -> None:
    with pytest.raises(HubError) as raised:
        validate_method_name(name)
    assert raised.value.kind is ErrorKind.INVALID_ARGUMENT
    assert words in raised.value.message
