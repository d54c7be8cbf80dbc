"""Frame bodies: the performatives (part 2 §2.7), their parts (§2.8, part 3 §3.5) and SASL (part 5 §5.3).

Each is a frozen slotted dataclass with its fields in spec order and the spec's defaults; a field
the peer sent as null (or left off) holds the default. ``to_value()`` gives the described list,
:func:`from_value` turns a decoded described value back into the class its descriptor names
(``ULong(0x10)`` or ``amqp:open:list``); see :mod:`methodhub.amqp.composite`.
"""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import Any, TypeAlias

from methodhub.amqp.composite import (
    ANY,
    BINARY,
    BOOLEAN,
    FIELDS,
    MAP,
    STRING,
    SYMBOL,
    SYMBOLS,
    UBYTE,
    UINT,
    ULONG,
    USHORT,
    Composite,
    composite,
    composite_kind,
    from_value,
    lookup,
)

__all__ = [
    "PERFORMATIVES",
    "SASL_BODIES",
    "Accepted",
    "Attach",
    "Begin",
    "Close",
    "DeliveryState",
    "Detach",
    "Disposition",
    "End",
    "Error",
    "ErrorCondition",
    "Flow",
    "Modified",
    "Open",
    "Outcome",
    "Performative",
    "Received",
    "ReceiverSettleMode",
    "Rejected",
    "Released",
    "Role",
    "SaslChallenge",
    "SaslCode",
    "SaslFrameBody",
    "SaslInit",
    "SaslMechanisms",
    "SaslOutcome",
    "SaslResponse",
    "SenderSettleMode",
    "Source",
    "Target",
    "Transfer",
    "from_value",
    "lookup",
]

Fields: TypeAlias = dict[Any, Any]
Symbols: TypeAlias = tuple[str, ...]


class ErrorCondition:
    """The error conditions of part 2 §2.8.15-§2.8.18 (symbols)."""

    INTERNAL_ERROR = "amqp:internal-error"
    NOT_FOUND = "amqp:not-found"
    UNAUTHORIZED_ACCESS = "amqp:unauthorized-access"
    DECODE_ERROR = "amqp:decode-error"
    RESOURCE_LIMIT_EXCEEDED = "amqp:resource-limit-exceeded"
    NOT_ALLOWED = "amqp:not-allowed"
    INVALID_FIELD = "amqp:invalid-field"
    NOT_IMPLEMENTED = "amqp:not-implemented"
    RESOURCE_LOCKED = "amqp:resource-locked"
    PRECONDITION_FAILED = "amqp:precondition-failed"
    RESOURCE_DELETED = "amqp:resource-deleted"
    ILLEGAL_STATE = "amqp:illegal-state"
    FRAME_SIZE_TOO_SMALL = "amqp:frame-size-too-small"
    CONNECTION_FORCED = "amqp:connection:forced"
    FRAMING_ERROR = "amqp:connection:framing-error"
    CONNECTION_REDIRECT = "amqp:connection:redirect"
    WINDOW_VIOLATION = "amqp:session:window-violation"
    ERRANT_LINK = "amqp:session:errant-link"
    HANDLE_IN_USE = "amqp:session:handle-in-use"
    UNATTACHED_HANDLE = "amqp:session:unattached-handle"
    DETACH_FORCED = "amqp:link:detach-forced"
    TRANSFER_LIMIT_EXCEEDED = "amqp:link:transfer-limit-exceeded"
    MESSAGE_SIZE_EXCEEDED = "amqp:link:message-size-exceeded"
    LINK_REDIRECT = "amqp:link:redirect"
    STOLEN = "amqp:link:stolen"


class Role:
    """``role`` (§2.8.1), a boolean."""

    SENDER = False
    RECEIVER = True


class SenderSettleMode:
    """``sender-settle-mode`` (§2.8.2), a ubyte."""

    UNSETTLED = 0
    SETTLED = 1
    MIXED = 2


class ReceiverSettleMode:
    """``receiver-settle-mode`` (§2.8.3), a ubyte."""

    FIRST = 0
    SECOND = 1


class SaslCode:
    """``sasl-code`` (part 5 §5.3.3.6), a ubyte."""

    OK = 0
    AUTH = 1
    SYS = 2
    SYS_PERM = 3
    SYS_TEMP = 4


