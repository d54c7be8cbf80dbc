"""The POP front door's parsing and answer shapes (the HTTP round trips are in the integration tests)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from methodhub.calls import Call, CallKind, CallOutcome
from methodhub.calls.model import CallOrigin
from methodhub.dialects.aliyun.calls import message_id, rrpc_topic
from methodhub.dialects.aliyun.errors import new_request_id, pop_error, rrpc_error
from methodhub.dialects.aliyun.pop import AliyunApi, MessageIds, request_params
from methodhub.dialects.aliyun.pop_auth import PopAuthenticator
from methodhub.dialects.aliyun.signing import sign_pop_request
from methodhub.errors import ErrorKind, HubError
from methodhub.http.messages import Request, Response
from methodhub.registry import SqliteRegistry

FORM = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}


def test_query_and_form_body_are_merged_and_decoded() -> None:
    request = Request(
        "POST",
        "/",
        headers=FORM,
        body=b"RequestBase64Byte=cGluZw%3D%3D&Topic=%2Fa1PK%2Fdev1%2Fuser%2Fget",
        raw_query="Action=RRpc&SignatureType=&Text=a+b%20c%E4%B8%AD",
    )
    assert request_params(request) == {
        "Action": "RRpc",
        "SignatureType": "",
        "Text": "a b c中",
        "RequestBase64Byte": "cGluZw==",
        "Topic": "/a1PK/dev1/user/get",
    }


@pytest.mark.parametrize(
    "raw_query, body, headers",
    [
        ("A=1&A=2", b"", {}),  # repeated in the query
        ("A=1", b"A=2", FORM),  # repeated across query and body
        ("A=1", b'{"A": 2}', {"content-type": "application/json"}),  # not a form
        ("A=%FF", b"", {}),  # not UTF-8
        ("A=1", "B=ü".encode(), FORM),  # a form body is ASCII
    ],
)
def test_ambiguous_or_malformed_parameters(raw_query: str, body: bytes, headers: dict[str, str]) -> None:
    with pytest.raises(HubError) as raised:
        request_params(Request("POST", "/", headers=headers, body=body, raw_query=raw_query))
    assert raised.value.kind is ErrorKind.MALFORMED_REQUEST


def test_message_ids_are_unique_increasing_int64() -> None:
    ids = MessageIds()
    values = [ids.next() for _ in range(10_000)]
    assert values == sorted(set(values))
    assert 0 < values[0] < 2**63 and values[-1] < 2**63


def test_request_ids_look_like_alibabas() -> None:
    request_id = new_request_id()
    assert len(request_id) == 36 and request_id == request_id.upper() and request_id.count("-") == 4


def test_gateway_errors_are_http_errors_business_errors_are_200() -> None:
    gateway = pop_error(HubError(ErrorKind.SIGNATURE_MISMATCH, "m"), "RID", "host:1")
    assert gateway.status == 400
    assert orjson.loads(gateway.body) == {
        "RequestId": "RID",
        "HostId": "host:1",
        "Code": "SignatureDoesNotMatch",
        "Message": "m",
        "Recommend": orjson.loads(gateway.body)["Recommend"],
    }
    business = pop_error(HubError(ErrorKind.DEVICE_NOT_FOUND, "gone"), "RID")
    assert business.status == 200
    assert orjson.loads(business.body) == {
        "RequestId": "RID",
        "Success": False,
        "Code": "iot.device.NotExistedDevice",
        "ErrorMessage": "gone",
    }


def test_rrpc_outcomes() -> None:
    timeout = orjson.loads(rrpc_error(HubError(ErrorKind.CALL_TIMEOUT), "RID", 42).body)
    assert timeout == {"RequestId": "RID", "Success": True, "RrpcCode": "TIMEOUT", "MessageId": 42}
    offline = orjson.loads(rrpc_error(HubError(ErrorKind.DEVICE_OFFLINE), "RID", None).body)
    assert offline == {"RequestId": "RID", "Success": True, "RrpcCode": "OFFLINE"}
    gone = orjson.loads(rrpc_error(HubError(ErrorKind.DEVICE_DISCONNECTED), "RID", 7).body)
    assert gone["RrpcCode"] == "HALFCONN" and gone["Success"] is True
    broken = orjson.loads(rrpc_error(HubError(ErrorKind.SERVER_ERROR, "boom"), "RID", None).body)
    assert broken == {
        "RequestId": "RID",
        "Success": False,
        "Code": "iot.system.SystemException",
        "ErrorMessage": "boom",
        "RrpcCode": "UNKNOWN",
    }
    unavailable = rrpc_error(HubError(ErrorKind.SERVICE_UNAVAILABLE), "RID", None)
    assert unavailable.status == 503  # a gateway error, whatever the action


def test_every_error_kind_renders() -> None:
    for kind in ErrorKind:
        response = pop_error(HubError(kind), "RID")
        body = orjson.loads(response.body)
        assert body["Code"] == kind.spec.aliyun_code
        assert response.status == kind.spec.aliyun_http_status


# -- the handler, with a stub engine -----------------------------------------------------------------------


class StubEngine:
    """Records calls; answers each with ``outcome``."""

    def __init__(self, outcome: CallOutcome | HubError) -> None:
        self.calls: list[Call] = []
        self.origins: list[CallOrigin | None] = []
        self.front_doors: list[str] = []
        self.outcome = outcome

    def invoke(
        self, call: Call, front_door: str = "", origin: CallOrigin | None = None
    ) -> asyncio.Future[CallOutcome]:
        self.calls.append(call)
        self.front_doors.append(front_door)
        self.origins.append(origin)
        future: asyncio.Future[CallOutcome] = asyncio.get_running_loop().create_future()
        if isinstance(self.outcome, HubError):
            future.set_exception(self.outcome)
        else:
            future.set_result(self.outcome)
        return future


class NobodyOnline:
    async def connection_states(self, targets: list[str]) -> dict[str, tuple[bool, float | None]]:
        return {target: (False, None) for target in targets}


async def post(api: AliyunApi, registry: SqliteRegistry, **params: str) -> dict[str, Any]:
    owner = await registry.get_policy("iothubowner")
    assert owner is not None
    signed = sign_pop_request("POST", {"Version": "2018-01-20", **params}, owner.name, owner.keys.primary)
    request = Request("POST", "/", headers=FORM, body=urlencode(signed).encode())
    result = api.handle(request)
    response = result if isinstance(result, Response) else await result
    return {"status": response.status, **orjson.loads(response.body)}


async def test_rrpc_becomes_a_message_call(registry: SqliteRegistry) -> None:
    engine = StubEngine(CallOutcome(200, b"\x00pong"))
    api = AliyunApi(engine, registry, PopAuthenticator(registry), NobodyOnline())  # type: ignore[arg-type]
    message = base64.b64encode(b"\xffping").decode()
    topic = "/a1PK/dev1/user/get"
    for attempt in range(2):  # the first authenticates from the registry, the second from the cache
        body = await post(
            api,
            registry,
            Action="RRpc",
            ProductKey="a1PK",
            DeviceName="dev1",
            Timeout="2500",
            RequestBase64Byte=message,
            Topic=topic,
        )
        assert body["status"] == 200 and body["RrpcCode"] == "SUCCESS", attempt
        assert base64.b64decode(body["PayloadBase64Byte"]) == b"\x00pong"
        call = engine.calls[-1]
        assert (call.target, call.kind, rrpc_topic(call.dialect_data), call.payload) == (
            "a1PK:dev1",
            CallKind.MESSAGE,
            topic,
            b"\xffping",
        )
        assert call.response_timeout == 2.5 and call.connect_timeout == 0
        assert engine.origins[-1] == CallOrigin("aliyun", "iothubowner", body["RequestId"]), attempt
        assert message_id(call.dialect_data) == str(body["MessageId"])
    assert message_id(engine.calls[0].dialect_data) != message_id(engine.calls[1].dialect_data)
    assert engine.front_doors == ["aliyun", "aliyun"]  # the latency metric's front_door label


async def test_invoke_thing_service_becomes_a_method_call(registry: SqliteRegistry) -> None:
    engine = StubEngine(CallOutcome(200, b'{"ok":true}'))
    api = AliyunApi(engine, registry, PopAuthenticator(registry), NobodyOnline())  # type: ignore[arg-type]
    body = await post(
        api,
        registry,
        Action="InvokeThingService",
        IotId="pump-17",
        ProductKey="ignored",
        DeviceName="ignored",
        Identifier="mod:Reboot_1",
        Args='{"delay": 5}',
    )
    assert body["Success"] is True and json.loads(body["Data"]["Result"]) == {"ok": True}
    call = engine.calls[0]
    assert (call.target, call.method, call.kind, call.payload) == (
        "pump-17",
        "mod:Reboot_1",
        CallKind.METHOD,
        b'{"delay": 5}',
    )
    assert call.response_timeout == 8.0 and message_id(call.dialect_data) == body["Data"]["MessageId"]


@pytest.mark.parametrize(
    "params, code",
    [
        ({"Identifier": "Echo", "Args": "[" * 100_000 + "]" * 100_000}, "InvalidParameter"),
        ({"Identifier": "Echo", "Args": "[1]"}, "InvalidParameter"),
        ({"Identifier": "Echo", "Args": "{NaN}"}, "InvalidParameter"),
        ({"Identifier": "a/b", "Args": "{}"}, "InvalidParameter"),
        ({"Identifier": "Echo"}, "MissingParameter"),
    ],
)
async def test_bad_service_arguments(registry: SqliteRegistry, params: dict[str, str], code: str) -> None:
    engine = StubEngine(CallOutcome(200, b"{}"))
    api = AliyunApi(engine, registry, PopAuthenticator(registry), NobodyOnline())  # type: ignore[arg-type]
    body = await post(api, registry, Action="InvokeThingService", IotId="pump-17", **params)
    assert body["Code"] == code and engine.calls == []


@pytest.mark.parametrize("timeout", ["9" * 5000, "²", "3000.0", "-1000"])
async def test_a_timeout_that_is_not_a_small_integer_is_invalid_not_a_500(
    registry: SqliteRegistry, timeout: str
) -> None:
    """Issue 9: 5,000 digits passed isdigit() and raised in int() (over Python's digit limit)."""
    engine = StubEngine(CallOutcome(200, b"pong"))
    api = AliyunApi(engine, registry, PopAuthenticator(registry), NobodyOnline())  # type: ignore[arg-type]
    body = await post(
        api,
        registry,
        Action="RRpc",
        ProductKey="a1PK",
        DeviceName="dev1",
        Timeout=timeout,
        RequestBase64Byte="eA==",
    )
    assert body["Success"] is False and body["Code"] == "iot.messagebroker.InvalidTimeoutValue"
    assert not engine.calls


@pytest.mark.parametrize(
    "method, raw_query, pop",
    [
        ("GET", "", False),  # a person (or a browser) at the hub's root
        ("HEAD", "", False),
        ("GET", "utm_source=x&lang=en", False),
        ("GET", "Action=RRpc", True),
        ("GET", "Signature=abc", True),
        ("GET", "AccessKeyId=service&Version=2018-01-20", True),
        ("POST", "", True),  # POP parameters may all be in a form body
    ],
)
def test_what_counts_as_a_pop_call_at_the_root(method: str, raw_query: str, pop: bool) -> None:
    from urllib.parse import parse_qsl

    from methodhub.dialects.aliyun.pop import is_pop_call

    request = Request(method, "/", query=dict(parse_qsl(raw_query)), raw_query=raw_query)
    assert is_pop_call(request) is pop
