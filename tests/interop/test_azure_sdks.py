"""Microsoft's unmodified Azure IoT SDKs (azure-iot-device 2.14.0, azure-iot-hub 2.7.0) against methodhub.

Devices connect with ``IoTHubDeviceClient`` / ``IoTHubModuleClient`` over MQTT/TLS and MQTT over
WebSocket/TLS, trusting the hub's development CA (``server_verification_cert``), through the CONNECT
proxy explained in ``support.py`` (the SDK only dials 8883 and 443). Backends use
``IoTHubRegistryManager`` over HTTPS with ``HostName=localhost:{port}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.interop.support import Agent, AgentError, ConnectProxy
from tests.support import Backend, HubProcess, parse_cs

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def connect(azure: Agent, tls_hub: HubProcess, proxy: ConnectProxy) -> Iterator[Any]:
    """``connect(name, cs, **options)``: an SDK device client, shut down after the test."""
    names: list[str] = []
    ca = tls_hub.ca_file.read_text()

    def open_client(name: str, cs: str, **options: Any) -> dict[str, Any]:
        names.append(name)
        return azure.call(
            "device_connect", name=name, cs=cs, ca=ca, proxy=["127.0.0.1", proxy.port], **options
        )

    yield open_client
    for name in names:
        try:
            azure.call("device_shutdown", name=name)
        except AgentError:
            pass


def _create(tls_hub: HubProcess, device_id: str, *extra: str) -> str:
    return tls_hub.cli("device", "create", device_id, *extra).stdout.strip()


def _azure_error(exc: AgentError) -> dict[str, Any]:
    """The Azure error envelope: {"Message": "<JSON text>", "ExceptionMessage": ""}."""
    assert exc.body is not None
    return json.loads(json.loads(exc.body)["Message"])


PAYLOADS = {
    "object": {"delay": 5, "nested": {"list": [1, 2, 3]}},
    "list": [1, "two", None, {"three": 3}],
    "string": "just a string",
    "null": None,
    "120KB": {"blob": "x" * (120 * 1024)},
}


def test_device_over_mqtt_tls_answers_payloads_of_every_shape(
    azure: Agent, tls_hub: HubProcess, proxy: ConnectProxy, connect: Any, device_id: str
) -> None:
    cs = _create(tls_hub, device_id)
    assert connect("tls", cs)["connected"] is True
    assert "localhost:8883" in proxy.targets  # the SDK dialed Azure's MQTT/TLS port

    for shape, value in PAYLOADS.items():
        result = azure.call("service_invoke", device_id=device_id, method="echo", payload={"return": value})
        assert result == {"status": 200, "payload": value}, shape

    # the request payload of each shape reaches the handler unchanged (echoed back)
    result = azure.call("service_invoke", device_id=device_id, method="reboot", payload=[1, {"a": "b"}])
    assert result == {"status": 200, "payload": {"method": "reboot", "payload": [1, {"a": "b"}]}}
    # azure-iot-hub sends payload None as "" (wire doc §2.4); the device gets ""
    result = azure.call("service_invoke", device_id=device_id, method="empty", payload=None)
    assert result == {"status": 200, "payload": {"method": "empty", "payload": ""}}
    # the device's own status code is passed through
    result = azure.call("service_invoke", device_id=device_id, method="fail", payload={"status": 417})
    assert result["status"] == 417


def test_device_over_websocket_answers_methods(
    azure: Agent, tls_hub: HubProcess, proxy: ConnectProxy, connect: Any, device_id: str
) -> None:
    cs = _create(tls_hub, device_id)
    assert connect("ws", cs, websockets=True)["connected"] is True
    assert "localhost:443" in proxy.targets  # MQTT over WebSocket on Azure's HTTPS port

    result = azure.call("service_invoke", device_id=device_id, method="ping", payload={"n": 1})
    assert result == {"status": 200, "payload": {"method": "ping", "payload": {"n": 1}}}
    big = {"return": "y" * (120 * 1024)}
    assert (
        azure.call("service_invoke", device_id=device_id, method="big", payload=big)["payload"]
        == big["return"]
    )


def test_module_client_and_module_methods(
    azure: Agent, tls_hub: HubProcess, connect: Any, device_id: str
) -> None:
    _create(tls_hub, device_id)
    module = azure.call(
        "service_create_module", device_id=device_id, module_id="filter", primary="", secondary=""
    )
    assert module["module_id"] == "filter" and module["primary_key"]
    cs = f"HostName=localhost;DeviceId={device_id};ModuleId=filter;SharedAccessKey={module['primary_key']}"
    assert connect("module", cs, module=True)["connected"] is True

    result = azure.call(
        "service_invoke", device_id=device_id, module_id="filter", method="calibrate", payload={"x": 1}
    )
    assert result == {"status": 200, "payload": {"method": "calibrate", "payload": {"x": 1}}}
    # the device itself is not connected: the module's connection does not make it callable
    with pytest.raises(AgentError) as excinfo:
        azure.call("service_invoke", device_id=device_id, method="calibrate", payload={})
    assert excinfo.value.status_code == 404

    # the CLI's `device create --module` makes a module the SDK connects with, too
    cli_cs = _create(tls_hub, device_id, "--module", "cli-made")
    assert parse_cs(cli_cs)["ModuleId"] == "cli-made"
    assert connect("module2", cli_cs, module=True)["connected"] is True
    result = azure.call("service_invoke", device_id=device_id, module_id="cli-made", method="m", payload=1)
    assert result["payload"] == {"method": "m", "payload": 1}


def test_offline_device_is_404_device_not_online(azure: Agent, tls_hub: HubProcess, device_id: str) -> None:
    _create(tls_hub, device_id)
    with pytest.raises(AgentError) as excinfo:
        azure.call("service_invoke", device_id=device_id, method="reboot", payload={})
    # at once: waiting for the response timeout would have answered 504101
    assert excinfo.value.error == "HttpOperationError" and excinfo.value.status_code == 404
    assert _azure_error(excinfo.value)["errorCode"] == 404103

    with pytest.raises(AgentError) as excinfo:
        azure.call("service_invoke", device_id=device_id + "-unknown", method="reboot", payload={})
    assert excinfo.value.status_code == 404
    assert _azure_error(excinfo.value)["errorCode"] == 404001


def test_slow_handler_is_504_gateway_timeout(
    azure: Agent, tls_hub: HubProcess, connect: Any, device_id: str
) -> None:
    connect("slow", _create(tls_hub, device_id))
    started = time.monotonic()
    with pytest.raises(AgentError) as excinfo:
        azure.call(
            "service_invoke", device_id=device_id, method="slow", payload={"sleep": 7}, response_timeout=5
        )
    elapsed = time.monotonic() - started
    assert elapsed > 4.5  # it waited the response timeout (5 s); the handler's answer (at 7 s) would be a 200
    assert excinfo.value.status_code == 504
    assert _azure_error(excinfo.value)["errorCode"] == 504101


def test_token_renewal_reconnect_keeps_methods_working(
    azure: Agent, tls_hub: HubProcess, connect: Any, device_id: str
) -> None:
    """sastoken_ttl=130: the SDK renews 120 s before expiry, i.e. after 10 s, by DISCONNECT + CONNECT
    with a new token and no SUBSCRIBE (wire doc §1.8). Methods must keep arriving."""
    connect("renew", _create(tls_hub, device_id), sastoken_ttl=130)
    assert azure.call("service_invoke", device_id=device_id, method="before", payload=1)["status"] == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        kinds = [e["event"] for e in azure.call("device_events", name="renew")]
        if "disconnected" in kinds and kinds[-1] == "connected" and kinds.count("connected") >= 1:
            break
        time.sleep(0.5)
    kinds = [e["event"] for e in azure.call("device_events", name="renew")]
    assert "disconnected" in kinds, kinds  # the renewal really reconnected
    result = azure.call("service_invoke", device_id=device_id, method="after", payload=2, connect_timeout=5)
    assert result == {"status": 200, "payload": {"method": "after", "payload": 2}}


def test_wrong_key_is_a_credential_error(
    azure: Agent, tls_hub: HubProcess, connect: Any, device_id: str
) -> None:
    cs = _create(tls_hub, device_id)
    wrong = cs.rsplit("SharedAccessKey=", 1)[0] + "SharedAccessKey=" + "A" * 43 + "="
    with pytest.raises(AgentError) as excinfo:
        connect("wrong", wrong)
    assert excinfo.value.error == "CredentialError"


def test_device_twin_and_cloud_to_device_subscriptions_work_beside_methods(
    azure: Agent, tls_hub: HubProcess, connect: Any, device_id: str
) -> None:
    connect("twin", _create(tls_hub, device_id), messages=True)
    twin = azure.call("device_get_twin", name="twin")
    assert twin["desired"]["$version"] == 1 and twin["reported"]["$version"] == 1
    azure.call("device_patch_reported", name="twin", patch={"fw": "1.0"})  # stored: 204
    twin = azure.call("device_get_twin", name="twin")
    assert twin["reported"]["fw"] == "1.0" and twin["reported"]["$version"] == 2
    assert azure.call("service_get_twin", device_id=device_id)["reported"]["fw"] == "1.0"
    result = azure.call("service_invoke", device_id=device_id, method="still", payload=None)
    assert result["status"] == 200


def test_registry_create_get_update_delete_with_the_service_sdk(azure: Agent, device_id: str) -> None:
    primary, secondary = (
        "cHJpbWFyeS1rZXktb2YtMzItYnl0ZXMtZm9yLXRlc3Q=",
        "c2Vjb25kYXJ5LWtleS0tMzItYnl0ZXMtZm9yLXRlc3Q=",
    )
    created = azure.call(
        "service_create_device", device_id=device_id, primary=primary, secondary=secondary, status="enabled"
    )
    assert created["device_id"] == device_id and created["primary_key"] == primary and created["etag"]
    got = azure.call("service_get_device", device_id=device_id)
    assert got["etag"] == created["etag"] and got["connection_state"] == "Disconnected"

    updated = azure.call(
        "service_update_device",
        device_id=device_id,
        etag=got["etag"],
        primary=secondary,
        secondary=primary,
        status="disabled",
    )
    assert updated["status"] == "disabled" and updated["primary_key"] == secondary
    assert updated["etag"] != got["etag"]

    with pytest.raises(AgentError) as excinfo:  # duplicate
        azure.call("service_create_device", device_id=device_id, primary=primary, secondary=secondary)
    assert excinfo.value.status_code == 409

    azure.call(
        "service_create_module", device_id=device_id, module_id="m1", primary=primary, secondary=secondary
    )
    assert azure.call("service_get_module", device_id=device_id, module_id="m1")["primary_key"] == primary
    azure.call("service_delete_module", device_id=device_id, module_id="m1")
    with pytest.raises(AgentError) as excinfo:
        azure.call("service_get_module", device_id=device_id, module_id="m1")
    assert excinfo.value.status_code == 404

    azure.call("service_delete_device", device_id=device_id)
    with pytest.raises(AgentError) as excinfo:
        azure.call("service_get_device", device_id=device_id)
    assert excinfo.value.status_code == 404


def test_twins_with_the_service_sdk(azure: Agent, tls_hub: HubProcess, device_id: str) -> None:
    """IoTHubRegistryManager's twin calls: get, update (merge, a null removes), replace, etags
    (``If-Match: "*"`` by default, a stale one is 412), module twins, reported is the device's."""
    _create(tls_hub, device_id)
    twin = azure.call("service_get_twin", device_id=device_id)
    assert twin["device_id"] == device_id and twin["etag"] and twin["connection_state"] == "Disconnected"
    assert twin["tags"] in (None, {}) and twin["desired"]["$version"] == 1
    updated = azure.call(
        "service_update_twin", device_id=device_id, tags={"site": "A"}, desired={"interval": 30, "x": 1}
    )
    assert updated["tags"] == {"site": "A"} and updated["desired"]["interval"] == 30
    assert updated["desired"]["$version"] == 2 and updated["etag"] != twin["etag"]
    merged = azure.call("service_update_twin", device_id=device_id, desired={"x": None}, etag=updated["etag"])
    assert "x" not in merged["desired"] and merged["desired"]["interval"] == 30
    with pytest.raises(AgentError) as excinfo:  # a stale etag
        azure.call("service_update_twin", device_id=device_id, tags={"a": 1}, etag=updated["etag"])
    assert excinfo.value.status_code == 412
    replaced = azure.call("service_replace_twin", device_id=device_id, tags={"b": 2})
    assert replaced["tags"] == {"b": 2} and {k for k in replaced["desired"] if not k.startswith("$")} == set()
    assert azure.call("service_get_twin", device_id=device_id) == replaced
    tls_hub.cli("device", "create", device_id, "--module", "m1")
    module = azure.call("service_update_twin", device_id=device_id, module_id="m1", tags={"m": True})
    assert module["module_id"] == "m1" and module["tags"] == {"m": True}
    with pytest.raises(AgentError) as excinfo:
        azure.call("service_get_twin", device_id="nobody-" + device_id)
    assert excinfo.value.status_code == 404


