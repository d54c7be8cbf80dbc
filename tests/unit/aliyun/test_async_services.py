"""Asynchronous thing services on the Alibaba device dialect: the request on the service topic, the
reply on ``…_reply`` matched by id, only from the device called (real DeviceSession, recorded wire)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from methodhub.calls import Call, CallOutcome
from methodhub.dialects.aliyun.calls import async_method, service_identifier
from methodhub.dialects.aliyun.mqtt import AliyunDialect
from methodhub.errors import ErrorKind, HubError
from methodhub.gateway.auth import AuthContext
from methodhub.mqtt import Publish
from methodhub.registry import ProductDevice
from tests.unit.aliyun import test_dialect
from tests.unit.aliyun.test_dialect import DN, PK, linkkit_connect, open_session, submit

registry, device, ctx = test_dialect.registry, test_dialect.device, test_dialect.ctx  # its fixtures

DIALECT = AliyunDialect()
SERVICE = f"/sys/{PK}/{DN}/thing/service/Echo"
REPLY = f"{SERVICE}_reply"


def test_async_method_round_trip() -> None:
    assert service_identifier(async_method("Echo")) == ("Echo", True)
    assert service_identifier(async_method("m1:Echo")) == ("m1:Echo", True)
    assert service_identifier("Echo") == ("Echo", False)


async def test_request_on_the_service_topic_reply_matched_by_id(
    ctx: AuthContext, device: ProductDevice
) -> None:
    session, transport = await open_session(ctx, linkkit_connect(device))
    first = submit(session, Call(f"{PK}:{DN}", async_method("Echo"), b'{"x":1}', 3))
    second = submit(session, Call(f"{PK}:{DN}", async_method("Echo"), b'{"x":2}', 3))
    (topic1, payload1), (topic2, payload2) = transport.published
    assert topic1 == topic2 == SERVICE  # not RRPC: no /ext/rrpc/{id} prefix
    request1, request2 = orjson.loads(payload1), orjson.loads(payload2)
    assert request1 == {
        "id": request1["id"],
        "version": "1.0",
        "params": {"x": 1},
        "method": "thing.service.Echo",
    }
    assert isinstance(request1["id"], str) and request1["id"] != request2["id"]
    # Replies in the other order, each completing the call whose id it carries.
    reply2 = {"id": request2["id"], "code": 200, "data": {"n": 2}}
    assert DIALECT.on_publish(session, Publish(REPLY, orjson.dumps(reply2)))
    assert (await second) == CallOutcome(200, b'{"n":2}')
    assert not first.done()
    reply1 = {"id": request1["id"], "code": 460, "data": {"why": "no"}}
    assert DIALECT.on_publish(session, Publish(REPLY, orjson.dumps(reply1)))
    assert (await first) == CallOutcome(460, b'{"why":"no"}')


async def test_wrong_id_is_a_stray_response(ctx: AuthContext, device: ProductDevice) -> None:
    session, transport = await open_session(ctx, linkkit_connect(device))
    reply = submit(session, Call(f"{PK}:{DN}", async_method("Echo"), b"{}", 3))
    request = orjson.loads(transport.published[0][1])
    stray = transport.metrics.stray_responses.get()
    assert DIALECT.on_publish(session, Publish(REPLY, b'{"id":"424242","code":200,"data":{}}'))
    # Another service's reply topic with the right id does not answer it either.
    other = f"/sys/{PK}/{DN}/thing/service/Other_reply"
    assert DIALECT.on_publish(session, Publish(other, orjson.dumps({"id": request["id"], "code": 200})))
    await asyncio.sleep(0)
    assert not reply.done() and session.is_pending(request["id"])
    assert transport.metrics.stray_responses.get() == stray + 2
    assert DIALECT.on_publish(session, Publish(REPLY, orjson.dumps({"id": request["id"], "code": 200})))
    assert (await reply) == CallOutcome(200, b"{}")


async def test_another_devices_reply_is_ignored(ctx: AuthContext, device: ProductDevice) -> None:
    session, transport = await open_session(ctx, linkkit_connect(device))
    reply = submit(session, Call(f"{PK}:{DN}", async_method("Echo"), b"{}", 3))
    request = orjson.loads(transport.published[0][1])
    foreign = f"/sys/{PK}/dev2/thing/service/Echo_reply"
    # Outside the device's namespace: refused (the gateway closes the connection), nothing completed.
    assert not DIALECT.on_publish(session, Publish(foreign, orjson.dumps({"id": request["id"], "code": 200})))
    await asyncio.sleep(0)
    assert not reply.done()


async def test_a_reply_that_is_not_json_ends_the_call(ctx: AuthContext, device: ProductDevice) -> None:
    session, _ = await open_session(ctx, linkkit_connect(device))
    reply = submit(session, Call(f"{PK}:{DN}", async_method("Echo"), b"{}", 3))
    assert DIALECT.on_publish(session, Publish(REPLY, b"\xffnot json"))
    with pytest.raises(HubError) as raised:
        await reply
    assert raised.value.kind is ErrorKind.INVALID_DEVICE_RESPONSE
    assert "Echo_reply" in raised.value.message and "Alink reply" in raised.value.message


async def test_a_reply_with_an_id_but_no_code_ends_its_call(ctx: AuthContext, device: ProductDevice) -> None:
    session, transport = await open_session(ctx, linkkit_connect(device))
    reply = submit(session, Call(f"{PK}:{DN}", async_method("Echo"), b"{}", 3))
    request = orjson.loads(transport.published[0][1])
    assert DIALECT.on_publish(session, Publish(REPLY, orjson.dumps({"id": request["id"], "code": "200"})))
    with pytest.raises(HubError) as raised:
        await reply
    assert raised.value.kind is ErrorKind.INVALID_DEVICE_RESPONSE


async def test_not_json_with_two_waiting_answers_neither(ctx: AuthContext, device: ProductDevice) -> None:
    session, _ = await open_session(ctx, linkkit_connect(device))
    first = submit(session, Call(f"{PK}:{DN}", async_method("Echo"), b"{}", 3))
    second = submit(session, Call(f"{PK}:{DN}", async_method("Echo"), b"{}", 3))
    assert DIALECT.on_publish(session, Publish(REPLY, b"garbage"))
    await asyncio.sleep(0)
    assert not first.done() and not second.done()


async def test_async_needs_the_service_subscription(ctx: AuthContext, device: ProductDevice) -> None:
    session, _ = await open_session(ctx, linkkit_connect(device, ss=False))
    session.update_subscriptions({f"/sys/{PK}/{DN}/rrpc/request/+": 0})
    reply = submit(session, Call(f"{PK}:{DN}", async_method("Echo"), b"{}", 3))
    with pytest.raises(HubError) as raised:
        await reply
    # Not DEVICE_OFFLINE: the queued call's delivery would retry it at once, again and again.
    assert raised.value.kind is ErrorKind.INVALID_ARGUMENT
    assert f"/sys/{PK}/{DN}/thing/service/+" in raised.value.message and "_ss=1" in raised.value.message
