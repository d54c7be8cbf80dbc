"""InvokeThingsService, QueryDeviceServiceData and the job actions (pop_jobs.py) through the POP
front door, on real queued calls and a real job runner over SQLite; no device is online (calls stay
queued unless a test ends them in the store)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from alibabacloud_iot20180120 import models as tea

from methodhub.calls import CallOutcome
from methodhub.calls.delivery import QueuedCalls
from methodhub.calls.queued import CallState, QueuedCall
from methodhub.dialects.aliyun.pop import AliyunApi
from methodhub.dialects.aliyun.pop_auth import PopAuthenticator
from methodhub.dialects.aliyun.pop_jobs import PopJobs, task_status
from methodhub.errors import ErrorKind
from methodhub.job_runner import JobRunner
from methodhub.registry import SqliteRegistry
from tests.unit.aliyun.test_pop_api import NobodyOnline, StubEngine, post

PK = "a1Batch"


class NotReady:
    async def wait_ready(self, target: str, timeout: float) -> bool:
        return False


@pytest.fixture
async def api(registry: SqliteRegistry) -> AsyncIterator[tuple[AliyunApi, JobRunner]]:
    engine = StubEngine(CallOutcome(200, b"{}"))
    calls = QueuedCalls(registry, engine, NotReady(), registry, "n1", sweep_interval=3600)  # type: ignore[arg-type]
    runner = JobRunner(registry, calls, "n1", interval=3600)
    front = AliyunApi(engine, registry, PopAuthenticator(registry), NobodyOnline())  # type: ignore[arg-type]
    front.add_actions(PopJobs(runner).actions())
    for name in ("dev-1", "dev-2", "dev-3"):
        await registry.create_product_device(PK, name)
    await registry.create_product_device("a1Other", "dev-1")
    yield front, runner
    await runner.stop()
    await calls.stop()


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def tea_reads(model: Any, body: dict[str, Any]) -> None:
    """Every field of the answer is one the Tea SDK's response model (alibabacloud_iot20180120,
    the truth about Alibaba's names) reads: its round trip through the model keeps them all."""
    answer = _without_none({k: v for k, v in body.items() if k != "status"})
    assert model().from_map(answer).to_map() == answer


def names(*devices: str) -> dict[str, str]:
    return {f"DeviceName.{n}": name for n, name in enumerate(devices, 1)}


async def invoke(front: AliyunApi, registry: SqliteRegistry, **params: str) -> dict[str, Any]:
    return await post(front, registry, Action="InvokeThingsService", **params)


async def test_invoke_things_service_answers_at_once_with_one_queued_call_per_device(
    api: tuple[AliyunApi, JobRunner],
    registry: SqliteRegistry,
) -> None:
    front, _ = api
    body = await invoke(
        front,
        registry,
        ProductKey=PK,
        Identifier="Echo",
        Args='{"x": 1}',
        Qos="1",
        **names("dev-1", "dev-2", "dev-1"),
    )
    assert body == {"status": 200, "RequestId": body["RequestId"], "Success": True}
    tea_reads(tea.InvokeThingsServiceResponseBody, body)
    calls = await registry.list_calls(job_id=body["RequestId"])
    assert sorted(c.device_id for c in calls) == [f"{PK}:dev-1", f"{PK}:dev-2"]  # a repeat is one call
    assert {(c.method, c.payload, c.response_timeout, c.state) for c in calls} == {
        ("Echo", b'{"x": 1}', 8.0, CallState.QUEUED)
    }
    assert all(c.expires_time - c.created_time == pytest.approx(86_400) for c in calls)
    assert {c.attempts for c in calls} == {3}  # Qos 1: at least once
    at_most_once = await invoke(
        front, registry, ProductKey=PK, Identifier="Echo", Args="{}", **names("dev-3")
    )
    assert [c.attempts for c in await registry.list_calls(job_id=at_most_once["RequestId"])] == [1]


BAD_INVOKES: list[tuple[dict[str, str], str, str]] = [
    ({"Identifier": "Echo", "Args": "{}"}, "MissingParameter", "DeviceName.1"),
    (
        {"Identifier": "Echo", "Args": "{}", **names(*(f"d-{i:03}" for i in range(101)))},
        "InvalidParameter",
        "100",
    ),
    (
        {"Identifier": "Echo", "Args": "{}", **names("dev-1", "nobody")},
        "iot.device.NotExistedDevice",
        "nobody",
    ),
    ({"Identifier": "a/b", "Args": "{}", **names("dev-1")}, "InvalidParameter", "Identifier"),
    ({"Identifier": "Echo", "Args": "[1]", **names("dev-1")}, "InvalidParameter", "Args"),
    ({"Identifier": "Echo", "Args": "{}", "Qos": "2", **names("dev-1")}, "InvalidParameter", "Qos"),
]
"""InvokeThingsService parameters (beside ProductKey) refused, the Code, and a word of the message."""


