"""The Alibaba MQTT dialect without sockets: CONNECTs authenticated against a real SQLite registry,
calls submitted to a real DeviceSession whose transport records what would go on the wire."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from methodhub.auth import VerifiedTokenCache
from methodhub.calls import Call, CallKind, CallOutcome
from methodhub.dialects.aliyun.calls import call_data
from methodhub.dialects.aliyun.mqtt import AliyunDialect, alink_outcome, alink_request
from methodhub.dialects.azure.mqtt import AzureDialect
from methodhub.errors import ErrorKind, HubError
from methodhub.gateway.auth import AuthContext
from methodhub.gateway.dialect import SUBSCRIPTION_REFUSED, ConnectRefused, Principal
from methodhub.gateway.session import DeviceSession, SessionTable
from methodhub.metrics import Metrics
from methodhub.mqtt import Connect, Publish
from methodhub.registry import ProductDevice, SqliteRegistry
from methodhub.router import LocalRouter

PK, DN = "a1PK", "dev1"
DIALECT = AliyunDialect()


class Transport:
    """A device channel that records what the dialect would put on the wire instead of writing it."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.session: DeviceSession | None = None
        self.metrics = Metrics()

    def deliver(self, call: Call, seq: int) -> str:
        assert self.session is not None
        rid, topic, payload = DIALECT.encode_call(self.session, call, seq)
        self.published.append((topic, payload))
        return rid

    def ready_for_calls(self) -> bool:
        return self.session is not None and DIALECT.is_ready(self.session)

    def close_taken_over(self) -> None:
        pass

    async def reverify(self) -> None:
        pass


class NoStore:
    async def load_session(self, client_id: str) -> dict[str, int] | None:
        return None

    def save_session(self, client_id: str, subscriptions: dict[str, int]) -> None:
        pass

    def delete_session(self, client_id: str) -> None:
        pass


def linkkit_connect(
    device: ProductDevice, *, ext: bool = True, ss: bool = True, password: str | None = None
) -> Connect:
    """A CONNECT exactly as the Link SDK for Python builds it (linkkit.py 1232-1243)."""
    ts = "1795350342"
    flags = ("ext=1," if ext else "") + ("_ss=1," if ss else "")
    client_id = f"{PK}&{DN}|securemode=3,signmethod=hmacsha1,{flags}lan=Python,_v=1.2.13,timestamp={ts}|"
    content = f"clientId{PK}&{DN}deviceName{DN}productKey{PK}timestamp{ts}"
    digest = hmac.new(device.device_secret.encode(), content.encode(), hashlib.sha1).hexdigest()
    return Connect(client_id=client_id, username=f"{DN}&{PK}", password=(password or digest).encode())


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[SqliteRegistry]:
    reg = SqliteRegistry(tmp_path / "registry.db")
    await reg.open()
    yield reg
    await reg.close()


@pytest.fixture
async def device(registry: SqliteRegistry) -> ProductDevice:
    return await registry.create_product_device(PK, DN)


@pytest.fixture
def ctx(registry: SqliteRegistry) -> AuthContext:
    return AuthContext(registry=registry, hostname="localhost", tokens=VerifiedTokenCache())


async def open_session(ctx: AuthContext, connect: Connect) -> tuple[DeviceSession, Transport]:
    principal = await DIALECT.authenticate(connect, ctx)
    transport = Transport()
    table = SessionTable(LocalRouter(), NoStore(), transport.metrics, max_in_flight=4)
    session, _ = await table.open(principal, clean_start=True, persistent=False)
    transport.session = session
    session.attach(transport)
    return session, transport


def submit(session: DeviceSession, call: Call) -> asyncio.Future[CallOutcome]:
    reply: asyncio.Future[CallOutcome] = asyncio.get_running_loop().create_future()
    session.submit(call, reply)
    return reply


# -- CONNECT ---------------------------------------------------------------------------------------


def test_azure_and_alibaba_claim_disjoint_connects() -> None:
    azure, aliyun = AzureDialect(), AliyunDialect()
    samples = [
        Connect(client_id="pump-17", username="hub.example/pump-17/?api-version=2021-04-12"),
        Connect(client_id="a1PK:dev1", username="localhost/a1PK:dev1/?api-version=2021-04-12&x=1"),
        Connect(client_id="d/m", username="localhost/d/m/?api-version=2021-04-12"),
        Connect(client_id="a1PK&dev1|securemode=3|", username="dev1&a1PK"),
        Connect(client_id="12345|securemode=3,signmethod=hmacmd5|", username="device&pk"),
        Connect(client_id="x", username="a&b/c"),
        Connect(client_id="x", username="plain"),
        Connect(client_id="x", username=None),
    ]
    for connect in samples:
        assert not (azure.claims(connect) and aliyun.claims(connect)), connect
    assert [aliyun.claims(c) for c in samples[3:5]] == [True, True]
    assert [azure.claims(c) for c in samples[:3]] == [True, True, True]


