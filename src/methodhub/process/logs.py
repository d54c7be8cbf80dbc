"""Structured, quiet logging.

Default output is one line per event on stderr::

    2026-11-22T14:08:00.123Z INFO methodhub.process.hub mqtt listening on 127.0.0.1:1883
    2026-11-22T14:08:03.001Z WARNING methodhub.gateway protocol error, closing connection \
        client_id=pump-17 peer=127.0.0.1:50312 reason="..."

Key/value context goes in ``extra={"ctx": {...}}``. ``--log-format json`` prints one JSON object
per line instead, for log shippers. The default level is INFO, and the hub logs at INFO only what
an operator wants to see (listeners, first start, refusals); per-connection chatter is DEBUG.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"ctx", "message", "asctime"}


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _context(record: logging.LogRecord) -> dict[str, Any]:
    ctx = dict(getattr(record, "ctx", None) or {})
    for key, value in record.__dict__.items():
        if key not in _RESERVED and not key.startswith("_"):
            ctx[key] = value
    return ctx


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\\\n'):
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        ctx = _context(record)
        if ctx:
            line += " " + " ".join(f"{k}={_logfmt_value(v)}" for k, v in ctx.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **{
                k: v if isinstance(v, int | float | bool | None) else str(v)
                for k, v in _context(record).items()
            },
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Send methodhub's logs to stderr at ``level`` in ``fmt`` ("text" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("methodhub")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
