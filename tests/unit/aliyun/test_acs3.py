"""The V3 signature (ACS3-HMAC-SHA256): the recipe against the Tea SDK's own signer, and the
authenticator's checks (form, date window, nonce replay, body hash, key) and the front door's
choice of scheme and action."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from alibabacloud_tea_openapi.utils import Utils
from darabonba.request import DaraRequest

from methodhub.dialects.aliyun.acs3 import (
    Acs3Authorization,
    acs3_canonical_request,
    acs3_string_to_sign,
    encode_query,
    sign_acs3_request,
)
from methodhub.dialects.aliyun.pop import AliyunApi, is_pop_call, signature_scheme
from methodhub.dialects.aliyun.pop_auth import PopAuthenticator
from methodhub.dialects.aliyun.signing import parse_pop_timestamp, sign_pop_request
from methodhub.errors import ErrorKind, HubError
from methodhub.http.messages import Request, Response
from methodhub.registry import AccessPolicy, Right, SymmetricKeys

# -- a request the Tea SDK signed (alibabacloud_tea_openapi 0.4.6, Utils.get_authorization) ----------------

SDK_QUERY = {"DeviceName": "dev 1", "ProductKey": "a1PK", "Timeout": "3000", "Topic": "/a1PK/dev 1/user/get"}
SDK_BODY = b"RequestBase64Byte=cGluZw%3D%3D"
SDK_HEADERS = {
    "host": "iot.cn-shanghai.aliyuncs.com",
    "x-acs-version": "2018-01-20",
    "x-acs-action": "RRpc",
    "user-agent": "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2",
    "x-acs-date": "2026-12-01T15:44:44Z",
    "x-acs-signature-nonce": "fcdd5b3331ba4268a0efe841d80145f3",
    "accept": "application/json",
    "content-type": "application/x-www-form-urlencoded",
    "x-acs-content-sha256": "c001d7ec8dd3fecb64b3cdb5ca79fefc13b761e85b75f6ac8fcdcf95c2663c67",
    "x-acs-credentials-provider": "static_ak",
}
SDK_AUTHORIZATION = (
    "ACS3-HMAC-SHA256 Credential=testAK,SignedHeaders=accept;content-type;host;user-agent;x-acs-action;"
    "x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-signature-nonce;x-acs-version,"
    "Signature=90b13876434985966d7746d43e5af83131093030c878105b941c064ec04564b4"
)
"""Captured from the SDK's signer with AccessKeyId testAK, secret testSecret (see
``test_the_captured_vector_is_what_the_sdk_computes``)."""
NOW = parse_pop_timestamp(SDK_HEADERS["x-acs-date"])
POLICY = AccessPolicy(
    "testAK", SymmetricKeys("testSecret", "otherSecret"), frozenset({Right.SERVICE_CONNECT})
)


def signed(
    action: str | None = "RRpc",
    version: str | None = "2018-01-20",
    *,
    query: dict[str, str] = SDK_QUERY,
    key_id: str = "testAK",
    secret: str = "testSecret",
    date: str = SDK_HEADERS["x-acs-date"],
) -> dict[str, str]:
    """Headers for a POST of ``SDK_BODY`` signed by our client-side signer."""
    return sign_acs3_request("POST", "h", action, version, query, SDK_BODY, key_id, secret, date=date)


def sdk_authorization(method: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> str:
    """``Utils.get_authorization``, the SDK's signer, for this request."""
    request = DaraRequest()
    request.method, request.pathname, request.query, request.headers = method, "/", dict(query), dict(headers)
    payload = Utils.hash(body, "ACS3-HMAC-SHA256").hex()
    return str(Utils.get_authorization(request, "ACS3-HMAC-SHA256", payload, "testAK", "testSecret"))


def test_the_captured_vector_is_what_the_sdk_computes() -> None:
    assert hashlib.sha256(SDK_BODY).hexdigest() == SDK_HEADERS["x-acs-content-sha256"]
    assert sdk_authorization("POST", SDK_QUERY, SDK_HEADERS, SDK_BODY) == SDK_AUTHORIZATION


