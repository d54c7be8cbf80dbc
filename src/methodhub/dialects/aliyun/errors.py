"""Alibaba Cloud's error answers, built once from :mod:`methodhub.errors` (aliyun-rrpc-wire.md §2.2).

Two layers, as on Alibaba's cloud:

* errors of the POP gateway itself (signature, timestamp, nonce, missing parameter, unknown action,
  version): HTTP 4xx/5xx and ``{"RequestId", "HostId", "Code", "Message", "Recommend"}``, which
  ``aliyunsdkcore`` raises as ``ServerException(Code, Message)``;
* IoT business errors (no such device, bad timeout, ...): HTTP 200 and
  ``{"RequestId", "Success": false, "Code", "ErrorMessage"}``, which the SDK returns as the body.

A throttled request (``Throttling.User``, HTTP 400, gateway layer) also gets ``x-acs-retry-after``
(milliseconds, what the Tea SDK reads).

``ErrorSpec.aliyun_http_status`` says which layer a kind belongs to. ``RRpc`` reports call outcomes
(offline, timeout, device gone) as HTTP 200 ``{"RequestId", "Success": true, "RrpcCode"}`` (plus
``MessageId`` once the request was sent), so that clients checking ``RrpcCode`` see them.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from methodhub.calls.quotas import Throttled
from methodhub.errors import ErrorKind, HubError
from methodhub.http.messages import Response

RECOMMEND = "See docs/aliyun-compatibility.md in methodhub for the actions and parameters it implements."
"""``Recommend``: where Alibaba links its diagnosis page, we point at what methodhub implements."""

CALL_OUTCOME_RRPC_CODES = frozenset({"OFFLINE", "TIMEOUT", "HALFCONN"})
"""RrpcCodes that describe what happened to a call that ran (``Success`` stays true)."""


def new_request_id() -> str:
    """A RequestId in Alibaba's shape: an upper-case UUID."""
    return str(uuid.uuid4()).upper()


def required(params: dict[str, str], name: str) -> str:
    """``params[name]``; raises ``MISSING_ARGUMENT`` (``MissingParameter``, Alibaba's words) if it
    is absent or empty."""
    value = params.get(name)
    if not value:
        raise HubError(
            ErrorKind.MISSING_ARGUMENT,
            f'The input parameter "{name}" that is mandatory for processing this request is not supplied.',
        )
    return value


def pop_error(error: HubError, request_id: str, host: str | None = None) -> Response:
    """The answer Alibaba's API gives for ``error`` (see the module docstring)."""
    spec = error.kind.spec
    body: dict[str, Any]
    if spec.aliyun_http_status != 200:
        body = {
            "RequestId": request_id,
            "HostId": host or "",
            "Code": spec.aliyun_code,
            "Message": error.message,
            "Recommend": RECOMMEND,
        }
        headers = None
        if isinstance(error, Throttled):
            # The Tea SDK (alibabacloud_tea_openapi) raises ThrottlingException(retry_after=...) when
            # this header is there, and its retry policy waits that many milliseconds.
            headers = [("x-acs-retry-after", str(max(1, math.ceil(error.retry_after * 1000))))]
        return Response.json(body, spec.aliyun_http_status, headers)
    body = {
        "RequestId": request_id,
        "Success": False,
        "Code": spec.aliyun_code,
        "ErrorMessage": error.message,
    }
    return Response.json(body)


def rrpc_error(error: HubError, request_id: str, message_id: int | None, host: str | None = None) -> Response:
    """The ``RRpc`` answer for a call that ended in ``error``.

    Args:
        message_id: the call's MessageId if its request went to the device, else None.
    """
    spec = error.kind.spec
    if spec.aliyun_http_status != 200 or spec.rrpc_code is None:
        return pop_error(error, request_id, host)
    body: dict[str, Any] = {"RequestId": request_id, "Success": spec.rrpc_code in CALL_OUTCOME_RRPC_CODES}
    if not body["Success"]:
        body.update(Code=spec.aliyun_code, ErrorMessage=error.message)
    body["RrpcCode"] = spec.rrpc_code
    if message_id is not None:
        body["MessageId"] = message_id
    return Response.json(body)
