"""Alibaba's batch service calls end to end: the legacy ``aliyun-python-sdk-iot`` (v2 signature) as
the backend, unmodified Link SDK devices, a real hub. InvokeThingsService over online, offline
(connects later) and slow devices, results read back (``GET /calls?jobId=``, QueryDeviceServiceData);
CreateJob scheduled ahead and cancelled; CreateJob over listed devices that runs, its tasks listed;
and the Tea SDK (``alibabacloud_iot20180120``) reading the same answers into its models."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_iot20180120 import models as tea
from alibabacloud_iot20180120.client import Client
from alibabacloud_tea_openapi.models import Config
from aliyunsdkcore.client import AcsClient
from aliyunsdkiot.request.v20180120.CancelJobRequest import CancelJobRequest
from aliyunsdkiot.request.v20180120.CreateJobRequest import CreateJobRequest
from aliyunsdkiot.request.v20180120.InvokeThingsServiceRequest import InvokeThingsServiceRequest
from aliyunsdkiot.request.v20180120.ListJobRequest import ListJobRequest
from aliyunsdkiot.request.v20180120.ListTaskRequest import ListTaskRequest
from aliyunsdkiot.request.v20180120.QueryDeviceServiceDataRequest import QueryDeviceServiceDataRequest
from aliyunsdkiot.request.v20180120.QueryJobRequest import QueryJobRequest
from aliyunsdkiot.request.v20180120.QueryTaskRequest import QueryTaskRequest

from tests.integration.aliyun.support import LinkkitDevice, call, create_product_device
from tests.support import Backend, HubProcess, parse_cs

pytestmark = pytest.mark.timeout(180)

PK = "a1Batch"


def start_device(
    hub: HubProcess, linkkit: Path, tsl: str, name: str, secret: str, **extra: Any
) -> LinkkitDevice:
    config = {
        "host": "127.0.0.1",
        "port": hub.ports["mqtt"],
        "product_key": PK,
        "device_name": name,
        "device_secret": secret,
        "mode": "echo",
        "tsl": tsl,
        "say_name": True,
        **extra,
    }
    return LinkkitDevice(linkkit, config).wait_ready()


@pytest.fixture(scope="module")
def secrets(aliyun_hub: HubProcess) -> dict[str, str]:
    return {
        name: create_product_device(aliyun_hub, PK, name)["DeviceSecret"]
        for name in ("online-1", "online-2", "slow-1", "late-1")
    }


@pytest.fixture(scope="module")
def devices(
    aliyun_hub: HubProcess, linkkit: Path, tsl_file: str, secrets: dict[str, str]
) -> Iterator[dict[str, LinkkitDevice]]:
    started: dict[str, LinkkitDevice] = {}
    try:
        for name in ("online-1", "online-2"):
            started[name] = start_device(aliyun_hub, linkkit, tsl_file, name, secrets[name])
        started["slow-1"] = start_device(aliyun_hub, linkkit, tsl_file, "slow-1", secrets["slow-1"], delay=3)
        yield started
    finally:
        for device in started.values():
            device.close()


def calls_of(backend: Backend, job_id: str) -> list[dict[str, Any]]:
    response = backend.http.get("/calls", params={"jobId": job_id}, headers={"Authorization": backend.token})
    assert response.status_code == 200, response.text
    return response.json()["calls"]  # type: ignore[no-any-return]


def wait_for(check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.25)


def test_invoke_things_service_over_online_offline_and_slow_devices(
    aliyun_hub: HubProcess,
    owner: AcsClient,
    linkkit: Path,
    tsl_file: str,
    secrets: dict[str, str],
    devices: dict[str, LinkkitDevice],
) -> None:
    request = InvokeThingsServiceRequest()
    request.set_ProductKey(PK)
    request.set_DeviceNames(["online-1", "slow-1", "late-1", "online-2"])
    request.set_Identifier("Echo")
    request.set_Args(json.dumps({"x": 1}))
    started = time.monotonic()
    answer = call(owner, request)
    assert time.monotonic() - started < 2  # at once: the slow device answers in 3 s
    assert set(answer) == {"RequestId", "Success"} and answer["Success"] is True
    backend = Backend(aliyun_hub)
    try:
        assert len(calls_of(backend, answer["RequestId"])) == 4

        def ended(names: set[str]) -> dict[str, dict[str, Any]] | None:
            by_device = {c["deviceId"].split(":", 1)[1]: c for c in calls_of(backend, answer["RequestId"])}
            done = {n: c for n, c in by_device.items() if c["state"] not in ("queued", "sent")}
            return by_device if names <= set(done) else None

        first = wait_for(lambda: ended({"online-1", "online-2", "slow-1"}))
        assert first is not None, calls_of(backend, answer["RequestId"])
        assert first["late-1"]["state"] == "queued"  # offline: waiting for it
        for name in ("online-1", "online-2", "slow-1"):
            assert first[name]["state"] == "succeeded" and first[name]["outcome"]["status"] == 200
            assert first[name]["outcome"]["payload"]["device"] == name
            assert first[name]["outcome"]["payload"]["echo"] == {"x": 1}
        late = start_device(aliyun_hub, linkkit, tsl_file, "late-1", secrets["late-1"])
        try:
            late.next_event("service", identifier="Echo")
            final = wait_for(lambda: ended({"online-1", "online-2", "slow-1", "late-1"}))
            assert final is not None and final["late-1"]["state"] == "succeeded"
            assert final["late-1"]["outcome"]["payload"]["device"] == "late-1"
        finally:
            late.close()
    finally:
        backend.close()
    query = QueryDeviceServiceDataRequest()
    query.set_ProductKey(PK)
    query.set_DeviceName("slow-1")
    query.set_Identifier("Echo")
    query.set_StartTime(int(time.time() * 1000) + 1000)
    query.set_EndTime(int(time.time() * 1000) - 120_000)
    records = call(owner, query)["Data"]["List"]["ServiceInfo"]
    assert json.loads(records[0]["InputData"]) == {"x": 1}
    assert json.loads(records[0]["OutputData"])["device"] == "slow-1"


def create_job(owner: AcsClient, **fields: Any) -> str:
    request = CreateJobRequest()
    request.set_JobName(fields.get("name", "batch_echo"))
    request.set_Type("INVOKE_SERVICE")
    request.set_JobDocument(json.dumps({"serviceIdentifier": "Echo", "params": {"job": True}}))
    request.set_TargetConfig(
        json.dumps(fields.get("target", {"targetType": "PRODUCT_KEY", "targetProduct": PK}))
    )
    if "scheduled" in fields:
        request.set_ScheduledTime(fields["scheduled"])
    request.set_TimeoutConfig(json.dumps({"inProgressTimeoutInMinutes": 1}))
    body = call(owner, request)
    assert body["Success"] is True, body
    return str(body["JobId"])


def query_job(owner: AcsClient, job_id: str) -> dict[str, Any]:
    request = QueryJobRequest()
    request.set_JobId(job_id)
    return call(owner, request)["Data"]  # type: ignore[no-any-return]


def test_a_job_scheduled_ahead_is_cancelled(owner: AcsClient, devices: dict[str, LinkkitDevice]) -> None:
    later = int(time.time() * 1000) + 3_600_000
    job_id = create_job(owner, name="later_job", scheduled=later)
    shown = query_job(owner, job_id)
    assert (shown["Status"], shown["ScheduledTime"], shown["JobName"]) == ("SCHEDULED", later, "later_job")
    cancel = CancelJobRequest()
    cancel.set_JobId(job_id)
    assert call(owner, cancel)["Success"] is True
    assert query_job(owner, job_id)["Status"] == "CANCELLED"
    listing = ListJobRequest()
    listing.set_PageSize(10)
    listing.set_CurrentPage(1)
    listing.set_Status("CANCELLED")
    assert job_id in [j["JobId"] for j in call(owner, listing)["Data"]["data"]]
    tasks = ListTaskRequest()
    tasks.set_JobId(job_id)
    tasks.set_Limit(10)
    assert call(owner, tasks)["Data"]["data"] == []  # never started: no device was called


def test_a_job_over_listed_devices_runs_and_its_tasks_are_listed(
    owner: AcsClient, devices: dict[str, LinkkitDevice]
) -> None:
    target = {
        "targetType": "DEVICE",
        "targetDevices": [{"productKey": PK, "deviceName": n} for n in ("online-1", "online-2", "slow-1")],
    }
    job_id = create_job(owner, name="now_job", target=target)
    assert wait_for(lambda: query_job(owner, job_id)["Status"] == "COMPLETED"), query_job(owner, job_id)
    request = ListTaskRequest()
    request.set_JobId(job_id)
    request.set_Limit(2)
    first = call(owner, request)
    request.set_NextToken(first["NextToken"])
    second = call(owner, request)
    tasks = first["Data"]["data"] + second["Data"]["data"]
    assert sorted(t["DeviceName"] for t in tasks) == ["online-1", "online-2", "slow-1"]
    assert {t["Status"] for t in tasks} == {"SUCCEEDED"} and {t["JobId"] for t in tasks} == {job_id}
    query = QueryTaskRequest()
    query.set_TaskId(tasks[0]["TaskId"])
    task = call(owner, query)["Data"]
    assert task["Status"] == "SUCCEEDED" and json.loads(task["StatusDetail"])["echo"] == {"job": True}


def test_the_tea_sdk_reads_the_answers_into_its_models(
    aliyun_hub: HubProcess, devices: dict[str, LinkkitDevice]
) -> None:
    """``alibabacloud_iot20180120`` (v2 signature: the default ACS3 is another change's), its typed
    requests and response models: what its users read is what the hub answered."""
    key = parse_cs(aliyun_hub.cli("connection-string", "--policy", "iothubowner").stdout)["SharedAccessKey"]
    client = Client(
        Config(
            access_key_id="iothubowner",
            access_key_secret=key,
            endpoint=f"127.0.0.1:{aliyun_hub.ports['http']}",
            protocol="http",
            region_id="cn-shanghai",
            signature_algorithm="v2",
        )
    )
    invoked = client.invoke_things_service(
        tea.InvokeThingsServiceRequest(
            product_key=PK, device_name=["online-1", "online-2"], identifier="Echo", args='{"tea": 1}'
        )
    ).body
    assert invoked.success is True and invoked.request_id
    target = {"targetType": "DEVICE", "targetDevices": [{"productKey": PK, "deviceName": "online-1"}]}
    created = client.create_job(
        tea.CreateJobRequest(
            job_name="tea_job",
            type="INVOKE_SERVICE",
            job_document=json.dumps({"serviceIdentifier": "Echo", "params": {"tea": 2}}),
            target_config=target,
            rollout_config={"maximumPerMinute": 500},
        )
    ).body
    assert created.success is True and created.job_id

    def status() -> str:
        return str(client.query_job(tea.QueryJobRequest(job_id=created.job_id)).body.data.status)

    assert wait_for(lambda: status() == "COMPLETED"), status()
    job = client.query_job(tea.QueryJobRequest(job_id=created.job_id)).body.data
    assert (job.job_name, job.type, job.rollout_config.maximum_per_minute) == (
        "tea_job",
        "INVOKE_SERVICE",
        500,
    )
    assert [(d.product_key, d.device_name) for d in job.target_config.target_devices.target_devices] == [
        (PK, "online-1")
    ]
    tasks = client.list_task(tea.ListTaskRequest(job_id=created.job_id, limit=10)).body.data.data
    assert [(t.device_name, t.status) for t in tasks] == [("online-1", "SUCCEEDED")]
    task = client.query_task(tea.QueryTaskRequest(task_id=tasks[0].task_id)).body.data
    assert json.loads(task.status_detail)["echo"] == {"tea": 2}
    listed = client.list_job(tea.ListJobRequest(page_size=50, current_page=1)).body
    assert created.job_id in [j.job_id for j in listed.data.data] and listed.total >= 1
