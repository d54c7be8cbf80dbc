"""Sending one fuzz input over a socket and watching how the hub ends the connection.

An input is rendered into steps (writes, waits for the hub's first answer, short pauses); after the
last step the connection ends one of three ways, chosen by the seed:

``fin``     the fuzzer half-closes (TCP FIN): the hub must close within ``close_timeout``.
``silent``  the fuzzer stops sending and keeps the socket open: a connection the hub has not
            accepted (no CONNACK 0; an incomplete HTTP request) must be closed within the bound
            for its kind (MQTT: the CONNECT deadline + slack; HTTP: the head/body deadline). Once
            the hub accepts the device, keep-alive rules apply instead, so the fuzzer sends FIN.
``abort``   the fuzzer resets the connection at once (checked by the hub's fd count at the end).

AMQP inputs may also carry four more steps: ``wait-attach`` (for the hub's answers to the first
N attaches, which carry the links' credit), ``wait-put-token`` (for the hub's answer to the
put-token written last), ``release`` (the fuzzer's sending slot is freed: what follows only
trickles) and ``deadline`` (the hub must have closed the connection within ``bound``
seconds of its start — an AMQP connection that authorizes no identity is closed at the hub's
deadline however it trickles).

A connection still open past its bound is a *hang*.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from wsproto.frame_protocol import FrameProtocol, Opcode

from fuzz.amqpread import AmqpAnswers

STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
KEEP_RESPONSE = 64 * 1024


@dataclass(slots=True)
class Endpoint:
    host: str
    port: int
    tls: ssl.SSLContext | None = None
    server_hostname: str | None = None


@dataclass(slots=True)
class Limits:
    """How long the hub may take to close a connection after the fuzzer stops."""

    close_timeout: float = 5.0
    """After the fuzzer's FIN."""
    connect_bound: float = 15.0
    """A silent MQTT connection without CONNACK 0 (the hub's CONNECT deadline, 10 s, + slack)."""
    stall_bound: float = 20.0
    """A silent HTTP connection holding an incomplete request (the hub's head/body deadline + slack)."""
    wait_response: float = 2.0
    """A ``wait`` step waits this long at most for the hub's first answer."""


@dataclass(slots=True)
class Outcome:
    """How one connection went."""

    closed_by_hub: bool = False
    hang: str = ""
    """Empty, or why the connection counts as a hang."""
    close_latency: float | None = None
    """Seconds from the end of sending (or the FIN) to the hub's close."""
    accepted: bool = False
    connack: int | None = None
    statuses: list[int] = field(default_factory=list)
    bytes_in: int = 0
    error: str = ""
    local_port: int = 0
    first_write: float = 0.0
    last_write: float = 0.0
    amqp: AmqpAnswers | None = None
    """AMQP: what the hub answered (its close, detach errors, put-token statuses)."""
    amqp_end: str = ""
    """AMQP: how the hub ended the connection (:meth:`AmqpAnswers.ending`)."""
    open_after_steps: bool = False
    """The hub had not closed the connection when the last step was done."""
    stalled: str = ""
    """The wait step that ran out of time, if one did: the rest was sent without waiting."""


class Probe(asyncio.Protocol):
    """The client side of one fuzz connection: reads everything, notes CONNACK, HTTP statuses and
    (AMQP) what the hub answered."""

    def __init__(self, kind: str, sasl_plain: bool = False) -> None:
        self.kind = kind  # "mqtt", "ws" (MQTT over WebSocket), "http", "amqp", "amqpws" (over WebSocket)
        loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.data_event = asyncio.Event()
        self.accepted_event = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.mqtt_in = b""
        self.response = bytearray()
        self.bytes_in = 0
        self.connack: int | None = None
        self.frames: FrameProtocol | None = None
        self.upgraded = False
        self.websocket = kind in ("ws", "amqpws")
        self.amqp = AmqpAnswers(sasl_plain) if kind in ("amqp", "amqpws") else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.data_event.set()
        if self.kind == "http":
            if len(self.response) < KEEP_RESPONSE:
                self.response += data[: KEEP_RESPONSE - len(self.response)]
            return
        if self.websocket and not self.upgraded:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                self.upgraded = True
                self.frames = None
                return
            self.upgraded = True
            self.frames = FrameProtocol(client=True, extensions=[])
            data = self.head[end + 4 :]
        if self.amqp is not None:
            payload = self._unframed(data) if self.websocket else data
            if payload:
                self.amqp.feed(payload)
                if self.amqp.authorized:
                    self.accepted_event.set()
            return
        if self.connack is not None or len(self.mqtt_in) > 64:
            return
        if self.websocket:
            payload = self._unframed(data)
            if payload is None:  # a frame the client side of wsproto refuses: nothing more to learn
                self.mqtt_in = b"\x00" * 65
                return
            self.mqtt_in += payload
        else:
            self.mqtt_in += data
        self._check_connack()

    def _unframed(self, data: bytes) -> bytes | None:
        """The binary payloads of the hub's WebSocket frames in ``data`` (None: not valid frames)."""
        if self.frames is None:
            return b""
        out = b""
        try:
            self.frames.receive_bytes(data)
            for fr in self.frames.received_frames():
                if fr.opcode in (Opcode.BINARY, Opcode.CONTINUATION) and isinstance(
                    fr.payload, bytes | bytearray
                ):
                    out += bytes(fr.payload)
        except Exception:
            return None
        return out

    def _check_connack(self) -> None:
        buf = self.mqtt_in
        if len(buf) < 4 or buf[0] != 0x20:
            return
        # CONNACK: 20 len flags code (3.1.1; 5 adds properties after the code)
        self.connack = buf[3] if buf[1] < 0x80 else None
        if self.connack == 0:
            self.accepted_event.set()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.data_event.set()

    def statuses(self) -> list[int]:
        return [int(m.group(1)) for m in STATUS_LINE.finditer(bytes(self.response))]


