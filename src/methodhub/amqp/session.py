"""Session and link endpoint state (part 2 §2.5-2.6), kept by :mod:`methodhub.amqp.connection`.

Plain records with the little arithmetic they own (serial numbers, windows, credit); the
connection decides what a frame means. Transfer-ids and the session windows count transfer frames
(AMQP 1.0 §2.5.6, as proton does: a message split into n frames takes n transfer-ids and n places
in the window); delivery-ids are a sequence of their own, one per delivery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from methodhub.amqp.events import LinkRef

SERIAL_MASK = 0xFFFF_FFFF


def serial_add(value: int, n: int = 1) -> int:
    """RFC 1982 addition of 32-bit serial numbers (delivery-ids, transfer-ids, delivery-counts)."""
    return (value + n) & SERIAL_MASK


class EndpointState:
    """Where one side of a session or link is."""

    PENDING = "pending"  # we sent begin/attach, the peer has not answered (or vice versa)
    MAPPED = "mapped"
    ENDING = "ending"  # we sent end/detach and await the peer's


@dataclass(slots=True, eq=False)
class Link:
    name: str
    handle: int
    """Ours."""
    is_sender: bool
    channel: int
    remote_handle: int | None = None
    state: str = EndpointState.PENDING
    answered: bool = False
    """We sent our attach (a peer-initiated link: accept_link/refuse_link answered it)."""
    delivery_count: int = 0
    credit: int = 0
    """Sender: what the peer's receiver allows us; receiver: what we have granted."""
    peer_max_message_size: int = 0
    """Sender: the largest message the peer accepts (0: no limit)."""
    max_message_size: int = 0
    """Receiver: the largest message we accept."""
    peer_attach: Any = None
    """The peer's attach when it asked for the link, until accept_link/refuse_link/detach answer it
    (then dropped: a device's four attaches are ~3 KB of decoded values per idle connection)."""
    partial: bytearray | None = None
    partial_id: int = 0
    partial_tag: bytes = b""
    partial_settled: bool = False
    ref: LinkRef = field(init=False, repr=False)
    """What names the link to the connection's user (its name, handle, channel and role never
    change), built once: every delivery's event carries it."""

    def __post_init__(self) -> None:
        self.ref = LinkRef(self.channel, self.handle, self.name, self.is_sender)


@dataclass(slots=True, eq=False)
class Session:
    channel: int
    """Ours."""
    remote_channel: int | None
    state: str = EndpointState.PENDING
    handle_max: int = 255
    incoming_window_size: int = 2048
    next_outgoing_id: int = 0
    """The transfer-id of our next transfer frame."""
    next_delivery_id: int = 0
    next_incoming_id: int = 0
    """The transfer-id of the peer's next transfer frame."""
    incoming_window: int = 2048
    """Transfer frames the peer may still send us."""
    remote_incoming_window: int = 0
    """Transfer frames we may still send the peer."""
    held: list[tuple[Link, Any, Any]] | None = None
    """The frames of a delivery the peer's window had no room for yet: (link, transfer, payload),
    sent as its flows make room; no new delivery starts before they are gone."""
    remote_outgoing_window: int = 0
    links: dict[int, Link] = field(default_factory=dict)
    """By our handle."""
    remote_links: dict[int, Link] = field(default_factory=dict)
    """By the peer's handle."""
    outgoing_unsettled: dict[int, tuple[Link, bytes]] = field(default_factory=dict)
    """Deliveries we sent and the peer has not settled: delivery-id -> (link, tag)."""
    incoming_unsettled: dict[int, tuple[Link, bytes]] = field(default_factory=dict)
    """Deliveries we received and have not settled."""
    next_handle: int = 0
    """Where the search for a free handle starts. Handles go round, so a link made in place of one
    just forgotten (detached and attached again in one read) gets another handle, and another
    LinkRef, than the events still to be handled about the old one name."""

    def free_handle(self) -> int | None:
        span = self.handle_max + 1
        for step in range(span):
            handle = (self.next_handle + step) % span
            if handle not in self.links:
                self.next_handle = (handle + 1) % span
                return handle
        return None

    def link_named(self, name: str) -> Link | None:
        for link in self.links.values():
            if link.name == name and link.remote_handle is None:
                return link
        return None

    def forget_link(self, link: Link) -> None:
        self.links.pop(link.handle, None)
        if link.remote_handle is not None and self.remote_links.get(link.remote_handle) is link:
            del self.remote_links[link.remote_handle]
        for table in (self.outgoing_unsettled, self.incoming_unsettled):
            for delivery_id in [key for key, (owner, _) in table.items() if owner is link]:
                del table[delivery_id]
