"""Alibaba's batch service calls on the hub's durable calls and jobs (azure-jobs-twins-query.md §5).

Actions (added to :class:`~methodhub.dialects.aliyun.pop.AliyunApi`'s table by :func:`actions`):

* ``InvokeThingsService`` (ServiceConnect): ``ProductKey``, ``DeviceName.1..N`` (at most
  :data:`MAX_DEVICES`), ``Identifier``, ``Args`` → ``{RequestId, Success: true}`` at once, as
  Alibaba answers. Each device gets a **queued call** (:mod:`methodhub.calls.delivery`) carrying
  what ``InvokeThingService`` sends (the Alink service request, RRPC mode, 8 s to answer), waiting
  up to :data:`SERVICE_EXPIRES` seconds for an offline device. The calls' ``jobId`` is the answer's
  ``RequestId``: ``GET /calls?jobId={RequestId}`` lists their results.
* ``QueryDeviceServiceData`` (ServiceConnect): a device's durable calls (these, jobs', ``POST
  /calls``) with input, output and time, from the calls store. Synchronous ``InvokeThingService``
  calls are not stored, so they are not listed.
* ``CreateJob`` (``Type=INVOKE_SERVICE`` only), ``QueryJob``, ``CancelJob``, ``ListJob``,
  ``ListTask``, ``QueryTask`` (ServiceConnect): jobs of type ``deviceCalls`` on the
  :class:`~methodhub.job_runner.JobRunner` (the machinery of Azure's jobs); a task is one device's
  call. States: :data:`JOB_STATUS`, :func:`task_status`.

A service the product's TSL defines as ``async`` (:mod:`methodhub.dialects.aliyun.thing_model`)
is delivered on its service topic and answered on ``…_reply`` (:func:`service_call`); any other, in
RRPC mode.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from collections.abc import Awaitable, Callable
from typing import Any

from methodhub import jsontext
from methodhub.calls.jobs import DEFAULT_MAX_EXECUTION, JOB_CALLER, Job, JobStatus, JobType
from methodhub.calls.queued import DEFAULT_EXPIRES, CallState, QueuedCall
from methodhub.dialects.aliyun.calls import async_method, service_identifier
from methodhub.dialects.aliyun.errors import required
from methodhub.dialects.aliyun.pop import CALLER, IDENTIFIER, SERVICE_TIMEOUT, call_target, thing_args
from methodhub.dialects.aliyun.pop_devices import utc_time
from methodhub.dialects.aliyun.pop_tsl import ASYNC, ASYNC_SERVICE_TIMEOUT, ThingModels
from methodhub.dialects.aliyun.thing_model import call_type
from methodhub.errors import ErrorKind, HubError
from methodhub.job_runner import JobRunner
from methodhub.registry import Right, product_device_id, split_product_device_id, validate_product_names

Handler = Callable[[dict[str, str], str], Awaitable[dict[str, Any]]]

MAX_DEVICES = 100
"""``DeviceName.N`` names per InvokeThingsService, and ``targetDevices`` per CreateJob [DOC api-491cfa]."""
QOS1_ATTEMPTS = 3
"""Attempts of an InvokeThingsService call with ``Qos=1`` (at least once: another attempt after a
timeout or a drop, as Alibaba re-pushes a QoS 1 request on reconnect); ``Qos=0``: one."""
SERVICE_EXPIRES = DEFAULT_EXPIRES
"""Seconds an InvokeThingsService call waits for an offline device (a day; Alibaba documents none)."""
MAX_DOCUMENT = 65_536
MAX_CONFIG = 8_192
RATE_PER_MINUTE = (50, 1000)
"""``RolloutConfig.maximumPerMinute``: Alibaba's range; 1000 (its default) when not given."""
PAGE_SIZE_MAX = 50
SCAN_MAX = 1000
"""Calls QueryDeviceServiceData reads per request at most (newest first) to fill a page."""
JOB_NAME = re.compile(r"\w{4,30}")
_ID_ALPHABET = string.ascii_letters + string.digits
_DEVICE_NAME_N = re.compile(r"DeviceName\.([1-9][0-9]{0,3})")

