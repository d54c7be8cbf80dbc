"""The job runner (job_runner.py) against the in-memory hub: a real Gateway, SQLite registry,
LocalRouter, CallEngine and queued calls; devices on in-memory MQTT connections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from methodhub import job_runner as job_runner_module
from methodhub.calls.delivery import QueuedCalls
from methodhub.calls.jobs import Job, JobStatus, JobType
from methodhub.calls.queued import CallState
from methodhub.dialects.azure.topics import parse_request_topic, response_topic
from methodhub.errors import ErrorKind, HubError
from methodhub.job_runner import JobRunner
from methodhub.mqtt import Publish
from methodhub.registry import SqliteRegistry
from methodhub.registry.twins import patch_twin
from tests.unit.gateway.azure_hub import Hub, azure_connect

T0 = 1_800_000_000.0


@pytest.fixture
async def runner(hub: Hub, registry: SqliteRegistry) -> AsyncIterator[JobRunner]:
    calls = QueuedCalls(registry, hub.engine, hub.router, registry, "n1", sweep_interval=3600)
    runner = JobRunner(registry, calls, "n1", interval=3600)
    yield runner
    await runner.stop()
    await calls.stop()


def _job(job_id: str, condition: str = "*", start: float | None = None, **fields: Any) -> Job:
    start = time.time() if start is None else start
    request = {"methodName": "reboot", "payload": '{"n":1}', "responseTimeoutInSeconds": 30, "caller": "ops"}
    return Job(job_id, JobType.DEVICE_METHOD, condition, request, start, start, 60.0, **fields)


async def _fleet(registry: SqliteRegistry, n: int = 3) -> None:
    for i in range(n):
        await registry.create_identity(f"d{i}")
        site = "A" if i < 2 else "B"
        await registry.update_twin(f"d{i}", None, lambda t, s=site: patch_twin(t, {"site": s}, None, T0))


async def test_a_method_job_gives_each_selected_device_a_queued_call(
    runner: JobRunner, registry: SqliteRegistry
) -> None:
    await _fleet(registry)
    await runner.create(_job("j1", "tags.site = 'A'"))
    await runner.run_now()
    job = await runner.get("j1")
    assert (job.status, job.device_count, job.owner) == (JobStatus.RUNNING, 2, None)
    calls = await registry.list_calls(job_id="j1")
    assert sorted(c.device_id for c in calls) == ["d0", "d1"]
    assert {(c.caller, c.front_door) for c in calls} == {("ops", "job")}  # who created the job
    deadline = job.start_time + 60
    assert all(
        c.state is CallState.QUEUED and c.expires_time == pytest.approx(deadline, abs=2) for c in calls
    )
    assert await runner.statistics(job) == {
        "deviceCount": 2,
        "failedCount": 0,
        "succeededCount": 0,
        "runningCount": 0,
        "pendingCount": 2,
    }


async def test_a_job_ends_at_its_deadline_and_a_cancel_cancels_what_waits(
    runner: JobRunner, registry: SqliteRegistry
) -> None:
    await _fleet(registry)
    now = [10.0]
    runner.clock = lambda: now[0]
    await runner.create(_job("j1", start=0.0))
    await runner.create(_job("j2", start=0.0))
    await runner.run_now()
    cancelled = await runner.cancel("j2")
    assert cancelled.status is JobStatus.CANCELLED
    assert {c.state for c in await registry.list_calls(job_id="j2")} == {CallState.CANCELLED}
    assert (await runner.cancel("j2")).status is JobStatus.CANCELLED  # again: as it is
    now[0] = 61.0  # past j1's deadline (start 0 + 60 s)
    await runner.tick()
    assert (await runner.get("j1")).status is JobStatus.COMPLETED


async def test_a_twin_job_patches_each_twin_and_records_it(
    runner: JobRunner, registry: SqliteRegistry
) -> None:
    await _fleet(registry)
    job = Job(
        "t1",
        JobType.UPDATE_TWIN,
        "tags.site = 'B'",
        {"tags": {"x": 1}, "desired": None, "caller": "ops"},
        0.0,
        0.0,
        60.0,
    )
    await runner.create(job)
    await runner.run_now()
    twin = await registry.get_twin("d2")
    assert twin is not None and twin.tags == {"site": "B", "x": 1}
    [record] = await registry.list_calls(job_id="t1")
    assert (record.device_id, record.state, record.caller) == ("d2", CallState.SUCCEEDED, "ops")
    await runner.tick()
    assert (await runner.get("t1")).status is JobStatus.COMPLETED  # nothing left open


async def test_bad_conditions_duplicates_and_unknown_jobs(runner: JobRunner) -> None:
    with pytest.raises(HubError) as bad:
        await runner.create(_job("j", "tags.x ="))
    assert bad.value.kind is ErrorKind.INVALID_ARGUMENT
    await runner.create(_job("j"))
    with pytest.raises(HubError) as twice:
        await runner.create(_job("j"))
    assert twice.value.kind is ErrorKind.CONFLICT
    with pytest.raises(HubError) as missing:
        await runner.get("nope")
    assert missing.value.kind is ErrorKind.JOB_NOT_FOUND


async def test_a_rate_paces_the_devices_a_job_starts(
    runner: JobRunner, registry: SqliteRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _fleet(registry)
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(job_runner_module.asyncio, "sleep", sleep)
    runner.rate = 4.0
    await runner.create(_job("j1"))
    await runner.run_now()
    assert len(pauses) == 3 and all(0 < p <= 0.25 for p in pauses)


@pytest.mark.parametrize("runner_rate, job_rate, pause", [(None, 2.0, 0.5), (4.0, 2.0, 0.5), (2.0, 4.0, 0.5)])
async def test_a_job_s_own_rate_paces_it_under_the_runner_s(
    runner: JobRunner,
    registry: SqliteRegistry,
    monkeypatch: pytest.MonkeyPatch,
    runner_rate: float | None,
    job_rate: float,
    pause: float,
) -> None:
    await _fleet(registry)
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(job_runner_module.asyncio, "sleep", sleep)
    runner.rate = runner_rate
    job = _job("j1")
    job.request["ratePerSecond"] = job_rate
    await runner.create(job)
    await runner.run_now()
    assert len(pauses) == 3 and all(pause * 0.5 < p <= pause for p in pauses)  # the slower of the two


async def test_a_device_deleted_after_the_query_gets_no_call(
    runner: JobRunner, registry: SqliteRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _fleet(registry)
    query_twins = registry.query_twins

    async def with_a_ghost(query: Any, *, limit: int = 100, after: Any = None) -> list[Any]:
        rows = await query_twins(query, limit=limit, after=after)
        return [*rows, {"deviceId": "gone"}] if after is None else rows  # selected, then deleted

    monkeypatch.setattr(registry, "query_twins", with_a_ghost)
    await runner.create(_job("j1"))
    await runner.run_now()
    calls = await registry.list_calls(job_id="j1")
    assert sorted(c.device_id for c in calls) == ["d0", "d1", "d2"]
    job = await runner.get("j1")
    assert job.device_count == 3  # counted are the devices given a call


async def _until(check: Any, what: str) -> None:
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


async def test_a_job_due_now_starts_and_ends_without_waiting_for_a_tick(
    hub: Hub, runner: JobRunner, registry: SqliteRegistry
) -> None:
    identity = await registry.create_identity("d0")
    device = hub.device()
    await device.online(azure_connect("d0", identity.keys.primary), "$iothub/methods/POST/#")
    await runner.start()  # ticks every hour (the fixture's interval): none happens in this test
    await runner.create(_job("j1"))
    packet = await device.next_packet()  # the job's call, sent without a tick
    assert isinstance(packet, Publish)
    parsed = parse_request_topic(packet.topic)
    assert parsed is not None and parsed[0] == "reboot"
    assert (await runner.get("j1")).status is JobStatus.RUNNING  # its call is still open
    device.answer(response_topic(200, parsed[1]), b"null")

    async def completed() -> bool:
        return (await runner.get("j1")).status is JobStatus.COMPLETED

    await _until(completed, "the job did not end when its last call ended")
    [call] = await registry.list_calls(job_id="j1")
    assert call.state is CallState.SUCCEEDED


async def _online_fleet(hub: Hub, registry: SqliteRegistry, n: int) -> list[Any]:
    devices = []
    for i in range(n):
        identity = await registry.create_identity(f"d{i}")
        device = hub.device()
        await device.online(azure_connect(f"d{i}", identity.keys.primary), "$iothub/methods/POST/#")
        devices.append(device)
    return devices


async def _answer(device: Any) -> None:
    packet = await device.next_packet()
    assert isinstance(packet, Publish)
    parsed = parse_request_topic(packet.topic)
    assert parsed is not None
    device.answer(response_topic(200, parsed[1]), b"null")


def _count_state_queries(registry: SqliteRegistry, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    asked: list[str] = []
    job_call_states = registry.job_call_states

    async def counted(job_id: str) -> dict[str, int]:
        asked.append(job_id)
        return await job_call_states(job_id)

    monkeypatch.setattr(registry, "job_call_states", counted)
    return asked


async def test_a_job_is_checked_for_its_end_once_the_last_call_it_made_here_ended(
    hub: Hub, runner: JobRunner, registry: SqliteRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    devices = await _online_fleet(hub, registry, 3)
    await runner.start()
    await runner.create(_job("j1"))

    async def selected() -> bool:
        return (await runner.get("j1")).device_count == 3

    await _until(selected, "the job did not select its devices")
    asked = _count_state_queries(registry, monkeypatch)
    for device in devices[:2]:
        await _answer(device)
    await asyncio.sleep(job_runner_module.END_CHECK_DELAY * 4)
    assert asked == []  # a call of it is still open here: no check yet
    assert (await runner.get("j1")).status is JobStatus.RUNNING
    await _answer(devices[2])

    async def completed() -> bool:
        return (await runner.get("j1")).status is JobStatus.COMPLETED

    await _until(completed, "the job did not end when its last call ended")
    assert asked == ["j1"]  # one check, when the last ended


async def test_a_stopped_runner_checks_no_job_when_its_calls_end(
    hub: Hub, runner: JobRunner, registry: SqliteRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    [device] = await _online_fleet(hub, registry, 1)
    await runner.start()
    await runner.create(_job("j1"))

    async def selected() -> bool:
        return (await runner.get("j1")).device_count == 1

    await _until(selected, "the job did not select its devices")
    await runner.stop()  # the node stops; its queued calls service still settles what is in flight
    asked = _count_state_queries(registry, monkeypatch)
    await _answer(device)
    [call] = await registry.list_calls(job_id="j1")

    async def ended() -> bool:
        return (await registry.get_call(call.call_id)).state is CallState.SUCCEEDED  # type: ignore[union-attr]

    await _until(ended, "the call did not end")
    await asyncio.sleep(job_runner_module.END_CHECK_DELAY * 4)
    assert asked == [] and runner._checks == {}
    assert (await runner.get("j1")).status is JobStatus.RUNNING  # left to a running node's tick


async def test_a_job_has_at_most_its_concurrency_of_calls_in_flight_on_a_node(
    hub: Hub, registry: SqliteRegistry
) -> None:
    devices = await _online_fleet(hub, registry, 5)
    await registry.create_identity("offline")  # its call is made all the same, and takes no slot
    calls = QueuedCalls(registry, hub.engine, hub.router, registry, "n1", sweep_interval=3600)
    runner = JobRunner(registry, calls, "n1", interval=3600, concurrency=2)
    requests: dict[int, str] = {}  # device index → request id of the call it got

    async def in_flight(expected: int) -> None:
        for _ in range(100):
            for n, device in enumerate(devices):
                for packet in device.received():
                    parsed = parse_request_topic(packet.topic)  # type: ignore[union-attr]
                    assert parsed is not None and n not in requests
                    requests[n] = parsed[1]
            if len(requests) >= expected:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # and no more come
        assert len(requests) == expected and calls.job_attempts == min(2, 5 - answered)

    answered = 0
    try:
        await runner.start()
        await runner.create(_job("j1"))
        await in_flight(2)  # the others wait for a slot
        for _ in range(3):
            device = next(n for n in sorted(requests) if n >= answered)
            devices[device].answer(response_topic(200, requests[device]), b"null")
            answered += 1
            await in_flight(2 + answered)  # one ended: the next device got its call
        for device in (3, 4):
            devices[device].answer(response_topic(200, requests[device]), b"null")
            answered += 1

        async def ended() -> bool:
            states = sorted(c.state.value for c in await registry.list_calls(job_id="j1"))
            return states == ["queued"] + ["succeeded"] * 5

        await _until(ended, "the job's calls did not end")
        assert calls.job_attempts == 0
    finally:
        await runner.stop()
        await calls.stop()