async def test_linkkit_connect_authenticates(ctx: AuthContext, device: ProductDevice) -> None:
    principal = await DIALECT.authenticate(linkkit_connect(device), ctx)
    assert (principal.device_id, principal.module_id, principal.key) == (f"{PK}:{DN}", None, f"{PK}:{DN}")
    assert principal.attributes["ext"] is True and principal.attributes["auto_subscribe"] is True
    assert principal.expires_at is None
    assert DIALECT.initial_subscriptions(principal) == {
        f"/sys/{PK}/{DN}/rrpc/request/+": 0,
        f"/sys/{PK}/{DN}/thing/service/+": 0,
        f"/ext/rrpc/+/sys/{PK}/{DN}/thing/service/+": 0,
    }


async def test_verified_logins_are_cached_per_identity(ctx: AuthContext, device: ProductDevice) -> None:
    connect = linkkit_connect(device)
    first = await DIALECT.authenticate(connect, ctx)
    assert await DIALECT.authenticate(connect, ctx) is first
    ctx.tokens.invalidate(first.key)  # what a registry change to the device does
    assert await DIALECT.authenticate(connect, ctx) is not first


@pytest.mark.parametrize(
    "change, code",
    [
        (lambda c: Connect(client_id=c.client_id, username=c.username, password=b"00" * 20), 4),
        (lambda c: Connect(client_id=c.client_id, username="dev2&a1PK", password=c.password), 4),
        (lambda c: Connect(client_id=c.client_id, username="d&a1PK", password=c.password), 4),
        (lambda c: Connect(client_id=c.client_id, username=c.username, password=None), 4),
        (lambda c: Connect(client_id=c.client_id, username=c.username, password=b"\xff"), 4),
        (lambda c: Connect(client_id="a|b", username=c.username, password=c.password), 2),
        (lambda c: Connect(client_id="x|signmethod=plain|", username=c.username, password=c.password), 4),
        (lambda c: Connect(client_id="x|authType=regnwl|", username=c.username, password=c.password), 5),
    ],
)
async def test_refusals(ctx: AuthContext, device: ProductDevice, change: object, code: int) -> None:
    with pytest.raises(ConnectRefused) as refused:
        await DIALECT.authenticate(change(linkkit_connect(device)), ctx)  # type: ignore[operator]
    assert refused.value.code == code


async def test_disabled_device_is_refused(
    ctx: AuthContext, registry: SqliteRegistry, device: ProductDevice
) -> None:
    await registry.update_identity(device.device_id, status="disabled")
    with pytest.raises(ConnectRefused) as refused:
        await DIALECT.authenticate(linkkit_connect(device), ctx)
    assert refused.value.code == 5


# -- calls -----------------------------------------------------------------------------------------


async def test_system_rrpc(ctx: AuthContext, device: ProductDevice) -> None:
    session, transport = await open_session(ctx, linkkit_connect(device))
    assert session.ready
    reply = submit(
        session,
        Call(f"{PK}:{DN}", "rrpc", b"\x00raw", 3, kind=CallKind.MESSAGE, dialect_data=call_data("77")),
    )
    assert transport.published == [(f"/sys/{PK}/{DN}/rrpc/request/77", b"\x00raw")]
    assert DIALECT.on_publish(session, Publish(f"/sys/{PK}/{DN}/rrpc/response/77", b"\xffanswer"))
    assert (await reply) == CallOutcome(200, b"\xffanswer")


async def test_mqtt5_requests_get_no_properties(ctx: AuthContext, device: ProductDevice) -> None:
    """Alibaba answers on its own RRPC topics: unlike Azure's, its requests to MQTT 5 devices carry
    no Response Topic or Correlation Data."""
    session, _ = await open_session(ctx, linkkit_connect(device))
    assert DIALECT.request_properties(session, "77") is None
    assert AzureDialect().request_properties(session, "77") is not None


