"""An Azure AMQP device for the integration tests, on methodhub.amqp's client-role AmqpConnection.

It speaks what Microsoft's Node SDK speaks (azure-amqp-wire.md): TLS to the hub's ``amqps`` port,
or AMQP over a WebSocket (subprotocol ``AMQPWSB10``) on its HTTPS port; no SASL layer; CBS
put-token with a SAS token; the two direct-methods links on ``/devices/{id}/methods/devicebound``.
Blocking sockets and one thread: :meth:`AmqpDevice.serve` answers method requests in the
background while a test calls the REST API.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from wsproto import WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    RejectConnection,
    RejectData,
    Request,
)
from wsproto.events import Message as WsMessage

from methodhub.amqp import (
    Accepted,
    AmqpConnection,
    AmqpValue,
    ConnectionRole,
    Error,
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
    DeliverySettled,
    Event,
    LinkAttached,
    LinkDetached,
    MessageReceived,
    ProtocolFailure,
    SessionBegun,
)
from methodhub.amqp.types import Int
from tests.support import HOSTNAME, sign

E = TypeVar("E")

MethodHandler = Callable[[str, bytes], tuple[int, bytes | None]]
"""``(method name, request payload) -> (status, response payload or None for no body)``."""


class AmqpClosed(Exception):
    """The hub closed the connection (or its socket): ``error`` is its AMQP error, if it sent one."""

    def __init__(self, error: Error | None, events: list[Event]) -> None:
        super().__init__(f"the hub closed the AMQP connection: {error}")
        self.error = error
        self.events = events


class _WebSocketStream:
    """A TLS socket carrying one WebSocket (RFC 6455 client): bytes in binary messages both ways."""

    def __init__(self, sock: ssl.SSLSocket, host: str, subprotocol: str) -> None:
        self.sock = sock
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.accepted_subprotocol: str | None = None
        self.closed = False
        self._pending = bytearray()
        sock.sendall(
            self.ws.send(Request(host=host, target="/$iothub/websocket", subprotocols=[subprotocol]))
        )
        while self.accepted_subprotocol is None:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the hub closed the connection during the WebSocket handshake")
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    self.accepted_subprotocol = event.subprotocol or ""
                elif isinstance(event, (RejectConnection, RejectData)):
                    raise ConnectionError(f"the hub refused the WebSocket handshake: {event}")
        for event in self.ws.events():  # bytes that came with the 101
            self._take(event)

    def _take(self, event: Any) -> None:
        if isinstance(event, BytesMessage):
            self._pending += event.data
        elif isinstance(event, CloseConnection):
            self.closed = True

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(self.ws.send(WsMessage(data=data)))

    def recv(self, size: int) -> bytes:
        while not self._pending:
            if self.closed:
                return b""
            data = self.sock.recv(size)
            if not data:
                return b""
            self.ws.receive_data(data)
            for event in self.ws.events():
                self._take(event)
        out = bytes(self._pending)
        self._pending.clear()
        return out

    def settimeout(self, seconds: float | None) -> None:
        self.sock.settimeout(seconds)

    def close(self) -> None:
        self.sock.close()


class AmqpDevice:
    """One device (or module) connection: ``connect()`` → ``authenticate()`` → ``enable_methods()``.

    ``websocket``: AMQP over WebSocket on the HTTPS port instead of the ``amqps`` port; ``plain``:
    the plain ``amqp`` port (``--amqp-port``), no TLS.
    """

    def __init__(
        self,
        hub: Any,
        device_id: str,
        key: str,
        *,
        module_id: str | None = None,
        websocket: bool = False,
        plain: bool = False,
        max_frame_size: int = 65536,
        client_cert: tuple[Path, Path] | None = None,
    ) -> None:
        self.hub = hub
        self.client_cert = client_cert
        """(certificate, key) PEM files the TLS connection presents (X.509 devices send no put-token)."""
        self.device_id = device_id
        self.module_id = module_id
        self.key = key
        self.websocket = websocket
        self.plain = plain
        self.max_frame_size = max_frame_size
        self.events: list[Event] = []
        self.conn: AmqpConnection | None = None
        self.stream: Any = None
        self.channel = -1
        self.cbs_out: LinkRef | None = None
        self.cbs_in: LinkRef | None = None
        self.methods_out: LinkRef | None = None
        self.methods_in: LinkRef | None = None
        self.requests: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._serving: threading.Thread | None = None
        self._stop = threading.Event()
        self.closed_error: Error | None = None
        self.ended = threading.Event()
        self.failure: BaseException | None = None
        """What ended :meth:`serve`'s thread, if anything did."""

    # -- connection -----------------------------------------------------------------------------

    @property
    def resource(self) -> str:
        base = f"{HOSTNAME}/devices/{self.device_id}"
        return base + (f"/modules/{self.module_id}" if self.module_id else "")

    @property
    def address(self) -> str:
        base = f"/devices/{self.device_id}"
        return base + (f"/modules/{self.module_id}" if self.module_id else "") + "/methods/devicebound"

    def connect(self, timeout: float = 10) -> AmqpDevice:
        """TLS (trusting the hub's development CA, SNI ``localhost``), the WebSocket when asked, the
        AMQP header and ``open``, one session."""
        if self.plain:
            self.stream = socket.create_connection(("127.0.0.1", self.hub.ports["amqp"]), timeout=timeout)
        else:
            context = ssl.create_default_context(cafile=str(self.hub.ca_file))
            if self.client_cert is not None:
                context.load_cert_chain(str(self.client_cert[0]), str(self.client_cert[1]))
            port = self.hub.ports["https" if self.websocket else "amqps"]
            raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            tls = context.wrap_socket(raw, server_hostname=HOSTNAME)
            self.stream = _WebSocketStream(tls, f"{HOSTNAME}:{port}", "AMQPWSB10") if self.websocket else tls
        self.conn = AmqpConnection(
            ConnectionRole.CLIENT,
            container_id=str(uuid.uuid4()),
            hostname=HOSTNAME,
            idle_timeout=None,  # as Node: no heartbeats asked of the hub
            sasl_init=None,  # as Node and C#: no SASL layer (wire doc §1.2)
            max_frame_size=self.max_frame_size,
        )
        self.wait_for(ConnectionOpened, timeout=timeout)
        self.channel = self.conn.begin_session()
        self.wait_for(SessionBegun, timeout=timeout)
        return self

    def _flush(self) -> None:
        assert self.conn is not None
        data = self.conn.data_to_send()
        if data:
            self.stream.settimeout(30)  # not the read's short timeout: a large answer takes a while
            self.stream.sendall(data)

    def pump(self, timeout: float) -> list[Event]:
        """Send what is queued, then read once (up to ``timeout`` s); the events that read made."""
        assert self.conn is not None
        with self._lock:
            self._flush()
        self.stream.settimeout(timeout)
        try:
            data = self.stream.recv(65536)
        except TimeoutError:
            return []
        except (ssl.SSLError, OSError) as exc:
            raise AmqpClosed(None, self.events) from exc
        if not data:
            self.ended.set()
            raise AmqpClosed(self.closed_error, self.events)
        with self._lock:
            events = self.conn.receive_data(data, time.monotonic())
            self.events += events
            for event in events:
                closes = isinstance(event, ConnectionClosed) or (
                    isinstance(event, ProtocolFailure) and event.channel is None
                )
                if closes:
                    self.closed_error = event.error  # type: ignore[union-attr]
            self._flush()
        return events

    def wait_for(self, kind: type[E], where: Callable[[E], bool] = lambda e: True, timeout: float = 10) -> E:
        """Pump until an event of ``kind`` for which ``where`` holds (events already seen count)."""
        seen = 0
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events[seen:]:
                if isinstance(event, kind) and where(event):
                    return event
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind.__name__} in {timeout} s; events: {self.events}")
            self.pump(min(left, 0.5))

    # -- CBS (wire doc §2) --------------------------------------------------------------------------

    def authenticate(self, token: str | None = None, ttl: int = 3600, timeout: float = 10) -> tuple[int, str]:
        """Attach the ``$cbs`` links (first time) and put-token ``token`` (default: a fresh SAS token
        for this identity, as Node signs it); the response's ``(status-code, status-description)``."""
        assert self.conn is not None
        with self._lock:
            if self.cbs_out is None:
                self.cbs_out = self.conn.attach(
                    self.channel,
                    f"cbs-sender-{uuid.uuid4()}",
                    sender=True,
                    source=Source(),
                    target=Target("$cbs"),
                )
                self.cbs_in = self.conn.attach(
                    self.channel,
                    f"cbs-receiver-{uuid.uuid4()}",
                    sender=False,
                    source=Source("$cbs"),
                    target=Target(),
                )
                new_links = True
            else:
                new_links = False
        if new_links:
            cbs_in = self.cbs_in
            self.wait_for(LinkAttached, lambda e: e.link == cbs_in, timeout)
            with self._lock:
                assert self.cbs_in is not None
                self.conn.grant_credit(self.cbs_in, 100)
            cbs_out = self.cbs_out
            self.wait_for(CreditGranted, lambda e: e.link == cbs_out, timeout)
        if token is None:
            token = sign(self.resource, self.key, int(time.time()) + ttl)
        message_id = str(uuid.uuid4())
        request = Message(
            properties=Properties(message_id=message_id, to="$cbs", reply_to="cbs"),
            application_properties={
                "operation": "put-token",
                "type": "servicebus.windows.net:sastoken",
                "name": self.resource.replace("/", "%2F"),
            },
            body=AmqpValue(token),
        )
        with self._lock:
            assert self.cbs_out is not None
            sent = self.conn.send_message(self.cbs_out, encode_message(request), uuid.uuid4().bytes)
        assert sent is not None, "no credit on the CBS sender link"
        cbs_in = self.cbs_in
        received = self.wait_for(
            MessageReceived,
            lambda e: (
                e.link == cbs_in
                and (decoded := decode_message(e.payload)).properties is not None
                and decoded.properties.correlation_id == message_id
            ),
            timeout,
        )
        with self._lock:
            if not received.settled:
                self.conn.settle(received.link, received.delivery_id, Accepted())
        answer = decode_message(received.payload)
        app = answer.application_properties or {}
        return int(app["status-code"]), str(app.get("status-description"))

    # -- direct methods (wire doc §3, §4) -----------------------------------------------------------

    def enable_methods(self, timeout: float = 10) -> None:
        """Attach the methods sender (responses), then the receiver (requests), as Node does, and
        give the hub credit for requests."""
        assert self.conn is not None
        correlation = f"methods:{uuid.uuid4()}"
        properties = {
            Symbol("com.microsoft:api-version"): "2021-04-12",
            Symbol("com.microsoft:channel-correlation-id"): correlation,
        }
        with self._lock:
            self.methods_out = self.conn.attach(
                self.channel,
                f"methods-sender-{uuid.uuid4()}",
                sender=True,
                source=Source(),
                target=Target(self.address),
                rcv_settle_mode=ReceiverSettleMode.FIRST,
                properties=properties,
            )
        out = self.methods_out
        attached = self.wait_for(LinkAttached, lambda e: e.link == out, timeout)
        assert attached.attach.target is not None, f"the hub refused the methods sender: {self.events}"
        with self._lock:
            self.methods_in = self.conn.attach(
                self.channel,
                f"methods-receiver-{uuid.uuid4()}",
                sender=False,
                source=Source(self.address),
                target=Target(),
                rcv_settle_mode=ReceiverSettleMode.FIRST,
                properties=properties,
            )
        into = self.methods_in
        attached = self.wait_for(LinkAttached, lambda e: e.link == into, timeout)
        assert attached.attach.source is not None, f"the hub refused the methods receiver: {self.events}"
        with self._lock:
            self.conn.grant_credit(into, 1000)
            self._flush()

    def answer(self, event: MessageReceived, handler: MethodHandler) -> None:
        """Accept a method request and send ``handler``'s answer on the methods sender link."""
        assert self.conn is not None and self.methods_out is not None
        request = decode_message(event.payload)
        assert request.properties is not None
        name = str((request.application_properties or {})["IoThub-methodname"])
        payload = b"".join(request.body) if isinstance(request.body, list) else b""
        self.requests.append((name, payload))
        status, body = handler(name, payload)
        response = Message(
            properties=Properties(correlation_id=request.properties.correlation_id),
            application_properties={"IoThub-status": Int(status)},
            body=None if body is None else [body],
        )
        with self._lock:
            if not event.settled:
                self.conn.settle(event.link, event.delivery_id, Accepted())
            sent = self.conn.send_message(self.methods_out, encode_message(response), uuid.uuid4().bytes)
            self._flush()
        assert sent is not None, "no credit on the methods sender link"

    def serve(self, handler: MethodHandler) -> AmqpDevice:
        """Answer method requests with ``handler`` in a thread of its own, until :meth:`close` or
        the hub ends the connection (then :attr:`ended` is set)."""

        def run() -> None:
            seen = len(self.events)
            try:
                while not self._stop.is_set():
                    self.pump(0.2)
                    fresh, seen = self.events[seen:], len(self.events)
                    for event in fresh:
                        if isinstance(event, MessageReceived) and event.link == self.methods_in:
                            self.answer(event, handler)
                    if self.conn is not None and self.conn.finished:
                        self.ended.set()
                        return
            except (AmqpClosed, OSError) as exc:
                self.failure = exc
                self.ended.set()
            except BaseException as exc:  # a bug here: the test sees it in `failure`
                self.failure = exc
                self.ended.set()
                raise

        self._serving = threading.Thread(target=run, daemon=True)
        self._serving.start()
        return self

    def detached(self) -> list[LinkDetached]:
        return [e for e in list(self.events) if isinstance(e, LinkDetached)]

    def settled(self) -> list[DeliverySettled]:
        return [e for e in list(self.events) if isinstance(e, DeliverySettled)]

    def close(self) -> None:
        """Close the AMQP connection (as the SDK's ``close()`` does) and the socket."""
        self._stop.set()
        if self._serving is not None:
            self._serving.join(5)
        try:
            if self.conn is not None and not self.conn.finished:
                with self._lock:
                    self.conn.close()
                    self._flush()
        except OSError:
            pass
        finally:
            if self.stream is not None:
                self.stream.close()

    def drop(self) -> None:
        """Close the socket with no AMQP goodbye (a device that vanishes)."""
        self._stop.set()
        if self._serving is not None:
            self._serving.join(5)
        if self.stream is not None:
            self.stream.close()


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()