def test_our_recipe_recomputes_the_sdk_signature() -> None:
    auth = Acs3Authorization.parse(SDK_AUTHORIZATION)
    assert auth.access_key_id == "testAK" and auth.signed_headers == tuple(sorted(SDK_HEADERS))
    canonical = acs3_canonical_request(
        "POST", "/", SDK_QUERY, SDK_HEADERS, auth.signed_headers, SDK_HEADERS["x-acs-content-sha256"]
    )
    lines = canonical.split("\n")
    assert lines[:3] == [
        "POST",
        "/",
        "DeviceName=dev%201&ProductKey=a1PK&Timeout=3000&Topic=%2Fa1PK%2Fdev%201%2Fuser%2Fget",
    ]
    assert lines[-2:] == [";".join(sorted(SDK_HEADERS)), SDK_HEADERS["x-acs-content-sha256"]]
    string_to_sign = acs3_string_to_sign(canonical)
    assert string_to_sign.startswith("ACS3-HMAC-SHA256\n")
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert string_to_sign.split("\n")[1] == expected
    import hmac

    mac = hmac.new(b"testSecret", string_to_sign.encode(), hashlib.sha256).hexdigest()
    assert mac == auth.signature


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_our_client_side_signer_matches_the_sdk(method: str) -> None:
    query = {"IotId": "a1PK:dev~1", "Args": '{"x": "é ü+"}', "DeviceName.1": "a*b"}
    body = b"" if method == "GET" else b"RequestBase64Byte=eA%3D%3D"
    headers = sign_acs3_request(
        method, "127.0.0.1:8080", "InvokeThingService", "2018-01-20", query, body, "testAK", "testSecret"
    )
    ours = headers.pop("authorization")
    assert ours == sdk_authorization(method, query, headers, body)


# -- the authenticator -----------------------------------------------------------------------------------


class FakeRegistry:
    """The two registry calls the authenticator makes: one policy, a shared nonce record."""

    def __init__(self, policy: AccessPolicy = POLICY) -> None:
        self.policy = policy
        self.nonces: set[str] = set()

    async def get_policy(self, name: str) -> AccessPolicy | None:
        return self.policy if name == self.policy.name else None

    async def use_nonce(self, key: str, expires_at: float, now: float) -> bool:
        fresh = key not in self.nonces
        self.nonces.add(key)
        return fresh


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def authenticator(clock: Clock | None = None, registry: Any = None) -> PopAuthenticator:
    return PopAuthenticator(registry or FakeRegistry(), clock=clock or Clock(), window=900)


async def verify(
    auth: PopAuthenticator,
    headers: dict[str, str],
    *,
    query: dict[str, str] = SDK_QUERY,
    body: bytes = SDK_BODY,
    method: str = "POST",
    right: Right = Right.SERVICE_CONNECT,
) -> str:
    check = auth.check_acs3(headers, body)
    return await auth.authenticate_acs3(check, method, "/", query, headers, right)


async def refused(auth: PopAuthenticator, headers: dict[str, str], **kwargs: Any) -> HubError:
    with pytest.raises(HubError) as raised:
        await verify(auth, headers, **kwargs)
    return raised.value


def captured(**changes: str | None) -> dict[str, str]:
    headers = {**SDK_HEADERS, "authorization": SDK_AUTHORIZATION}
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    return headers


async def test_the_captured_sdk_request_verifies() -> None:
    assert await verify(authenticator(), captured()) == "testAK"


async def test_the_secondary_key_signs_too() -> None:
    headers = signed(secret="otherSecret")
    assert await verify(authenticator(), headers) == "testAK"


async def test_wrong_key() -> None:
    headers = signed(secret="wrong")
    error = await refused(authenticator(), headers)
    assert error.kind is ErrorKind.SIGNATURE_MISMATCH
    assert error.message.startswith(
        "Specified signature does not match our calculation. server StringToSign is ["
    )
    assert "ACS3-HMAC-SHA256\n" in error.message and "x-acs-action:RRpc\n" in error.message


@pytest.mark.parametrize(
    "change",
    [
        {"query": {**SDK_QUERY, "Timeout": "8000"}},  # a query parameter changed
        {"query": {**SDK_QUERY, "Extra": ""}},  # a query parameter added
        {"method": "GET"},
    ],
)
async def test_the_signature_covers_method_and_query(change: dict[str, Any]) -> None:
    error = await refused(authenticator(), captured(), **change)
    assert error.kind is ErrorKind.SIGNATURE_MISMATCH