Step = tuple[str, bytes | float]
"""("write", bytes) | ("wait", seconds) | ("wait-attach", count) | ("wait-put-token", seconds) |
("pause", seconds) | ("release", 0) | ("deadline", 0)."""


async def _half_close(transport: asyncio.Transport) -> None:
    """Send FIN once the data is out (TLS included: the raw socket's write side is shut down)."""
    for _ in range(50):  # up to a second: a hub that stopped reading never drains it
        if not transport.get_write_buffer_size() or transport.is_closing():
            break
        await asyncio.sleep(0.02)
    if transport.is_closing():
        return
    if transport.can_write_eof():
        try:
            transport.write_eof()
            return
        except (OSError, RuntimeError, NotImplementedError):
            pass
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        raw = socket.socket(fileno=sock.fileno())
    except OSError:
        return
    try:
        raw.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        raw.detach()


async def _answers(probe: Probe, limit: float) -> None:
    """Let the hub answer before the FIN (it may drop the answer of a request whose client has
    half-closed): wait for its first bytes, then until it is quiet for 0.2 s, ``limit`` s at most."""
    deadline = time.monotonic() + limit
    mark = -1
    while not probe.closed.done() and probe.bytes_in != mark:
        mark = probe.bytes_in
        left = deadline - time.monotonic()
        if left <= 0:
            return
        probe.data_event.clear()
        try:
            await asyncio.wait_for(probe.data_event.wait(), left if mark == 0 else min(0.2, left))
        except TimeoutError:
            if mark:
                return


async def _until(probe: Probe, done: Callable[[], bool], timeout: float) -> bool:
    """Wait until ``done()`` (checked as the hub's bytes come) or the hub closes, ``timeout`` s at
    most; whether ``done()`` (or the close) came."""
    deadline = time.monotonic() + timeout
    while not done() and not probe.closed.done():
        probe.data_event.clear()
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            await asyncio.wait_for(probe.data_event.wait(), left)
        except TimeoutError:
            return done() or probe.closed.done()
    return True


async def _wait(fut: asyncio.Future[None], timeout: float) -> bool:
    if fut.done():
        return True
    try:
        await asyncio.wait_for(asyncio.shield(fut), timeout)
    except TimeoutError:
        return False
    return True