# -- definitions (§2.8) ---------------------------------------------------------------------------


@composite(0x1D, "amqp:error:list", SYMBOL, STRING, FIELDS)
class Error(Composite):
    """``error`` (§2.8.14): a condition symbol, a description, info."""

    condition: str
    description: str | None = None
    info: Fields | None = None


ERROR = composite_kind("error", Error)


# -- delivery states (part 3 §3.4, §2.8.15 received) ------------------------------------------------


@composite(0x23, "amqp:received:list", UINT, ULONG)
class Received(Composite):
    section_number: int
    section_offset: int


@composite(0x24, "amqp:accepted:list")
class Accepted(Composite):
    pass


@composite(0x25, "amqp:rejected:list", ERROR)
class Rejected(Composite):
    error: Error | None = None


@composite(0x26, "amqp:released:list")
class Released(Composite):
    pass


@composite(0x27, "amqp:modified:list", BOOLEAN, BOOLEAN, FIELDS)
class Modified(Composite):
    delivery_failed: bool | None = None
    undeliverable_here: bool | None = None
    message_annotations: Fields | None = None


DeliveryState: TypeAlias = Received | Accepted | Rejected | Released | Modified
Outcome: TypeAlias = Accepted | Rejected | Released | Modified
DELIVERY_STATE = composite_kind(
    "delivery-state", Received, Accepted, Rejected, Released, Modified, other_described=True
)
OUTCOME = composite_kind("outcome", Accepted, Rejected, Released, Modified, other_described=True)


# -- termini (part 3 §3.5) ------------------------------------------------------------------------


@composite(
    0x28, "amqp:source:list", ANY, UINT, SYMBOL, UINT, BOOLEAN, FIELDS, SYMBOL, MAP, OUTCOME, SYMBOLS, SYMBOLS
)
class Source(Composite):
    address: Any = None
    durable: int = 0
    expiry_policy: str = "session-end"
    timeout: int = 0
    dynamic: bool = False
    dynamic_node_properties: Fields | None = None
    distribution_mode: str | None = None
    filter: dict[Any, Any] | None = None
    default_outcome: Any = None
    outcomes: Symbols | None = None
    capabilities: Symbols | None = None


@composite(0x29, "amqp:target:list", ANY, UINT, SYMBOL, UINT, BOOLEAN, FIELDS, SYMBOLS)
class Target(Composite):
    address: Any = None
    durable: int = 0
    expiry_policy: str = "session-end"
    timeout: int = 0
    dynamic: bool = False
    dynamic_node_properties: Fields | None = None
    capabilities: Symbols | None = None


SOURCE = composite_kind("source", Source, other_described=True)
TARGET = composite_kind("target", Target, other_described=True)  # e.g. a transaction coordinator (0x30)


# -- performatives (§2.7) -------------------------------------------------------------------------


@composite(
    0x10, "amqp:open:list", STRING, STRING, UINT, USHORT, UINT, SYMBOLS, SYMBOLS, SYMBOLS, SYMBOLS, FIELDS
)
class Open(Composite):
    container_id: str
    hostname: str | None = None
    max_frame_size: int = 0xFFFF_FFFF
    channel_max: int = 0xFFFF
    idle_time_out: int | None = None
    """Milliseconds."""
    outgoing_locales: Symbols | None = None
    incoming_locales: Symbols | None = None
    offered_capabilities: Symbols | None = None
    desired_capabilities: Symbols | None = None
    properties: Fields | None = None


@composite(0x11, "amqp:begin:list", USHORT, UINT, UINT, UINT, UINT, SYMBOLS, SYMBOLS, FIELDS)
class Begin(Composite):
    _: KW_ONLY
    remote_channel: int | None = None
    next_outgoing_id: int
    incoming_window: int
    outgoing_window: int
    handle_max: int = 0xFFFF_FFFF
    offered_capabilities: Symbols | None = None
    desired_capabilities: Symbols | None = None
    properties: Fields | None = None


