"""``GET /metrics`` of a real hub (``methodhub serve``): ``--metrics-auth``, the latency histogram and
device counters after real calls and connections, and the Grafana dashboard's names (docs/metrics.md)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Backend, HubProcess, PahoDevice, methodhub

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana-dashboard.json"
BEARER = "scrape-4f9c1e2b7a"


@pytest.fixture(scope="module")
def guarded_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    data_dir = tmp_path_factory.mktemp("metrics-hub")
    token_file = data_dir.parent / "metrics-token"
    token_file.write_text(BEARER + "\n")
    hub = HubProcess(data_dir, args=["--metrics-auth", "--metrics-token-file", str(token_file)]).start()
    yield hub
    hub.stop()


def scrape(hub: HubProcess, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return httpx.get(f"{hub.http_url}/metrics", headers=headers, timeout=30)


def samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_without_credentials_metrics_are_refused_with_what_to_send(guarded_hub: HubProcess) -> None:
    for authorization in (None, "Basic dXNlcjpwYXNz"):
        response = scrape(guarded_hub, authorization)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        message = response.json()["message"]
        assert "--metrics-auth" in message and "RegistryRead" in message and "Bearer" in message


def test_a_policy_with_registry_read_may_scrape_one_without_may_not(guarded_hub: HubProcess) -> None:
    for policy in ("iothubowner", "registryRead"):
        response = scrape(guarded_hub, guarded_hub.service_token(policy))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
    refused = scrape(guarded_hub, guarded_hub.service_token("service"))  # ServiceConnect only
    assert refused.status_code == 401
    assert "lacks the RegistryRead permission" in refused.json()["message"]
    expired = scrape(guarded_hub, guarded_hub.service_token("registryRead", ttl=-60))
    assert expired.status_code == 401 and "expired" in expired.json()["message"]


def test_the_static_bearer_token(guarded_hub: HubProcess) -> None:
    assert scrape(guarded_hub, f"Bearer {BEARER}").status_code == 200
    wrong = scrape(guarded_hub, "Bearer not-the-token")
    assert wrong.status_code == 401 and "--metrics-token-file" in wrong.json()["message"]


def test_refused_scrapes_count_as_service_auth_failures(guarded_hub: HubProcess) -> None:
    scrape(guarded_hub, guarded_hub.service_token("service"))
    scrape(guarded_hub, "Bearer not-the-token")
    counts = samples(scrape(guarded_hub, f"Bearer {BEARER}").text)
    assert counts['methodhub_auth_failures_total{side="service",reason="azure_missing_right"}'] >= 1
    assert counts['methodhub_auth_failures_total{side="service",reason="metrics_bearer"}'] >= 1


def test_calls_and_devices_show_up(guarded_hub: HubProcess) -> None:
    device = PahoDevice(guarded_hub, "metrics-dev", guarded_hub.create_device("metrics-dev")).online()
    backend = Backend(guarded_hub)
    try:
        device.serve(lambda name, payload: (200, b'{"ok":true}'))
        assert backend.invoke("metrics-dev", "ping").status_code == 200
        assert backend.invoke("metrics-offline", "ping").status_code == 404  # not registered: error
    finally:
        backend.close()
        device.close()
    counts = samples(scrape(guarded_hub, f"Bearer {BEARER}").text)
    answered = 'methodhub_call_duration_seconds_count{front_door="azure",outcome="answered"}'
    assert counts[answered] == 1
    assert (
        counts['methodhub_call_duration_seconds_bucket{front_door="azure",outcome="answered",le="+Inf"}'] == 1
    )
    assert counts['methodhub_call_duration_seconds_count{front_door="azure",outcome="error"}'] == 1
    assert 0 < counts['methodhub_call_duration_seconds_sum{front_door="azure",outcome="answered"}'] < 30
    assert counts['methodhub_device_connects_total{transport="mqtt",tls="false"}'] >= 1
    assert counts['methodhub_calls_in_flight{front_door="azure"}'] == 0
    assert counts['methodhub_queued_calls{state="queued"}'] == 0
    assert counts["methodhub_jobs_running"] == 0
    assert counts['methodhub_registry_operation_duration_seconds_count{operation="read"}'] >= 1


def test_every_metric_the_grafana_dashboard_uses_is_rendered(guarded_hub: HubProcess) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bmethodhub_[a-z_]+", expr)}
    assert len(used) >= 10
    rendered = {key.split("{")[0] for key in samples(scrape(guarded_hub, f"Bearer {BEARER}").text)}
    missing = sorted(used - rendered)
    assert not missing, f"the dashboard uses metrics /metrics does not render: {missing}"


def test_a_token_file_without_metrics_auth_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(BEARER)
    result = methodhub("serve", "--metrics-token-file", str(token_file), data_dir=tmp_path / "d", check=False)
    assert result.returncode != 0
    assert "--metrics-token-file needs --metrics-auth" in result.stderr
    assert "Traceback" not in result.stderr
    token_file.write_text("")
    empty = methodhub(
        "serve",
        "--metrics-auth",
        "--metrics-token-file",
        str(token_file),
        data_dir=tmp_path / "d",
        check=False,
    )
    assert empty.returncode != 0 and "is empty" in empty.stderr and "Traceback" not in empty.stderr
