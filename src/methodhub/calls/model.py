"""What a call is and what it becomes, independent of any protocol.

A :class:`Call` is created by a front door (Azure REST, Alibaba POP API, ...), run by the
:class:`~methodhub.calls.engine.CallEngine`, carried by a :class:`~methodhub.calls.ports.CallCarrier` to
the node that holds the device's connection, and translated onto the wire by the device's dialect.
It ends as a :class:`CallOutcome` or a :class:`~methodhub.errors.HubError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


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
        dialect_data: what a front door tells the device's dialect about this call, as text (e.g.
            Alibaba's caller-chosen MessageId and delivery topic); ``None`` when it says nothing.
            The engine and the routers carry it without reading it (the cluster router sends it
            to the node holding the device); each dialect defines and reads its own keys.
    """

    target: str
    method: str
    payload: bytes
    response_timeout: float
    connect_timeout: float = 0.0
    kind: CallKind = CallKind.METHOD
    dialect_data: Mapping[str, str] | None = None


@dataclass(slots=True, frozen=True)
class CallOutcome:
    """The device's answer: its own status code and its payload bytes.

    For ``METHOD`` calls the payload is validated JSON text (``b"null"`` when the device sent an
    empty body), so a front door can embed it in a JSON response without parsing it again.
    """

    status: int
    payload: bytes


@dataclass(slots=True, frozen=True)
class CallOrigin:
    """Who made a call and through which door, for the call history: what a front door knows and
    the engine does not.

    Attributes:
        front_door: the door's name (each front door names itself; the engine does not read it).
        caller: the credential's name (a shared access policy), if known.
        tracking_id: the request id the door answers the caller with, if it has one.
    """

    front_door: str
    caller: str | None = None
    tracking_id: str | None = None


def identity_key(device_id: str, module_id: str | None = None) -> str:
    """The call target key for a device or one of its modules."""
    return device_id if not module_id else f"{device_id}/{module_id}"