@composite(
    0x12,
    "amqp:attach:list",
    *(
        STRING,
        UINT,
        BOOLEAN,
        UBYTE,
        UBYTE,
        SOURCE,
        TARGET,
        MAP,
        BOOLEAN,
        UINT,
        ULONG,
        SYMBOLS,
        SYMBOLS,
        FIELDS,
    ),
)
class Attach(Composite):
    name: str
    handle: int
    role: bool
    """:data:`Role.SENDER` (False) or :data:`Role.RECEIVER` (True)."""
    snd_settle_mode: int = SenderSettleMode.MIXED
    rcv_settle_mode: int = ReceiverSettleMode.FIRST
    source: Source | Any = None
    target: Target | Any = None
    unsettled: dict[Any, Any] | None = None
    incomplete_unsettled: bool = False
    initial_delivery_count: int | None = None
    max_message_size: int | None = None
    offered_capabilities: Symbols | None = None
    desired_capabilities: Symbols | None = None
    properties: Fields | None = None


@composite(0x13, "amqp:flow:list", UINT, UINT, UINT, UINT, UINT, UINT, UINT, UINT, BOOLEAN, BOOLEAN, FIELDS)
class Flow(Composite):
    _: KW_ONLY
    next_incoming_id: int | None = None
    incoming_window: int
    next_outgoing_id: int
    outgoing_window: int
    handle: int | None = None
    delivery_count: int | None = None
    link_credit: int | None = None
    available: int | None = None
    drain: bool = False
    echo: bool = False
    properties: Fields | None = None


@composite(
    0x14,
    "amqp:transfer:list",
    *(UINT, UINT, BINARY, UINT, BOOLEAN, BOOLEAN, UBYTE, DELIVERY_STATE, BOOLEAN, BOOLEAN, BOOLEAN),
)
class Transfer(Composite):
    handle: int
    delivery_id: int | None = None
    delivery_tag: bytes | None = None
    message_format: int | None = None
    settled: bool | None = None
    more: bool = False
    rcv_settle_mode: int | None = None
    state: DeliveryState | Any = None
    resume: bool = False
    aborted: bool = False
    batchable: bool = False


@composite(0x15, "amqp:disposition:list", BOOLEAN, UINT, UINT, BOOLEAN, DELIVERY_STATE, BOOLEAN)
class Disposition(Composite):
    role: bool
    first: int
    last: int | None = None
    settled: bool = False
    state: DeliveryState | Any = None
    batchable: bool = False


@composite(0x16, "amqp:detach:list", UINT, BOOLEAN, ERROR)
class Detach(Composite):
    handle: int
    closed: bool = False
    error: Error | None = None


@composite(0x17, "amqp:end:list", ERROR)
class End(Composite):
    error: Error | None = None


@composite(0x18, "amqp:close:list", ERROR)
class Close(Composite):
    error: Error | None = None


Performative: TypeAlias = Open | Begin | Attach | Flow | Transfer | Disposition | Detach | End | Close
PERFORMATIVES: tuple[type[Composite], ...] = (
    Open,
    Begin,
    Attach,
    Flow,
    Transfer,
    Disposition,
    Detach,
    End,
    Close,
)


# -- SASL (part 5 §5.3.3) -------------------------------------------------------------------------


@composite(0x40, "amqp:sasl-mechanisms:list", SYMBOLS)
class SaslMechanisms(Composite):
    sasl_server_mechanisms: Symbols


@composite(0x41, "amqp:sasl-init:list", SYMBOL, BINARY, STRING)
class SaslInit(Composite):
    mechanism: str
    initial_response: bytes | None = None
    hostname: str | None = None


@composite(0x42, "amqp:sasl-challenge:list", BINARY)
class SaslChallenge(Composite):
    challenge: bytes


@composite(0x43, "amqp:sasl-response:list", BINARY)
class SaslResponse(Composite):
    response: bytes


@composite(0x44, "amqp:sasl-outcome:list", UBYTE, BINARY)
class SaslOutcome(Composite):
    code: int
    """A :class:`SaslCode`."""
    additional_data: bytes | None = None


SaslFrameBody: TypeAlias = SaslMechanisms | SaslInit | SaslChallenge | SaslResponse | SaslOutcome
SASL_BODIES: tuple[type[Composite], ...] = (
    SaslMechanisms,
    SaslInit,
    SaslChallenge,
    SaslResponse,
    SaslOutcome,
)
