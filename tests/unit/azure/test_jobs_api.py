"""The jobs front door's parsing (dialects/azure/jobs_api.py): what the SDKs send
(azure-jobs-twins-query.md §1.2-1.4)."""

from __future__ import annotations

from typing import Any

import pytest

from methodhub.calls.jobs import JobType
from methodhub.dialects.azure.jobs_api import parse_job, parse_time
from methodhub.errors import ErrorKind, HubError

NOW = 1_800_000_000.0
NODE = {
    "jobId": "job1",
    "type": "scheduleDeviceMethod",
    "cloudToDeviceMethod": {"methodName": "reboot", "payload": {"a": 1}, "responseTimeoutInSeconds": 30},
    "startTime": None,
    "queryCondition": "deviceId IN ['dev1','dev2']",
}


def test_nodes_job_without_start_or_limit_starts_now_for_an_hour() -> None:
    job = parse_job("job1", NODE, NOW)
    assert (job.type, job.start_time, job.max_execution) == (JobType.DEVICE_METHOD, NOW, 3600)
    assert job.request["methodName"] == "reboot" and job.request["payload"] == '{"a":1}'


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2030-01-01T12:00:00.123Z", 1893499200.123),
        ("2030-01-01T12:00:00.123456Z", 1893499200.123456),
        ("2030-01-01T12:00:00.1234567Z", 1893499200.123456),  # 7 digits (C#, the docs)
        ("2030-01-01T12:00:00", 1893499200.0),  # no zone: UTC
        ("2030-01-01T14:00:00+02:00", 1893499200.0),
    ],
)
def test_times_as_the_sdks_write_them(text: str, epoch: float) -> None:
    assert parse_time(text, "startTime") == pytest.approx(epoch, abs=1e-6)


def test_a_twin_job_keeps_what_it_patches() -> None:
    body = {
        "jobId": "j",
        "type": "scheduleUpdateTwin",
        "updateTwin": {"etag": "*", "tags": {"b": "44"}, "properties": {"desired": {"t": 98.6}}},
        "queryCondition": "*",
        "startTime": "2030-01-01T00:00:00.000Z",
        "maxExecutionTimeInSeconds": 120,
    }
    job = parse_job("j", body, NOW)
    assert job.request["tags"] == {"b": "44"} and job.request["desired"] == {"t": 98.6}
    assert job.max_execution == 120 and job.start_time > NOW


@pytest.mark.parametrize(
    ("job_id", "change", "words"),
    [
        ("job 2/x", {}, "job id"),
        ("job1", {"jobId": "other"}, "differs"),
        ("job1", {"jobId": 1}, "differs"),
        ("job1", {"type": "export"}, "type must be"),
        ("job1", {"queryCondition": ""}, "queryCondition"),
        ("job1", {"startTime": "tomorrow"}, "ISO-8601"),
        ("job1", {"maxExecutionTimeInSeconds": 0}, "positive"),
        ("job1", {"cloudToDeviceMethod": None}, "needs cloudToDeviceMethod"),
        ("job1", {"cloudToDeviceMethod": {"methodName": "m", "responseTimeoutInSeconds": 1}}, "5 to 300"),
    ],
)
def test_malformed_jobs_are_400(job_id: str, change: dict[str, Any], words: str) -> None:
    with pytest.raises(HubError) as refused:
        parse_job(job_id, {**NODE, **change}, NOW)
    assert refused.value.kind is ErrorKind.INVALID_ARGUMENT and words in refused.value.message


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("SELECT * FROM devices.jobs WHERE devices.jobs.jobId = 'job1'", "job1"),
        ("SELECT * FROM devices.jobs WHERE jobId='job1' AND devices.jobs.status = 'completed'", "job1"),
        ("SELECT * FROM devices.jobs WHERE devices.jobs.status = 'completed' AND jobId = 'j2'", "j2"),
        ("SELECT * FROM devices.jobs WHERE jobId = 'a' OR jobId = 'b'", None),
        ("SELECT * FROM devices.jobs", None),
    ],
)
def test_the_job_a_devices_jobs_query_names(text: str, named: str | None) -> None:
    """Rows are read for that job alone when the WHERE pins it (the documented query)."""
    from methodhub.dialects.azure.jobs_api import _named_job
    from methodhub.query import parse

    assert _named_job(parse(text).where) == named


def test_another_front_doors_call_job_shows_as_a_method_job_and_cannot_be_made_here() -> None:
    from methodhub.calls.jobs import Job
    from methodhub.dialects.azure.jobs_api import job_json

    with pytest.raises(HubError) as raised:
        parse_job("j1", {"type": "deviceCalls", "queryCondition": "*"}, 0.0)
    assert raised.value.kind is ErrorKind.INVALID_ARGUMENT
    request = {
        "methodName": "Echo",
        "payload": "{}",
        "responseTimeoutInSeconds": 8.0,
        "aliyun": {"JobName": "x"},
    }
    job = Job("j2", JobType.DEVICE_CALLS, "*", request, 0.0, 0.0, 60.0)
    shown = job_json(job, {})
    assert shown["type"] == "deviceCalls"
    assert shown["cloudToDeviceMethod"] == {
        "methodName": "Echo",
        "payload": {},
        "responseTimeoutInSeconds": 8.0,
    }
