"""The protocol-free call engine: a call becomes an outcome or a typed error."""

from methodhub.calls.engine import CallEngine, format_timespan
from methodhub.calls.model import Call, CallKind, CallOutcome, identity_key

__all__ = ["Call", "CallEngine", "CallKind", "CallOutcome", "format_timespan", "identity_key"]