async def test_a_signed_header_changed() -> None:
    error = await refused(authenticator(), captured(user_agent="something else"))
    assert error.kind is ErrorKind.SIGNATURE_MISMATCH


async def test_tampered_body() -> None:
    tampered = b"RequestBase64Byte=ZXZpbA%3D%3D"
    error = await refused(authenticator(), captured(), body=tampered)
    assert error.kind is ErrorKind.SIGNATURE_MISMATCH
    assert "x-acs-content-sha256" in error.message and hashlib.sha256(tampered).hexdigest() in error.message
    # A hash that matches the new body but not the signature: the signature catches it.
    rehashed = captured(x_acs_content_sha256=hashlib.sha256(tampered).hexdigest())
    error = await refused(authenticator(), rehashed, body=tampered)
    assert error.kind is ErrorKind.SIGNATURE_MISMATCH and "server StringToSign" in error.message


async def test_replayed_nonce_is_refused_in_memory_and_in_the_registry() -> None:
    registry = FakeRegistry()
    auth = authenticator(registry=registry)
    await verify(auth, captured())
    error = await refused(auth, captured())
    assert error.kind is ErrorKind.REQUEST_REPLAYED and SDK_HEADERS["x-acs-signature-nonce"] in error.message
    # Another process (its own memory) with the same registry refuses it too.
    other = authenticator(registry=registry)
    assert (await refused(other, captured())).kind is ErrorKind.REQUEST_REPLAYED


async def test_one_nonce_memory_for_both_schemes() -> None:
    auth = authenticator()
    await verify(auth, captured())
    v2 = sign_pop_request(
        "POST",
        {"Action": "RRpc", "Version": "2018-01-20"},
        "testAK",
        "testSecret",
        nonce=SDK_HEADERS["x-acs-signature-nonce"],
        timestamp=SDK_HEADERS["x-acs-date"],
    )
    with pytest.raises(HubError) as raised:
        await auth.authenticate("POST", v2, Right.SERVICE_CONNECT)
    assert raised.value.kind is ErrorKind.REQUEST_REPLAYED


@pytest.mark.parametrize("skew", [-901, 901])
async def test_skewed_date(skew: float) -> None:
    error = await refused(authenticator(Clock(NOW - skew)), captured())
    assert error.kind is ErrorKind.REQUEST_EXPIRED
    assert "x-acs-date" in error.message and ("ahead of" if skew > 0 else "behind") in error.message


async def test_within_the_window() -> None:
    assert await verify(authenticator(Clock(NOW + 899)), captured()) == "testAK"


async def test_malformed_date() -> None:
    headers = signed("RRpc", "v", date="now")
    error = await refused(authenticator(), headers)
    assert error.kind is ErrorKind.MALFORMED_REQUEST and "x-acs-date 'now'" in error.message


async def test_unknown_access_key_and_missing_right() -> None:
    headers = signed("RRpc", "v", key_id="nobody", secret="x")
    assert (await refused(authenticator(), headers)).kind is ErrorKind.UNAUTHORIZED
    error = await refused(authenticator(), captured(), right=Right.REGISTRY_WRITE)
    assert error.kind is ErrorKind.ACCESS_DENIED


SIGNED = "SignedHeaders=accept;host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce"
SIG = "Signature=" + "a" * 64


