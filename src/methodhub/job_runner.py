"""Running jobs (:mod:`methodhub.calls.jobs`) on one node: :class:`JobRunner`.

Every ``interval`` seconds the runner claims the jobs whose start time has come (exactly one node
gets each) and runs them: the devices are selected by the job's condition in the database, page by
page, and each gets a queued call carrying the job's id (a method job; the call waits for its device
until the job's deadline; :data:`CHUNK` devices' calls are stored in one transaction) or its twin
patched at once (a twin job, whose per-device record is final
when made). It also ends the jobs that are done: every call ended, or the deadline passed.

Between ticks: a job created due now is claimed at once (by a tick started then), and a job this
node selected is checked for its end (every call ended) within :data:`END_CHECK_DELAY` of the last
of the calls it made ending on this node (the runner counts them: one query per job, not one per
ending); calls ended on other nodes are seen by the next tick.

A job whose node died while selecting is ended at its deadline; the devices it selected keep their
calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from methodhub.calls.delivery import QueuedCalls
from methodhub.calls.jobs import JOB_CALLER, Job, JobStatus
from methodhub.calls.queued import CallState, QueuedCall, new_call_id
from methodhub.errors import ErrorKind, HubError
from methodhub.query import parse
from methodhub.registry import Registry
from methodhub.registry.twins import patch_twin

log = logging.getLogger("methodhub.jobs")

PAGE = 500
END_CHECK_DELAY = 0.05
"""Seconds after the last of its calls made here ended here before a job selected here is checked
for its end."""
DEFAULT_CONCURRENCY = 1000
"""Jobs' device calls in flight on a node at most (``serve --job-concurrency``)."""
CHUNK = 50
"""Devices of a page whose calls are stored in one transaction and kicked together: the more, the
fewer transactions; the fewer, the shorter the bursts of deliveries (each chunk's devices are sent
their calls within a few event-loop iterations, which interactive calls wait behind)."""


def device_query_text(condition: str) -> str:
    """The query selecting a job's devices: ``*`` is every device, anything else a WHERE body."""
    condition = condition.strip()
    return "SELECT deviceId FROM devices" + ("" if condition == "*" else f" WHERE {condition}")


def statistics(job: Job, states: dict[str, int]) -> dict[str, int]:
    """``deviceJobStatistics`` from the job's calls by state."""
    failed = sum(states.get(s.value, 0) for s in (CallState.FAILED, CallState.EXPIRED, CallState.CANCELLED))
    total = sum(states.values())
    return {
        "deviceCount": max(job.device_count, total),
        "failedCount": failed,
        "succeededCount": states.get(CallState.SUCCEEDED.value, 0),
        "runningCount": states.get(CallState.SENT.value, 0),
        "pendingCount": states.get(CallState.QUEUED.value, 0),
    }


