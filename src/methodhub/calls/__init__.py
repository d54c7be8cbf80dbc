"""Calls, independent of any protocol: the model, the engine, and the ports the engine owns."""

from methodhub.calls.engine import CONNECT_TIMEOUT_INFO, CallEngine
from methodhub.calls.model import Call, CallKind, CallOutcome, identity_key
from methodhub.calls.ports import CallCarrier, IdentityLookup

__all__ = [
    "CONNECT_TIMEOUT_INFO",
    "Call",
    "CallCarrier",
    "CallEngine",
    "CallKind",
    "CallOutcome",
    "IdentityLookup",
    "identity_key",
]
