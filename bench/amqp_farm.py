"""The device farm's AMQP devices: Azure AMQP 1.0 devices as ``asyncio.Protocol`` s (run by bench/farm.py).

Each device does for direct methods what Microsoft's device SDKs do over AMQP
(``azure-amqp-wire.md`` §1-§4), on the hub's plain AMQP port (``serve --amqp-port``):

1. the AMQP header (no SASL layer, as Node and C#), ``open`` (no idle-time-out asked, as Node),
   ``begin`` (incoming-window 2048, as Node) and the two ``$cbs`` links, sender then receiver, in one write;
2. once the hub has granted credit on the CBS sender: 100 credit on the CBS receiver and a put-token
   as Node sends it (string message-id, ``servicebus.windows.net:sastoken``, the URL-encoded audience,
   the SAS token signed with the device key as an amqp-value; unsettled);
3. on ``status-code`` 200: both methods links on ``/devices/{id}/methods/devicebound`` at once (as C#;
   Node waits for the sender's answer first), with ``com.microsoft:api-version`` and
   ``com.microsoft:channel-correlation-id``; once both are answered, 1,000 credit on the receiver
   (Node's window). The device is online then: three round trips, where MQTT's CONNECT/SUBSCRIBE take two.

Then it answers every request at once, ``IoThub-status`` 200 and ``{"ok":true}`` under the request's
correlation-id (its encoded bytes copied). Two settlement styles (``FarmConfig.presettled``):

* pre-settled (C#'s): both methods links ask ``snd-settle-mode`` settled, so the hub sends requests
  settled and the device sends its answers settled: no dispositions, as MQTT's QoS 0 has no acks;
* unsettled (Node's): the device accepts each request with a disposition and sends its answer
  unsettled; the hub settles that with a disposition of its own (read and ignored here).

The handshake is built and read with methodhub.amqp's codec (``encode_frame``, ``decode_frame``,
``decode_message``): it happens once per connection. The steady state is hand-rolled so that the farm
costs the load generator about what the MQTT farm does: a request's transfer is read by slicing (frame
size, performative code, handle, delivery-id, settled, more, the properties' correlation-id), and the
answer is a fixed frame with the delivery-id, tag and correlation-id spliced in (:func:`response_frame`;
``tests/unit/bench/test_amqp_farm.py`` decodes both with the codec). Any other frame goes through the
codec. The device keeps to the protocol's flow control: it sends only within the hub's link credit and
session window (answers wait for a flow otherwise), and it renews its own receiver's credit and its
session's incoming window with one flow every 500 requests, so a long run never stalls. Every 30 s a
device that wrote nothing meanwhile sends an empty frame (the hub closes a peer silent for 120 s).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any
from urllib.parse import quote

from bench.common import API_VERSION, sign
from bench.farm import RESPONSE_PAYLOAD, Farm, FarmConfig
from methodhub.amqp import (
    AMQP_HEADER,
    AmqpValue,
    Attach,
    Begin,
    Close,
    DecodeError,
    Detach,
    End,
    Flow,
    Message,
    Open,
    Properties,
    ReceiverSettleMode,
    Role,
    SenderSettleMode,
    Source,
    Symbol,
    Target,
    Transfer,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
)

MAX_FRAME_SIZE = 65536
"""What the device announces (C#'s), and the largest frame it reads."""
RECEIVE_CREDIT = 1000
"""Credit on the methods receiver, renewed when half is used (Node's rhea: a window of 1,000)."""
RECEIVE_WINDOW = 2048
"""The session's incoming window in transfers (Node's ``begin``), renewed with the credit."""
CBS_CREDIT = 100
HEARTBEAT_S = 30.0
"""A device that wrote nothing for this long sends an empty frame (the hub's idle time-out is 120 s)."""
UINT_MAX = 0xFFFF_FFFF
_HALF = 0x8000_0000

# Our link handles, the same on every device.
CBS_SENDER, CBS_RECEIVER, METHODS_SENDER, METHODS_RECEIVER = 0, 1, 2, 3

# Performative descriptor codes (part 2 §2.7).
_FLOW, _TRANSFER, _DISPOSITION = 0x13, 0x14, 0x15
_PROPERTIES = 0x73

EMPTY_FRAME = encode_frame(0, None)
CLOSE_FRAME = encode_frame(0, Close())

# -- the steady state's frames, by hand --------------------------------------------------------------

_FRAME_HEADER_TAIL = b"\x02\x00\x00\x00"  # doff 2, AMQP frame, channel 0
_UUID = 0x98


def _list8(count: int, fields: bytes) -> bytes:
    return b"\xc0" + bytes([1 + len(fields), count]) + fields


_APPLICATION_PROPERTIES = (
    b"\x00\x53\x74"  # application-properties: a map8 of 2 elements
    + b"\xc1"
    + bytes([1 + 2 + len("IoThub-status") + 5, 2])
    + b"\xa1"
    + bytes([len("IoThub-status")])
    + b"IoThub-status"
    + b"\x71"
    + (200).to_bytes(4, "big")  # an AMQP int (wire doc §4.2)
)
_DATA = b"\x00\x53\x75\xa0" + bytes([len(RESPONSE_PAYLOAD)]) + RESPONSE_PAYLOAD
_TRANSFER_HEAD = b"\x00\x53\x14\xc0\x10\x05\x52" + bytes([METHODS_SENDER]) + b"\x70"
"""Transfer: list8 of 5 fields (16 bytes): handle smalluint, then delivery-id as a 4-byte uint."""
_TAG = b"\xa0\x04"  # delivery-tag: the delivery-id's 4 bytes
_AFTER_TAG = {True: b"\x43\x41", False: b"\x43\x42"}  # message-format 0, settled true/false
_PROPERTIES_HEAD = b"\x00\x53\x73\xc0"
_NULLS5 = b"\x40" * 5  # message-id, user-id, to, subject, reply-to
_RESPONSE_FIXED = (
    8
    + len(_TRANSFER_HEAD)
    + 4
    + len(_TAG)
    + 4
    + 2
    + len(_PROPERTIES_HEAD)
    + 2
    + len(_NULLS5)
    + len(_APPLICATION_PROPERTIES)
    + len(_DATA)
)


def response_frame(delivery_id: int, correlation: bytes, settled: bool) -> bytes:
    """The answer to a request: a transfer on the methods sender (handle :data:`METHODS_SENDER`),
    delivery-id ``delivery_id`` (its 4 bytes are the tag too), ``settled`` or not, carrying the
    message ``properties.correlation-id`` = ``correlation`` (an encoded AMQP value, e.g. ``0x98`` and
    16 bytes of uuid, as the request had it), ``IoThub-status`` int 200, one data section
    ``{"ok":true}``."""
    did = delivery_id.to_bytes(4, "big")
    return b"".join(
        (
            (_RESPONSE_FIXED + len(correlation)).to_bytes(4, "big"),
            _FRAME_HEADER_TAIL,
            _TRANSFER_HEAD,
            did,
            _TAG,
            did,
            _AFTER_TAG[settled],
            _PROPERTIES_HEAD,
            bytes((6 + len(correlation), 6)),
            _NULLS5,
            correlation,
            _APPLICATION_PROPERTIES,
            _DATA,
        )
    )


_ACCEPT_HEAD = b"\x00\x53\x15\xc0\x0d\x05\x41\x70"
"""Disposition: list8 of 5 fields (13 bytes): role receiver (true), first as a 4-byte uint, then..."""
_ACCEPT_TAIL = b"\x40\x41\x00\x53\x24\x45"
"""... last null, settled true, state accepted (a described empty list)."""
_ACCEPT_SIZE = (8 + len(_ACCEPT_HEAD) + 4 + len(_ACCEPT_TAIL)).to_bytes(4, "big")


def accept_frame(delivery_id: int) -> bytes:
    """The device's disposition accepting and settling request ``delivery_id`` (Node's, §4.1)."""
    return b"".join(
        (_ACCEPT_SIZE, _FRAME_HEADER_TAIL, _ACCEPT_HEAD, delivery_id.to_bytes(4, "big"), _ACCEPT_TAIL)
    )


# Bytes after an encoded value's constructor, by its high nibble (part 1 §1.6): fixed widths for
# 0x4-0x9; -1 a one-byte size follows (0xa, 0xc, 0xe), -4 a four-byte size (0xb, 0xd, 0xf).
_WIDTH = (None, None, None, None, 0, 1, 2, 4, 8, 16, -1, -4, -1, -4, -1, -4)


def skip_value(data: bytes, pos: int) -> int:
    """The offset after the encoded AMQP value at ``pos`` (described values included)."""
    code = data[pos]
    if code == 0:  # described: the descriptor, then the value
        return skip_value(data, skip_value(data, pos + 1))
    width = _WIDTH[code >> 4]
    if width is None:
        raise DecodeError(f"not an AMQP constructor: 0x{code:02x}")
    if width >= 0:
        return pos + 1 + width
    if width == -1:
        return pos + 2 + data[pos + 1]
    return pos + 5 + int.from_bytes(data[pos + 1 : pos + 5], "big")


def _list_start(data: bytes, pos: int) -> tuple[int, int, int]:
    """(field count, offset of the first field, offset after the list) of the list at ``pos``."""
    code = data[pos]
    if code == 0xC0:
        return data[pos + 2], pos + 3, pos + 2 + data[pos + 1]
    if code == 0xD0:
        size = int.from_bytes(data[pos + 1 : pos + 5], "big")
        return int.from_bytes(data[pos + 5 : pos + 9], "big"), pos + 9, pos + 5 + size
    if code == 0x45:
        return 0, pos + 1, pos + 1
    raise DecodeError(f"expected a list, got 0x{code:02x}")


def _uint(data: bytes, pos: int) -> int | None:
    code = data[pos]
    if code == 0x52:
        return data[pos + 1]
    if code == 0x43:
        return 0
    if code == 0x70:
        return int.from_bytes(data[pos + 1 : pos + 5], "big")
    if code == 0x40:
        return None
    raise DecodeError(f"expected a uint, got 0x{code:02x}")


def _bool(data: bytes, pos: int) -> bool | None:
    code = data[pos]
    if code == 0x41:
        return True
    if code == 0x42:
        return False
    if code == 0x56:
        return data[pos + 1] != 0
    if code == 0x40:
        return None
    raise DecodeError(f"expected a boolean, got 0x{code:02x}")


def read_transfer(data: bytes, pos: int) -> tuple[int, int | None, bool, bool, int]:
    """(handle, delivery-id, settled, more, offset of the payload) of the transfer whose field list
    starts at ``pos`` (after its descriptor)."""
    count, q, end = _list_start(data, pos)
    if count < 1:
        raise DecodeError("a transfer without a handle")
    handle = _uint(data, q)
    if handle is None:
        raise DecodeError("a transfer without a handle")
    delivery_id = settled = more = None
    if count > 1:
        q = skip_value(data, q)
        delivery_id = _uint(data, q)
    if count > 4:
        for _ in range(3):  # delivery-id, delivery-tag, message-format
            q = skip_value(data, q)
        settled = _bool(data, q)
    if count > 5:
        q = skip_value(data, q)
        more = _bool(data, q)
    return handle, delivery_id, bool(settled), bool(more), end


def correlation_of(data: bytes | bytearray, pos: int, end: int) -> bytes | None:
    """The encoded ``properties.correlation-id`` of the message in ``data[pos:end]`` (None if absent)."""
    while pos < end:
        if data[pos] != 0:
            return None
        if data[pos + 1] == 0x53:
            code, pos = data[pos + 2], pos + 3
        elif data[pos + 1] == 0x80:
            code, pos = int.from_bytes(data[pos + 2 : pos + 10], "big"), pos + 10
        else:
            return None
        if code == _PROPERTIES:
            count, q, _ = _list_start(data, pos)  # type: ignore[arg-type]
            if count < 6:
                return None
            for _ in range(5):
                q = skip_value(data, q)  # type: ignore[arg-type]
            after = skip_value(data, q)  # type: ignore[arg-type]
            return None if data[q] == 0x40 else bytes(data[q:after])
        pos = skip_value(data, pos)  # type: ignore[arg-type]
    return None


# -- the handshake, with the codec --------------------------------------------------------------------


def methods_address(device_id: str) -> str:
    return f"/devices/{device_id}/methods/devicebound"


def opening_frames(device_id: str) -> bytes:
    """Header, open, begin and the two ``$cbs`` attaches (step 1 of the module docstring)."""
    return b"".join(
        (
            AMQP_HEADER,
            encode_frame(0, Open(f"farm-{device_id}", hostname="localhost", max_frame_size=MAX_FRAME_SIZE)),
            encode_frame(
                0, Begin(next_outgoing_id=0, incoming_window=RECEIVE_WINDOW, outgoing_window=UINT_MAX)
            ),
            encode_frame(
                0,
                Attach(
                    f"cbs-sender-{device_id}",
                    CBS_SENDER,
                    Role.SENDER,
                    source=Source(),
                    target=Target("$cbs"),
                    initial_delivery_count=0,
                ),
            ),
            encode_frame(
                0,
                Attach(
                    f"cbs-receiver-{device_id}",
                    CBS_RECEIVER,
                    Role.RECEIVER,
                    source=Source("$cbs"),
                    target=Target(),
                ),
            ),
        )
    )


def put_token_message(hostname: str, device_id: str, token: str) -> bytes:
    """Node's put-token request (wire doc §2.2), encoded."""
    resource = f"{hostname}/devices/{device_id}"
    return encode_message(
        Message(
            properties=Properties(message_id=str(uuid.uuid4()), to="$cbs", reply_to="cbs"),
            application_properties={
                "operation": "put-token",
                "type": "servicebus.windows.net:sastoken",
                "name": quote(resource, safe=""),
            },
            body=AmqpValue(token),
        )
    )


def methods_attaches(device_id: str, presettled: bool) -> bytes:
    """Both methods links (step 3): sender (answers) then receiver (requests)."""
    address = methods_address(device_id)
    properties = {
        Symbol("com.microsoft:api-version"): API_VERSION,
        Symbol("com.microsoft:channel-correlation-id"): f"methods:{device_id}",
    }
    mode = SenderSettleMode.SETTLED if presettled else SenderSettleMode.MIXED
    return encode_frame(
        0,
        Attach(
            f"methods-sender-{device_id}",
            METHODS_SENDER,
            Role.SENDER,
            snd_settle_mode=mode,
            rcv_settle_mode=ReceiverSettleMode.FIRST,
            source=Source(),
            target=Target(address),
            initial_delivery_count=0,
            properties=properties,
        ),
    ) + encode_frame(
        0,
        Attach(
            f"methods-receiver-{device_id}",
            METHODS_RECEIVER,
            Role.RECEIVER,
            snd_settle_mode=mode,
            rcv_settle_mode=ReceiverSettleMode.FIRST,
            source=Source(address),
            target=Target(),
            properties=properties,
        ),
    )


# -- the farm and its devices ------------------------------------------------------------------------

_OPENING, _TOKEN, _METHODS, _READY, _GONE = range(5)


class AmqpFarm(Farm):
    """bench/farm.py's farm with AMQP devices, and their heartbeat."""

    def __init__(self, config: FarmConfig) -> None:
        if config.dialect != "azure":
            raise ValueError("AMQP devices speak Azure's dialect only")
        super().__init__(config)
        self.lost = 0
        """Online devices the hub detached, ended or closed (or that dropped)."""
        self.queued = 0
        """Answers that waited for the hub's link credit or session window (a flow from the hub)."""
        self.queued_s = 0.0
        """Their total wait, and the longest one."""
        self.queued_max_s = 0.0
        self.loop.call_later(HEARTBEAT_S, self._heartbeat)

    def new_device(self, index: int, ready: asyncio.Future[bool]) -> AmqpDevice:
        return AmqpDevice(self, self.config.device_id(index), ready)

    def counters(self) -> dict[str, Any]:
        return {
            "lost": self.lost,
            "queued": self.queued,
            "queued_s": self.queued_s,
            "queued_max_s": self.queued_max_s,
            "errors": self.errors,
        }

    def _heartbeat(self) -> None:
        for device in self.devices:
            device.heartbeat()  # type: ignore[attr-defined]
        self.loop.call_later(HEARTBEAT_S, self._heartbeat)


class AmqpDevice(asyncio.Protocol):
    """One AMQP device connection. See the module docstring."""

    def __init__(self, farm: AmqpFarm, device_id: str, ready: asyncio.Future[bool]) -> None:
        self.farm = farm
        self.device_id = device_id
        self.ready = ready
        self.presettled = farm.config.presettled
        self.refused: str | None = None
        self.transport: asyncio.Transport | None = None
        self.phase = _OPENING
        self.header_seen = False
        self.buf = b""
        self.wrote = False
        """Something was written since the last heartbeat tick."""
        self.our_handle: dict[int, int] = {}
        """The hub's handle of each link → ours."""
        self.attached: set[int] = set()
        self.requests_handle = -1
        """The hub's handle of our methods receiver (its requests come on it)."""
        # Session (part 2 §2.5.6): transfer-ids in and out, our incoming window, the hub's.
        self.in_next = 0
        self.in_window = RECEIVE_WINDOW
        self.out_next = 0
        self.remote_window = 0
        # The methods receiver: its delivery-count and the credit left of what we granted.
        self.recv_count = 0
        self.recv_credit = 0
        # Our senders: deliveries sent and the hub's credit.
        self.cbs_credit = 0
        self.send_count = 0
        self.send_credit = 0
        self.waiting: list[tuple[bytes, float]] = []
        """Encoded correlation-ids of answers waiting for credit or session window, and since when."""
        self.partial: bytearray | None = None
        """A request arriving in several transfer frames, so far."""
        self.partial_id = 0
        self.partial_settled = False

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._write(opening_frames(self.device_id))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.phase == _READY:
            self.farm.lost += 1
        self.phase = _GONE
        if not self.ready.done():
            self.ready.set_result(False)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.write(CLOSE_FRAME)
            self.transport.close()

    def heartbeat(self) -> None:
        if not self.wrote and self.transport is not None:
            self.transport.write(EMPTY_FRAME)
        self.wrote = False

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)
            self.wrote = True

    def _fail(self, why: str) -> None:
        self.refused = why
        self.phase = _GONE
        if not self.ready.done():
            self.ready.set_result(False)
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        pos = 0
        if not self.header_seen:
            if len(data) < 8:
                self.buf = data
                return
            if data[:8] != AMQP_HEADER:
                return self._fail(f"not an AMQP header: {data[:8]!r}")
            self.header_seen = True
            pos = 8
        n = len(data)
        out: list[bytes] = []
        try:
            while pos + 8 <= n and self.phase != _GONE:
                size = int.from_bytes(data[pos : pos + 4], "big")
                end = pos + size
                if size < 8 or size > MAX_FRAME_SIZE:
                    return self._fail(f"bad frame size {size}")
                if end > n:
                    break
                body = pos + data[pos + 4] * 4
                if body < end:  # not an empty frame (a heartbeat)
                    if self.phase == _READY and data[body] == 0 and data[body + 1] == 0x53:
                        code = data[body + 2]
                        if code == _TRANSFER:
                            handle, delivery_id, settled, more, payload = read_transfer(data, body + 3)
                            self._on_transfer(handle, delivery_id, settled, more, data, payload, end, out)
                        elif code != _DISPOSITION:  # the hub settling our answers: nothing to do
                            self._slow(data[pos:end], out)
                    else:
                        self._slow(data[pos:end], out)
                pos = end
        except (DecodeError, IndexError) as exc:
            return self._fail(f"cannot read the hub's frame: {exc}")
        if pos < n:
            self.buf = data[pos:]
        if self.phase == _READY and (
            self.recv_credit < RECEIVE_CREDIT // 2 or self.in_window < RECEIVE_WINDOW // 2
        ):
            out.append(self._receiver_flow())
        if out:
            self._write(out[0] if len(out) == 1 else b"".join(out))

    # -- steady state --------------------------------------------------------------------------------

    def _on_transfer(
        self,
        handle: int,
        delivery_id: int | None,
        settled: bool,
        more: bool,
        data: bytes,
        payload: int,
        end: int,
        out: list[bytes],
    ) -> None:
        """One transfer frame (its message bytes are ``data[payload:end]``): a request, or part of one."""
        self.in_next = (self.in_next + 1) & UINT_MAX
        self.in_window -= 1
        if handle != self.requests_handle:
            return  # nothing else is sent to a device that only handles methods
        if self.partial is None:
            if delivery_id is None:
                raise DecodeError("the first transfer of a delivery has no delivery-id")
            self.recv_count = (self.recv_count + 1) & UINT_MAX
            self.recv_credit -= 1
            if more:
                self.partial = bytearray(data[payload:end])
                self.partial_id, self.partial_settled = delivery_id, settled
                return
            message: bytes | bytearray = data
            start = payload
        else:
            self.partial += data[payload:end]
            if more:
                return
            message, self.partial = self.partial, None
            delivery_id, settled = self.partial_id, settled or self.partial_settled
            start, end = 0, len(message)
        correlation = correlation_of(message, start, end)
        if not settled:
            out.append(accept_frame(delivery_id))
        if correlation is None:
            self.farm.errors["request without a correlation-id"] = (
                self.farm.errors.get("request without a correlation-id", 0) + 1
            )
            return
        if self.send_credit > 0 and self.remote_window > 0 and not self.waiting:
            out.append(self._answer(correlation))
        else:
            self.waiting.append((correlation, time.monotonic()))
            self.farm.queued += 1

    def _answer(self, correlation: bytes) -> bytes:
        frame = response_frame(self.out_next, correlation, self.presettled)
        self.out_next = (self.out_next + 1) & UINT_MAX
        self.remote_window -= 1
        self.send_count = (self.send_count + 1) & UINT_MAX
        self.send_credit -= 1
        self.farm.answered += 1
        return frame

    def _receiver_flow(self) -> bytes:
        self.recv_credit = RECEIVE_CREDIT
        self.in_window = RECEIVE_WINDOW
        return encode_frame(
            0,
            Flow(
                next_incoming_id=self.in_next,
                incoming_window=RECEIVE_WINDOW,
                next_outgoing_id=self.out_next,
                outgoing_window=UINT_MAX,
                handle=METHODS_RECEIVER,
                delivery_count=self.recv_count,
                link_credit=RECEIVE_CREDIT,
            ),
        )

    # -- everything else, with the codec ---------------------------------------------------------------

    def _slow(self, frame_bytes: bytes, out: list[bytes]) -> None:
        frame, _ = decode_frame(frame_bytes, 0, MAX_FRAME_SIZE)
        if frame is None:
            raise DecodeError("a truncated frame")
        body: Any = frame.body
        kind = type(body)
        if kind is Flow:
            self._on_flow(body, out)
        elif kind is Transfer:
            if self.phase == _READY:
                message = frame.payload
                settled, more = bool(body.settled), bool(body.more)
                self._on_transfer(body.handle, body.delivery_id, settled, more, message, 0, len(message), out)
            else:
                self._on_cbs_answer(body, frame.payload, out)
        elif kind is Begin:
            self.in_next = body.next_outgoing_id
            self.remote_window = body.incoming_window - self.out_next
        elif kind is Attach:
            self._on_attach(body, out)
        elif kind is Detach:
            self._fail(f"the hub detached {body.handle}: {body.error}")
        elif kind is End:
            self._fail(f"the hub ended the session: {body.error}")
        elif kind is Close:
            self._fail(f"the hub closed the connection: {body.error}")
        # Open, Disposition: nothing to do.

    def _on_flow(self, flow: Flow, out: list[bytes]) -> None:
        window = ((flow.next_incoming_id or 0) + flow.incoming_window - self.out_next) & UINT_MAX
        self.remote_window = window if window < _HALF else 0
        ours = self.our_handle.get(flow.handle) if flow.handle is not None else None
        if ours is None:
            pass
        elif ours == METHODS_SENDER:
            credit = ((flow.delivery_count or 0) + (flow.link_credit or 0) - self.send_count) & UINT_MAX
            self.send_credit = credit if credit < _HALF else 0
        elif ours == CBS_SENDER:
            self.cbs_credit = flow.link_credit or 0
            if self.phase == _OPENING and CBS_RECEIVER in self.attached:
                self._put_token(out)
        while self.waiting and self.send_credit > 0 and self.remote_window > 0:
            correlation, since = self.waiting.pop(0)
            waited = time.monotonic() - since
            self.farm.queued_s += waited
            self.farm.queued_max_s = max(self.farm.queued_max_s, waited)
            out.append(self._answer(correlation))

    def _on_attach(self, attach: Attach, out: list[bytes]) -> None:
        ours = {
            f"cbs-sender-{self.device_id}": CBS_SENDER,
            f"cbs-receiver-{self.device_id}": CBS_RECEIVER,
            f"methods-sender-{self.device_id}": METHODS_SENDER,
            f"methods-receiver-{self.device_id}": METHODS_RECEIVER,
        }.get(attach.name)
        if ours is None:
            return self._fail(f"the hub attached a link we did not ask for: {attach.name}")
        if attach.source is None and attach.target is None:
            return self._fail(f"the hub refused link {attach.name} (a detach with the reason follows)")
        self.our_handle[attach.handle] = ours
        self.attached.add(ours)
        if ours == METHODS_RECEIVER:
            self.requests_handle = attach.handle
            self.recv_count = attach.initial_delivery_count or 0
        if self.phase == _OPENING and ours == CBS_RECEIVER and self.cbs_credit > 0:
            self._put_token(out)
        elif self.phase == _METHODS and {METHODS_SENDER, METHODS_RECEIVER} <= self.attached:
            self.phase = _READY
            out.append(self._receiver_flow())
            if not self.ready.done():
                self.ready.set_result(True)

    def _put_token(self, out: list[bytes]) -> None:
        """Credit for the answer on the CBS receiver, and the put-token (step 2)."""
        config = self.farm.config
        out.append(
            encode_frame(
                0,
                Flow(
                    next_incoming_id=self.in_next,
                    incoming_window=self.in_window,
                    next_outgoing_id=self.out_next,
                    outgoing_window=UINT_MAX,
                    handle=CBS_RECEIVER,
                    delivery_count=0,
                    link_credit=CBS_CREDIT,
                ),
            )
        )
        token = sign(f"{config.hostname}/devices/{self.device_id}", config.key, self.farm.expiry)
        payload = put_token_message(config.hostname, self.device_id, token)
        tag = self.out_next.to_bytes(4, "big")
        out.append(encode_frame(0, Transfer(CBS_SENDER, self.out_next, tag, 0, False), payload))
        self.out_next = (self.out_next + 1) & UINT_MAX
        self.remote_window -= 1
        self.cbs_credit -= 1
        self.phase = _TOKEN

    def _on_cbs_answer(self, transfer: Transfer, payload: bytes, out: list[bytes]) -> None:
        self.in_next = (self.in_next + 1) & UINT_MAX
        self.in_window -= 1
        if self.our_handle.get(transfer.handle) != CBS_RECEIVER or self.phase != _TOKEN:
            return self._fail(f"a transfer on the hub's handle {transfer.handle} before the methods links")
        if not transfer.settled and transfer.delivery_id is not None:
            out.append(accept_frame(transfer.delivery_id))
        answer = decode_message(payload)
        app = answer.application_properties or {}
        status = app.get("status-code")
        if status != 200:
            shown = int(status) if isinstance(status, int) else status
            return self._fail(f"put-token {shown} {app.get('status-description')}")
        self.phase = _METHODS
        out.append(methods_attaches(self.device_id, self.presettled))