JOB_STATUS = {
    JobStatus.QUEUED: "SCHEDULED",
    JobStatus.SCHEDULED: "SCHEDULED",
    JobStatus.RUNNING: "IN_PROGRESS",
    JobStatus.COMPLETED: "COMPLETED",
    JobStatus.FAILED: "FAILED",
    JobStatus.CANCELLED: "CANCELLED",
}
"""A job's state in Alibaba's words (our choice where Alibaba lists none: docs/aliyun-compatibility.md)."""
_JOB_STATUS_FILTER = {
    "SCHEDULED": JobStatus.QUEUED,
    **{v: k for k, v in JOB_STATUS.items() if v != "SCHEDULED"},
}
TASK_STATUSES = ("QUEUED", "SENT", "IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELLED")


def service_call(identifier: str, call_type: str) -> tuple[str, float]:
    """The queued call's method and response timeout for a call of service ``identifier``.

    A synchronous service: the identifier, which the Alibaba device dialect sends as
    ``InvokeThingService`` does (an Alink request on the RRPC service topic), 8 s to answer. An
    asynchronous one (``call_type`` ``"async"``, a product's TSL ``callType``): ``async/{identifier}``,
    sent on ``/sys/{pk}/{dn}/thing/service/{identifier}`` and answered on ``…_reply``
    (:mod:`methodhub.dialects.aliyun.mqtt`), :data:`ASYNC_SERVICE_TIMEOUT` to answer."""
    if call_type == ASYNC:
        return async_method(identifier), ASYNC_SERVICE_TIMEOUT
    return identifier, SERVICE_TIMEOUT


def _bad(message: str) -> HubError:
    return HubError(ErrorKind.INVALID_ARGUMENT, message)


def _identifier(text: str, what: str = "Identifier") -> str:
    if not IDENTIFIER.fullmatch(text):
        raise _bad(
            f"{what} {text[:60]!r} is not a service identifier (letters, digits and _, up to 50, "
            "optionally prefixed with 'module:')."
        )
    return text


def _device_names(params: dict[str, str]) -> list[str]:
    """``DeviceName.1..N`` in order, repeats dropped."""
    numbered = sorted(
        (int(match.group(1)), value)
        for name, value in params.items()
        if (match := _DEVICE_NAME_N.fullmatch(name)) and value
    )
    if not numbered:
        raise HubError(
            ErrorKind.MISSING_ARGUMENT,
            'The input parameter "DeviceName.1" that is mandatory for processing this request is not '
            "supplied (name the devices as DeviceName.1, DeviceName.2, ...).",
        )
    names = list(dict.fromkeys(value for _, value in numbered))
    if len(names) > MAX_DEVICES:
        raise _bad(f"At most {MAX_DEVICES} devices per request; got {len(names)}.")
    return names