def test_a_device_is_notified_of_desired_property_changes(
    azure: Agent, tls_hub: HubProcess, connect: Any, device_id: str
) -> None:
    """``on_twin_desired_properties_patch_received``: the service's PATCH reaches the device as the
    patch with its ``$version`` (through the change feed, within a poll interval)."""
    connect("twin", _create(tls_hub, device_id), desired=True)
    azure.call("service_update_twin", device_id=device_id, desired={"interval": 30})
    azure.call("service_update_twin", device_id=device_id, desired={"interval": None, "mode": "eco"})
    deadline = time.monotonic() + 20
    while (
        len(
            patches := [
                e["patch"] for e in azure.call("device_events", name="twin") if e["event"] == "desired"
            ]
        )
        < 2
    ):
        assert time.monotonic() < deadline, patches
        time.sleep(0.1)
    assert patches == [{"interval": 30, "$version": 2}, {"interval": None, "mode": "eco", "$version": 3}]
    twin = azure.call("device_get_twin", name="twin")
    assert twin["desired"]["mode"] == "eco" and "interval" not in twin["desired"]


def test_query_iot_hub_with_the_service_sdk(azure: Agent, tls_hub: HubProcess, device_id: str) -> None:
    """``query_iot_hub``: a WHERE on tags and reported properties, a projection, COUNT, pages of
    ``max_item_count`` with the continuation token, and a bad query refused with its position."""
    ids = [f"{device_id}-{n}" for n in range(5)]
    for n, one in enumerate(ids):
        _create(tls_hub, one)
        azure.call("service_update_twin", device_id=one, tags={"fleet": device_id, "n": n})
    found = azure.call(
        "service_query", query=f"SELECT * FROM devices WHERE tags.fleet = '{device_id}' AND tags.n >= 2"
    )
    assert sorted(item["device_id"] for item in found["items"]) == ids[2:] and found["type"] == "Twin"
    # The SDK reads every row as a Twin ("device twins only"), so COUNT's raw row is asked directly.
    backend = Backend(tls_hub)
    try:
        counted = backend.http.post(
            "/devices/query?api-version=2021-04-12",
            json={"query": f"SELECT COUNT() AS n FROM devices WHERE tags.fleet = '{device_id}'"},
            headers={"Authorization": backend.token},
        )
    finally:
        backend.close()
    assert counted.json() == [{"n": 5}] and counted.headers["x-ms-item-type"] == "Raw"
    seen: list[str] = []
    continuation = None
    for _ in range(5):
        page = azure.call(
            "service_query",
            query=f"SELECT deviceId FROM devices WHERE tags.fleet = '{device_id}'",
            max_items=2,
            continuation=continuation,
        )
        seen += [item["device_id"] for item in page["items"]]  # read back as Twin objects
        continuation = page["continuation"]
        if not continuation:
            break
    assert seen == ids
    with pytest.raises(AgentError) as excinfo:
        azure.call("service_query", query="SELECT * FROM devices WHERE tags.n >")
    assert excinfo.value.status_code == 400