@pytest.mark.parametrize(
    "authorization, says",
    [
        ("", "is empty"),
        ("ACS3-HMAC-SHA256", "Credential is missing"),
        (f"ACS3-HMAC-SHA256 {SIGNED},{SIG}", "Credential is missing"),
        (f"ACS3-HMAC-SHA256 Credential=testAK,{SIG}", "SignedHeaders is missing"),
        (f"ACS3-HMAC-SHA256 Credential=testAK,{SIGNED}", "Signature is missing"),
        (f"ACS3-HMAC-SHA256 Credential=testAK,{SIGNED},Signature=xyz", "not 64 hex digits"),
        (f"ACS3-HMAC-SHA256 Credential=a,Credential=b,{SIGNED},{SIG}", "more than once"),
        (f"ACS3-HMAC-SHA256 Credential=testAK,SignedHeaders=host;accept,{SIG}", "sorted"),
        (f"ACS3-HMAC-SHA256 Credential=testAK,SignedHeaders=Host,{SIG}", "lower-case"),
        (f"ACS3-HMAC-SHA256 Credential=testAK,{SIGNED},{SIG},Region=x", "'Region=x' is not"),
        ("ACS3-HMAC-SM3 Credential=testAK,SignedHeaders=host,Signature=00", "scheme 'ACS3-HMAC-SM3'"),
        ("ACS3-RSA-SHA256 Credential=testAK", "scheme 'ACS3-RSA-SHA256'"),
        ("acs testAK:c2lnbmF0dXJl", "scheme 'acs'"),  # the ROA V1 header
        ("Bearer abc", "scheme 'Bearer'"),
        ("SharedAccessSignature sr=x&sig=y", "scheme 'SharedAccessSignature'"),
    ],
)
def test_garbled_or_unknown_authorization(authorization: str, says: str) -> None:
    with pytest.raises(HubError) as raised:
        authenticator().check_acs3(captured(authorization=authorization), SDK_BODY)
    assert raised.value.kind is ErrorKind.INCOMPLETE_SIGNATURE
    assert raised.value.message.startswith("The request signature does not conform to Aliyun standards: ")
    assert says in raised.value.message


def test_unknown_scheme_names_the_schemes_we_verify() -> None:
    with pytest.raises(HubError) as raised:
        authenticator().check_acs3(captured(authorization="ACS3-HMAC-SM3 Credential=x"), SDK_BODY)
    assert "sign with ACS3-HMAC-SHA256" in raised.value.message and "HMAC-SHA1" in raised.value.message


@pytest.mark.parametrize("name", ["x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"])
def test_required_headers(name: str) -> None:
    headers = captured(**{name.replace("-", "_"): None})
    # Not listed in SignedHeaders either, so the request is otherwise well formed.
    auth = captured()["authorization"].replace(f";{name}", "")
    headers["authorization"] = auth
    with pytest.raises(HubError) as raised:
        authenticator().check_acs3(headers, SDK_BODY)
    assert raised.value.kind is ErrorKind.MISSING_ARGUMENT and f'"{name}"' in raised.value.message


@pytest.mark.parametrize("extra", ["x-acs-security-token", "x-acs-anything"])
def test_unsigned_x_acs_header(extra: str) -> None:
    with pytest.raises(HubError) as raised:
        authenticator().check_acs3({**captured(), extra: "1"}, SDK_BODY)
    assert (
        raised.value.kind is ErrorKind.INCOMPLETE_SIGNATURE
        and f"{extra!r} is sent but not" in raised.value.message
    )


def test_host_must_be_signed_and_signed_headers_must_be_sent() -> None:
    headers = captured()
    headers["authorization"] = headers["authorization"].replace("host;", "")
    with pytest.raises(HubError) as raised:
        authenticator().check_acs3(headers, SDK_BODY)
    assert "'host' is sent but not in SignedHeaders" in raised.value.message
    with pytest.raises(HubError) as raised:
        authenticator().check_acs3(captured(user_agent=None), SDK_BODY)
    assert raised.value.kind is ErrorKind.INCOMPLETE_SIGNATURE
    assert "lists 'user-agent', which the request does not carry" in raised.value.message


def test_no_authorization_header() -> None:
    with pytest.raises(HubError) as raised:
        authenticator().check_acs3(dict(SDK_HEADERS), SDK_BODY)
    assert raised.value.kind is ErrorKind.INCOMPLETE_SIGNATURE
    assert "no Authorization header" in raised.value.message
    with pytest.raises(HubError) as raised:  # the Tea SDK with a bearer-token credential
        authenticator().check_acs3({**SDK_HEADERS, "x-acs-bearer-token": "t"}, SDK_BODY)
    assert raised.value.kind is ErrorKind.INCOMPLETE_SIGNATURE
    assert "bearer token (x-acs-bearer-token)" in raised.value.message


