"""The sessions and links of one AMQP connection (part 2 §2.5-2.6 and §2.7 begin ... end).

:class:`Endpoints` handles the session-scoped performatives once the connection is open (begin,
attach, flow, transfer, disposition, detach, end) and the commands on sessions and links; the
connection (:mod:`methodhub.amqp.connection`) owns the byte stream, the headers, SASL, open and close.
A session error ends that session and a link error detaches that link (a :class:`ProtocolFailure`
event each); a connection error raises :class:`ConnectionFault` for the connection to close with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from methodhub.amqp.errors import AmqpError
from methodhub.amqp.events import (
    CreditGranted,
    DeliverySettled,
    Event,
    LinkAttached,
    LinkDetached,
    LinkRef,
    MessageReceived,
    ProtocolFailure,
    SessionBegun,
    SessionEnded,
)
from methodhub.amqp.frames import (
    MIN_MAX_FRAME_SIZE,
    PlainTransfer,
    encode_disposition_frame,
    encode_transfer_frame,
    frame_overhead,
)
from methodhub.amqp.performatives import (
    Accepted,
    Attach,
    Begin,
    Detach,
    Disposition,
    End,
    Error,
    ErrorCondition,
    Flow,
    ReceiverSettleMode,
    Role,
    SenderSettleMode,
    Transfer,
)
from methodhub.amqp.session import SERIAL_MASK, EndpointState, Link, Session, serial_add
from methodhub.amqp.values import Symbol

_HALF = 0x8000_0000


class ConnectionFault(AmqpError):
    """A connection error the peer committed: close the connection with ``condition``."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


def make_error(condition: str, description: str | None) -> Error:
    return Error(Symbol(condition), description)


