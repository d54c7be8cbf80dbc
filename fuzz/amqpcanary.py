"""The AMQP canary device: a well-behaved Azure AMQP device (what Microsoft's Node SDK sends, wire doc
§1-§4) answering method ``echo`` with its payload, on ``methodhub.amqp``'s client-role connection.

Plain TCP to the hub's ``amqp`` listener, no SASL layer, ``open`` without an idle time-out, one
session, the ``$cbs`` links and a put-token with its SAS token, then the two methods links. One
thread with a blocking socket reads, answers and keeps the heartbeats the hub's ``open`` asks for;
when the hub drops it, it reconnects (counted in :attr:`disconnects`), as the SDK would.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from methodhub.amqp import (
    Accepted,
    AmqpConnection,
    AmqpValue,
    ConnectionRole,
    LinkRef,
    Message,
    Properties,
    ReceiverSettleMode,
    Source,
    Symbol,
    Target,
    decode_message,
    encode_message,
)
from methodhub.amqp.events import (
    ConnectionClosed,
    ConnectionOpened,
    CreditGranted,
    Event,
    LinkAttached,
    MessageReceived,
    ProtocolFailure,
    SessionBegun,
)
from methodhub.amqp.types import Int

E = TypeVar("E")
TOKEN_TYPE = "servicebus.windows.net:sastoken"


class CanaryConnectionLost(Exception):
    pass


class AmqpCanaryDevice:
    transport = "amqp"

    def __init__(self, host: str, port: int, hostname: str, device_id: str, token: str) -> None:
        self.device_id = device_id
        self.host = host
        self.port = port
        self.hostname = hostname
        self.token = token
        self.disconnects = 0
        self.answered = 0
        self.last_problem = ""
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._conn: AmqpConnection | None = None
        self._events: list[Event] = []
        self._requests: LinkRef | None = None
        self._responses: LinkRef | None = None

    # -- the life cycle -------------------------------------------------------------------------------

    def start(self, ready_timeout: float) -> None:
        self._thread = threading.Thread(target=self._run, name="fuzz-canary-amqp", daemon=True)
        self._thread.start()
        if not self._ready.wait(ready_timeout):
            self._stop.set()
            raise SystemExit(
                f"fuzz: the AMQP canary device could not connect and attach its methods links before "
                f"fuzzing: {self.last_problem or 'no answer'}"
            )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                self._connect(10.0)
                delay = 0.1
                self._ready.set()
                self._serve()
            except (CanaryConnectionLost, OSError, AssertionError) as exc:
                self.last_problem = f"{type(exc).__name__}: {exc}"[:300]
            finally:
                self._close()
            if self._stop.is_set():
                return
            if self._ready.is_set():
                self.disconnects += 1
            self._stop.wait(delay)
            delay = min(1.0, delay * 2)

    def _close(self) -> None:
        if self._sock is not None:
            try:
                if self._conn is not None and not self._conn.finished and self._stop.is_set():
                    self._conn.close()
                    self._sock.sendall(self._conn.data_to_send())
            except OSError:
                pass
            self._sock.close()
        self._sock = None
        self._conn = None
        self._events = []

    # -- the wire -------------------------------------------------------------------------------------

    def _pump(self, timeout: float) -> list[Event]:
        """Send what is queued, read once (up to ``timeout`` s), run the timers; the new events."""
        conn, sock = self._conn, self._sock
        assert conn is not None and sock is not None
        sock.sendall(conn.data_to_send())
        timer = conn.get_timer()
        now = time.monotonic()
        if timer is not None:
            timeout = max(0.01, min(timeout, timer - now))
        sock.settimeout(timeout)
        events: list[Event] = []
        try:
            data = sock.recv(65536)
        except TimeoutError:
            data = None
        if data == b"":
            raise CanaryConnectionLost("the hub closed the connection")
        now = time.monotonic()
        if data:
            events += conn.receive_data(data, now)
        timer = conn.get_timer()
        if timer is not None and now >= timer:
            events += conn.handle_timer(now)
        sock.sendall(conn.data_to_send())
        for event in events:
            if isinstance(event, ConnectionClosed) or (
                isinstance(event, ProtocolFailure) and event.channel is None
            ):
                raise CanaryConnectionLost(f"the hub closed the AMQP connection: {event}")
        self._events += events
        return events

    def _wait(self, kind: type[E], where: Callable[[E], bool] = lambda e: True, timeout: float = 10) -> E:
        seen = 0
        deadline = time.monotonic() + timeout
        while True:
            for event in self._events[seen:]:
                if isinstance(event, kind) and where(event):
                    return event
            seen = len(self._events)
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.is_set():
                raise CanaryConnectionLost(f"no {kind.__name__} within {timeout} s")
            self._pump(min(left, 0.5))

    def _connect(self, timeout: float) -> None:
        self._sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self._conn = conn = AmqpConnection(
            ConnectionRole.CLIENT,
            container_id=str(uuid.uuid4()),
            hostname=self.hostname,
            idle_timeout=None,  # as Node: no heartbeats asked of the hub
            sasl_init=None,  # as Node and C#: no SASL layer
        )
        self._wait(ConnectionOpened, timeout=timeout)
        channel = conn.begin_session()
        self._wait(SessionBegun, timeout=timeout)
        cbs_out = conn.attach(
            channel, f"cbs-sender-{uuid.uuid4()}", sender=True, source=Source(), target=Target("$cbs")
        )
        cbs_in = conn.attach(
            channel, f"cbs-receiver-{uuid.uuid4()}", sender=False, source=Source("$cbs"), target=Target()
        )
        self._wait(LinkAttached, lambda e: e.link == cbs_in, timeout)
        conn.grant_credit(cbs_in, 10)
        self._wait(CreditGranted, lambda e: e.link == cbs_out, timeout)
        resource = f"{self.hostname}/devices/{self.device_id}"
        message_id = str(uuid.uuid4())
        request = Message(
            properties=Properties(message_id=message_id, to="$cbs", reply_to="cbs"),
            application_properties={
                "operation": "put-token",
                "type": TOKEN_TYPE,
                "name": resource.replace("/", "%2F"),
            },
            body=AmqpValue(self.token),
        )
        assert conn.send_message(cbs_out, encode_message(request), uuid.uuid4().bytes) is not None, (
            "no CBS credit"
        )
        answer = self._wait(
            MessageReceived,
            lambda e: e.link == cbs_in and _correlation(e.payload) == message_id,
            timeout,
        )
        status = (decode_message(answer.payload).application_properties or {}).get("status-code")
        if status != 200:
            raise CanaryConnectionLost(f"put-token answered {status}")
        address = f"/devices/{self.device_id}/methods/devicebound"
        properties = {
            Symbol("com.microsoft:api-version"): "2021-04-12",
            Symbol("com.microsoft:channel-correlation-id"): f"methods:{uuid.uuid4()}",
        }
        responses = conn.attach(
            channel,
            f"methods-sender-{uuid.uuid4()}",
            sender=True,
            source=Source(),
            target=Target(address),
            rcv_settle_mode=ReceiverSettleMode.FIRST,
            properties=properties,
        )
        attached = self._wait(LinkAttached, lambda e: e.link == responses, timeout)
        if attached.attach.target is None:
            raise CanaryConnectionLost("the hub refused the methods sender link")
        requests = conn.attach(
            channel,
            f"methods-receiver-{uuid.uuid4()}",
            sender=False,
            source=Source(address),
            target=Target(),
            rcv_settle_mode=ReceiverSettleMode.FIRST,
            properties=properties,
        )
        attached = self._wait(LinkAttached, lambda e: e.link == requests, timeout)
        if attached.attach.source is None:
            raise CanaryConnectionLost("the hub refused the methods receiver link")
        conn.grant_credit(requests, 1000)
        self._wait(CreditGranted, lambda e: e.link == responses, timeout)
        self._requests, self._responses = requests, responses
        self._events = []

    def _serve(self) -> None:
        conn = self._conn
        assert conn is not None
        while not self._stop.is_set():
            for event in self._pump(0.2):
                if isinstance(event, MessageReceived) and event.link == self._requests:
                    self._answer(event)
            self._events.clear()
            if conn.finished:
                raise CanaryConnectionLost("the connection finished")

    def _answer(self, event: MessageReceived) -> None:
        conn = self._conn
        assert conn is not None and self._responses is not None and self._requests is not None
        request = decode_message(event.payload)
        if not event.settled:
            conn.settle(event.link, event.delivery_id, Accepted())
        if request.properties is None:
            return
        payload = b"".join(request.body) if isinstance(request.body, list) else b""
        response = Message(
            properties=Properties(correlation_id=request.properties.correlation_id),
            application_properties={"IoThub-status": Int(200)},
            body=[payload],
        )
        if conn.credit(self._requests) < 500:
            conn.grant_credit(self._requests, 1000 - conn.credit(self._requests))
        if conn.send_message(self._responses, encode_message(response), uuid.uuid4().bytes) is None:
            self.last_problem = "no credit on the methods sender link: an answer was not sent"
        else:
            self.answered += 1


def _correlation(payload: bytes) -> object:
    properties = decode_message(payload).properties
    return properties.correlation_id if properties is not None else None