class JobRunner:
    def __init__(
        self,
        registry: Registry,
        calls: QueuedCalls,
        node: str,
        *,
        interval: float = 1.0,
        rate: float | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.calls = calls
        self.node = node
        self.interval = interval
        self.rate = rate
        """Device calls (or twin patches) a running job starts per second on this node (None: as
        fast as the registry takes them), so a big job does not crowd out interactive calls."""
        self.concurrency = concurrency
        """Jobs' device calls in flight on this node (sent, not ended) before the runner waits to
        make the next ones (devices slow to answer do not pile up a page's calls at once)."""
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._selected: set[str] = set()
        """Jobs this node selected the devices of, running: checked for their end as calls end."""
        self._open: dict[str, int] = {}
        """Per job this node is running: its calls made here and not yet seen ending here. A job
        whose count reaches 0 once selected is checked for its end (one query), not before: the
        calls that end elsewhere are left to the tick."""
        self._checks: dict[str, asyncio.TimerHandle] = {}
        self._stopped = False
        calls.on_ended = self._call_ended

    # -- the API --------------------------------------------------------------------------------------

    async def create(self, job: Job) -> Job:
        try:
            parse(device_query_text(job.query_condition))
        except ValueError as exc:  # QuerySyntaxError, or a non-string
            raise HubError(ErrorKind.INVALID_ARGUMENT, f"queryCondition is not valid: {exc}") from None
        if not await self.registry.create_job(job):
            raise HubError(ErrorKind.CONFLICT, f"A job '{job.job_id}' exists already; jobs ids are unique.")
        if self._task is not None and job.start_time <= self.clock():
            self._spawn(self._tick_logged(), f"jobs: tick for {job.job_id}")  # due now: start it now
        return job

    async def get(self, job_id: str) -> Job:
        job = await self.registry.get_job(job_id)
        if job is None:
            raise HubError(ErrorKind.JOB_NOT_FOUND, f"No job '{job_id}'.")
        return job

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job not ended yet; its calls not sent yet are cancelled. An ended job is
        returned as it is (cancelling it changes nothing)."""
        job = await self.get(job_id)
        if job.status.terminal:
            return job
        cancelled = job.ended(JobStatus.CANCELLED, self.clock())
        if not await self.registry.update_job(cancelled, job.status):
            return await self.get(job_id)
        while True:
            waiting = await self.registry.list_calls(job_id=job_id, state=CallState.QUEUED, limit=PAGE)
            for call in waiting:
                with contextlib.suppress(HubError):  # sent meanwhile: it runs its course
                    await self.calls.cancel(call.call_id)
            if len(waiting) < PAGE:
                return cancelled

    async def statistics(self, job: Job) -> dict[str, int]:
        return statistics(job, await self.registry.job_call_states(job.job_id))

    # -- running ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._forever(), name="jobs")

    async def stop(self) -> None:
        self._stopped = True  # the calls settled while the node stops start no checks
        for check in self._checks.values():
            check.cancel()
        self._checks.clear()
        tasks = [t for t in (self._task, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._tick_logged()

    async def _tick_logged(self) -> None:
        try:
            await self.tick()
        except HubError as exc:
            log.warning("jobs: tick skipped: %s", exc.message)
        except Exception:
            log.exception("jobs: tick failed")

    def _call_ended(self, call: QueuedCall) -> None:
        job_id = call.job_id
        if self._stopped or job_id is None or job_id not in self._open:
            return
        self._open[job_id] -= 1
        if self._open[job_id] > 0 or job_id not in self._selected or job_id in self._checks:
            return
        self._checks[job_id] = asyncio.get_running_loop().call_later(
            END_CHECK_DELAY, lambda: self._spawn(self._check_end(job_id), f"jobs: end of {job_id}")
        )

    async def _check_end(self, job_id: str) -> None:
        """End ``job_id`` if every call of it has ended (the tick's check, for one job, now)."""
        self._checks.pop(job_id, None)
        try:
            job = await self.registry.get_job(job_id)
            if job is None or job.status is not JobStatus.RUNNING:
                self._forget(job_id)
                return
            states = await self.registry.job_call_states(job_id)
            if states.get(CallState.QUEUED.value, 0) + states.get(CallState.SENT.value, 0) == 0:
                await self.registry.update_job(
                    job.ended(JobStatus.COMPLETED, self.clock()), JobStatus.RUNNING
                )
                self._forget(job_id)
        except HubError as exc:  # the tick checks it again
            log.warning("jobs: end of %s not checked now: %s", job_id, exc.message)

    async def tick(self) -> None:
        """Start the jobs that are due; end those that are done."""
        now = self.clock()
        while (job := await self.registry.claim_job(self.node, now)) is not None:
            self._spawn(self._run(job), f"job {job.job_id}")
        for job in await self.registry.running_jobs():
            if job.owner is not None and now < job.deadline:
                continue  # still selecting its devices
            states = await self.registry.job_call_states(job.job_id)
            open_calls = states.get(CallState.QUEUED.value, 0) + states.get(CallState.SENT.value, 0)
            if open_calls == 0 or now >= job.deadline:
                await self.registry.update_job(job.ended(JobStatus.COMPLETED, now), JobStatus.RUNNING)
                self._forget(job.job_id)

    async def run_now(self) -> None:
        """One tick, then wait for the jobs it started (tests)."""
        await self.tick()
        await asyncio.gather(*list(self._running), return_exceptions=True)

    def _forget(self, job_id: str) -> None:
        self._selected.discard(job_id)
        self._open.pop(job_id, None)

    async def _run(self, job: Job) -> None:
        self._open[job.job_id] = 0
        try:
            count = await self._select_and_start(job)
        except HubError as exc:
            self._forget(job.job_id)
            log.warning("job %s failed: %s", job.job_id, exc.message)
            await self.registry.update_job(
                job.ended(JobStatus.FAILED, self.clock(), exc.message), JobStatus.RUNNING
            )
            return
        except Exception as exc:
            self._forget(job.job_id)
            log.exception("job %s failed", job.job_id)
            failed = job.ended(JobStatus.FAILED, self.clock(), f"{type(exc).__name__}: {exc}")
            await self.registry.update_job(failed, JobStatus.RUNNING)
            return
        current = await self.registry.get_job(job.job_id)
        if current is None or current.status is not JobStatus.RUNNING:
            self._forget(job.job_id)
            return
        if await self.registry.update_job(
            replace(current, device_count=count, owner=None), JobStatus.RUNNING
        ):
            self._selected.add(job.job_id)
            await self._check_end(job.job_id)  # its calls may all have ended already
        else:
            self._forget(job.job_id)

    async def _select_and_start(self, job: Job) -> int:
        query = parse(device_query_text(job.query_condition))
        count = 0
        after: tuple[str, str] | None = None
        while True:
            rows = await self.registry.query_twins(query, after=after, limit=PAGE)
            current = await self.registry.get_job(job.job_id)
            if current is None or current.status is not JobStatus.RUNNING:
                return count  # cancelled meanwhile
            ids = [str(row["deviceId"]) for row in rows]
            rate = min((r for r in (self.rate, job.request.get("ratePerSecond")) if r), default=None)
            chunk = min(CHUNK, max(1, int(rate / 20))) if rate else CHUNK  # paced
            chunk = min(chunk, max(1, self.concurrency // 4))  # room for the next before all end
            for at in range(0, len(ids), chunk):
                # at most `concurrency` in flight once these are sent (calls to devices not
                # online take no slot: they are made all the same, and wait for their devices)
                await self.calls.job_attempts_at_most(self.concurrency - len(ids[at : at + chunk]))
                started = time.perf_counter()
                count += await self._start_devices(job, ids[at : at + chunk])
                if rate:
                    elapsed = time.perf_counter() - started
                    await asyncio.sleep(max(0.0, len(ids[at : at + chunk]) / rate - elapsed))
            if len(rows) < PAGE:
                return count
            after = (ids[-1], "")  # the next page starts after this one's last device, by index

    async def _start_devices(self, job: Job, device_ids: list[str]) -> int:
        """Start ``device_ids``' part of ``job``; returns how many devices it counts (a method job:
        those given a call — a device deleted since the query gets none)."""
        request: dict[str, Any] = job.request
        if job.type.makes_calls:
            stored = await self.calls.create_many(
                [(device_id, None) for device_id in device_ids],
                str(request["methodName"]),
                request["payload"].encode(),
                response_timeout=float(request.get("responseTimeoutInSeconds") or 30),
                expires=max(1.0, job.deadline - self.clock()),
                job_id=job.job_id,
                caller=request.get(JOB_CALLER),
            )
            if job.job_id in self._open:
                self._open[job.job_id] += len(stored)
            return len(stored)
        for device_id in device_ids:
            await self._patch_twin(job, device_id)
        return len(device_ids)

    async def _patch_twin(self, job: Job, device_id: str) -> None:
        now = self.clock()
        request: dict[str, Any] = job.request
        tags, desired = request.get("tags"), request.get("desired")
        record = QueuedCall(
            call_id=new_call_id(),
            device_id=device_id,
            module_id=None,
            method="",
            payload=b"",
            response_timeout=0,
            attempts=1,
            created_time=now,
            expires_time=now,
            attempt=1,
            delivered_time=now,
            request_hash="",
            job_id=job.job_id,
            front_door="job",
            caller=job.request.get(JOB_CALLER),
        )
        try:
            await self.registry.update_twin(device_id, None, lambda t: patch_twin(t, tags, desired, now))
            record = record.finished(CallState.SUCCEEDED, self.clock())
        except HubError as exc:
            if exc.kind is ErrorKind.SERVICE_UNAVAILABLE:
                raise
            record = record.finished(
                CallState.FAILED, self.clock(), error=(exc.kind.spec.azure_name, exc.message)
            )
        await self.registry.create_call(record)