async def _answer(registry: SqliteRegistry, call: QueuedCall, status: int, payload: bytes) -> None:
    sent = call.claimed("n1", time.time(), 10)
    assert await registry.update_call(sent, CallState.QUEUED)
    assert await registry.update_call(
        sent.finished(CallState.SUCCEEDED, time.time(), status=status, payload=payload), CallState.SENT
    )


async def test_query_device_service_data_serves_the_device_s_calls_from_the_store(
    api: tuple[AliyunApi, JobRunner],
    registry: SqliteRegistry,
) -> None:
    front, _ = api
    start = int(time.time() * 1000) - 1000
    for n in range(3):
        await invoke(
            front, registry, ProductKey=PK, Identifier="Echo", Args=f'{{"n": {n}}}', **names("dev-1")
        )
        await asyncio.sleep(0.002)  # one millisecond each: NextTime pages by the millisecond
    await invoke(front, registry, ProductKey=PK, Identifier="Other", Args="{}", **names("dev-1"))
    newest_echo = next(c for c in await registry.list_calls(device_id=f"{PK}:dev-1") if c.method == "Echo")
    await _answer(registry, newest_echo, 200, b'{"echo":2}')
    end = int(time.time() * 1000) + 1000
    query = {
        "Action": "QueryDeviceServiceData",
        "ProductKey": PK,
        "DeviceName": "dev-1",
        "Identifier": "Echo",
    }
    body = await post(front, registry, **query, StartTime=str(end), EndTime=str(start), PageSize="2")
    tea_reads(tea.QueryDeviceServiceDataResponseBody, body)
    data = body["Data"]
    infos = data["List"]["ServiceInfo"]
    assert [json.loads(i["InputData"]) for i in infos] == [{"n": 2}, {"n": 1}]  # newest first
    assert infos[0] == {
        "Identifier": "Echo",
        "Name": "Echo",
        "InputData": '{"n": 2}',
        "OutputData": '{"echo":2}',
        "Time": infos[0]["Time"],
    }
    assert infos[1]["OutputData"] == "" and start <= int(infos[1]["Time"]) <= end
    assert data["NextValid"] is True
    rest = await post(
        front, registry, **query, StartTime=str(data["NextTime"]), EndTime=str(start), PageSize="2"
    )
    assert [json.loads(i["InputData"]) for i in rest["Data"]["List"]["ServiceInfo"]] == [{"n": 0}]
    assert rest["Data"]["NextValid"] is False
    ascending = await post(front, registry, **query, StartTime=str(start), EndTime=str(end), Asc="1")
    assert [json.loads(i["InputData"]) for i in ascending["Data"]["List"]["ServiceInfo"]] == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]
    bad = await post(front, registry, **query, StartTime="soon", EndTime=str(end))
    assert bad["Code"] == "InvalidParameter" and "StartTime" in bad["ErrorMessage"]


def job_params(**extra: str) -> dict[str, str]:
    return {
        "Action": "CreateJob",
        "JobName": "reboot_all",
        "Type": "INVOKE_SERVICE",
        "JobDocument": json.dumps({"serviceIdentifier": "Reboot", "params": {"delay": 1}}),
        "TargetConfig": json.dumps({"targetType": "PRODUCT_KEY", "targetProduct": PK}),
        **extra,
    }


