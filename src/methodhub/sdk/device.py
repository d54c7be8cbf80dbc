"""The device SDK: answer method calls from the hub, over MQTT, with asyncio.

Example::

    from methodhub.sdk import DeviceClient, MethodRequest

    device = DeviceClient.from_connection_string(cs, port=1883)

    @device.method("reboot")
    async def reboot(request: MethodRequest):
        delay = (request.payload or {}).get("delay", 0)
        return 200, {"rebooting_in": delay}

    @device.method()                      # every other method
    def fallback(request: MethodRequest):  # plain functions run in a worker thread
        return 404, {"error": f"no method {request.name}"}

    device.run_forever()                  # or: await device.run()  /  async with device: ...

A handler returns ``(status, payload)``, a :class:`MethodResponse`, or just a payload (status 200);
an exception becomes status 500 with ``{"error": "..."}``. The client speaks Azure IoT Hub's
device protocol (the same as Microsoft's SDK), reconnects with exponential backoff and jitter, and
renews its SAS token before it expires (DISCONNECT, then CONNECT with a fresh token).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
import ssl
import ssl as _ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from methodhub.dialects.azure.connection_string import ConnectionString
from methodhub.dialects.azure.sas import generate_sas_token
from methodhub.dialects.azure.topics import (
    API_VERSION,
    METHODS_FILTER,
    METHODS_PREFIX,
    parse_request_topic,
    response_topic,
)
from methodhub.mqtt import (
    Connack,
    Connect,
    ConnectionClosed,
    Disconnect,
    KeepAliveTimeout,
    MqttConnection,
    PacketReceived,
    PingDue,
    Pingreq,
    Pingresp,
    ProtocolError,
    Puback,
    Publish,
    Role,
    Suback,
    Subscribe,
)
from methodhub.sdk.errors import CredentialError, MethodHubError

log = logging.getLogger("methodhub.sdk.device")

TOKEN_RENEW_MARGIN = 120
"""Renew the SAS token this many seconds before it expires, as Microsoft's SDK does."""
CONNECT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class MethodRequest:
    """A method call from the hub: its name, its JSON payload (decoded) and its request id."""

    name: str
    payload: Any
    request_id: str


@dataclass(frozen=True, slots=True)
class MethodResponse:
    """What a handler may return: the status the caller sees, and a JSON-serialisable payload."""

    status: int
    payload: Any = None


Handler = Callable[[MethodRequest], Any]