async def send(
    endpoint: Endpoint,
    kind: str,
    steps: list[Step],
    end: str,
    bound: float,
    limits: Limits,
    on_sent: Callable[[], None] | None = None,
    outcome: Outcome | None = None,
    sasl_plain: bool = False,
) -> Outcome:
    """Run one input: connect, perform ``steps``, end with ``end``; report the outcome.

    ``bound`` is how long the hub may leave a silent connection open (used when ``end`` is
    ``silent``, and by a ``deadline`` step); ``on_sent`` is called once the steps are done (or the
    connection failed, or a ``release`` step came); ``sasl_plain``: the AMQP input's SASL layer is
    PLAIN (an ``ok`` outcome then authorizes it)."""
    loop = asyncio.get_running_loop()
    outcome = outcome if outcome is not None else Outcome()
    try:
        transport, probe = await asyncio.wait_for(
            loop.create_connection(
                lambda: Probe(kind, sasl_plain),
                endpoint.host,
                endpoint.port,
                ssl=endpoint.tls,
                server_hostname=endpoint.server_hostname if endpoint.tls else None,
            ),
            10,
        )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        outcome.error = f"connect: {exc!r}"[:200]
        if on_sent is not None:
            on_sent()
        return outcome
    outcome.first_write = time.monotonic()
    sockname = transport.get_extra_info("sockname")
    if isinstance(sockname, tuple):
        outcome.local_port = int(sockname[1])
    mark = 0
    try:
        for op, arg in steps:
            if probe.closed.done():
                break
            if op.startswith("wait") and outcome.stalled and probe.amqp is not None:
                continue  # the hub stopped answering as a device expects: the rest goes unwaited
            if op == "write":
                mark = probe.bytes_in
                transport.write(arg)  # type: ignore[arg-type]
                outcome.last_write = time.monotonic()
            elif op == "wait":  # for the hub's answer to what was written last
                limit = min(float(arg), limits.wait_response)  # type: ignore[arg-type]
                if not await _until(probe, lambda m=mark: probe.bytes_in > m, limit):
                    outcome.stalled = op
            elif op == "wait-attach":  # for the hub's answers to the first ``arg`` AMQP attaches
                attaches = int(arg)  # type: ignore[arg-type]
                answered = probe.amqp
                if answered is not None and not await _until(
                    probe, lambda a=answered, n=attaches: a.attaches >= n, limits.wait_response
                ):
                    outcome.stalled = op
            elif op == "release":
                if on_sent is not None:
                    on_sent()
                    on_sent = None
            elif op == "deadline":  # the hub must have closed by ``bound`` s after the start
                left = outcome.first_write + bound - time.monotonic()
                if not await _wait(probe.closed, max(0.0, left)):
                    outcome.hang = f"open {bound:g} s after connecting (it trickled, authorized nothing)"
                    end = "abort"
                break
            elif op == "wait-put-token":  # for the hub's answer to the put-token written last
                statuses = probe.amqp.put_token_statuses if probe.amqp is not None else []
                seen = len(statuses)
                if not await _until(probe, lambda s=statuses, n=seen: len(s) > n, float(arg)):  # type: ignore[arg-type]
                    outcome.stalled = op
            else:
                await asyncio.sleep(float(arg))  # type: ignore[arg-type]
        if on_sent is not None:
            on_sent()
            on_sent = None
        outcome.open_after_steps = not probe.closed.done()
        await _finish(transport, probe, end, bound, limits, outcome)
    finally:
        if on_sent is not None:
            on_sent()
        if not probe.closed.done():
            transport.abort()
        outcome.accepted = probe.accepted_event.is_set()
        outcome.connack = probe.connack
        outcome.bytes_in = probe.bytes_in
        if probe.amqp is not None:
            outcome.amqp = probe.amqp
            outcome.amqp_end = probe.amqp.ending(outcome.closed_by_hub)
        if kind == "http" or (kind == "ws" and probe.head and not probe.head.startswith(b"HTTP/1.1 101")):
            probe.response = bytearray(probe.head) + probe.response
            outcome.statuses = probe.statuses()
    return outcome


async def _finish(
    transport: asyncio.Transport, probe: Probe, end: str, bound: float, limits: Limits, outcome: Outcome
) -> None:
    started = time.monotonic()
    if end == "abort":
        if probe.closed.done():  # the hub closed before the fuzzer would have reset
            outcome.closed_by_hub = True
            outcome.close_latency = 0.0
        transport.abort()
        return
    if end == "silent" and not probe.closed.done():
        accepted = asyncio.ensure_future(probe.accepted_event.wait())
        try:
            await asyncio.wait({probe.closed, accepted}, timeout=bound, return_when=asyncio.FIRST_COMPLETED)
        finally:
            accepted.cancel()
        if probe.closed.done():
            outcome.closed_by_hub = True
            outcome.close_latency = time.monotonic() - started
            return
        if not probe.accepted_event.is_set():
            outcome.hang = f"open {bound:g} s after the last byte (no FIN sent, not accepted)"
        end = "fin"
    if end == "fin":
        if probe.kind == "http" and not outcome.hang:
            await _answers(probe, limits.wait_response)
        fin_at = time.monotonic()
        await _half_close(transport)
        if await _wait(probe.closed, limits.close_timeout):
            outcome.closed_by_hub = True
            outcome.close_latency = time.monotonic() - (fin_at if not outcome.hang else started)
            if outcome.hang:
                outcome.hang += "; closed after the FIN"
        else:
            what = f"open {limits.close_timeout:g} s after the client's FIN"
            outcome.hang = f"{outcome.hang}; still {what}" if outcome.hang else what
