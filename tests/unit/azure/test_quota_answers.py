"""How each front door words a throttled request, and the SAS token policy."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from methodhub.calls import Call, CallEngine
from methodhub.calls.model import CallOrigin
from methodhub.calls.quotas import QuotaLimits, Quotas, Throttled
from methodhub.config import TokenPolicy
from methodhub.dialects.aliyun.errors import pop_error
from methodhub.dialects.azure.errors import azure_error
from methodhub.dialects.azure.sas import SasToken, generate_sas_token
from methodhub.errors import ErrorKind

KEY = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI="


def test_azure_answers_429_throttling_exception_with_retry_after() -> None:
    response = azure_error(Throttled("method_calls", 0.2))
    assert response.status == 429
    headers = dict(response.headers or [])
    assert headers["iothub-errorcode"] == "ThrottlingException"
    assert headers["retry-after"] == "1"  # whole seconds, rounded up, at least 1
    body = json.loads(response.body)
    assert body["ExceptionMessage"] == ""
    inner = json.loads(body["Message"])
    assert inner["errorCode"] == 429001
    assert "method calls quota" in inner["message"]
    assert set(inner) >= {"trackingId", "timestampUtc"}
    assert dict(azure_error(Throttled("registry_operations", 2.01)).headers or [])["retry-after"] == "3"


def test_alibaba_answers_throttling_user_http_400_with_its_retry_header() -> None:
    response = pop_error(Throttled("method_calls", 0.25), "REQ-1", "iot.example")
    assert response.status == 400
    body = json.loads(response.body)
    assert body["Code"] == "Throttling.User"
    assert body["Message"].startswith("The hub's method calls quota is exhausted")
    assert body["RequestId"] == "REQ-1" and body["HostId"] == "iot.example"
    assert dict(response.headers or [])["x-acs-retry-after"] == "250"  # milliseconds (Tea SDK)


def test_throttled_kind_is_one_row_of_the_table() -> None:
    spec = ErrorKind.THROTTLED.spec
    assert (
        spec.http_status,
        spec.azure_code,
        spec.azure_name,
        spec.aliyun_code,
        spec.aliyun_http_status,
    ) == (
        429,
        429001,
        "ThrottlingException",
        "Throttling.User",
        400,
    )


class _NeverCalled:
    def dispatch(self, call: Call, deadline: float) -> None:
        raise AssertionError("a throttled call must not reach the router")

    async def get_identity(self, device_id: str, module_id: str | None = None) -> None:
        raise AssertionError("nor the registry")


async def test_the_engine_refuses_front_door_calls_over_the_rate_and_lets_queued_attempts_pass() -> None:
    now = [0.0]
    quotas = Quotas(QuotaLimits(method_calls_per_second=1), clock=lambda: now[0])
    engine = CallEngine(_NeverCalled(), _NeverCalled(), quotas=quotas)  # type: ignore[arg-type]
    quotas.check_call("service")  # the one token goes
    call = Call("dev1", "reboot", b"{}", 5)
    result = engine.invoke(call, "azure", CallOrigin("azure", "service"))
    assert result.done()
    with pytest.raises(Throttled) as caught:
        await result
    assert caught.value.retry_after == pytest.approx(1.0)
    assert engine._metrics.calls.get("throttled") == 1
    await asyncio.sleep(0)


def _token(expiry: int) -> SasToken:
    return SasToken.parse(generate_sas_token("hub/devices/d1", KEY, expiry))


def test_token_policy_default_refuses_at_expiry_and_accepts_any_lifetime() -> None:
    now = time.time()
    policy = TokenPolicy()
    assert _token(int(now) - 1).lifetime_refusal(now, policy) is not None
    assert _token(int(now) + 100 * 365 * 86400).lifetime_refusal(now, policy) is None


def test_token_policy_max_lifetime_and_skew() -> None:
    now = 1_700_000_000.0
    policy = TokenPolicy(max_lifetime=3600, clock_skew=300)
    assert _token(int(now) + 3600).lifetime_refusal(now, policy) is None
    assert _token(int(now) + 3900).lifetime_refusal(now, policy) is None  # within the skew
    refusal = _token(int(now) + 3901).lifetime_refusal(now, policy)
    assert refusal is not None and "at most 3600 s" in refusal
    assert _token(int(now) - 299).lifetime_refusal(now, policy) is None  # a late clock's token
    refusal = _token(int(now) - 300).lifetime_refusal(now, policy)
    assert refusal is not None and "expired" in refusal


async def test_device_and_hub_tokens_beyond_the_lifetime_are_refused_before_the_registry() -> None:
    from methodhub.dialects.azure.device_auth import TokenRefused, verify_device_token, verify_hub_token

    now = time.time()
    policy = TokenPolicy(max_lifetime=86400)
    long_lived = _token(int(now) + 2 * 86400)
    with pytest.raises(TokenRefused) as caught:
        await verify_device_token(long_lived, "d1", None, _NeverCalled(), "hub", now, policy)  # type: ignore[arg-type]
    assert caught.value.cause == "lifetime"
    assert "at most 86400 s" in caught.value.reason
    hub_wide = SasToken.parse(generate_sas_token("hub", KEY, int(now) + 2 * 86400, "device"))
    with pytest.raises(TokenRefused) as caught:
        await verify_hub_token(hub_wide, _NeverCalled(), "hub", now, policy)  # type: ignore[arg-type]
    assert caught.value.cause == "lifetime"


async def test_service_tokens_beyond_the_lifetime_are_refused_with_their_reason() -> None:
    from methodhub.dialects.azure.service_auth import ServiceAuthenticator
    from methodhub.errors import HubError

    reasons: list[str] = []
    auth = ServiceAuthenticator(_NeverCalled(), "hub", TokenPolicy(max_lifetime=3600))  # type: ignore[arg-type]
    auth.on_failure = reasons.append
    header = generate_sas_token("hub", KEY, int(time.time()) + 7200, "service")
    with pytest.raises(HubError) as caught:
        await auth.authenticate(header, "hub", "ServiceConnect")  # type: ignore[arg-type]
    assert caught.value.kind is ErrorKind.UNAUTHORIZED
    assert "valid for at most 3600 s" in caught.value.message
    assert reasons == ["lifetime"]