class _Link(asyncio.Protocol):
    """One MQTT connection of a :class:`DeviceClient` (the client's asyncio transport adapter)."""

    def __init__(self, client: DeviceClient) -> None:
        self.client = client
        self.mqtt = MqttConnection(Role.CLIENT)
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.connack: asyncio.Future[Connack] = self.loop.create_future()
        self.closed: asyncio.Future[str] = self.loop.create_future()
        self.acks: dict[int, asyncio.Future[Any]] = {}
        self.timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self.timer_at = 0.0
        """Keep-alive: armed at the state machine's next deadline (PINGREQ due, or give up)."""
        self._packet_ids = 0

    def next_packet_id(self) -> int:
        self._packet_ids = self._packet_ids % 65535 + 1
        return self._packet_ids

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        for event in self.mqtt.receive_data(data, None, self.loop.time()):
            if isinstance(event, PacketReceived):
                self._packet(event.packet)
            elif isinstance(event, ProtocolError):
                self.close(f"protocol error from the hub: {event.reason}")
            elif isinstance(event, ConnectionClosed):
                self.close("the hub closed the connection")

    def _packet(self, packet: Any) -> None:
        if isinstance(packet, Connack):
            if packet.reason_code == 0:
                self._arm_timer()  # keep-alive starts
            if not self.connack.done():
                self.connack.set_result(packet)
        elif isinstance(packet, Publish):
            if packet.qos == 1 and packet.packet_id is not None:  # QoS 1 always has one
                self.send(Puback(packet_id=packet.packet_id))
            self.client._on_publish(self, packet)
        elif isinstance(packet, Suback | Puback):
            waiter = self.acks.pop(packet.packet_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(packet)
        elif isinstance(packet, Disconnect):
            self.close(f"the hub disconnected us (reason {packet.reason_code})")
        elif isinstance(packet, Pingresp):
            pass

    def send(self, packet: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.mqtt.send(packet, self.loop.time()))

    def _arm_timer(self) -> None:
        """Arm the timer at the state machine's next deadline. Only here and when it fires: what is
        sent or received since only moves that deadline later."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        at = self.mqtt.get_timer()
        if at is not None and not self.closed.done():
            self.timer_at = at  # uvloop's call_at gives a Handle without when() for under 1 ms ahead
            self.timer = self.loop.call_at(at, self._timer_fired)

    def _timer_fired(self) -> None:
        fired, self.timer = self.timer, None
        now = self.loop.time() if fired is None else max(self.timer_at, self.loop.time())
        for event in self.mqtt.handle_timer(now):
            if isinstance(event, PingDue):
                self.send(Pingreq())
            elif isinstance(event, KeepAliveTimeout):
                self.close("keep-alive: no answer from the hub")
                return
        self._arm_timer()

    def close(self, why: str) -> None:
        if not self.closed.done():
            self.closed.set_result(why)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        why = f"connection lost: {exc}" if exc else "connection closed"
        if not self.closed.done():
            self.closed.set_result(why)
        if not self.connack.done():
            self.connack.set_exception(ConnectionError(why))
        for waiter in self.acks.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError(why))


class DeviceClient:
    """A device (or module) that answers method calls. See the module docstring.

    Args:
        hostname: the hub's name as in the connection string (goes into the username and token).
        device_id / module_id: who this is.
        key: the device's symmetric key (base64), to sign SAS tokens; or
        sas_token: a ready token (not renewable: the client stops when it expires).
        host / port: where to connect (default: ``hostname``, 1883 — or 8883 with TLS).
        ssl: True for TLS with the system's CAs, an ``ssl.SSLContext``, or None/False for plain MQTT.
        x509: ``(certificate file, key file)`` (PEM) of an identity registered with X.509
            authentication: presented over TLS (``ssl`` True if not given) instead of a SAS token.
        keepalive: MQTT keep-alive in seconds: a PINGREQ goes out after that long without sending or
            receiving anything, and a hub silent for 1.5 times that long is given up on (the client
            reconnects). 0 turns keep-alive off.
        token_ttl: lifetime of the SAS tokens it signs, in seconds.
        reconnect_min / reconnect_max: backoff bounds in seconds.
    """

    def __init__(
        self,
        *,
        hostname: str,
        device_id: str,
        key: str | None = None,
        sas_token: str | None = None,
        module_id: str | None = None,
        host: str | None = None,
        port: int | None = None,
        ssl: ssl.SSLContext | bool | None = None,
        keepalive: int = 60,
        token_ttl: int = 3600,
        reconnect_min: float = 1.0,
        reconnect_max: float = 60.0,
        x509: tuple[str, str] | None = None,
    ) -> None:
        if key is None and sas_token is None and x509 is None:
            raise ValueError("give a key (SharedAccessKey), a sas_token or an x509 (certificate, key)")
        if x509 is not None:
            if ssl is None or ssl is False or ssl is True:
                ssl = _ssl.create_default_context()
            ssl.load_cert_chain(x509[0], x509[1])  # OSError / ssl.SSLError for bad files
        self._x509 = x509 is not None
        self.hostname = hostname
        self.device_id = device_id
        self.module_id = module_id
        self._key = key
        self._sas_token = sas_token
        self._host = host or hostname
        self._ssl = ssl or None
        self._port = port if port is not None else (8883 if self._ssl else 1883)
        self.keepalive = keepalive
        self.token_ttl = token_ttl
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self._handlers: dict[str | None, Handler] = {}
        self._link: _Link | None = None
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    @classmethod
    def from_connection_string(cls, connection_string: str, **kwargs: Any) -> DeviceClient:
        """A client from ``HostName=...;DeviceId=...[;ModuleId=...];SharedAccessKey=...``.

        ``GatewayHostName``, if present, is where it connects (the token still names HostName).
        Keyword arguments are those of :class:`DeviceClient` (``port=``, ``ssl=``, ...).
        """
        cs = ConnectionString.parse(connection_string)
        x509 = kwargs.get("x509") is not None
        if not cs.device_id or not (cs.shared_access_key or cs.shared_access_signature or x509):
            raise ValueError(
                "a device connection string needs HostName, DeviceId and SharedAccessKey "
                "(or x509=true with a certificate given apart)"
            )
        kwargs.setdefault("host", cs.gateway_host_name or None)
        return cls(
            hostname=cs.host_name,
            device_id=cs.device_id,
            module_id=cs.module_id,
            key=cs.shared_access_key,
            sas_token=cs.shared_access_signature,
            **kwargs,
        )

    @property
    def client_id(self) -> str:
        return f"{self.device_id}/{self.module_id}" if self.module_id else self.device_id

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- handlers ---------------------------------------------------------------------------------------

    def method(self, name: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator: handle method ``name`` (or, without a name, every method without its own)."""

        def register(handler: Handler) -> Handler:
            self._handlers[name] = handler
            return handler

        return register

    def on_method(self, name: str | None, handler: Handler) -> None:
        """Register ``handler`` for ``name`` (None: the fallback for every other method)."""
        self._handlers[name] = handler

    # -- lifecycle --------------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect once and subscribe to method requests.

        Raises:
            CredentialError: the hub refused the credentials (not retried by :meth:`run` either).
            ConnectionError / OSError / TimeoutError: the hub could not be reached.
        """
        loop = asyncio.get_running_loop()
        server_hostname = self._host if self._ssl else None
        context = ssl.create_default_context() if self._ssl is True else self._ssl
        _, link = await asyncio.wait_for(
            loop.create_connection(
                lambda: _Link(self), self._host, self._port, ssl=context, server_hostname=server_hostname
            ),
            CONNECT_TIMEOUT,
        )
        token, expiry = self._token() if not self._x509 else (None, None)
        link.send(
            Connect(
                protocol_name="MQTT",
                protocol_level=4,
                client_id=self.client_id,
                clean_session=False,
                keepalive=self.keepalive,
                username=f"{self.hostname}/{self.client_id}/?api-version={API_VERSION}",
                password=token.encode() if token is not None else None,  # X.509: none
            )
        )
        try:
            connack = await asyncio.wait_for(asyncio.shield(link.connack), CONNECT_TIMEOUT)
        except BaseException:
            link.close("no CONNACK")
            raise
        if connack.reason_code != 0:
            link.close("refused")
            if connack.reason_code in (4, 5, 0x86, 0x87):
                raise CredentialError(
                    f"the hub refused the credentials of '{self.client_id}' "
                    f"(CONNACK {connack.reason_code}); check the device key"
                )
            raise ConnectionError(f"the hub refused the connection (CONNACK {connack.reason_code})")
        self._link = link  # requests may arrive before SUBACK (the hub keeps CleanSession=0 subscriptions)
        packet_id = link.next_packet_id()
        waiter: asyncio.Future[Any] = loop.create_future()
        link.acks[packet_id] = waiter
        link.send(Subscribe(packet_id=packet_id, subscriptions=[(METHODS_FILTER, 1)]))
        suback = await asyncio.wait_for(waiter, CONNECT_TIMEOUT)
        if suback.reason_codes and suback.reason_codes[0] >= 0x80:
            link.close("subscription refused")
            raise MethodHubError(f"the hub refused the subscription to {METHODS_FILTER}")
        self._connected.set()
        if expiry is not None and self._key is not None:
            self._spawn(self._renew_token(link, expiry))
        log.info("connected", extra={"ctx": {"device": self.client_id, "host": f"{self._host}:{self._port}"}})

    async def run(self) -> None:
        """Stay connected until :meth:`disconnect`: reconnect with backoff after every drop."""
        self._stopping = False
        delay = self.reconnect_min
        while not self._stopping:
            try:
                await self.connect()
                delay = self.reconnect_min
                assert self._link is not None
                why = await self._link.closed
                self._connected.clear()
                if self._stopping:
                    break
                log.info("disconnected, reconnecting", extra={"ctx": {"device": self.client_id, "why": why}})
                if why == "token renewal":
                    continue
            except CredentialError:
                raise
            except (OSError, ConnectionError, TimeoutError, MethodHubError) as exc:
                self._connected.clear()
                log.info("cannot connect, retrying in %.1f s: %s", delay, exc)
            if self._stopping:
                break
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.reconnect_max)

    async def disconnect(self) -> None:
        """Send DISCONNECT, close the connection and stop reconnecting."""
        self._stopping = True
        link, self._link = self._link, None
        self._connected.clear()
        if link is not None:
            with contextlib.suppress(Exception):
                link.send(Disconnect())
            link.close("disconnect requested")
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None and self._runner is not asyncio.current_task():
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
            self._runner = None

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def __aenter__(self) -> DeviceClient:
        """Connect (raising if that fails), then keep the connection up in the background."""
        await self.connect()
        self._runner = asyncio.get_running_loop().create_task(self._stay_connected())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    async def _stay_connected(self) -> None:
        assert self._link is not None
        await self._link.closed
        self._connected.clear()
        if not self._stopping:
            await self.run()

    def run_forever(self) -> None:
        """Blocking: connect and serve calls until interrupted (uses uvloop when installed).

        Ctrl-C (SIGINT) ends it: the client sends DISCONNECT and this returns (no KeyboardInterrupt).

        Raises:
            CredentialError: the hub refused the credentials (the device was deleted or disabled,
                or its key changed).
        """
        run: Callable[[Any], None] = asyncio.run
        with contextlib.suppress(ImportError):
            import uvloop

            run = uvloop.run
        try:
            run(self._run_until_interrupted())
        except KeyboardInterrupt:
            log.info("interrupted; disconnected", extra={"ctx": {"device": self.client_id}})

    async def _run_until_interrupted(self) -> None:
        try:
            await self.run()
        finally:  # Ctrl-C cancels run(): say goodbye to the hub before the loop closes
            await self.disconnect()

    # -- internals --------------------------------------------------------------------------------------

    def _token(self) -> tuple[str, int | None]:
        if self._key is None:
            assert self._sas_token is not None
            return self._sas_token, None
        expiry = int(time.time()) + self.token_ttl
        resource = f"{self.hostname}/devices/{self.device_id}"
        if self.module_id:
            resource += f"/modules/{self.module_id}"
        return generate_sas_token(resource, self._key, expiry), expiry

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _renew_token(self, link: _Link, expiry: int) -> None:
        await asyncio.sleep(max(1.0, expiry - TOKEN_RENEW_MARGIN - time.time()))
        if link is self._link and not link.closed.done():
            log.info("renewing SAS token", extra={"ctx": {"device": self.client_id}})
            link.send(Disconnect())
            link.close("token renewal")

    def _on_publish(self, link: _Link, publish: Publish) -> None:
        topic = publish.topic
        if not topic.startswith(METHODS_PREFIX):
            return
        request = parse_request_topic(topic)
        if request is None:
            log.warning("method request without $rid ignored", extra={"ctx": {"topic": topic}})
            return
        name, rid = request
        self._spawn(self._answer(link, name, rid, publish.payload))

    async def _answer(self, link: _Link, name: str, rid: str, raw: bytes) -> None:
        try:
            payload = json.loads(raw.decode("utf-8") or "null")
        except (ValueError, UnicodeDecodeError) as exc:
            await self._respond(link, rid, MethodResponse(400, {"error": f"payload is not JSON: {exc}"}))
            return
        handler = self._handlers.get(name) or self._handlers.get(None)
        if handler is None:
            response = MethodResponse(501, {"error": f"no handler for method '{name}' on this device"})
        else:
            response = await self._call(handler, MethodRequest(name, payload, rid))
        await self._respond(link, rid, response)

    async def _call(self, handler: Handler, request: MethodRequest) -> MethodResponse:
        try:
            if inspect.iscoroutinefunction(handler):
                result = await handler(request)
            else:
                result = await asyncio.get_running_loop().run_in_executor(None, handler, request)
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:
            log.exception("method handler '%s' failed", request.name)
            return MethodResponse(500, {"error": f"{type(exc).__name__}: {exc}"})
        if isinstance(result, MethodResponse):
            return result
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], int):
            return MethodResponse(result[0], result[1])
        return MethodResponse(200, result)

    async def _respond(self, link: _Link, rid: str, response: MethodResponse) -> None:
        try:
            body = json.dumps(response.payload).encode()
        except (TypeError, ValueError) as exc:
            response, body = (
                MethodResponse(500),
                json.dumps({"error": f"payload not JSON-serialisable: {exc}"}).encode(),
            )
        topic = response_topic(response.status, rid)
        # Answer on the connection the request came on; if it dropped meanwhile, on the current one
        # (the hub accepts an answer on the device's newer connection).
        target = link if not link.closed.done() else self._link
        if target is None or target.closed.done():
            log.info("no connection to answer request %s on; the hub has failed that call already", rid)
            return
        target.send(Publish(topic=topic, payload=body, qos=1, packet_id=target.next_packet_id()))
