"""The one table of failures a user can act on.

Every front door (Azure REST, Alibaba POP API, MQTT) reports failures from this table and nowhere
else, so that "device offline" means the same thing, with the same words, on every protocol.

Each :class:`ErrorKind` carries:

* ``http_status`` — the HTTP status the REST front doors answer with;
* ``azure_code`` / ``azure_name`` — Azure IoT Hub's six-digit ``errorCode`` and its name (sent in the
  ``iothub-errorcode`` header), from Azure's ``troubleshoot-error-codes`` page where Azure has one;
* ``aliyun_code`` — the Alibaba Cloud POP ``Code`` for API errors;
* ``rrpc_code`` — the ``RrpcCode`` an Alibaba ``RRpc`` call reports for call outcomes;
* ``aliyun_http_status`` — the HTTP status of Alibaba's answer: 200 for IoT business errors (the
  body says ``"Success": false``, as Alibaba's IoT API does), 4xx/5xx for errors of the POP gateway
  itself (signature, missing parameter, unknown action), which Alibaba's SDKs raise as exceptions.

Codes that Azure does not define are methodhub's own and are marked so in ``docs/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, unique
from typing import Any


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    http_status: int
    azure_code: int
    azure_name: str
    aliyun_code: str
    rrpc_code: str | None
    default_message: str
    aliyun_http_status: int = 200


@unique  # two rows with equal specs would otherwise silently become one member
class ErrorKind(Enum):
    """A failure a caller can act on. ``kind.value`` is its :class:`ErrorSpec`."""

    DEVICE_NOT_FOUND = ErrorSpec(
        404, 404001, "DeviceNotFound", "iot.device.NotExistedDevice", None, "Device not found."
    )
    MODULE_NOT_FOUND = ErrorSpec(
        404, 404010, "ModuleNotFound", "iot.device.NotExistedDevice", None, "Module not found."
    )
    DEVICE_OFFLINE = ErrorSpec(
        404,
        404103,
        "DeviceNotOnline",
        "iot.messagebroker.OFFLINE",
        "OFFLINE",
        "Timed out waiting for device to connect.",
    )
    DEVICE_DISCONNECTED = ErrorSpec(
        404,
        404104,
        "DeviceConnectionClosedRemotely",
        "iot.messagebroker.HALFCONN",
        "HALFCONN",
        "The device disconnected before it answered.",
    )
    CALL_TIMEOUT = ErrorSpec(
        504,
        504101,
        "GatewayTimeout",
        "iot.messagebroker.TIMEOUT",
        "TIMEOUT",
        "Timed out waiting for the response from device.",
    )
    INVALID_DEVICE_RESPONSE = ErrorSpec(
        502,
        502001,
        "InvalidDeviceResponse",
        "iot.messagebroker.RrpcException",
        "UNKNOWN",
        "The device answered with a response that is not valid for this call.",
    )
    INVALID_ARGUMENT = ErrorSpec(
        400, 400004, "ArgumentInvalid", "InvalidParameter", None, "Invalid argument."
    )
    INVALID_PAGE_PARAMS = ErrorSpec(
        400, 400004, "ArgumentInvalid", "iot.common.InvalidPageParams", None, "Invalid page parameters."
    )
    INVALID_PROTOCOL_VERSION = ErrorSpec(
        400, 400001, "InvalidProtocolVersion", "InvalidVersion", None, "Invalid API version.", 400
    )
    PAYLOAD_TOO_LARGE = ErrorSpec(
        413, 413001, "MessageTooLarge", "iot.messagebroker.MessageTooLarge", None, "Payload too large."
    )
    UNAUTHORIZED = ErrorSpec(
        401, 401002, "IotHubUnauthorizedAccess", "InvalidAccessKeyId.NotFound", None, "Unauthorized.", 404
    )
    SIGNATURE_MISMATCH = ErrorSpec(
        401,
        401002,
        "IotHubUnauthorizedAccess",
        "SignatureDoesNotMatch",
        None,
        "The request's signature does not match the one the hub calculated.",
        400,
    )
    INCOMPLETE_SIGNATURE = ErrorSpec(
        401,
        401002,
        "IotHubUnauthorizedAccess",
        "IncompleteSignature",
        None,
        "The request signature does not conform to Aliyun standards.",
        400,
    )
    REQUEST_REPLAYED = ErrorSpec(
        401,
        401002,
        "IotHubUnauthorizedAccess",
        "SignatureNonceUsed",
        None,
        "This signature nonce was used before; sign every request with a new nonce.",
        400,
    )
    REQUEST_EXPIRED = ErrorSpec(
        401,
        401002,
        "IotHubUnauthorizedAccess",
        "InvalidTimeStamp.Expired",
        None,
        "The request's timestamp is too far from the hub's clock.",
        400,
    )
    ACCESS_DENIED = ErrorSpec(
        401,
        401002,
        "IotHubUnauthorizedAccess",
        "Forbidden.RAM",
        None,
        "The credential lacks the permission this request needs.",
        403,
    )
    MALFORMED_REQUEST = ErrorSpec(
        400,
        400004,
        "ArgumentInvalid",
        "InvalidParameter",
        None,
        "The request's common parameters (signature, timestamp, encoding) are malformed.",
        400,
    )
    MISSING_ARGUMENT = ErrorSpec(
        400, 400004, "ArgumentInvalid", "MissingParameter", None, "A required parameter is missing.", 400
    )
    INVALID_TIMEOUT = ErrorSpec(
        400,
        400004,
        "ArgumentInvalid",
        "iot.messagebroker.InvalidTimeoutValue",
        None,
        "The timeout is outside the allowed range.",
    )
    NOT_BASE64 = ErrorSpec(
        400,
        400004,
        "ArgumentInvalid",
        "iot.messagebroker.MessageContentIsNotBase64Encode",
        None,
        "The message is not valid base64.",
    )
    DEVICE_ALREADY_EXISTS = ErrorSpec(
        409,
        409001,
        "DeviceAlreadyExists",
        "iot.device.AlreadyExistedDeviceName",
        None,
        "A device with this id already exists.",
    )
    MODULE_ALREADY_EXISTS = ErrorSpec(
        409,
        409301,
        "ModuleAlreadyExistsOnDevice",
        "iot.device.AlreadyExistedDeviceName",
        None,
        "A module with this id already exists on the device.",
    )
    PRECONDITION_FAILED = ErrorSpec(
        412,
        412001,
        "PreconditionFailed",
        "iot.common.PreconditionFailed",
        None,
        "The etag in If-Match does not match the current version.",
    )
    TOO_MANY_CALLS_IN_FLIGHT = ErrorSpec(
        403,
        403800,
        "DeviceMaximumInflightMethodExceeded",
        "iot.messagebroker.RateLimit",
        None,
        "Too many calls are in flight to this device.",
    )
    THROTTLED = ErrorSpec(
        429,
        429001,
        "ThrottlingException",
        "Throttling.User",
        None,
        "Request was denied due to user flow control: the hub's quota for this is exhausted; retry later.",
        400,
    )
    """Over a quota (:mod:`methodhub.calls.quotas`). Azure: 429 ``ThrottlingException`` and a
    ``Retry-After`` header; Alibaba: HTTP 400 ``Throttling.User`` (the POP gateway's layer, as its
    APIs answer, e.g. "ErrorCode=Throttling.User HttpCode=400" on help.aliyun.com)."""
    NOT_FOUND = ErrorSpec(404, 404000, "NotFound", "InvalidAction.NotFound", None, "No such resource.", 404)
    JOB_NOT_FOUND = ErrorSpec(
        404, 404002, "JobNotFound", "iot.job.NotExistedJob", None, "No job with this id."
    )
    TSL_NOT_FOUND = ErrorSpec(
        404, 404040, "ThingModelNotFound", "iot.tsl.NotExistedTsl", None, "The product has no thing model."
    )
    CALL_NOT_FOUND = ErrorSpec(
        404, 404030, "CallNotFound", "iot.call.NotExistedCall", None, "No queued call with this id."
    )
    CONFLICT = ErrorSpec(
        409,
        409010,
        "Conflict",
        "iot.common.Conflict",
        None,
        "The request conflicts with the resource's state.",
        409,
    )
    METHOD_NOT_ALLOWED = ErrorSpec(
        405, 405000, "MethodNotAllowed", "UnsupportedHTTPMethod", None, "HTTP method not allowed here.", 405
    )
    SERVICE_UNAVAILABLE = ErrorSpec(
        503,
        503001,
        "ServiceUnavailable",
        "ServiceUnavailable",
        "UNKNOWN",
        "The hub cannot serve this request right now; retry later.",
        503,
    )
    HUB_STOPPING = ErrorSpec(
        503,
        503002,
        "HubStopping",
        "iot.system.HubStopping",
        "UNKNOWN",
        "The hub is stopping; retry the call in a moment (another node, or this one once it is back).",
    )
    SERVER_ERROR = ErrorSpec(
        500, 500001, "ServerError", "iot.system.SystemException", "UNKNOWN", "Internal server error."
    )

    @property
    def spec(self) -> ErrorSpec:
        return self.value


class HubError(Exception):
    """A failure from :class:`ErrorKind`, with a message a person can act on.

    Args:
        kind: which failure.
        message: what happened and, where it helps, what to do; defaults to the kind's message.
        info: extra machine-readable detail (Azure puts it in the ``info`` object of its error body).
    """

    __slots__ = ("info", "kind", "message")

    def __init__(self, kind: ErrorKind, message: str | None = None, info: dict[str, Any] | None = None):
        self.kind = kind
        self.message = message or kind.spec.default_message
        self.info = info or {}
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"HubError({self.kind.name}, {self.message!r})"