class Endpoints:
    """Every session and link of one connection, both our side and the peer's."""

    def __init__(
        self,
        send: Callable[..., None],
        send_frame: Callable[[bytes], None],
        *,
        channel_max: int,
        handle_max: int,
        max_message_size: int,
        incoming_window: int,
    ) -> None:
        self._send = send
        """Queue a frame: (channel, performative, payload)."""
        self._send_frame = send_frame
        """Queue an encoded frame."""
        self.channel_max = channel_max
        self.handle_max = handle_max
        self.max_message_size = max_message_size
        self.incoming_window = incoming_window
        self.peer_channel_max = 0xFFFF
        self.peer_max_frame_size = MIN_MAX_FRAME_SIZE
        self.usable = False
        """The connection is open and we have not closed it: commands may send."""
        self._sessions: dict[int, Session] = {}
        """By our channel."""
        self._remote_sessions: dict[int, Session] = {}
        """By the peer's channel."""
        self._next_channel = 0

    def on_frame(self, channel: int, body: Any, payload: bytes, events: list[Event]) -> None:
        """A begin, attach, flow, transfer, disposition, detach or end from the peer."""
        kind = type(body)
        if kind is Begin:
            self.on_begin(channel, body, events)
            return
        session = self._remote_sessions.get(channel)
        if session is None:
            raise ConnectionFault(
                ErrorCondition.NOT_ALLOWED, f"{kind.__name__} on channel {channel}: no session"
            )
        if kind is End:
            self.on_end(session, body, events)
        elif session.state is EndpointState.ENDING:
            pass  # we ended it; only its end matters now
        elif kind is Transfer:
            self.on_transfer(session, body, payload, events)
        elif kind is Flow:
            self.on_flow(session, body, events)
        elif kind is Disposition:
            self.on_disposition(session, body, events)
        elif kind is Attach:
            self.on_attach(session, body, events)
        else:
            self.on_detach(session, body, events)

    def on_begin(self, channel: int, begin: Begin, events: list[Event]) -> None:
        if channel > self.channel_max:
            raise ConnectionFault(
                ErrorCondition.NOT_ALLOWED, f"channel {channel} over channel-max {self.channel_max}"
            )
        if channel in self._remote_sessions:
            raise ConnectionFault(ErrorCondition.NOT_ALLOWED, f"begin on channel {channel}, already in use")
        if begin.remote_channel is None:
            local = self._free_channel()
            if local is None:
                raise ConnectionFault(ErrorCondition.RESOURCE_LIMIT_EXCEEDED, "no free channel")
            session = self._new_session(local)
            session.remote_channel = channel
            self._map_session(session, begin)
            self._send(local, self._our_begin(session, remote_channel=channel))
        else:
            pending = self._sessions.get(begin.remote_channel)
            if pending is None or pending.remote_channel is not None:
                raise ConnectionFault(
                    ErrorCondition.NOT_ALLOWED, f"begin answers channel {begin.remote_channel}"
                )
            pending.remote_channel = channel
            self._map_session(pending, begin)
        events.append(SessionBegun(self._remote_sessions[channel].channel))

    def _map_session(self, session: Session, begin: Begin) -> None:
        session.state = EndpointState.MAPPED
        session.next_incoming_id = begin.next_outgoing_id
        session.remote_incoming_window = begin.incoming_window
        session.remote_outgoing_window = begin.outgoing_window
        session.handle_max = min(self.handle_max, begin.handle_max)
        assert session.remote_channel is not None
        self._remote_sessions[session.remote_channel] = session

    def on_end(self, session: Session, end: End, events: list[Event]) -> None:
        events.append(SessionEnded(session.channel, end.error))
        if session.state is not EndpointState.ENDING:
            self._send(session.channel, End())
        del self._sessions[session.channel]
        assert session.remote_channel is not None
        del self._remote_sessions[session.remote_channel]

    def on_attach(self, session: Session, attach: Attach, events: list[Event]) -> None:
        if attach.handle in session.remote_links:
            self._session_error(
                session, ErrorCondition.HANDLE_IN_USE, f"handle {attach.handle} in use", events
            )
            return
        if attach.handle > self.handle_max:
            self._session_error(
                session, ErrorCondition.NOT_ALLOWED, f"handle {attach.handle} over {self.handle_max}", events
            )
            return
        is_sender = attach.role == Role.RECEIVER
        link = session.link_named(attach.name)
        ours = link is not None and link.is_sender == is_sender
        if link is None or not ours:
            handle = session.free_handle()
            if handle is None:
                self._session_error(session, ErrorCondition.RESOURCE_LIMIT_EXCEEDED, "no free handle", events)
                return
            link = Link(
                attach.name, handle, is_sender, session.channel, max_message_size=self.max_message_size
            )
            link.peer_attach = attach
            session.links[handle] = link
        elif link.state is not EndpointState.ENDING:  # (detached before the answer came: stays ENDING,
            link.state = EndpointState.MAPPED  # so the peer's detach is not answered twice)
        link.remote_handle = attach.handle
        session.remote_links[attach.handle] = link
        if is_sender:
            link.peer_max_message_size = attach.max_message_size or 0
        else:
            link.delivery_count = attach.initial_delivery_count or 0
        events.append(LinkAttached(link.ref, attach, needs_answer=not ours))

    def on_detach(self, session: Session, detach: Detach, events: list[Event]) -> None:
        link = session.remote_links.get(detach.handle)
        if link is None:
            self._session_error(
                session, ErrorCondition.UNATTACHED_HANDLE, f"detach of handle {detach.handle}", events
            )
            return
        if link.state is not EndpointState.ENDING:
            if not link.answered and link.peer_attach is not None:
                self._send(session.channel, self._refusing_attach(link))
            self._send(session.channel, Detach(link.handle, closed=detach.closed))
        session.forget_link(link)
        events.append(LinkDetached(link.ref, detach.error, detach.closed))

    def on_flow(self, session: Session, flow: Flow, events: list[Event]) -> None:
        next_incoming = flow.next_incoming_id if flow.next_incoming_id is not None else 0
        # The window is a count (a uint: C's uamqp sends 2^32-1), less the transfers it had not seen
        # yet (a serial-number distance; one "ahead" of ours counts none).
        unseen = (session.next_outgoing_id - next_incoming) & SERIAL_MASK
        session.remote_incoming_window = max(0, flow.incoming_window - (unseen if unseen < _HALF else 0))
        session.remote_outgoing_window = flow.outgoing_window
        link = None
        if flow.handle is not None:
            link = session.remote_links.get(flow.handle)
            if link is None:
                self._session_error(
                    session, ErrorCondition.UNATTACHED_HANDLE, f"flow on handle {flow.handle}", events
                )
                return
            if link.state is EndpointState.ENDING:
                return
            if link.is_sender:
                count = flow.delivery_count if flow.delivery_count is not None else 0
                unseen = (link.delivery_count - count) & SERIAL_MASK  # likewise: credit is a count
                link.credit = max(0, (flow.link_credit or 0) - (unseen if unseen < _HALF else 0))
                events.append(CreditGranted(link.ref, link.credit, flow.drain))
            elif flow.delivery_count is not None:
                left = (link.delivery_count + link.credit - flow.delivery_count) & SERIAL_MASK
                link.credit = left if left < _HALF else 0
                link.delivery_count = flow.delivery_count
        if session.held:
            self._send_held(session)
        if flow.echo:
            self._send_flow(session, link)

    def on_plain_transfer(self, frame: PlainTransfer, events: list[Event]) -> None:
        """A transfer :func:`~methodhub.amqp.frames.read_transfer_frame` read: what :meth:`on_frame`
        does with it."""
        session = self._remote_sessions.get(frame.channel)
        if session is None:
            raise ConnectionFault(
                ErrorCondition.NOT_ALLOWED, f"Transfer on channel {frame.channel}: no session"
            )
        if session.state is EndpointState.ENDING:
            return  # we ended it; only its end matters now
        self._on_transfer(
            session,
            frame.handle,
            frame.delivery_id,
            frame.delivery_tag,
            frame.settled,
            frame.more,
            False,
            frame.payload,
            events,
        )

    def on_transfer(self, session: Session, transfer: Transfer, payload: bytes, events: list[Event]) -> None:
        self._on_transfer(
            session,
            transfer.handle,
            transfer.delivery_id,
            transfer.delivery_tag,
            transfer.settled,
            transfer.more,
            transfer.aborted,
            payload,
            events,
        )

    def _on_transfer(
        self,
        session: Session,
        handle: int,
        delivery_id: int | None,
        delivery_tag: bytes | None,
        settled: bool | None,
        more: bool,
        aborted: bool,
        payload: bytes,
        events: list[Event],
    ) -> None:
        # Every transfer frame takes a transfer-id and a place in our window (§2.5.6), a delivery's
        # later frames and those on a link we are detaching included.
        window = session.incoming_window
        session.incoming_window = window - 1
        session.next_incoming_id = (session.next_incoming_id + 1) & SERIAL_MASK  # (serial_add, inlined)
        link = session.remote_links.get(handle)
        if link is None:
            self._session_error(
                session, ErrorCondition.UNATTACHED_HANDLE, f"transfer on handle {handle}", events
            )
            return
        if link.state is EndpointState.ENDING:
            self._replenish(session)
            return
        if link.is_sender:
            self._link_error(link, ErrorCondition.NOT_ALLOWED, "transfer on our sending link", events)
            return
        if link.partial is None:  # the first frame of a delivery
            if delivery_id is None or delivery_tag is None:
                self._session_error(
                    session, ErrorCondition.INVALID_FIELD, "transfer without delivery-id/tag", events
                )
                return
            if window <= 0:  # (checked where a delivery starts: a peer counting deliveries, not
                # frames, may go over by the rest of one message; we replenish as it does)
                self._session_error(session, ErrorCondition.WINDOW_VIOLATION, "incoming window is 0", events)
                return
            if link.credit <= 0:
                self._link_error(
                    link, ErrorCondition.TRANSFER_LIMIT_EXCEEDED, "transfer without credit", events
                )
                return
            link.credit -= 1
            link.delivery_count = (link.delivery_count + 1) & SERIAL_MASK
            if not more and not aborted:  # the whole delivery: no reassembly
                settled = bool(settled)
                self._whole_delivery(session, link, delivery_id, delivery_tag, settled, payload, events)
                return
            link.partial = bytearray()
            link.partial_id = delivery_id
            link.partial_tag = delivery_tag
            link.partial_settled = bool(settled)
        elif delivery_id is not None and delivery_id != link.partial_id:
            self._session_error(
                session, ErrorCondition.INVALID_FIELD, "delivery-id changed mid-delivery", events
            )
            return
        if aborted:
            link.partial = None
            self._replenish(session)
            return
        link.partial += payload
        if settled:
            link.partial_settled = True
        if link.max_message_size and len(link.partial) > link.max_message_size:
            size = len(link.partial)
            link.partial = None
            message = f"message of {size}+ bytes over max-message-size {link.max_message_size}"
            self._link_error(link, ErrorCondition.MESSAGE_SIZE_EXCEEDED, message, events)
            return
        if not more:
            data, link.partial = bytes(link.partial), None
            if not link.partial_settled:
                session.incoming_unsettled[link.partial_id] = (link, link.partial_tag)
            events.append(
                MessageReceived(
                    link.ref, link.partial_id, link.partial_tag, data, link.partial_settled, link.credit
                )
            )
        self._replenish(session)  # also mid-delivery: the peer may wait for room for the rest

    def _whole_delivery(
        self,
        session: Session,
        link: Link,
        delivery_id: int,
        tag: bytes,
        settled: bool,
        payload: bytes,
        events: list[Event],
    ) -> None:
        """A delivery in one transfer frame (on_transfer's steps for it, without the buffer)."""
        if link.max_message_size and len(payload) > link.max_message_size:
            message = f"message of {len(payload)}+ bytes over max-message-size {link.max_message_size}"
            self._link_error(link, ErrorCondition.MESSAGE_SIZE_EXCEEDED, message, events)
            return
        if not settled:
            session.incoming_unsettled[delivery_id] = (link, tag)
        events.append(MessageReceived(link.ref, delivery_id, tag, payload, settled, link.credit))
        if session.incoming_window < session.incoming_window_size // 2:
            self._replenish(session)

    def _replenish(self, session: Session) -> None:
        if session.incoming_window < session.incoming_window_size // 2:
            session.incoming_window = session.incoming_window_size
            self._send_flow(session, None)

    def on_disposition(self, session: Session, disposition: Disposition, events: list[Event]) -> None:
        table = (
            session.outgoing_unsettled if disposition.role == Role.RECEIVER else session.incoming_unsettled
        )
        first = disposition.first
        span = ((disposition.last if disposition.last is not None else first) - first) & SERIAL_MASK
        if span < len(table):
            ids = [serial_add(first, n) for n in range(span + 1)]
        else:
            ids = [key for key in table if (key - first) & SERIAL_MASK <= span]
        for delivery_id in ids:
            entry = table.get(delivery_id)
            if entry is None:
                continue
            if disposition.settled:
                del table[delivery_id]
            link, tag = entry
            events.append(DeliverySettled(link.ref, delivery_id, tag, disposition.state, disposition.settled))

    def _session_error(self, session: Session, condition: str, description: str, events: list[Event]) -> None:
        error = make_error(condition, description)
        events.append(ProtocolFailure(error, channel=session.channel))
        self._send(session.channel, End(error))
        session.state = EndpointState.ENDING

    def _link_error(self, link: Link, condition: str, description: str, events: list[Event]) -> None:
        error = make_error(condition, description)
        events.append(ProtocolFailure(error, channel=link.channel, link=link.ref))
        self._send(link.channel, Detach(link.handle, closed=True, error=error))
        link.state = EndpointState.ENDING
        link.partial = None

    def _our_begin(self, session: Session, remote_channel: int | None) -> Begin:
        return Begin(
            remote_channel=remote_channel,
            next_outgoing_id=session.next_outgoing_id,
            incoming_window=session.incoming_window,
            outgoing_window=0xFFFF_FFFF,
            handle_max=self.handle_max,
        )

    def _send_flow(self, session: Session, link: Link | None, drain: bool = False) -> None:
        flow = Flow(
            next_incoming_id=session.next_incoming_id,
            incoming_window=session.incoming_window,
            next_outgoing_id=session.next_outgoing_id,
            outgoing_window=0xFFFF_FFFF,
            handle=link.handle if link is not None else None,
            delivery_count=link.delivery_count if link is not None else None,
            link_credit=link.credit if link is not None else None,
            drain=drain,
        )
        self._send(session.channel, flow)

    def _free_channel(self) -> int | None:
        """A free channel of ours; channels go round as handles do (see ``Session.next_handle``)."""
        span = min(self.channel_max, self.peer_channel_max) + 1
        for step in range(span):
            channel = (self._next_channel + step) % span
            if channel not in self._sessions:
                self._next_channel = (channel + 1) % span
                return channel
        return None

    def _new_session(self, channel: int) -> Session:
        session = Session(channel, None, incoming_window_size=self.incoming_window)
        session.incoming_window = self.incoming_window
        self._sessions[channel] = session
        return session

    def _link(self, ref: LinkRef) -> tuple[Session, Link] | None:
        session = self._sessions.get(ref.channel)
        if session is None or session.state is EndpointState.ENDING:
            return None
        link = session.links.get(ref.handle)
        if link is None or link.name != ref.name or link.is_sender != ref.is_sender:
            return None
        return session, link

    def _refusing_attach(self, link: Link) -> Attach:
        return Attach(link.name, link.handle, Role.SENDER if link.is_sender else Role.RECEIVER)

    # -- commands ------------------------------------------------------------------------------------

    def begin_session(self) -> int:
        """Begin a session; returns our channel (:class:`SessionBegun` follows the peer's begin)."""
        if not self.usable:
            raise RuntimeError("the connection is not open")
        channel = self._free_channel()
        if channel is None:
            raise RuntimeError("no free channel")
        session = self._new_session(channel)
        self._send(channel, self._our_begin(session, remote_channel=None))
        return channel

    def attach(
        self,
        channel: int,
        name: str,
        *,
        sender: bool,
        source: Any = None,
        target: Any = None,
        snd_settle_mode: int = SenderSettleMode.MIXED,
        rcv_settle_mode: int = ReceiverSettleMode.FIRST,
        properties: dict[Any, Any] | None = None,
    ) -> LinkRef:
        """Attach a link of ours (``sender``: we send on it); :class:`LinkAttached` follows the answer."""
        session = self._sessions.get(channel)
        if session is None or session.state is not EndpointState.MAPPED or not self.usable:
            raise RuntimeError(f"no begun session on channel {channel}")
        handle = session.free_handle()
        if handle is None:
            raise RuntimeError("no free handle")
        link = Link(name, handle, sender, channel, max_message_size=self.max_message_size, answered=True)
        session.links[handle] = link
        attach = Attach(
            name,
            handle,
            Role.SENDER if sender else Role.RECEIVER,
            snd_settle_mode=snd_settle_mode,
            rcv_settle_mode=rcv_settle_mode,
            source=source,
            target=target,
            initial_delivery_count=0 if sender else None,
            max_message_size=None if sender or not self.max_message_size else self.max_message_size,
            properties=properties,
        )
        self._send(channel, attach)
        return link.ref

    def accept_link(
        self, link: LinkRef, *, credit: int = 0, properties: dict[Any, Any] | None = None
    ) -> None:
        """Answer a peer's attach: ours mirrors it (the other role, its source, target and settle modes)."""
        found = self._link(link)
        if found is None or not self.usable:
            return
        session, ours = found
        asked = ours.peer_attach
        if ours.answered or asked is None:
            raise RuntimeError(f"link {link.name!r} needs no answer")
        ours.answered = True
        ours.peer_attach = None
        ours.state = EndpointState.MAPPED
        reply = Attach(
            ours.name,
            ours.handle,
            Role.SENDER if ours.is_sender else Role.RECEIVER,
            snd_settle_mode=asked.snd_settle_mode,
            rcv_settle_mode=asked.rcv_settle_mode,
            source=asked.source,
            target=asked.target,
            initial_delivery_count=0 if ours.is_sender else None,
            max_message_size=None if ours.is_sender or not self.max_message_size else self.max_message_size,
            properties=properties,
        )
        self._send(session.channel, reply)
        if credit:
            self.grant_credit(link, credit)

    def refuse_link(self, link: LinkRef, error: Error) -> None:
        """Refuse a peer's attach: an attach with no source and target, then detach(closed, error)."""
        found = self._link(link)
        if found is None or not self.usable:
            return
        session, ours = found
        ours.answered = True
        ours.peer_attach = None
        self._send(session.channel, self._refusing_attach(ours))
        self._send(session.channel, Detach(ours.handle, closed=True, error=error))
        ours.state = EndpointState.ENDING

    def grant_credit(self, link: LinkRef, credit: int, drain: bool = False) -> None:
        """Let the peer send ``credit`` more deliveries on our receiving link (a flow with the total;
        ``drain``: asking the sender to use it up or give it back)."""
        found = self._link(link)
        if found is None or not self.usable or found[1].state is EndpointState.ENDING:
            return
        session, ours = found
        if ours.is_sender:
            raise ValueError("credit is granted on a receiving link")
        ours.credit = min(ours.credit + credit, _HALF - 1)
        self._send_flow(session, ours, drain=drain)

    def drain(self, link: LinkRef) -> None:
        """The peer asked our sending link to drain and we have nothing more to send now: use up the
        credit (delivery-count advances by it) and say so in a flow with drain set (AMQP 1.0
        §2.6.7). Nothing happens when there is no credit left."""
        found = self._link(link)
        if found is None or not self.usable or found[1].state is EndpointState.ENDING:
            return
        session, ours = found
        if not ours.is_sender:
            raise ValueError("a receiving link is drained by its sender")
        if ours.credit <= 0:
            return
        ours.delivery_count = (ours.delivery_count + ours.credit) & SERIAL_MASK
        ours.credit = 0
        self._send_flow(session, ours, drain=True)

    def credit(self, link: LinkRef) -> int:
        """Deliveries we may still send on this link (sender) or have granted (receiver)."""
        found = self._link(link)
        return found[1].credit if found is not None else 0

    def send_message(
        self, link: LinkRef, payload: bytes, delivery_tag: bytes, settled: bool = False
    ) -> int | None:
        """Send one message on our sending link, split to the peer's max-frame-size; its delivery-id.

        None when it cannot go now: no credit, the session's window is shut, or the link, its session
        or the connection is gone or going. Raises ValueError over the peer's max-message-size.
        """
        found = self._link(link)
        if found is None or not self.usable:
            return None
        session, ours = found
        if not ours.is_sender:
            raise ValueError("messages are sent on a sending link")
        if ours.state is not EndpointState.MAPPED or ours.remote_handle is None or not ours.answered:
            return None
        if ours.credit <= 0 or session.remote_incoming_window <= 0 or session.held:
            return None
        if ours.peer_max_message_size and len(payload) > ours.peer_max_message_size:
            raise ValueError(
                f"{len(payload)} bytes over the peer's max-message-size {ours.peer_max_message_size}"
            )
        delivery_id = session.next_delivery_id
        session.next_delivery_id = (delivery_id + 1) & SERIAL_MASK  # (serial_add, inlined: per message)
        ours.credit -= 1
        ours.delivery_count = (ours.delivery_count + 1) & SERIAL_MASK
        # A transfer performative takes at most ~40 bytes besides its tag: skip sizing it exactly
        # (an extra encode) when the message plainly fits one frame.
        if len(payload) + len(delivery_tag) + 64 <= self.peer_max_frame_size:
            room = len(payload)
        else:
            first = Transfer(ours.handle, delivery_id, delivery_tag, 0, settled, more=True)
            room = self.peer_max_frame_size - frame_overhead(first)
        if len(payload) <= room:
            session.next_outgoing_id = (session.next_outgoing_id + 1) & SERIAL_MASK
            session.remote_incoming_window -= 1
            self._send_frame(
                encode_transfer_frame(
                    session.channel, ours.handle, delivery_id, delivery_tag, settled, payload
                )
            )
        else:  # several frames: as many as the peer's window takes now, the rest when it has room
            view = memoryview(payload)
            rest = Transfer(ours.handle, more=True)
            step = self.peer_max_frame_size - frame_overhead(rest)
            pieces: list[tuple[Link, Transfer, Any]] = [(ours, first, view[:room])]
            offset = room
            while len(payload) - offset > step:
                pieces.append((ours, rest, view[offset : offset + step]))
                offset += step
            pieces.append((ours, Transfer(ours.handle), view[offset:]))
            session.held = pieces
            self._send_held(session)
        if not settled:
            session.outgoing_unsettled[delivery_id] = (ours, delivery_tag)
        return delivery_id

    def _send_held(self, session: Session) -> None:
        """Send the held transfer frames the peer's incoming window has room for (a frame of a link
        detached meanwhile is dropped: its detach ends the delivery)."""
        held = session.held
        if not held:
            return
        sent = 0
        for link, transfer, payload in held:
            if session.remote_incoming_window <= 0:
                break
            sent += 1
            if link.state is not EndpointState.MAPPED or session.links.get(link.handle) is not link:
                continue
            session.next_outgoing_id = serial_add(session.next_outgoing_id)
            session.remote_incoming_window -= 1
            self._send(session.channel, transfer, payload)
        del held[:sent]
        if not held:
            session.held = None

    def settle(self, link: LinkRef, delivery_id: int, state: Any = None) -> None:
        """Settle a delivery (ours or the peer's) with ``state`` (default Accepted) in a disposition."""
        found = self._link(link)
        if found is None or not self.usable:
            return
        session, ours = found
        table = session.outgoing_unsettled if ours.is_sender else session.incoming_unsettled
        table.pop(delivery_id, None)
        role = Role.SENDER if ours.is_sender else Role.RECEIVER
        state = Accepted() if state is None else state
        self._send_frame(encode_disposition_frame(session.channel, role, delivery_id, None, True, state))

    def detach(self, link: LinkRef, error: Error | None = None, closed: bool = True) -> None:
        """Detach our link (:class:`LinkDetached` follows the peer's detach)."""
        found = self._link(link)
        if found is None or not self.usable or found[1].state is EndpointState.ENDING:
            return
        session, ours = found
        if not ours.answered:
            ours.answered = True
            ours.peer_attach = None
            self._send(session.channel, self._refusing_attach(ours))
        self._send(session.channel, Detach(ours.handle, closed=closed, error=error))
        ours.state = EndpointState.ENDING

    def end_session(self, channel: int, error: Error | None = None) -> None:
        """End our session (:class:`SessionEnded` follows the peer's end)."""
        session = self._sessions.get(channel)
        if session is None or session.state is EndpointState.ENDING or not self.usable:
            return
        self._send(channel, End(error))
        session.state = EndpointState.ENDING