async def test_custom_topic_rrpc_needs_a_subscription(ctx: AuthContext, device: ProductDevice) -> None:
    session, transport = await open_session(ctx, linkkit_connect(device))
    call = Call(
        f"{PK}:{DN}",
        "rrpc",
        b"m",
        3,
        kind=CallKind.MESSAGE,
        dialect_data=call_data("5", f"/{PK}/{DN}/user/get"),
    )
    with pytest.raises(HubError) as raised:
        await submit(session, call)
    assert raised.value.kind is ErrorKind.DEVICE_OFFLINE and "/ext/rrpc/+" in raised.value.message
    assert DIALECT.grant(session, f"/ext/rrpc/+/{PK}/{DN}/user/get", 0) == 0
    session.update_subscriptions({f"/ext/rrpc/+/{PK}/{DN}/user/get": 0})
    reply = submit(session, call)
    assert transport.published == [(f"/ext/rrpc/5/{PK}/{DN}/user/get", b"m")]
    # The same id on the system topic is not this call's reply: dropped as stray.
    assert DIALECT.on_publish(session, Publish(f"/sys/{PK}/{DN}/rrpc/response/5", b"wrong"))
    assert not reply.done() and transport.metrics.stray_responses.get() == 1
    assert DIALECT.on_publish(session, Publish(f"/ext/rrpc/5/{PK}/{DN}/user/get", b"right"))
    assert (await reply).payload == b"right"


async def test_synchronous_service(ctx: AuthContext, device: ProductDevice) -> None:
    session, transport = await open_session(ctx, linkkit_connect(device))
    reply = submit(session, Call(f"{PK}:{DN}", "Echo", b'{"x":1}', 3, dialect_data=call_data("9")))
    topic, payload = transport.published[0]
    assert topic == f"/ext/rrpc/9/sys/{PK}/{DN}/thing/service/Echo"
    assert orjson.loads(payload) == {
        "id": "9",
        "version": "1.0",
        "params": {"x": 1},
        "method": "thing.service.Echo",
    }
    DIALECT.on_publish(session, Publish(topic, b'{"id":"9","code":460,"data":{"why":"no"}}'))
    assert (await reply) == CallOutcome(460, b'{"why":"no"}')


async def test_without_ext_calls_use_system_rrpc_topics(ctx: AuthContext, device: ProductDevice) -> None:
    session, transport = await open_session(ctx, linkkit_connect(device, ext=False))
    service = submit(session, Call(f"{PK}:{DN}", "Echo", b"{}", 3, dialect_data=call_data("1")))
    custom = submit(
        session,
        Call(
            f"{PK}:{DN}",
            "rrpc",
            b"m",
            3,
            kind=CallKind.MESSAGE,
            dialect_data=call_data("2", f"/{PK}/{DN}/user/x"),
        ),
    )
    assert [t for t, _ in transport.published] == [
        f"/sys/{PK}/{DN}/rrpc/request/1",
        f"/sys/{PK}/{DN}/rrpc/request/2",
    ]
    DIALECT.on_publish(session, Publish(f"/sys/{PK}/{DN}/rrpc/response/2", b"raw"))
    DIALECT.on_publish(
        session, Publish(f"/sys/{PK}/{DN}/rrpc/response/1", b'{"id":"1","code":200,"data":[1]}')
    )
    assert (await custom).payload == b"raw"  # each reply read as its call's kind
    assert (await service) == CallOutcome(200, b"[1]")


async def test_device_without_server_side_subscription_is_not_ready(
    ctx: AuthContext, device: ProductDevice
) -> None:
    session, _ = await open_session(ctx, linkkit_connect(device, ss=False))
    assert not session.ready and session.subscriptions == {}
    session.update_subscriptions({f"/sys/{PK}/{DN}/rrpc/request/+": 0})
    assert session.ready


