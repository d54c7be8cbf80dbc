"""The AMQP package's exceptions."""

from __future__ import annotations

DECODE_ERROR = "amqp:decode-error"
INVALID_FIELD = "amqp:invalid-field"
FRAMING_ERROR = "amqp:connection:framing-error"


class AmqpError(Exception):
    """Base class of everything ``methodhub.amqp`` raises on its own account."""


class DecodeError(AmqpError, ValueError):
    """The peer sent bytes that are not a valid AMQP encoding (or a value of the wrong shape).

    ``condition`` is the AMQP error condition (a symbol, part 2 §2.8.15) to close the connection
    with: ``amqp:decode-error`` for bytes that do not decode, ``amqp:invalid-field`` for a
    performative or section field that is missing or of the wrong type.
    """

    def __init__(self, reason: str, condition: str = DECODE_ERROR) -> None:
        super().__init__(reason)
        self.reason = reason
        self.condition = condition


class FramingError(DecodeError):
    """A frame header breaks part 2 §2.3 (size < 8, doff < 2, size over max-frame-size, ...).

    Close the connection with ``condition`` (``amqp:connection:framing-error``).
    """

    def __init__(self, reason: str, condition: str = FRAMING_ERROR) -> None:
        super().__init__(reason, condition)
