"""methodhub's own API for queued calls (calls that wait for sleepy devices): ``/calls``.

Authenticated like Azure's service API (a service SAS token with ServiceConnect; errors in Azure's
shape). The contract (docs/queued-calls.md):

- ``POST /calls`` with ``{"deviceId", "moduleId"?, "methodName", "payload", "responseTimeoutInSeconds"
  (5-300, default 30, per attempt), "expiresInSeconds" (default 86400, at most the hub's maximum),
  "attempts" (1-10, default 1), "idempotencyKey"?}`` → 202 with the record and ``Location:
  /calls/{callId}``; the same idempotency key with the same request → 200 with the same call; with
  another request → 409.
- ``GET /calls/{callId}[?waitSeconds=N]`` (N ≤ 300: long-poll until it ends) → the record.
- ``GET /calls?deviceId=&state=&jobId=&methodName=&frontDoor=&since=&until=&status=&limit=
  &continuationToken=`` → ``{"calls": [...], "continuationToken": ...}``, newest first: queued and
  job calls and the call history's synchronous calls (:mod:`methodhub.calls.history`).
- ``DELETE /calls/{callId}`` → 200 with the cancelled record; 409 once it was sent or ended.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from methodhub import jsontext
from methodhub.calls.delivery import QueuedCalls
from methodhub.calls.queued import DEFAULT_EXPIRES, CallFilters, CallState, QueuedCall
from methodhub.calls.quotas import NO_QUOTAS, Quotas
from methodhub.config import MAX_METHOD_PAYLOAD, RESPONSE_TIMEOUT_DEFAULT, RESPONSE_TIMEOUT_RANGE
from methodhub.dialects.azure.errors import azure_error, utc_timestamp
from methodhub.dialects.azure.jobs_api import parse_time
from methodhub.dialects.azure.service_auth import ServiceAuthenticator
from methodhub.dialects.azure.topics import validate_method_name
from methodhub.errors import ErrorKind, HubError
from methodhub.http.messages import Request, Response
from methodhub.http.routing import Routes
from methodhub.registry import Right

MAX_WAIT = 300
MAX_LIMIT = 1000


def call_json(call: QueuedCall) -> dict[str, Any]:
    """A call record as the API shows it."""

    def when(epoch: float | None) -> str | None:
        return utc_timestamp(epoch) if epoch is not None else None

    doc: dict[str, Any] = {
        "callId": call.call_id,
        "deviceId": call.device_id,
        "moduleId": call.module_id,
        "methodName": call.method,
        "state": call.state.value,
        "attempt": call.attempt,
        "attempts": call.attempts,
        "responseTimeoutInSeconds": call.response_timeout,
        "createdTime": when(call.created_time),
        "deliveredTime": when(call.delivered_time),
        "completedTime": when(call.completed_time),
        "expiresTime": when(call.expires_time),
        "jobId": call.job_id,
        "idempotencyKey": call.idempotency_key,
        "node": call.owner,
        "frontDoor": call.front_door,
        "caller": call.caller,
        "requestSize": call.request_size,
        "responseSize": call.response_size,
        "latencyMs": round(call.latency_ms, 3) if call.latency_ms is not None else None,
        "trackingId": call.tracking_id,
    }
    if call.outcome_status is not None:
        payload = jsontext.loads(call.outcome_payload) if call.outcome_payload else None
        doc["outcome"] = {"status": call.outcome_status, "payload": payload}
    if call.error_code is not None:
        doc["error"] = {"errorCode": call.error_code, "message": call.error_message}
    return doc


def _number(body: dict[str, Any], key: str, default: int, low: int, high: float) -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise HubError(ErrorKind.INVALID_ARGUMENT, f"{key} must be an integer from {low} to {high:g}.")
    return value


def _token(call: QueuedCall) -> str:
    return base64.urlsafe_b64encode(json.dumps([call.created_time, call.call_id]).encode()).decode()


def _position(token: str) -> tuple[float, str]:
    try:
        created, call_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return float(created), str(call_id)
    except Exception:
        raise HubError(ErrorKind.INVALID_ARGUMENT, "continuationToken is not one this API gave.") from None


FRONT_DOORS = ("azure", "aliyun", "native", "job")


def _filters(query: Mapping[str, str]) -> CallFilters | None:
    """The history filters of a ``GET /calls`` (None: none given)."""
    front_door, status = query.get("frontDoor"), query.get("status")
    if front_door is not None and front_door not in FRONT_DOORS:
        raise HubError(ErrorKind.INVALID_ARGUMENT, f"frontDoor must be one of {', '.join(FRONT_DOORS)}.")
    code = None
    if status is not None:
        try:
            code = int(status)
        except ValueError:
            raise HubError(
                ErrorKind.INVALID_ARGUMENT, "status must be an integer (the device's status code)."
            ) from None
    filters = CallFilters(
        method=query.get("methodName"),
        front_door=front_door,
        since=parse_time(query.get("since"), "since"),
        until=parse_time(query.get("until"), "until"),
        status=code,
    )
    return None if filters == CallFilters() else filters


class QueuedCallsApi:
    """The ``/calls`` handlers."""

    def __init__(self, calls: QueuedCalls, auth: ServiceAuthenticator, quotas: Quotas = NO_QUOTAS) -> None:
        self.calls = calls
        self.auth = auth
        self.quotas = quotas
        """Creating a queued call counts as a call against the method call quotas (429 past them)."""

    def register(self, routes: Routes) -> None:
        routes.add("POST", "/calls", self._authorized(self._create))
        routes.add("GET", "/calls", self._authorized(self._list))
        routes.add("GET", "/calls/{call_id}", self._authorized(self._get))
        routes.add("DELETE", "/calls/{call_id}", self._authorized(self._cancel))

    def _authorized(self, handler: Any) -> Any:
        async def run(request: Request) -> Response:
            try:
                policy = await self.auth.authenticate(
                    request.headers.get("authorization"), request.headers.get("host"), Right.SERVICE_CONNECT
                )
                response: Response = await handler(request, policy)
                return response
            except HubError as exc:
                return azure_error(exc)

        return run

    async def _create(self, request: Request, policy: str) -> Response:
        self.quotas.check_call(policy)
        try:
            body = jsontext.loads(request.body) if request.body else None
        except jsontext.NotJson as exc:
            raise HubError(ErrorKind.INVALID_ARGUMENT, f"The request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise HubError(
                ErrorKind.INVALID_ARGUMENT,
                "The request body must be a JSON object with deviceId and methodName.",
            )
        device_id, module_id = body.get("deviceId"), body.get("moduleId")
        if (
            not isinstance(device_id, str)
            or not device_id
            or (module_id is not None and not isinstance(module_id, str))
        ):
            raise HubError(
                ErrorKind.INVALID_ARGUMENT, "deviceId (and moduleId, if given) must be non-empty strings."
            )
        key = body.get("idempotencyKey")
        if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 128):
            raise HubError(
                ErrorKind.INVALID_ARGUMENT, "idempotencyKey must be a string of 1 to 128 characters."
            )
        method = validate_method_name(body.get("methodName"))
        payload = jsontext.dumps(body.get("payload"))
        if len(payload) > MAX_METHOD_PAYLOAD:
            raise HubError(
                ErrorKind.PAYLOAD_TOO_LARGE,
                f"The payload is {len(payload)} bytes of JSON; the limit is {MAX_METHOD_PAYLOAD} bytes.",
            )
        low, high = RESPONSE_TIMEOUT_RANGE
        longest = self.calls.max_expires
        default_expiry = int(min(DEFAULT_EXPIRES, longest))  # a day, or the operator's maximum
        call, created = await self.calls.create(
            device_id,
            module_id or None,
            method,
            payload,
            response_timeout=_number(body, "responseTimeoutInSeconds", RESPONSE_TIMEOUT_DEFAULT, low, high),
            expires=_number(body, "expiresInSeconds", default_expiry, 1, longest),
            attempts=_number(body, "attempts", 1, 1, 10),
            idempotency_key=key,
            caller=policy,
        )
        return Response.json(
            call_json(call), 202 if created else 200, headers=[("location", f"/calls/{call.call_id}")]
        )

    async def _get(self, request: Request, policy: str) -> Response:
        call_id = request.path_params["call_id"]
        wait = request.query.get("waitSeconds")
        if wait is None:
            return Response.json(call_json(await self.calls.get(call_id)))
        try:
            seconds = float(wait)
        except ValueError:
            seconds = -1
        if not 0 <= seconds <= MAX_WAIT:
            raise HubError(ErrorKind.INVALID_ARGUMENT, f"waitSeconds must be a number from 0 to {MAX_WAIT}.")
        return Response.json(call_json(await self.calls.wait(call_id, seconds)))

    async def _list(self, request: Request, policy: str) -> Response:
        query = request.query
        state = query.get("state")
        if state is not None and state not in CallState.__members__.values():
            states = ", ".join(s.value for s in CallState)
            raise HubError(ErrorKind.INVALID_ARGUMENT, f"state must be one of {states}.")
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            raise HubError(ErrorKind.INVALID_ARGUMENT, f"limit must be an integer from 1 to {MAX_LIMIT}.")
        token = query.get("continuationToken")
        calls = await self.calls.store.list_calls(
            device_id=query.get("deviceId"),
            state=CallState(state) if state is not None else None,
            job_id=query.get("jobId"),
            limit=limit + 1,
            before=_position(token) if token else None,
            filters=_filters(query),
        )
        more = len(calls) > limit
        calls = calls[:limit]
        return Response.json(
            {"calls": [call_json(c) for c in calls], "continuationToken": _token(calls[-1]) if more else None}
        )

    async def _cancel(self, request: Request, policy: str) -> Response:
        return Response.json(call_json(await self.calls.cancel(request.path_params["call_id"])))
