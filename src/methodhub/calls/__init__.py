"""Calls, independent of any protocol: the model, the engine, and the ports the engine owns."""

from methodhub.calls.engine import CONNECT_TIMEOUT_INFO, CallEngine
from methodhub.calls.model import Call, CallKind, CallOutcome, identity_key

__all__ = ["CONNECT_TIMEOUT_INFO", "Call", "CallEngine", "CallKind", "CallOutcome", "identity_key"]