async def test_a_scheduled_job_shows_scheduled_and_is_cancelled(
    api: tuple[AliyunApi, JobRunner],
    registry: SqliteRegistry,
) -> None:
    front, runner = api
    later = int(time.time() * 1000) + 3_600_000
    created = await post(
        front,
        registry,
        **job_params(
            ScheduledTime=str(later),
            TimeoutConfig='{"inProgressTimeoutInMinutes": 5}',
            RolloutConfig='{"maximumPerMinute": 60}',
            Description="nightly",
        ),
    )
    assert created["Success"] is True and len(created["JobId"]) == 26
    tea_reads(tea.CreateJobResponseBody, created)
    job_id = created["JobId"]
    await runner.run_now()  # not due: nothing starts
    queried_body = await post(front, registry, Action="QueryJob", JobId=job_id)
    tea_reads(tea.QueryJobResponseBody, queried_body)
    queried = queried_body["Data"]
    assert queried == {
        "JobId": job_id,
        "JobName": "reboot_all",
        "Type": "INVOKE_SERVICE",
        "Status": "SCHEDULED",
        "ScheduledTime": later,
        "Description": "nightly",
        "JobDocument": '{"serviceIdentifier":"Reboot","params":{"delay":1}}',
        "TargetConfig": {"TargetType": "PRODUCT_KEY", "TargetProduct": PK},
        "RolloutConfig": {"MaximumPerMinute": 60},
        "TimeoutConfig": {"InProgressTimeoutInMinutes": 5},
        "UtcCreate": queried["UtcCreate"],
        "UtcModified": queried["UtcModified"],
    }
    job = await runner.get(job_id)
    assert (job.max_execution, job.request["ratePerSecond"]) == (300.0, 1.0)
    assert (await post(front, registry, Action="CancelJob", JobId=job_id))["Success"] is True
    assert (await post(front, registry, Action="QueryJob", JobId=job_id))["Data"]["Status"] == "CANCELLED"
    listed = await post(front, registry, Action="ListJob", PageSize="10", CurrentPage="1", Status="CANCELLED")
    assert (listed["Total"], [j["JobId"] for j in listed["Data"]["data"]]) == (1, [job_id])
    tea_reads(tea.ListJobResponseBody, listed)
    tea_reads(tea.CancelJobResponseBody, await post(front, registry, Action="CancelJob", JobId=job_id))
    assert (await post(front, registry, Action="ListJob", Status="IN_PROGRESS"))["Total"] == 0
    missing = await post(front, registry, Action="QueryJob", JobId="nope")
    assert (missing["status"], missing["Success"], missing["Code"]) == (200, False, "iot.job.NotExistedJob")
    no_task = await post(front, registry, Action="QueryTask", TaskId="nope")
    assert (no_task["status"], no_task["Success"], no_task["Code"]) == (200, False, "iot.call.NotExistedCall")


async def test_a_job_over_a_product_gives_its_devices_tasks(
    api: tuple[AliyunApi, JobRunner],
    registry: SqliteRegistry,
) -> None:
    front, runner = api
    job_id = (await post(front, registry, **job_params(RolloutConfig='{"maximumPerMinute": 1000}')))["JobId"]
    await runner.run_now()
    assert (await post(front, registry, Action="QueryJob", JobId=job_id))["Data"]["Status"] == "IN_PROGRESS"
    calls = await registry.list_calls(job_id=job_id)
    assert sorted(c.device_id for c in calls) == [
        f"{PK}:dev-1",
        f"{PK}:dev-2",
        f"{PK}:dev-3",
    ]  # not a1Other's
    assert {(c.method, c.payload, c.response_timeout) for c in calls} == {("Reboot", b'{"delay":1}', 8.0)}
    answered = next(c for c in calls if c.device_id == f"{PK}:dev-2")
    await _answer(registry, answered, 200, b'{"ok":true}')
    first = await post(front, registry, Action="ListTask", JobId=job_id, Limit="2")
    second = await post(
        front, registry, Action="ListTask", JobId=job_id, Limit="2", NextToken=first["NextToken"]
    )
    tea_reads(tea.ListTaskResponseBody, first)
    tasks = first["Data"]["data"] + second["Data"]["data"]
    assert "NextToken" not in second and len({t["TaskId"] for t in tasks}) == 3
    by_device = {t["DeviceName"]: t for t in tasks}
    assert (by_device["dev-2"]["Status"], by_device["dev-1"]["Status"]) == ("SUCCEEDED", "QUEUED")
    assert by_device["dev-2"]["JobName"] == "reboot_all" and by_device["dev-2"]["IotId"] == f"{PK}:dev-2"
    only = await post(front, registry, Action="ListTask", JobId=job_id, Status="SUCCEEDED")
    assert [t["DeviceName"] for t in only["Data"]["data"]] == ["dev-2"]
    per_device = await post(
        front, registry, Action="ListTask", Device=json.dumps({"ProductKey": PK, "DeviceName": "dev-2"})
    )
    assert [t["TaskId"] for t in per_device["Data"]["data"]] == [answered.call_id]
    task_body = await post(front, registry, Action="QueryTask", TaskId=answered.call_id)
    tea_reads(tea.QueryTaskResponseBody, task_body)
    task = task_body["Data"]
    assert (task["Status"], task["StatusDetail"], task["Message"]) == (
        "SUCCEEDED",
        '{"ok":true}',
        "The device answered with code 200.",
    )
    ended = await post(front, registry, Action="CancelJob", JobId=job_id)  # running: cancels what waits
    assert ended["Success"] is True
    states = {
        t["DeviceName"]: t["Status"]
        for t in (await post(front, registry, Action="ListTask", JobId=job_id))["Data"]["data"]
    }
    assert states == {"dev-1": "CANCELLED", "dev-2": "SUCCEEDED", "dev-3": "CANCELLED"}


