"""Registry contract: jobs (calls/jobs.py; every backend in conftest.BACKENDS)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from methodhub.calls.jobs import Job, JobStatus, JobType
from methodhub.calls.queued import CallState, QueuedCall
from methodhub.registry import Registry

T0 = 1_800_000_000.0


def _job(job_id: str, start: float = T0, **fields: object) -> Job:
    job = Job(job_id, JobType.DEVICE_METHOD, "*", {"methodName": "m", "payload": "null"}, T0, start, 60.0)
    return replace(job, **fields)  # type: ignore[arg-type]


async def test_create_get_and_a_duplicate(registry: Registry, other: Registry) -> None:
    job = _job("j1")
    assert await registry.create_job(job)
    assert not await other.create_job(replace(job, query_condition="x = 1"))
    assert await other.get_job("j1") == job and await registry.get_job("nope") is None


async def test_a_due_job_is_claimed_by_one_node(registry: Registry, other: Registry) -> None:
    await registry.create_job(_job("later", start=T0 + 100))
    await registry.create_job(_job("now"))
    claims = await asyncio.gather(
        *(r.claim_job(f"n{i}", T0 + 1) for i, r in enumerate([registry, other] * 3))
    )
    won = [c for c in claims if c is not None]
    assert [c.job_id for c in won] == ["now"] and won[0].status is JobStatus.RUNNING and won[0].owner
    assert [j.job_id for j in await registry.running_jobs()] == ["now"]
    done = won[0].ended(JobStatus.COMPLETED, T0 + 2)
    assert await other.update_job(done, JobStatus.RUNNING)
    assert not await registry.update_job(done, JobStatus.RUNNING)  # no longer running
    assert (await registry.get_job("now")) == done


async def test_list_filters_and_call_states(registry: Registry) -> None:
    await registry.create_job(_job("a"))
    await registry.create_job(replace(_job("b", type=JobType.UPDATE_TWIN), created_time=T0 + 1))
    assert [j.job_id for j in await registry.list_jobs()] == ["b", "a"]
    assert [j.job_id for j in await registry.list_jobs(type=JobType.UPDATE_TWIN)] == ["b"]
    assert [j.job_id for j in await registry.list_jobs(status=JobStatus.QUEUED, limit=1, offset=1)] == ["a"]
    for n, state in enumerate((CallState.QUEUED, CallState.SUCCEEDED, CallState.SUCCEEDED)):
        call = QueuedCall(f"c{n}", f"d{n}", None, "m", b"null", 30, 1, T0, T0 + 60, state=state, job_id="a")
        await registry.create_call(call)
    assert await registry.job_call_states("a") == {"queued": 1, "succeeded": 2}
    assert await registry.job_call_states("b") == {}
