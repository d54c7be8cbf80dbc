"""Azure IoT Hub's jobs REST API (azure-jobs-twins-query.md §1): ``PUT /jobs/v2/{jobId}``,
``GET /jobs/v2/{jobId}``, ``POST /jobs/v2/{jobId}/cancel``, ``GET /jobs/v2/query``, and the
``devices.jobs`` rows a twin query reads. Jobs run in :mod:`methodhub.job_runner`.

Decisions (the reference's UNCONFIRMED items): a job id is 1-128 URL-safe characters
(``A-Z a-z 0-9 - _ . ~``; Node does not encode it on GET/cancel); a duplicate id is 409; a bad
``queryCondition`` is 400 at create; ``startTime`` absent or null is now; ``maxExecutionTimeInSeconds``
absent is 3600; GET shows ``queued`` until the job starts; a job whose devices all failed ends
``completed`` (the failures are in its statistics and rows); device-job rows spell ``canceled``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from methodhub import jsontext
from methodhub.calls.jobs import DEFAULT_MAX_EXECUTION, JOB_CALLER, Job, JobStatus, JobType
from methodhub.calls.queued import CallState, QueuedCall
from methodhub.dialects.azure.errors import azure_error, utc_timestamp
from methodhub.dialects.azure.service_auth import ServiceAuthenticator
from methodhub.dialects.azure.topics import validate_method_name
from methodhub.errors import ErrorKind, HubError
from methodhub.http.messages import Request, Response
from methodhub.http.routing import Routes
from methodhub.job_runner import JobRunner
from methodhub.query import And, Comparison, ComparisonOp, Condition, Literal, Path, Query, run
from methodhub.registry import Right

Handler = Callable[[Request], Awaitable[Response]]
_JOB_ID = re.compile(r"[A-Za-z0-9\-_.~]{1,128}")
_FRACTION = re.compile(r"(\.\d{6})\d+")
JOB_ROWS_MAX = 10_000
"""devices.jobs rows read per query (they are filtered in memory: see :func:`device_job_rows`)."""


def parse_time(value: object, what: str) -> float | None:
    """Epoch seconds of an ISO-8601 time (0-7 fraction digits; ``Z``, an offset, or none = UTC)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise HubError(ErrorKind.INVALID_ARGUMENT, f"{what} must be an ISO-8601 time.")
    text = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise HubError(ErrorKind.INVALID_ARGUMENT, f"{what} {value!r} is not an ISO-8601 time.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_job(job_id: str, body: object, now: float) -> Job:
    """The job a ``PUT /jobs/v2/{jobId}`` body asks for (400 for anything malformed)."""
    if not _JOB_ID.fullmatch(job_id):
        raise HubError(
            ErrorKind.INVALID_ARGUMENT,
            "A job id is 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', '.' and '~'.",
        )
    if not isinstance(body, dict):
        raise HubError(ErrorKind.INVALID_ARGUMENT, "The job must be a JSON object.")
    if body.get("jobId") is not None and str(body["jobId"]) != job_id:
        raise HubError(
            ErrorKind.INVALID_ARGUMENT, f"jobId {body['jobId']!r} differs from the URL's {job_id!r}."
        )
    try:
        job_type = JobType(str(body.get("type")))
        if job_type is JobType.DEVICE_CALLS:
            raise ValueError(job_type)
    except ValueError:
        raise HubError(
            ErrorKind.INVALID_ARGUMENT, "type must be 'scheduleDeviceMethod' or 'scheduleUpdateTwin'."
        ) from None
    condition = body.get("queryCondition")
    if not isinstance(condition, str) or not condition.strip():
        raise HubError(ErrorKind.INVALID_ARGUMENT, "queryCondition must be '*' or a WHERE condition.")
    start = parse_time(body.get("startTime"), "startTime")
    longest = body.get("maxExecutionTimeInSeconds")
    if longest is None:
        longest = DEFAULT_MAX_EXECUTION
    if isinstance(longest, bool) or not isinstance(longest, int) or longest <= 0:
        raise HubError(ErrorKind.INVALID_ARGUMENT, "maxExecutionTimeInSeconds must be a positive integer.")
    request: dict[str, Any]
    if job_type is JobType.DEVICE_METHOD:
        method = body.get("cloudToDeviceMethod")
        if not isinstance(method, dict):
            raise HubError(
                ErrorKind.INVALID_ARGUMENT, "A scheduleDeviceMethod job needs cloudToDeviceMethod."
            )
        timeout = method.get("responseTimeoutInSeconds") or 30
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 5 <= timeout <= 300:
            raise HubError(ErrorKind.INVALID_ARGUMENT, "responseTimeoutInSeconds must be 5 to 300.")
        request = {
            "methodName": validate_method_name(method.get("methodName")),
            "payload": jsontext.dumps(method.get("payload")).decode(),
            "responseTimeoutInSeconds": timeout,
            "connectTimeoutInSeconds": method.get("connectTimeoutInSeconds") or 0,
        }
    else:
        twin = body.get("updateTwin")
        if not isinstance(twin, dict):
            raise HubError(ErrorKind.INVALID_ARGUMENT, "A scheduleUpdateTwin job needs updateTwin.")
        properties = twin.get("properties") or {}
        if not isinstance(properties, dict):
            raise HubError(ErrorKind.INVALID_ARGUMENT, "updateTwin.properties must be an object.")
        request = {"tags": twin.get("tags"), "desired": properties.get("desired"), "echo": twin}
    return Job(
        job_id=job_id,
        type=job_type,
        query_condition=condition,
        request=request,
        created_time=now,
        start_time=now if start is None else start,
        max_execution=float(longest),
    )


def _when(epoch: float | None) -> str | None:
    return utc_timestamp(epoch) if epoch is not None else None


def job_json(job: Job, stats: dict[str, int]) -> dict[str, Any]:
    """A JobResponse (§1.5): ``type`` and ``deviceJobStatistics`` always there."""
    doc: dict[str, Any] = {
        "jobId": job.job_id,
        "type": job.type.value,
        "status": job.status.value,
        "queryCondition": job.query_condition,
        "createdTime": _when(job.created_time),
        "startTime": _when(job.start_time),
        "endTime": _when(job.end_time),
        "maxExecutionTimeInSeconds": int(job.max_execution),
        "failureReason": job.failure_reason,
        "statusMessage": job.failure_reason,
        "deviceJobStatistics": stats,
    }
    if job.type.makes_calls:  # another front door's call job (its own keys left out) shows as one
        names = ("methodName", "payload", "responseTimeoutInSeconds", "connectTimeoutInSeconds")
        method = {name: job.request[name] for name in names if name in job.request}
        method["payload"] = jsontext.loads(method["payload"])
        doc["cloudToDeviceMethod"] = method
    else:
        doc["updateTwin"] = job.request.get("echo")
    return doc


_DEVICE_JOB_STATUS = {
    CallState.QUEUED: "scheduled",
    CallState.SENT: "running",
    CallState.SUCCEEDED: "completed",
    CallState.FAILED: "failed",
    CallState.EXPIRED: "failed",
    CallState.CANCELLED: "canceled",
}


def device_job_row(call: QueuedCall, job_type: str) -> dict[str, Any]:
    """A ``devices.jobs`` row (§1.8) for one of a job's calls."""
    row: dict[str, Any] = {
        "deviceId": call.device_id,
        "jobId": call.job_id,
        "jobType": job_type,
        "status": _DEVICE_JOB_STATUS[call.state],
        "startTimeUtc": _when(call.delivered_time),
        "endTimeUtc": _when(call.completed_time),
        "createdDateTimeUtc": _when(call.created_time),
        "lastUpdatedDateTimeUtc": _when(call.completed_time or call.delivered_time or call.created_time),
    }
    if call.module_id:
        row["moduleId"] = call.module_id
    if job_type != JobType.UPDATE_TWIN.value:
        result = None
        if call.outcome_status is not None:
            payload = jsontext.loads(call.outcome_payload) if call.outcome_payload else None
            result = {"status": call.outcome_status, "payload": payload}
        row["outcome"] = {"deviceMethodResponse": result}
    else:
        row["outcome"] = {"deviceMethodResponse": None}
    if call.error_code is not None:
        row["error"] = {"code": call.error_code, "description": call.error_message}
    return row


def _named_job(condition: Condition | None) -> str | None:
    """The job id a WHERE pins (``jobId = 'x'``, alone or ANDed), if it does."""
    if isinstance(condition, Comparison) and condition.op is ComparisonOp.EQ:
        for path, value in ((condition.left, condition.right), (condition.right, condition.left)):
            if isinstance(path, Path) and path.segments == ("jobId",) and isinstance(value, Literal):
                return value.value if isinstance(value.value, str) else None
    if isinstance(condition, And):
        for operand in condition.operands:
            if (named := _named_job(operand)) is not None:
                return named
    return None


async def device_job_rows(runner: JobRunner, query: Query, offset: int, limit: int) -> list[Any]:
    """A page of ``SELECT * FROM devices.jobs [WHERE ...]``: the rows of the job the WHERE names
    (``jobId = '...'``, the documented use), else of the newest jobs' calls (at most
    :data:`JOB_ROWS_MAX`), filtered and ordered in memory by the reference evaluator."""
    rows: list[dict[str, Any]] = []
    named = _named_job(query.where)
    jobs = [] if named is None else [job for job in [await runner.registry.get_job(named)] if job]
    for job in jobs if named is not None else await runner.registry.list_jobs(limit=100):
        for call in await runner.registry.list_calls(job_id=job.job_id, limit=JOB_ROWS_MAX):
            rows.append(device_job_row(call, job.type.value))
        if len(rows) >= JOB_ROWS_MAX:
            break
    return run(query, rows)[offset : offset + limit]


class AzureJobsApi:
    """The ``/jobs/v2`` handlers (ServiceConnect, as direct methods and twins)."""

    def __init__(
        self, runner: JobRunner, auth: ServiceAuthenticator, clock: Callable[[], float] = time.time
    ) -> None:
        self.runner = runner
        self.auth = auth
        self.clock = clock

    def register(self, routes: Routes) -> None:
        routes.add("GET", "/jobs/v2/query", self._authorized(self._query))
        routes.add("PUT", "/jobs/v2/{job_id}", self._authorized(self._create))
        routes.add("GET", "/jobs/v2/{job_id}", self._authorized(self._get))
        routes.add("POST", "/jobs/v2/{job_id}/cancel", self._authorized(self._cancel))

    def _authorized(
        self, handler: Callable[[Request, str], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run_it(request: Request) -> Response:
            try:
                policy = await self.auth.authenticate(
                    request.headers.get("authorization"), request.headers.get("host"), Right.SERVICE_CONNECT
                )
                return await handler(request, policy)
            except HubError as exc:
                return azure_error(exc)

        return run_it

    async def _response(self, job: Job) -> Response:
        return Response.json(job_json(job, await self.runner.statistics(job)))

    async def _create(self, request: Request, policy: str) -> Response:
        try:
            body = jsontext.loads(request.body) if request.body else None
        except jsontext.NotJson as exc:
            raise HubError(ErrorKind.INVALID_ARGUMENT, f"The job is not valid JSON: {exc}") from None
        job = parse_job(request.path_params["job_id"], body, self.clock())
        job.request[JOB_CALLER] = policy  # its calls' caller in the call history
        return await self._response(await self.runner.create(job))

    async def _get(self, request: Request, policy: str) -> Response:
        return await self._response(await self.runner.get(request.path_params["job_id"]))

    async def _cancel(self, request: Request, policy: str) -> Response:
        return await self._response(await self.runner.cancel(request.path_params["job_id"]))

    async def _query(self, request: Request, policy: str) -> Response:
        """A JSON array of JobResponse (§1.6), filtered by jobType/jobStatus (any case), paged by
        ``x-ms-max-item-count`` and ``x-ms-continuation`` (or pageSize/continuationToken)."""
        query, headers = request.query, request.headers
        job_type = status = None
        if query.get("jobType"):
            names = {t.value.lower(): t for t in JobType}
            job_type = names.get(query["jobType"].lower())
            if job_type is None:
                raise HubError(ErrorKind.INVALID_ARGUMENT, f"jobType {query['jobType']!r} is not a job type.")
        if query.get("jobStatus"):
            states = {s.value: s for s in JobStatus}
            status = states.get(query["jobStatus"].lower())
            if status is None:
                raise HubError(
                    ErrorKind.INVALID_ARGUMENT, f"jobStatus {query['jobStatus']!r} is not a job status."
                )
        size_text = headers.get("x-ms-max-item-count") or query.get("pageSize") or "100"
        token = headers.get("x-ms-continuation") or query.get("continuationToken") or "0"
        if not size_text.isdigit() or not 1 <= int(size_text) <= 1000 or not token.isdigit():
            raise HubError(
                ErrorKind.INVALID_ARGUMENT, "The page size must be 1 to 1000, the token one given."
            )
        size, offset = int(size_text), int(token)
        jobs = await self.runner.registry.list_jobs(
            type=job_type, status=status, limit=size + 1, offset=offset
        )
        answer = [job_json(job, await self.runner.statistics(job)) for job in jobs[:size]]
        fields = [("x-ms-item-type", "JobResponse")]
        if len(jobs) > size:
            fields.append(("x-ms-continuation", str(offset + size)))
        return Response.json(answer, headers=fields)