async def test_replies_that_are_not_alink(ctx: AuthContext, device: ProductDevice) -> None:
    session, transport = await open_session(ctx, linkkit_connect(device))
    reply = submit(session, Call(f"{PK}:{DN}", "Echo", b"{}", 3, dialect_data=call_data("3")))
    DIALECT.on_publish(session, Publish(transport.published[0][0], b"plain text"))
    with pytest.raises(HubError) as raised:
        await reply
    assert raised.value.kind is ErrorKind.INVALID_DEVICE_RESPONSE
    deep = b"[" * 100_000 + b"]" * 100_000
    for payload in (b"[]", b'{"code":"200"}', b'{"code":true}', b'{"data":{}}', b'{"code":2.5}', deep):
        assert isinstance(alink_outcome(payload), HubError), payload
    # Issue 9: data nested 1,000 deep parsed, then failed to be written back (RecursionError inside
    # data_received), which aborted the device's connection. Now it is an invalid reply.
    nested = b'{"code":200,"data":' + b"[" * 1000 + b"]" * 1000 + b"}"
    outcome = alink_outcome(nested)
    assert isinstance(outcome, HubError) and outcome.kind is ErrorKind.INVALID_DEVICE_RESPONSE
    assert alink_outcome(b'{"id":"1","code":200}') == CallOutcome(200, b"{}")
    assert (
        alink_outcome(b'{"code":200,"data":123456789012345678901234567890}').payload
        == b"123456789012345678901234567890"
    )
    assert (
        alink_request("1", "Echo", b"")
        == b'{"id":"1","version":"1.0","params":null,"method":"thing.service.Echo"}'
    )


async def test_bad_call_shapes(ctx: AuthContext, device: ProductDevice) -> None:
    session, transport = await open_session(ctx, linkkit_connect(device))
    for call in (
        Call(f"{PK}:{DN}", "a/b", b"{}", 3),
        Call(
            f"{PK}:{DN}",
            "rrpc",
            b"m",
            3,
            kind=CallKind.MESSAGE,
            dialect_data=call_data("5", "/other/dev/user/get"),
        ),
    ):
        with pytest.raises(HubError) as raised:
            await submit(session, call)
        assert raised.value.kind is ErrorKind.INVALID_ARGUMENT
    assert transport.published == []


async def test_expected_replies_do_not_pile_up(ctx: AuthContext, device: ProductDevice) -> None:
    session, _ = await open_session(ctx, linkkit_connect(device))
    for n in range(50):  # each abandoned (cancelled) before any reply
        submit(
            session, Call(f"{PK}:{DN}", "rrpc", b"", 3, kind=CallKind.MESSAGE, dialect_data=call_data(str(n)))
        ).cancel()
        await asyncio.sleep(0)
    assert len(session.dialect_state.expected) <= session.max_in_flight  # type: ignore[union-attr]


# -- topic ACL -------------------------------------------------------------------------------------


async def test_subscribe_and_publish_acl(ctx: AuthContext, device: ProductDevice) -> None:
    session, transport = await open_session(ctx, linkkit_connect(device))
    own = [
        f"/{PK}/{DN}/user/get",
        f"/{PK}/{DN}/user/#",
        f"/sys/{PK}/{DN}/thing/event/+/post_reply",
        f"/ext/rrpc/+/{PK}/{DN}/user/get",
        f"/ext/rrpc/+/sys/{PK}/{DN}/thing/service/+",
        f"/ota/device/upgrade/{PK}/{DN}",
        f"/broadcast/{PK}/news",
    ]
    foreign = [
        f"/{PK}/dev2/user/get",
        f"/sys/{PK}/+/rrpc/request/+",
        f"/sys/+/{DN}/rrpc/request/+",
        f"/ext/rrpc/+/{PK}/dev2/user/get",
        "/ext/rrpc/#",
        f"/ext/rrpc/+/+/{DN}/user/get",
        "#",
        "+/+",
        f"/ota/device/upgrade/{PK}/+",
        f"/{PK}/{DN}/user/" + "x" * 120,  # longer than 128 bytes
    ]
    assert [DIALECT.grant(session, f, 1) for f in own] == [1] * len(own)
    assert [DIALECT.grant(session, f, 0) for f in foreign] == [SUBSCRIPTION_REFUSED] * len(foreign)
    telemetry = transport.metrics.telemetry
    assert DIALECT.on_publish(session, Publish(f"/sys/{PK}/{DN}/thing/event/property/post", b"{}"))
    assert DIALECT.on_publish(session, Publish(f"/{PK}/{DN}/user/update", b"x"))
    assert telemetry.get() == 2
    assert not DIALECT.on_publish(session, Publish(f"/sys/{PK}/dev2/rrpc/response/1", b"x"))
    assert not DIALECT.on_publish(session, Publish(f"/ext/rrpc/1/{PK}/dev2/user/get", b"x"))
    assert not DIALECT.on_publish(session, Publish("/elsewhere", b"x"))


def test_principal_attributes_are_what_the_dialect_reads() -> None:
    principal = Principal("p:d", None, "p:d", DIALECT, attributes={"product_key": "p", "device_name": "dddd"})
    assert DIALECT.initial_subscriptions(principal) == {}
