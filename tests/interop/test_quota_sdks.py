"""Microsoft's azure-iot-hub 2.7.0 ``IoTHubRegistryManager`` against a throttled hub: what a 429
ThrottlingException with Retry-After becomes in the SDK, and whether it retries by itself."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.support import Agent, AgentError
from tests.support import HubProcess

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def throttled_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(
        tmp_path_factory.mktemp("throttled-hub"),
        listeners=("mqtt", "http", "https"),
        args=["--max-calls-per-second", "0.1", "--max-registry-ops-per-second", "0.1", "--quota-burst", "1"],
    ).start()
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def service(azure_python: Path, throttled_hub: HubProcess) -> Iterator[Agent]:
    agent = Agent(azure_python, Path(__file__).with_name("azure_agent.py"))
    cs = throttled_hub.service_cs()
    agent.call(
        "service_open",
        cs=f"HostName={cs['HostName']}:{throttled_hub.ports['https']};"
        f"SharedAccessKeyName={cs['SharedAccessKeyName']};SharedAccessKey={cs['SharedAccessKey']}",
        ca_file=str(throttled_hub.ca_file),
    )
    yield agent
    agent.close()


def test_invoke_device_method_raises_http_operation_error_429_without_retrying(
    service: Agent, throttled_hub: HubProcess
) -> None:
    throttled_hub.create_device("sdk-quiet")
    with pytest.raises(AgentError) as first:
        service.call("service_invoke", device_id="sdk-quiet", method="m")
    assert first.value.status_code == 404  # the one call the bucket held: device not online
    started = time.monotonic()
    with pytest.raises(AgentError) as second:
        service.call("service_invoke", device_id="sdk-quiet", method="m")
    took = time.monotonic() - started
    assert second.value.error == "HttpOperationError"
    assert second.value.status_code == 429
    assert second.value.body is not None
    inner = json.loads(json.loads(second.value.body)["Message"])
    assert inner["errorCode"] == 429001
    # Observed: msrest's default retry policy does not retry a 429 on POST, nor wait out Retry-After
    # (one request reached the hub, at once); a caller backs off itself.
    assert throttled_hub.metric('methodhub_throttled_total{limit="method_calls"}') == 1
    assert took < 5


def test_get_device_over_the_registry_rate_waits_out_retry_after_and_succeeds(
    service: Agent, throttled_hub: HubProcess
) -> None:
    """Observed: for a GET, urllib3's Retry under msrest honours Retry-After on a 429 (its
    RETRY_AFTER_STATUS_CODES; POST is not retried): the SDK sleeps the 10 s the hub asked for, sends
    again and returns the device as if nothing happened."""
    throttled_hub.create_device("sdk-reg")
    assert service.call("service_get_device", device_id="sdk-reg")["device_id"] == "sdk-reg"
    started = time.monotonic()
    assert service.call("service_get_device", device_id="sdk-reg")["device_id"] == "sdk-reg"
    took = time.monotonic() - started
    assert throttled_hub.metric('methodhub_throttled_total{limit="registry_operations"}') == 1
    assert 8 <= took < 30  # Retry-After: 10 (one token per 10 s), then one retry that passes
