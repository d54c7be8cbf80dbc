"""What an Azure direct method is on any device transport (MQTT, AMQP): which calls a device can
take, and what its answer becomes (azure-direct-methods-wire.md §2, azure-amqp-wire.md §4)."""

from __future__ import annotations

from methodhub import jsontext
from methodhub.calls.model import Call, CallKind, CallOutcome
from methodhub.config import MAX_METHOD_PAYLOAD
from methodhub.errors import ErrorKind, HubError


def validated_json(payload: bytes) -> bytes | None:
    """``payload`` if it is JSON text (empty means ``null``), else None."""
    if not payload:
        return b"null"
    return payload if jsontext.is_json(payload) else None


def method_result(status: int, payload: bytes) -> CallOutcome | HubError:
    """A device's answer ``(status, payload)`` as the call's result: the outcome, or the error a
    payload over 128 KiB (``PAYLOAD_TOO_LARGE``) or not JSON (``INVALID_DEVICE_RESPONSE``) gives.
    An empty payload is ``null``."""
    if len(payload) > MAX_METHOD_PAYLOAD:
        return HubError(
            ErrorKind.PAYLOAD_TOO_LARGE,
            f"The device answered with {len(payload)} bytes; a method response may "
            f"be at most {MAX_METHOD_PAYLOAD} bytes (128 KiB), as on Azure IoT Hub.",
        )
    body = validated_json(payload)
    if body is None:
        return HubError(
            ErrorKind.INVALID_DEVICE_RESPONSE,
            "The device answered with a payload that is not JSON; Azure devices must answer "
            "with JSON or an empty body.",
        )
    return CallOutcome(status, body)


def check_method_call(call: Call, key: str, transport: str) -> None:
    """Raise ``INVALID_ARGUMENT`` unless ``call`` is a JSON method: Azure devices take no raw RRPC
    messages. ``transport`` names the dialect's transport in the message (``"MQTT"``, ``"AMQP"``)."""
    if call.kind is not CallKind.METHOD:
        raise HubError(
            ErrorKind.INVALID_ARGUMENT,
            f"Device '{key}' is connected with Azure's {transport} dialect, which carries JSON "
            "methods only, not raw RRPC messages; call a method on it instead.",
        )