async def test_a_job_over_listed_devices(api: tuple[AliyunApi, JobRunner], registry: SqliteRegistry) -> None:
    front, runner = api
    target = {
        "targetType": "DEVICE",
        "targetDevices": [
            {"productKey": PK, "deviceName": "dev-3"},
            {"productKey": "a1Other", "deviceName": "dev-1"},
        ],
    }
    job_id = (await post(front, registry, **job_params(TargetConfig=json.dumps(target))))["JobId"]
    await runner.run_now()
    assert sorted(c.device_id for c in await registry.list_calls(job_id=job_id)) == [
        f"{PK}:dev-3",
        "a1Other:dev-1",
    ]
    shown = (await post(front, registry, Action="QueryJob", JobId=job_id))["Data"]["TargetConfig"]
    assert shown["TargetDevices"]["targetDevices"][0] == {"ProductKey": PK, "DeviceName": "dev-3"}


BAD_JOBS: list[tuple[dict[str, str], str, str]] = [
    ({"Type": "SET_PROPERTY"}, "InvalidParameter", "INVOKE_SERVICE"),
    ({"JobName": "ab"}, "InvalidParameter", "JobName"),
    ({"ScheduledTime": "1557062301656"}, "InvalidParameter", "future"),
    ({"TargetConfig": '{"targetType": "GROUP", "targetGroup": "g"}'}, "InvalidParameter", "PRODUCT_KEY"),
    (
        {
            "TargetConfig": json.dumps(
                {"targetType": "DEVICE", "targetDevices": [{"productKey": PK, "deviceName": "ghost"}]}
            )
        },
        "iot.device.NotExistedDevice",
        "ghost",
    ),
    ({"JobDocument": '{"params": {}}'}, "InvalidParameter", "serviceIdentifier"),
    ({"RolloutConfig": '{"maximumPerMinute": 10}'}, "InvalidParameter", "50 to 1000"),
    (
        {"TimeoutConfig": '{"inProgressTimeoutInMinutes": 0}'},
        "InvalidParameter",
        "inProgressTimeoutInMinutes",
    ),
    ({"TargetConfig": ""}, "MissingParameter", "TargetConfig"),
]
"""CreateJob parameters (replacing job_params' own) refused, the Code, and a word of the message."""


@pytest.mark.parametrize(
    "params, code, message",
    [({"Action": "InvokeThingsService", "ProductKey": PK, **p}, c, m) for p, c, m in BAD_INVOKES]
    + [(job_params(**extra), c, m) for extra, c, m in BAD_JOBS],
)
async def test_errors_make_no_call_and_no_job(
    api: tuple[AliyunApi, JobRunner],
    registry: SqliteRegistry,
    params: dict[str, str],
    code: str,
    message: str,
) -> None:
    front, _ = api
    body = await post(front, registry, **params)
    assert body.get("Success") is not True and body["Code"] == code
    assert message in body.get("ErrorMessage", body.get("Message", ""))
    assert await registry.list_calls() == [] and await registry.list_jobs() == []


@pytest.mark.parametrize(
    "state, status, error, expected",
    [
        (CallState.QUEUED, None, None, "QUEUED"),
        (CallState.SENT, None, None, "SENT"),
        (CallState.SUCCEEDED, 200, None, "SUCCEEDED"),
        (CallState.SUCCEEDED, 460, None, "FAILED"),
        (CallState.FAILED, None, ErrorKind.CALL_TIMEOUT.spec.azure_name, "TIMED_OUT"),
        (CallState.FAILED, None, "DeviceDisconnected", "FAILED"),
        (CallState.EXPIRED, None, "Expired", "TIMED_OUT"),
        (CallState.CANCELLED, None, "Cancelled", "CANCELLED"),
    ],
)
def test_task_states(state: CallState, status: int | None, error: str | None, expected: str) -> None:
    call = QueuedCall(
        "c", "d", None, "m", b"{}", 8, 1, 0, 1, state=state, outcome_status=status, error_code=error
    )
    assert task_status(call) == expected