def _json_object(params: dict[str, str], name: str, limit: int, *, needed: bool = False) -> dict[str, Any]:
    text = params.get(name)
    if not text:
        if needed:
            required(params, name)
        return {}
    if len(text) > limit:
        raise _bad(f"{name} is {len(text)} characters; the limit is {limit}.")
    try:
        value = jsontext.loads(text)
    except jsontext.NotJson as exc:
        raise _bad(f"{name} is not JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise _bad(f"{name} must be a JSON object.")
    return value


def _integer(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 15:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{what} must be an integer from {low} to {high}; got {str(value)[:40]!r}.")
    return value


def _ms(epoch: float | None) -> int | None:
    return None if epoch is None else int(epoch * 1000)


def task_status(call: QueuedCall) -> str:
    """A job's call as an Alibaba task state: the device's answer is ``SUCCEEDED`` only with code
    200; a timed-out attempt or a call that never reached its device before the job's end is
    ``TIMED_OUT``. ``IN_PROGRESS`` and ``REJECTED`` are never shown (a sync service reports no
    progress)."""
    if call.state is CallState.SUCCEEDED:
        return "SUCCEEDED" if call.outcome_status == 200 else "FAILED"
    if call.state is CallState.EXPIRED or (
        call.state is CallState.FAILED and call.error_code == ErrorKind.CALL_TIMEOUT.spec.azure_name
    ):
        return "TIMED_OUT"
    return {CallState.QUEUED: "QUEUED", CallState.SENT: "SENT", CallState.CANCELLED: "CANCELLED"}.get(
        call.state, "FAILED"
    )


def _task_message(call: QueuedCall) -> str:
    if call.outcome_status is not None:
        return f"The device answered with code {call.outcome_status}."
    if call.error_message is not None:
        return call.error_message
    return "Waiting for the device." if call.state is CallState.QUEUED else "Sent to the device."


class PopJobs:
    """The handlers; see the module docstring."""

    def __init__(
        self,
        runner: JobRunner,
        thing_models: ThingModels | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runner = runner
        self.calls = runner.calls
        self.registry = runner.registry
        self.thing_models = thing_models or ThingModels(runner.registry, runner.calls)
        self.clock = clock

    def actions(self) -> dict[str, tuple[Right, Handler]]:
        return {
            "InvokeThingsService": (Right.SERVICE_CONNECT, self.invoke_things_service),
            "QueryDeviceServiceData": (Right.SERVICE_CONNECT, self.query_device_service_data),
            "CreateJob": (Right.SERVICE_CONNECT, self.create_job),
            "QueryJob": (Right.SERVICE_CONNECT, self.query_job),
            "CancelJob": (Right.SERVICE_CONNECT, self.cancel_job),
            "ListJob": (Right.SERVICE_CONNECT, self.list_job),
            "ListTask": (Right.SERVICE_CONNECT, self.list_task),
            "QueryTask": (Right.SERVICE_CONNECT, self.query_task),
        }

    async def _check_devices(self, product_key: str, names: list[str]) -> list[str]:
        """The device ids of ``names`` of ``product_key``; ``DEVICE_NOT_FOUND`` naming the missing."""
        missing = []
        for name in names:
            validate_product_names(product_key, name)
            if await self.registry.get_product_device(product_key, name) is None:
                missing.append(name)
        if missing:
            raise HubError(
                ErrorKind.DEVICE_NOT_FOUND,
                f"No device {', '.join(repr(n) for n in missing[:10])} of product {product_key!r} is "
                "registered; nothing was sent.",
            )
        return [product_device_id(product_key, name) for name in names]

    # -- InvokeThingsService, QueryDeviceServiceData ----------------------------------------------------

    async def invoke_things_service(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        product_key = required(params, "ProductKey")
        names = _device_names(params)
        identifier = _identifier(required(params, "Identifier"))
        args = thing_args(params)
        qos = params.get("Qos") or "0"
        if qos not in ("0", "1"):
            raise _bad(f"Qos must be 0 or 1; got {qos[:20]!r}.")
        device_ids = await self._check_devices(product_key, names)
        method, timeout = service_call(
            identifier, await self.thing_models.call_type(device_ids[0], identifier)
        )
        await self.calls.create_many(
            [(device_id, None) for device_id in device_ids],
            method,
            args,
            response_timeout=timeout,
            expires=min(SERVICE_EXPIRES, self.calls.max_expires),
            attempts=QOS1_ATTEMPTS if qos == "1" else 1,
            job_id=request_id,
            caller=params.get(CALLER),
        )
        return {}

    async def query_device_service_data(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        """Records between StartTime and EndTime (ms; either order), newest first unless ``Asc=1``.
        ``NextTime`` is the time of the first record not returned: give it as StartTime for the next
        page (a record in that very millisecond may come twice, none is skipped)."""
        target = call_target(params)
        identifier = _identifier(params["Identifier"]) if params.get("Identifier") else None
        start = _integer(required(params, "StartTime"), "StartTime", 0, 2**53)
        end = _integer(required(params, "EndTime"), "EndTime", 0, 2**53)
        size = _integer(params.get("PageSize") or "10", "PageSize", 1, PAGE_SIZE_MAX)
        ascending = _integer(params.get("Asc") or "0", "Asc", 0, 1) == 1
        low, high = min(start, end), max(start, end)
        found: list[QueuedCall] = []
        before: tuple[float, str] | None = ((high + 1) / 1000, "")
        scanned = 0
        while before is not None and scanned < SCAN_MAX and (ascending or len(found) <= size):
            page = await self.registry.list_calls(device_id=target, limit=200, before=before)
            scanned += len(page)
            for call in page:
                if call.created_time * 1000 < low:
                    before = None
                    break
                if identifier is None or service_identifier(call.method)[0] == identifier:
                    found.append(call)
            else:
                before = (page[-1].created_time, page[-1].call_id) if len(page) == 200 else None
        if ascending:
            found.reverse()
        shown, rest = found[:size], found[size:]
        return {
            "Data": {
                "List": {"ServiceInfo": [self._service_info(call) for call in shown]},
                "NextValid": bool(rest),
                "NextTime": int(rest[0].created_time * 1000) if rest else None,
            }
        }

    @staticmethod
    def _service_info(call: QueuedCall) -> dict[str, Any]:
        output = call.outcome_payload.decode("utf-8", "replace") if call.outcome_payload is not None else ""
        identifier, _ = service_identifier(call.method)
        return {
            "Identifier": identifier,
            "Name": identifier,
            "InputData": call.payload.decode("utf-8", "replace"),
            "OutputData": output,
            "Time": str(int(call.created_time * 1000)),
        }

    # -- jobs ---------------------------------------------------------------------------------------

    async def create_job(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        name = required(params, "JobName")
        if not JOB_NAME.fullmatch(name):
            raise _bad("JobName is 4 to 30 characters: Chinese characters, letters, digits and _.")
        job_type = required(params, "Type")
        if job_type != "INVOKE_SERVICE":
            raise _bad(f"Type {job_type[:30]!r} is not supported by methodhub; INVOKE_SERVICE is.")
        if params.get("JobFile"):
            raise _bad("JobFile is only for CUSTOM_JOB jobs; an INVOKE_SERVICE job takes none.")
        description = params.get("Description", "")
        if len(description) > 100:
            raise _bad("Description is at most 100 characters.")
        document = _json_object(params, "JobDocument", MAX_DOCUMENT, needed=True)
        identifier = _identifier(
            str(document.get("serviceIdentifier") or ""), "JobDocument.serviceIdentifier"
        )
        arguments = document.get("params", {})
        if not isinstance(arguments, dict):
            raise _bad("JobDocument.params must be a JSON object ({} for none).")
        target, condition = await self._target(_json_object(params, "TargetConfig", MAX_CONFIG, needed=True))
        timeouts = _json_object(params, "TimeoutConfig", MAX_CONFIG)
        minutes = DEFAULT_MAX_EXECUTION // 60
        if "inProgressTimeoutInMinutes" in timeouts:
            longest = int(self.calls.max_expires // 60)
            minutes = _integer(
                timeouts["inProgressTimeoutInMinutes"], "TimeoutConfig.inProgressTimeoutInMinutes", 1, longest
            )
        rollout = _json_object(params, "RolloutConfig", MAX_CONFIG)
        per_minute = RATE_PER_MINUTE[1]
        if "maximumPerMinute" in rollout:
            per_minute = _integer(
                rollout["maximumPerMinute"], "RolloutConfig.maximumPerMinute", *RATE_PER_MINUTE
            )
        now = self.clock()
        scheduled = params.get("ScheduledTime")
        start = now
        if scheduled:
            start = _integer(scheduled, "ScheduledTime (epoch ms)", 0, 2**53) / 1000
            if start <= now:
                raise _bad(
                    "ScheduledTime (epoch milliseconds) must be in the future; leave it out to run now."
                )
        method, timeout = service_call(identifier, await self._job_call_type(target, identifier))
        job = Job(
            job_id="".join(secrets.choice(_ID_ALPHABET) for _ in range(26)),
            type=JobType.DEVICE_CALLS,
            query_condition=condition,
            request={
                "methodName": method,
                "payload": jsontext.dumps(arguments).decode(),
                "responseTimeoutInSeconds": timeout,
                "ratePerSecond": per_minute / 60,
                JOB_CALLER: params.get(CALLER),
                "aliyun": {
                    "JobName": name,
                    "Description": description,
                    "JobDocument": jsontext.dumps(document).decode(),
                    "TargetConfig": target,
                    "RolloutConfig": {"MaximumPerMinute": per_minute},
                    "TimeoutConfig": {"InProgressTimeoutInMinutes": minutes},
                    "ScheduledTime": int(start * 1000) if scheduled else None,
                },
            },
            created_time=now,
            start_time=start,
            max_execution=minutes * 60.0,
        )
        await self.runner.create(job)
        return {"JobId": job.job_id}

    async def _job_call_type(self, target: dict[str, Any], identifier: str) -> str:
        """The call mode of a job's service: its products' TSLs must agree (a job's calls share one)."""
        if target["TargetType"] == "PRODUCT_KEY":
            products = [target["TargetProduct"]]
        else:
            products = list(dict.fromkeys(d["ProductKey"] for d in target["TargetDevices"]["targetDevices"]))
        modes = {p: await call_type(self.registry, p, identifier) for p in products}
        if len(set(modes.values())) > 1:
            raise _bad(
                f"The service {identifier!r} is synchronous in some of the job's products and asynchronous "
                f"in others ({', '.join(f'{p}: {m}' for p, m in modes.items())}); make one job per product."
            )
        return next(iter(modes.values()))

    async def _target(self, config: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """QueryJob's ``TargetConfig`` and the query condition selecting its devices."""
        kind = config.get("targetType")
        if kind == "PRODUCT_KEY":
            product_key = config.get("targetProduct")
            if not isinstance(product_key, str) or not product_key:
                raise _bad('A PRODUCT_KEY target needs "targetProduct": the ProductKey.')
            validate_product_names(product_key, "name")
            return (
                {"TargetType": kind, "TargetProduct": product_key},
                f"STARTSWITH(deviceId, '{product_device_id(product_key, '')}')",
            )
        if kind == "DEVICE":
            devices = config.get("targetDevices")
            if not isinstance(devices, list) or not 1 <= len(devices) <= MAX_DEVICES:
                raise _bad(
                    f'A DEVICE target needs "targetDevices": 1 to {MAX_DEVICES} '
                    '{"productKey": ..., "deviceName": ...} objects.'
                )
            pairs: dict[tuple[str, str], None] = {}
            for device in devices:
                product_key = (
                    device.get("productKey", device.get("ProductKey")) if isinstance(device, dict) else None
                )
                name = (
                    device.get("deviceName", device.get("DeviceName")) if isinstance(device, dict) else None
                )
                if not isinstance(product_key, str) or not isinstance(name, str):
                    raise _bad('Each of targetDevices is {"productKey": "...", "deviceName": "..."}.')
                pairs[(product_key, name)] = None
            ids = [(await self._check_devices(pk, [dn]))[0] for pk, dn in pairs]
            listed = ", ".join(f"'{device_id}'" for device_id in ids)
            shown = [{"ProductKey": pk, "DeviceName": dn} for pk, dn in pairs]
            return {"TargetType": kind, "TargetDevices": {"targetDevices": shown}}, f"deviceId IN [{listed}]"
        raise _bad(
            f"TargetConfig.targetType {str(kind)[:30]!r} is not supported; use PRODUCT_KEY (with "
            "targetProduct) or DEVICE (with targetDevices)."
        )

    async def _job(self, job_id: str) -> Job:
        job = await self.registry.get_job(job_id)
        if job is None or job.type is not JobType.DEVICE_CALLS:
            raise HubError(
                ErrorKind.JOB_NOT_FOUND, f"No job {job_id[:60]!r} (JobId as CreateJob returned it)."
            )
        return job

    def _job_info(self, job: Job) -> dict[str, Any]:
        echo: dict[str, Any] = job.request["aliyun"]
        info = {
            "JobId": job.job_id,
            "JobName": echo["JobName"],
            "Type": "INVOKE_SERVICE",
            "Status": JOB_STATUS[job.status],
            "Description": echo["Description"],
            "UtcCreate": utc_time(job.created_time),
            "UtcModified": utc_time(
                job.end_time or (job.start_time if job.start_time <= self.clock() else job.created_time)
            ),
        }
        if echo["ScheduledTime"] is not None:
            info["ScheduledTime"] = echo["ScheduledTime"]
        return info

    async def query_job(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        job = await self._job(required(params, "JobId"))
        echo = job.request["aliyun"]
        data = self._job_info(job)
        data.update(
            JobDocument=echo["JobDocument"],
            TargetConfig=echo["TargetConfig"],
            RolloutConfig=echo["RolloutConfig"],
            TimeoutConfig=echo["TimeoutConfig"],
        )
        return {"Data": data}

    async def cancel_job(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        job = await self._job(required(params, "JobId"))
        if job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
            raise HubError(
                ErrorKind.CONFLICT,
                f"Job {job.job_id} is {JOB_STATUS[job.status]}; only a SCHEDULED or IN_PROGRESS job "
                "can be cancelled.",
            )
        await self.runner.cancel(job.job_id)
        return {}

    async def list_job(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        size = _integer(params.get("PageSize") or "10", "PageSize", 1, 100)
        page = _integer(params.get("CurrentPage") or "1", "CurrentPage", 1, 10_000)
        status = None
        if params.get("Status"):
            status = _JOB_STATUS_FILTER.get(params["Status"])
            if status is None:
                raise _bad(
                    f"Status must be one of {', '.join(_JOB_STATUS_FILTER)}; got {params['Status'][:30]!r}."
                )
        jobs = await self.registry.list_jobs(type=JobType.DEVICE_CALLS, status=status, limit=10_000)
        shown = jobs[(page - 1) * size : page * size]
        return {
            "Page": page,
            "PageSize": size,
            "Total": len(jobs),
            "Data": {"data": [self._job_info(job) for job in shown]},
        }

    def _task(self, call: QueuedCall, job: Job) -> dict[str, Any]:
        names = split_product_device_id(call.device_id)
        return {
            "TaskId": call.call_id,
            "JobId": job.job_id,
            "JobName": job.request["aliyun"]["JobName"],
            "IotId": call.device_id,
            "ProductKey": names[0] if names else None,
            "DeviceName": names[1] if names else None,
            "Status": task_status(call),
            "Progress": "100" if call.state.terminal else "0",
            "UtcQueueTime": utc_time(call.created_time),
            "UtcModified": utc_time(call.completed_time or call.delivered_time or call.created_time),
        }

    async def list_task(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        limit = _integer(params.get("Limit") or "10", "Limit", 1, PAGE_SIZE_MAX)
        status = params.get("Status") or None
        if status is not None and status not in TASK_STATUSES:
            raise _bad(f"Status must be one of {', '.join(TASK_STATUSES)}; got {status[:30]!r}.")
        job_id, device_id = params.get("JobId"), None
        if params.get("Device"):
            if job_id:
                raise _bad("Give JobId or Device, not both.")
            device = _json_object(params, "Device", MAX_CONFIG)
            device_id = call_target({k: str(v) for k, v in device.items() if isinstance(v, str)})
        elif not job_id:
            raise HubError(
                ErrorKind.MISSING_ARGUMENT, "Give JobId (a job's tasks) or Device (a device's tasks)."
            )
        jobs: dict[str, Job | None] = {}
        if job_id:
            jobs[job_id] = await self._job(job_id)
        before = self._token(params.get("NextToken"))
        tasks: list[dict[str, Any]] = []
        last: QueuedCall | None = None
        more = True
        while more and len(tasks) < limit:
            page = await self.registry.list_calls(
                device_id=device_id, job_id=job_id, limit=200, before=before
            )
            more = len(page) == 200
            for call in page:
                last = call
                if call.job_id is None:
                    continue
                if call.job_id not in jobs:
                    found = await self.registry.get_job(call.job_id)
                    jobs[call.job_id] = found if found and found.type is JobType.DEVICE_CALLS else None
                job = jobs[call.job_id]
                if job is not None and (status is None or task_status(call) == status):
                    tasks.append(self._task(call, job))
                    if len(tasks) == limit:
                        more = more or call is not page[-1]
                        break
            if last is not None:
                before = (last.created_time, last.call_id)
        body: dict[str, Any] = {"Data": {"data": tasks}}
        if more and last is not None:
            body["NextToken"] = f"{last.created_time!r}_{last.call_id}"
        return body

    @staticmethod
    def _token(text: str | None) -> tuple[float, str] | None:
        if not text:
            return None
        created, _, call_id = text.partition("_")
        try:
            return float(created), call_id
        except ValueError:
            raise _bad("NextToken is not one ListTask returned.") from None

    async def query_task(self, params: dict[str, str], request_id: str) -> dict[str, Any]:
        task_id = required(params, "TaskId")
        call = await self.registry.get_call(task_id)
        job = await self.registry.get_job(call.job_id) if call and call.job_id else None
        if call is None or job is None or job.type is not JobType.DEVICE_CALLS:
            raise HubError(
                ErrorKind.CALL_NOT_FOUND, f"No task {task_id[:60]!r} (TaskId as ListTask returned it)."
            )
        data = self._task(call, job)
        detail = call.outcome_payload.decode("utf-8", "replace") if call.outcome_payload is not None else None
        data.update(Message=_task_message(call), StatusDetail=detail)
        return {"Data": data}
