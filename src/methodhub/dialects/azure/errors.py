"""Azure IoT Hub's error body, built once from :mod:`methodhub.errors`.

Azure answers errors with an envelope whose ``Message`` is itself a JSON-encoded string
(azure-direct-methods-wire.md §2.5)::

    {"Message": "{\\"errorCode\\":404103,\\"trackingId\\":\\"…\\",\\"message\\":\\"Timed out waiting for
     device to connect.\\",\\"info\\":{\\"timeout\\":\\"00:00:00\\"},\\"timestampUtc\\":\\"…\\"}",
     "ExceptionMessage": ""}

plus the header ``iothub-errorcode: DeviceNotOnline``. A throttled request (429001
``ThrottlingException``) also gets ``Retry-After`` (seconds).
"""

from __future__ import annotations

import math
import time
import uuid

import orjson

from methodhub.calls import CONNECT_TIMEOUT_INFO
from methodhub.calls.quotas import Throttled
from methodhub.errors import ErrorKind, HubError
from methodhub.http.messages import Response


def utc_timestamp(epoch: float | None = None) -> str:
    """ISO 8601 UTC with seven fraction digits, as Azure prints times."""
    epoch = time.time() if epoch is None else epoch
    whole = int(epoch)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((epoch - whole) * 1e7):07d}Z"


def format_timespan(seconds: float) -> str:
    """``hh:mm:ss`` as Azure reports timeouts in its error ``info`` (``"00:00:05"``)."""
    total = max(0, round(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def azure_error(error: HubError) -> Response:
    """The HTTP response Azure IoT Hub gives for ``error``."""
    spec = error.kind.spec
    message, info = error.message, error.info
    waited = info.get(CONNECT_TIMEOUT_INFO) if info else None
    if waited is not None:  # the engine waited for the device to connect: Azure's words for it
        message = f"{spec.default_message} {message}"
        info = {"timeout": format_timespan(waited)}
    inner = {
        "errorCode": spec.azure_code,
        "trackingId": uuid.uuid4().hex,
        "message": message,
        "info": info,
        "timestampUtc": utc_timestamp(),
    }
    body = orjson.dumps({"Message": orjson.dumps(inner).decode(), "ExceptionMessage": ""})
    headers = [("iothub-errorcode", spec.azure_name)]
    if isinstance(error, Throttled):
        headers.append(("retry-after", str(retry_after_seconds(error.retry_after))))
    return Response(spec.http_status, body, headers=headers)


def retry_after_seconds(wait: float) -> int:
    """``Retry-After`` is whole seconds (RFC 9110 §10.2.3): the wait rounded up, at least 1."""
    return max(1, math.ceil(wait))


def azure_error_of(kind: ErrorKind, message: str | None = None) -> Response:
    return azure_error(HubError(kind, message))
