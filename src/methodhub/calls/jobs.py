"""Jobs: one method call (or twin update) for every device a query selects, scheduled, bounded in
time, with per-device results (Azure IoT Hub's ``scheduleDeviceMethod`` / ``scheduleUpdateTwin``).

A job is stored (:class:`JobStore`, the registry) and run by whichever node claims it once its start
time has come (an atomic state change, so exactly one node runs it). Running it selects the devices
(the query runs in the database) and gives each a **queued call** (:mod:`methodhub.calls.delivery`)
that waits for its device until the job's end (``startTime + maxExecutionTimeInSeconds``): this is
how "schedule methods for disconnected devices" works. A twin job applies its patch to each device
at once. Each device's result is a call record with the job's id (a twin job's record is final when
made), which ``devices.jobs`` queries and the job's statistics read.

Job states: ``queued`` (made; shown while its start time is ahead too), ``running``, ``completed``
(every device's call ended, or the job's time ran out: calls still waiting then end ``expired`` at
the job's end), ``failed`` (the job itself could not run: e.g. its condition names nothing valid),
``cancelled`` (two l's, Azure's spelling; the calls not sent yet are cancelled).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol


class JobType(StrEnum):
    DEVICE_METHOD = "scheduleDeviceMethod"
    UPDATE_TWIN = "scheduleUpdateTwin"
    DEVICE_CALLS = "deviceCalls"
    """One method call per selected device, as ``DEVICE_METHOD``, made by a front door whose jobs
    are its own (it lists and shows them; the runner runs both kinds alike)."""

    @property
    def makes_calls(self) -> bool:
        """Whether each selected device gets a queued call (else its twin is patched)."""
        return self is not JobType.UPDATE_TWIN


class JobStatus(StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


DEFAULT_MAX_EXECUTION = 3600
"""``maxExecutionTimeInSeconds`` when a request has none (the Node SDK's own default)."""


JOB_CALLER = "caller"
"""The key of a job's ``request`` naming who created it (a shared access policy, an AccessKeyId)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One job. Times are epoch seconds."""

    job_id: str
    type: JobType
    query_condition: str
    request: dict[str, Any]
    """The job's ``cloudToDeviceMethod`` or ``updateTwin``, as asked (echoed in the JobResponse).
    A call job's has ``methodName``, ``payload`` (JSON text), ``responseTimeoutInSeconds`` and
    optionally ``ratePerSecond`` (its own pace, under the runner's); ``caller`` (:data:`JOB_CALLER`):
    who created the job, the caller of its calls in the history; its front door may keep more."""
    created_time: float
    start_time: float
    max_execution: float
    status: JobStatus = JobStatus.QUEUED
    end_time: float | None = None
    failure_reason: str | None = None
    device_count: int = 0
    owner: str | None = None

    @property
    def deadline(self) -> float:
        return self.start_time + self.max_execution

    def ended(self, status: JobStatus, now: float, reason: str | None = None) -> Job:
        return replace(self, status=status, end_time=now, failure_reason=reason, owner=None)


class JobStore(Protocol):
    """Where jobs live (the registry implements it)."""

    async def create_job(self, job: Job) -> bool:
        """Store a new job; False when ``job_id`` is taken."""
        ...

    async def get_job(self, job_id: str) -> Job | None: ...

    async def list_jobs(
        self,
        *,
        type: JobType | None = None,
        status: JobStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        """Newest first."""
        ...

    async def claim_job(self, owner: str, now: float) -> Job | None:
        """Atomically move the oldest ``queued`` job whose start time has come to ``running``,
        owned by ``owner``; None when there is none."""
        ...

    async def update_job(self, job: Job, expect: JobStatus) -> bool:
        """Store ``job`` if the stored one is still ``expect``; False otherwise."""
        ...

    async def running_jobs(self) -> list[Job]: ...

    async def job_call_states(self, job_id: str) -> dict[str, int]:
        """How many of the job's calls are in each state."""
        ...
