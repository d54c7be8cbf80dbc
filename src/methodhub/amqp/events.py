"""What :class:`~methodhub.amqp.connection.AmqpConnection` reports: one small dataclass per event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from methodhub.amqp.performatives import Attach, Error, Open


class LinkRef(NamedTuple):
    """Names one of our link endpoints: the session's local channel and our (local) handle."""

    channel: int
    handle: int
    name: str
    is_sender: bool
    """True when we send on this link (the peer's receiver)."""


@dataclass(slots=True)
class BadProtocolHeader:
    """The peer's first 8 bytes are not a header we speak (or not AMQP at all). We answered with
    ``AMQP 0 1 0 0`` (§2.2); the connection is finished: write ``data_to_send()`` and close the socket."""

    header: bytes


@dataclass(slots=True)
class SaslInitReceived:
    """Server: a client chose a mechanism we offered. Answer with ``sasl_outcome(ok)``; nothing more
    is read until then (``next_events`` picks up what came meanwhile)."""

    mechanism: str
    initial_response: bytes | None
    hostname: str | None


@dataclass(slots=True)
class SaslOutcomeReceived:
    """Client: the server's SASL verdict (``code`` a :class:`SaslCode`; 0 ok)."""

    code: int
    additional_data: bytes | None


@dataclass(slots=True)
class ConnectionOpened:
    """The peer's ``open`` (a server has answered it with its own)."""

    open: Open


@dataclass(slots=True)
class SessionBegun:
    """A session is mapped both ways; ``channel`` is ours (the one commands take)."""

    channel: int


@dataclass(slots=True)
class LinkAttached:
    """The peer attached a link. ``needs_answer``: the peer asked for it, so answer with
    ``accept_link`` or ``refuse_link``; False: it answered an ``attach`` of ours."""

    link: LinkRef
    attach: Attach
    needs_answer: bool = True


@dataclass(slots=True)
class CreditGranted:
    """The peer's receiver gave our sending link credit: ``credit`` deliveries may be sent now."""

    link: LinkRef
    credit: int
    drain: bool = False


@dataclass(slots=True)
class MessageReceived:
    """A whole delivery (its transfer frames reassembled). Unless ``settled``, answer with ``settle``."""

    link: LinkRef
    delivery_id: int
    delivery_tag: bytes
    payload: bytes
    settled: bool
    credit: int
    """The credit the link has left after this delivery (``grant_credit`` tops it up)."""


@dataclass(slots=True)
class DeliverySettled:
    """A disposition from the peer for one delivery: its ``state`` (an outcome such as Accepted, or
    None), and whether the peer has ``settled`` it (when it has, we forget the delivery)."""

    link: LinkRef
    delivery_id: int
    delivery_tag: bytes
    state: Any
    settled: bool = True


@dataclass(slots=True)
class LinkDetached:
    """The peer detached the link (``closed``: for good), or answered our detach. The handle is free."""

    link: LinkRef
    error: Error | None
    closed: bool


@dataclass(slots=True)
class SessionEnded:
    """The peer ended the session (or answered our end); its links are gone."""

    channel: int
    error: Error | None


@dataclass(slots=True)
class ConnectionClosed:
    """The peer closed the connection (or answered our close). Finished: close the socket after
    writing ``data_to_send()``."""

    error: Error | None


@dataclass(slots=True)
class ProtocolFailure:
    """The peer broke the protocol; we are sending the matching error.

    ``channel`` None: we close the connection with ``error`` (nothing more is read; write
    ``data_to_send()`` and close the socket). ``channel`` set and ``link`` None: we end that session.
    ``link`` set: we detach that link.
    """

    error: Error
    channel: int | None = None
    link: LinkRef | None = None


Event = (
    BadProtocolHeader
    | SaslInitReceived
    | SaslOutcomeReceived
    | ConnectionOpened
    | SessionBegun
    | LinkAttached
    | CreditGranted
    | MessageReceived
    | DeliverySettled
    | LinkDetached
    | SessionEnded
    | ConnectionClosed
    | ProtocolFailure
)
