"""What a call is and what it becomes, independent of any protocol.

A :class:`Call` is created by a front door (Azure REST, Alibaba POP API, ...), run by the
:class:`~methodhub.calls.engine.CallEngine`, carried by a :class:`~methodhub.router.base.Router` to
the node that holds the device's connection, and translated onto the wire by the device's dialect.
It ends as a :class:`CallOutcome` or a :class:`~methodhub.errors.HubError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from methodhub.errors import ErrorKind, HubError

MAX_METHOD_NAME_LENGTH = 128
"""Azure documents no limit; 128 matches its limit on identifiers and keeps topics short."""
METHOD_NAME_FORBIDDEN = frozenset('$()<>@,;:\\"/[]?={} \t#+%')
"""Azure's forbidden property-name characters, plus ``# + %``: MQTT wildcards cannot appear in a
topic name, and devices percent-decode the name they receive (azure-direct-methods-wire.md §1.6)."""


class CallKind(StrEnum):
    """How the payload is to be understood end to end.

    ``METHOD``: a named method whose request and response payloads are JSON text (Azure direct
    methods, Alibaba synchronous thing services). ``MESSAGE``: opaque bytes both ways (Alibaba RRPC).
    """

    METHOD = "method"
    MESSAGE = "message"


@dataclass(slots=True, frozen=True)
class Call:
    """One synchronous cloud-to-device call.

    Attributes:
        target: the identity key of the callee: ``"{deviceId}"`` or ``"{deviceId}/{moduleId}"``
            (device ids cannot contain ``/``, so the key is unambiguous).
        method: the method name (for ``MESSAGE`` calls, a label such as ``"rrpc"``).
        payload: the request body as bytes: JSON text for ``METHOD`` calls, anything for ``MESSAGE``.
        response_timeout: seconds the device has to answer once the request is delivered.
        connect_timeout: seconds to wait for the device to come online (connected and subscribed)
            before the call fails as offline; 0 means "it must be online now".
        kind: how the payload is to be understood, see :class:`CallKind`.
        topic: for dialects that let the caller pick the delivery topic (Alibaba custom-topic RRPC),
            that topic; ``None`` otherwise.
        request_id: an id the front door chose and reports to its caller (Alibaba's ``MessageId``);
            a dialect that can carry it on the wire uses it as the request id, the others ignore
            it. Unique per call; ``None`` lets the dialect number the request itself.
    """

    target: str
    method: str
    payload: bytes
    response_timeout: float
    connect_timeout: float = 0.0
    kind: CallKind = CallKind.METHOD
    topic: str | None = None
    request_id: str | None = None


@dataclass(slots=True, frozen=True)
class CallOutcome:
    """The device's answer: its own status code and its payload bytes.

    For ``METHOD`` calls the payload is validated JSON text (``b"null"`` when the device sent an
    empty body), so a front door can embed it in a JSON response without parsing it again.
    """

    status: int
    payload: bytes


def identity_key(device_id: str, module_id: str | None = None) -> str:
    """The call target key for a device or one of its modules."""
    return device_id if not module_id else f"{device_id}/{module_id}"


def validate_method_name(name: object) -> str:
    """Return ``name`` if it is a usable method name, else raise ``INVALID_ARGUMENT``.

    A method name travels inside MQTT topics, so it must be 1..128 printable US-ASCII characters
    and none of ``$ ( ) < > @ , ; : \\ " / [ ] ? = { } # + %``, space or tab.
    """
    if not isinstance(name, str) or not name:
        raise HubError(ErrorKind.INVALID_ARGUMENT, "methodName is required and must be a non-empty string.")
    if len(name) > MAX_METHOD_NAME_LENGTH:
        raise HubError(
            ErrorKind.INVALID_ARGUMENT, f"methodName is longer than {MAX_METHOD_NAME_LENGTH} characters."
        )
    for char in name:
        if char in METHOD_NAME_FORBIDDEN or not (" " < char < "\x7f"):
            raise HubError(
                ErrorKind.INVALID_ARGUMENT,
                f"methodName contains {char!r}; use printable US-ASCII without "
                '$ ( ) < > @ , ; : \\ " / [ ] ? = { } # + % or spaces.',
            )
    return name