@pytest.mark.parametrize(
    "headers, pop",
    [
        ({}, False),  # a person at the hub's root
        ({"authorization": "ACS3-HMAC-SHA256 Credential=x"}, True),
        ({"x-acs-action": "QueryDeviceDetail"}, True),
        ({"x-acs-signature-nonce": "n"}, True),
    ],
)
def test_a_get_with_v3_headers_is_a_pop_call(headers: dict[str, str], pop: bool) -> None:
    assert is_pop_call(Request("GET", "/", headers=headers)) is pop


# -- the front door ----------------------------------------------------------------------------------------


def http_request(
    headers: dict[str, str], query: dict[str, str] = SDK_QUERY, body: bytes = SDK_BODY
) -> Request:
    raw = urlencode(query)
    return Request("POST", "/", query=dict(query), headers=headers, body=body, raw_query=raw)


@pytest.mark.parametrize(
    "headers, query, scheme",
    [
        ({"authorization": "x"}, {"Signature": "s"}, "acs3"),  # the header wins
        ({}, {"Signature": "s", "AccessKeyId": "a"}, "v2"),
        ({"x-acs-action": "RRpc"}, {"Signature": "s"}, "v2"),  # aliyunsdkcore sends x-acs-action too
        ({"x-acs-signature-nonce": "n"}, {}, "acs3"),  # a V3 request that lost its Authorization
        ({}, {"Action": "RRpc"}, "v2"),  # unsigned: told which V2 parameter is missing
    ],
)
def test_which_scheme(headers: dict[str, str], query: dict[str, str], scheme: str) -> None:
    assert signature_scheme(Request("POST", "/", query=query, headers=headers)) == scheme


class NoEngine:
    def invoke(self, call: Any, front_door: str = "") -> Any:
        raise AssertionError("no call expected")


async def answer(api: AliyunApi, request: Request) -> tuple[int, dict[str, Any]]:
    result = api.handle(request)
    response = result if isinstance(result, Response) else await result
    return response.status, orjson.loads(response.body)


def front_door(clock: Clock | None = None) -> AliyunApi:
    registry: Any = FakeRegistry()
    return AliyunApi(NoEngine(), registry, authenticator(clock, registry), None)  # type: ignore[arg-type]


async def test_action_and_version_come_from_the_signed_headers() -> None:
    api = front_door()
    # x-acs-action names an action methodhub lacks: the answer names it (no "Action missing").
    headers = signed("Pub")
    status, body = await answer(api, http_request(headers))
    assert (status, body["Code"]) == (404, "InvalidAction.NotFound") and "'Pub'" in body["Message"]
    headers = signed("RRpc", "2017-04-20")
    status, body = await answer(api, http_request(headers))
    assert (status, body["Code"]) == (400, "InvalidVersion")


async def test_header_and_parameter_must_agree() -> None:
    query = {**SDK_QUERY, "Action": "DeleteDevice"}
    headers = signed(query=query)
    status, body = await answer(front_door(), http_request(headers, query))
    assert (status, body["Code"]) == (400, "InvalidParameter")
    assert "x-acs-action" in body["Message"] and "disagree" in body["Message"]


async def test_v3_without_action_header_falls_back_to_the_parameter() -> None:
    query = {**SDK_QUERY, "Action": "Pub"}
    headers = signed(None, query=query)
    status, body = await answer(front_door(), http_request(headers, query))
    assert (status, body["Code"]) == (404, "InvalidAction.NotFound")
    headers = signed(None)
    status, body = await answer(front_door(), http_request(headers))
    assert (status, body["Code"]) == (400, "MissingParameter") and '"x-acs-action"' in body["Message"]


async def test_an_unknown_scheme_is_named_before_anything_else() -> None:
    headers = {
        **SDK_HEADERS,
        "authorization": "ACS3-HMAC-SM3 Credential=testAK,SignedHeaders=host,Signature=0",
    }
    del headers["x-acs-action"]
    status, body = await answer(front_door(), http_request(headers, {}))
    assert (status, body["Code"]) == (400, "IncompleteSignature")
    assert "'ACS3-HMAC-SM3'" in body["Message"] and "Action" not in body["Message"]


def test_encode_query_round_trips() -> None:
    from urllib.parse import parse_qsl

    query = {"A": "x y+z/é~", "B.1": ""}
    assert dict(parse_qsl(encode_query(query), keep_blank_values=True)) == query
