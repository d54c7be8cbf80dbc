"""The Tea SDK (``alibabacloud_iot20180120`` on ``alibabacloud_tea_openapi``), default-configured,
against a throttled hub: ``Throttling.User`` (HTTP 400) with ``x-acs-retry-after``, and what the SDK
makes of it; and the classic ``aliyunsdkcore`` client's view of the same answer."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from alibabacloud_iot20180120 import models
from alibabacloud_tea_openapi.exceptions import ThrottlingException
from aliyunsdkcore.acs_exception.exceptions import ServerException

from tests.integration.aliyun.support import create_product_device, pop_client, rrpc_request
from tests.integration.aliyun.test_tea_sdk import tea_client
from tests.support import HubProcess

PK = "a1Throttle"


@pytest.fixture(scope="module")
def throttled_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(
        tmp_path_factory.mktemp("aliyun-throttled"),
        args=[
            "--max-calls-per-second-per-policy",
            "0.1",
            "--max-registry-ops-per-second",
            "0.1",
            "--quota-burst",
            "1",
        ],
    ).start()
    create_product_device(hub, PK, "quiet")  # registered, never online: RRpc answers OFFLINE
    yield hub
    hub.stop()


def _rrpc() -> models.RRpcRequest:
    return models.RRpcRequest(
        product_key=PK, device_name="quiet", timeout=1000, request_base_64byte="cGluZw=="
    )


def test_rrpc_over_the_rate_raises_throttling_exception_with_the_retry_after(
    throttled_hub: HubProcess,
) -> None:
    client = tea_client(throttled_hub)
    assert client.r_rpc(_rrpc()).body.rrpc_code == "OFFLINE"
    started = time.monotonic()
    with pytest.raises(ThrottlingException) as caught:
        client.r_rpc(_rrpc())
    took = time.monotonic() - started
    error = caught.value
    assert (error.status_code, error.code) == (400, "Throttling.User")
    assert error.data["Code"] == "Throttling.User"
    assert "calls per second" in error.data["Message"]
    assert 1 <= error.retry_after <= 10_000  # milliseconds, from x-acs-retry-after
    # Observed: without RetryOptions in its Config, the SDK makes one attempt and raises at once.
    assert took < 5
    assert throttled_hub.metric('methodhub_throttled_total{limit="method_calls_per_policy"}') == 1


def test_registry_actions_over_the_rate_raise_throttling_user(throttled_hub: HubProcess) -> None:
    client = tea_client(throttled_hub, policy="registryRead")
    request = models.QueryDeviceDetailRequest(product_key=PK, device_name="quiet")
    assert client.query_device_detail(request).body.success is True
    with pytest.raises(ThrottlingException) as caught:
        client.query_device_detail(request)
    assert (caught.value.status_code, caught.value.code) == (400, "Throttling.User")


def test_the_classic_sdk_raises_server_exception_throttling_user(throttled_hub: HubProcess) -> None:
    client = pop_client(throttled_hub, "service")
    request = rrpc_request(PK, "quiet", b"ping")
    client.do_action_with_exception(request)  # the policy's one token: OFFLINE
    with pytest.raises(ServerException) as caught:
        client.do_action_with_exception(request)
    assert caught.value.get_error_code() == "Throttling.User"
    assert caught.value.get_http_status() == 400
    # Observed: aliyunsdkcore's default retry policy does not retry it (one refusal more, not four).
    assert throttled_hub.metric('methodhub_throttled_total{limit="method_calls_per_policy"}') == 2