def _wait_job(azure: Agent, job_id: str, done: Any, timeout: float = 40) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = azure.call("service_get_job", job_id=job_id)
        if done(job):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.3)


def test_jobs_with_the_service_sdk(azure: Agent, tls_hub: HubProcess, connect: Any, device_id: str) -> None:
    """IoTHubJobManager: a method job reaches the online device at once and a sleepy one when it
    connects during the job (each device a queued call until the job's end); a twin job patches
    every selected twin; per-device rows through devices.jobs; a future job cancelled."""
    online, sleepy = f"{device_id}-a", f"{device_id}-b"
    keys = {one: _create(tls_hub, one) for one in (online, sleepy)}
    for one in keys:
        azure.call("service_update_twin", device_id=one, tags={"fleet": device_id})
    connect("a", keys[online])
    fleet = f"tags.fleet = '{device_id}'"
    job_id = f"m-{device_id}"[:128]
    job = azure.call("service_create_job", job_id=job_id, condition=fleet, method="reboot", payload={"x": 1})
    assert (job["status"], job["type"]) == ("queued", "scheduleDeviceMethod")
    half = _wait_job(azure, job_id, lambda j: (j["statistics"] or {}).get("succeeded_count") == 1)
    assert half["status"] == "running" and half["statistics"]["pending_count"] == 1
    connect("b", keys[sleepy])  # the sleepy device comes online while the job runs
    done = _wait_job(azure, job_id, lambda j: j["status"] == "completed")
    assert done["statistics"]["succeeded_count"] == 2 and done["statistics"]["device_count"] == 2
    backend = Backend(tls_hub)
    try:
        rows = backend.http.post(
            "/devices/query?api-version=2021-04-12",
            json={"query": f"SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '{job_id}'"},
            headers={"Authorization": backend.token},
        )
        calls = backend.http.get("/calls", params={"jobId": job_id}, headers={"Authorization": backend.token})
    finally:
        backend.close()
    assert rows.headers["x-ms-item-type"] == "DeviceJob"
    # the job's calls in the history: made by the job, for the policy that created it
    assert {(c["frontDoor"], c["caller"]) for c in calls.json()["calls"]} == {("job", "iothubowner")}
    assert sorted(r["deviceId"] for r in rows.json()) == sorted(keys)
    assert {r["status"] for r in rows.json()} == {"completed"}
    reply = rows.json()[0]["outcome"]["deviceMethodResponse"]
    assert reply["status"] == 200 and reply["payload"]["payload"] == {"x": 1}

    twin_job = f"t-{device_id}"[:128]
    azure.call("service_create_job", job_id=twin_job, condition=fleet, tags={"patched": True})
    _wait_job(azure, twin_job, lambda j: j["status"] == "completed")
    assert all(azure.call("service_get_twin", device_id=one)["tags"]["patched"] is True for one in keys)

    later = f"c-{device_id}"[:128]
    azure.call("service_create_job", job_id=later, condition="*", method="m", start_in=3600)
    assert azure.call("service_cancel_job", job_id=later)["status"] == "cancelled"
    with pytest.raises(AgentError) as excinfo:
        azure.call("service_create_job", job_id=later, condition="*", method="m")
    assert excinfo.value.status_code == 409
    with pytest.raises(AgentError) as excinfo:
        azure.call("service_get_job", job_id="no-such-job")
    assert excinfo.value.status_code == 404
