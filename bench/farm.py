"""A cheap device farm: thousands of MQTT devices in one process, each answering every request at once.

Run as its own process (``python -m bench.farm CONFIG_JSON``) so it does not share an event loop
(or, when the suite pins CPUs, a core) with the system under test. Each device is an
``asyncio.Protocol`` speaking raw MQTT 3.1.1 bytes: CONNECT, SUBSCRIBE and the response prefixes are
precomputed, a request is answered by slicing its request id out of the topic and writing one
PUBLISH frame (all answers to one read go out in one ``write``). uvloop when installed.

Two dialects:

``azure``   the hub's devices: client id = device id, user name ``{host}/{id}/?api-version=...``,
            password a SAS token signed with the device key; subscribe ``$iothub/methods/POST/#``;
            requests ``$iothub/methods/POST/{method}/?$rid={rid}`` are answered on
            ``$iothub/methods/res/200/?$rid={rid}``.
``relay``   the hand-made request/response over a plain broker (the Mosquitto reference):
            subscribe ``req/{id}/#``; a request ``req/{id}/{method}/{corr}`` is answered on
            ``res/{id}/{corr}``.

``FarmConfig.transport = "amqp"`` makes the same farm of Azure devices speak AMQP 1.0 to the hub's
plain AMQP port instead (:mod:`bench.amqp_farm`: CBS put-token, the two methods links).
``tls_ca``: both over TLS (the hub's ``mqtts``/``amqps`` ports), trusting the hub's development CA.

Protocol with the parent (JSON lines): the farm prints ``{"event": "online", ...}`` once every
device has its SUBACK (AMQP: its methods links attached), or gave up, then reads commands from
stdin: ``stats`` (prints ``{"event": "stats", "answered": n}``) and ``stop`` (closes every
connection and exits).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from bench.common import API_VERSION, HOSTNAME, REPO, cpu_seconds, preexec, raise_nofile, sign

RESPONSE_PAYLOAD = b'{"ok":true}'
PER_SOURCE_ADDRESS = 5_000
"""Connections per source address (127.0.0.x) when a farm holds more than this many: Linux has
~28k ephemeral ports per (source, destination) pair, and finding a free one gets expensive (kernel
time in connect()) well before they run out: 19k connections from one address cost ~5 s of it."""
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def varint(n: int) -> bytes:
    """MQTT's remaining-length encoding."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_string(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def connect_frame(
    client_id: str, username: str | None, password: str | None, keepalive: int, clean: bool
) -> bytes:
    flags = (
        (0x02 if clean else 0) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    )
    body = (
        mqtt_string(b"MQTT")
        + bytes([4, flags])
        + keepalive.to_bytes(2, "big")
        + mqtt_string(client_id.encode())
    )
    if username is not None:
        body += mqtt_string(username.encode())
    if password is not None:
        body += mqtt_string(password.encode())
    return b"\x10" + varint(len(body)) + body


def subscribe_frame(topic_filter: str, packet_id: int = 1, qos: int = 0) -> bytes:
    body = packet_id.to_bytes(2, "big") + mqtt_string(topic_filter.encode()) + bytes([qos])
    return b"\x82" + varint(len(body)) + body


def publish_frame(topic: bytes, payload: bytes) -> bytes:
    """A QoS 0 PUBLISH."""
    body_len = 2 + len(topic) + len(payload)
    return b"\x30" + varint(body_len) + len(topic).to_bytes(2, "big") + topic + payload


@dataclass
class FarmConfig:
    host: str
    port: int
    dialect: str = "azure"  # or "relay"
    prefix: str = "dev-"
    start: int = 0
    count: int = 1
    key: str = ""
    hostname: str = HOSTNAME
    keepalive: int = 1200
    clean: bool = False  # Azure's device SDKs connect with CleanSession=0
    window: int = 256  # connects in flight at once
    retries: int = 3
    sources: list[str] = field(default_factory=list)  # source addresses to spread over ([] = default)
    transport: str = "mqtt"  # or "amqp" (bench/amqp_farm.py; ``dialect`` must be "azure")
    tls_ca: str | None = None  # TLS to the port (mqtts, amqps), trusting this CA file; SNI = hostname
    presettled: bool = True  # amqp: C#'s pre-settled transfers both ways; False: Node's unsettled

    def device_id(self, index: int) -> str:
        return device_id(self.prefix, index)


def device_id(prefix: str, index: int) -> str:
    return f"{prefix}{index:06d}"


class FarmDevice(Protocol):
    """What the farm needs of a device's protocol (MQTT :class:`Device`, AMQP ``AmqpDevice``)."""

    refused: str | None
    """Why the hub would not take the device (None: it did, or the connection just ended)."""

    def close(self) -> None: ...


class Farm:
    """All devices of this process and their counters."""

    def __init__(self, config: FarmConfig) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.answered = 0
        self.online = 0
        self.failed = 0
        self.errors: dict[str, int] = {}
        self.devices: list[FarmDevice] = []
        azure = config.dialect == "azure"
        self.separator = ord("=") if azure else ord("/")
        self.expiry = int(time.time()) + 24 * 3600
        self.tls: ssl.SSLContext | None = None
        if config.tls_ca is not None:
            self.tls = ssl.create_default_context(cafile=config.tls_ca)

    def frames(self, index: int) -> tuple[bytes, bytes, bytes]:
        """(CONNECT, SUBSCRIBE, response topic prefix) of device ``index``."""
        c = self.config
        did = c.device_id(index)
        if c.dialect == "azure":
            username = f"{c.hostname}/{did}/?api-version={API_VERSION}"
            password = sign(f"{c.hostname}/devices/{did}", c.key, self.expiry)
            return (
                connect_frame(did, username, password, c.keepalive, c.clean),
                subscribe_frame("$iothub/methods/POST/#"),
                b"$iothub/methods/res/200/?$rid=",
            )
        return (
            connect_frame(did, None, None, c.keepalive, True),
            subscribe_frame(f"req/{did}/#"),
            f"res/{did}/".encode(),
        )

    async def connect_all(self) -> float:
        """Connect every device, ``window`` at a time; returns the seconds from first connect to last
        SUBACK. The farm's own garbage collector is off meanwhile (and its survivors frozen after), so
        full collections over tens of thousands of connections do not slow the load generator."""
        c = self.config
        indices = iter(range(c.start, c.start + c.count))
        gc.disable()
        started = time.perf_counter()

        async def worker() -> None:
            for index in indices:
                await self._connect(index)

        await asyncio.gather(*(worker() for _ in range(min(c.window, c.count))))
        seconds = time.perf_counter() - started
        gc.collect()
        gc.freeze()
        gc.enable()
        return seconds

    def new_device(self, index: int, ready: asyncio.Future[bool]) -> FarmDevice:
        """The protocol of device ``index``: it sets ``ready`` once it can take calls (or gave up)."""
        connect, subscribe, response_prefix = self.frames(index)
        return Device(self, connect, subscribe, response_prefix, ready)

    async def _connect(self, index: int) -> None:
        c = self.config
        source = None
        if c.sources:
            source = c.sources[(index - c.start) // PER_SOURCE_ADDRESS % len(c.sources)]
        for attempt in range(c.retries + 1):
            ready: asyncio.Future[bool] = self.loop.create_future()
            timer = self.loop.call_later(30, _give_up, ready)
            device = self.new_device(index, ready)
            factory = functools.partial(_same, device)  # type: ignore[arg-type]
            try:
                tls: dict[str, Any] = {}
                if self.tls is not None:
                    tls = {"ssl": self.tls, "server_hostname": c.hostname}
                if source is None:
                    await self.loop.create_connection(factory, c.host, c.port, **tls)
                else:
                    sock = await self._bound_socket(source)
                    await self.loop.create_connection(factory, sock=sock, **tls)
                if await ready:
                    timer.cancel()
                    self.devices.append(device)
                    self.online += 1
                    return
                why = device.refused or "closed or no CONNACK/SUBACK in 30 s"
            except OSError as exc:
                why = f"{type(exc).__name__} errno {exc.errno}"
            timer.cancel()
            device.close()
            self.errors[why] = self.errors.get(why, 0) + 1
            await asyncio.sleep(0.05 * (attempt + 1))
        self.failed += 1

    async def _bound_socket(self, source: str) -> socket.socket:
        """A TCP socket from ``source`` connected to the hub. IP_BIND_ADDRESS_NO_PORT leaves the port
        choice to connect(), per (source, destination): a plain bind(port 0) searches the whole
        ephemeral range, which costs seconds of kernel time at tens of thousands of sockets."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
            sock.setblocking(False)
            await self.loop.sock_connect(sock, (self.config.host, self.config.port))
        except BaseException:
            sock.close()
            raise
        return sock

    def counters(self) -> dict[str, Any]:
        """More counters for ``stats`` (none for MQTT devices)."""
        return {}

    def close(self) -> None:
        for device in self.devices:
            device.close()


def _same(device: asyncio.Protocol) -> asyncio.Protocol:
    return device


def _give_up(ready: asyncio.Future[bool]) -> None:
    if not ready.done():
        ready.set_result(False)


class Device(asyncio.Protocol):
    """One device connection. See the module docstring."""

    __slots__ = ("buf", "connect", "farm", "prefix", "ready", "refused", "sep", "subscribe", "transport")

    def __init__(
        self, farm: Farm, connect: bytes, subscribe: bytes, prefix: bytes, ready: asyncio.Future[bool]
    ) -> None:
        self.farm = farm
        self.connect = connect
        self.subscribe = subscribe
        self.prefix = prefix
        self.sep = farm.separator
        self.ready = ready
        self.refused: str | None = None
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.connect)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.ready.done():
            self.ready.set_result(False)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.write(b"\xe0\x00")  # DISCONNECT
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        n = len(data)
        pos = 0
        out: list[bytes] = []
        sep = self.sep
        while pos + 2 <= n:
            first = data[pos]
            length = data[pos + 1]
            head = pos + 2
            if length & 0x80:  # multi-byte remaining length
                length &= 0x7F
                shift = 7
                while True:
                    if head >= n:
                        self.buf = data[pos:]
                        return self._flush(out)
                    byte = data[head]
                    head += 1
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
            end = head + length
            if end > n:
                break
            if first & 0xF0 == 0x30:  # PUBLISH: a request; answer it now
                topic_end = head + 2 + ((data[head] << 8) | data[head + 1])
                rid = data[data.rfind(sep, head + 2, topic_end) + 1 : topic_end]
                topic_len = len(self.prefix) + len(rid)
                body_len = 2 + topic_len + len(RESPONSE_PAYLOAD)
                out.append(
                    (b"\x30%c" % body_len if body_len < 128 else b"\x30" + varint(body_len))
                    + topic_len.to_bytes(2, "big")
                    + self.prefix
                    + rid
                    + RESPONSE_PAYLOAD
                )
            elif first == 0x20:  # CONNACK
                code = data[head + 1]
                if code != 0:
                    self.refused = f"CONNACK {code}"
                    if not self.ready.done():
                        self.ready.set_result(False)
                    if self.transport is not None:
                        self.transport.close()
                    return
                if self.transport is not None:
                    self.transport.write(self.subscribe)
            elif first == 0x90:  # SUBACK
                granted = data[end - 1]
                if granted == 0x80:
                    self.refused = "SUBACK refused"
                if not self.ready.done():
                    self.ready.set_result(granted != 0x80)
            pos = end
        if pos < n:
            self.buf = data[pos:]
        self._flush(out)

    def _flush(self, out: list[bytes]) -> None:
        if out and self.transport is not None:
            self.farm.answered += len(out)
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))


class FarmProcess:
    """The parent's handle on a farm subprocess."""

    def __init__(self, config: FarmConfig, cpus: frozenset[int] | None = None) -> None:
        self.config = config
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.farm", json.dumps(asdict(config))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            preexec_fn=preexec(cpus, config.count + 256),
        )
        self.online: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self, event: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            if message.get("event") == event:
                return message
        raise RuntimeError(f"the device farm exited (code {self.proc.wait()}) before '{event}'")

    def wait_online(self) -> dict[str, Any]:
        self.online = self._read("online")
        return self.online

    def _send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def answered(self) -> int:
        return int(self.stats()["answered"])

    def stats(self) -> dict[str, Any]:
        """The farm's counters: ``answered``, ``online``, and the farm's own (e.g. AMQP ``lost``)."""
        self._send("stats")
        return self._read("stats")

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send("stop")
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def emit(event: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the parent is gone; nobody to tell
        pass


async def serve(config: FarmConfig) -> None:
    if config.transport == "amqp":
        from bench.amqp_farm import AmqpFarm  # the AMQP devices build on this module

        farm: Farm = AmqpFarm(config)
    else:
        farm = Farm(config)
    seconds = await farm.connect_all()
    emit(
        {
            "event": "online",
            "online": farm.online,
            "failed": farm.failed,
            "seconds": seconds,
            "errors": farm.errors,
        }
    )
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while not stopped.done():
        line = (await reader.readline()).decode().strip()
        if line == "stats":
            online = len(farm.devices)
            emit({"event": "stats", "answered": farm.answered, "online": online, **farm.counters()})
        elif line in ("stop", ""):
            break
    farm.close()
    await asyncio.sleep(0.2)
    emit({"event": "stopped", "answered": farm.answered})


def run(config: FarmConfig) -> None:
    raise_nofile(config.count + 256)
    try:
        import uvloop

        uvloop.run(serve(config))
    except ImportError:
        asyncio.run(serve(config))


if __name__ == "__main__":
    run(FarmConfig(**json.loads(sys.argv[1])))
    os._exit(0)  # skip tearing down tens of thousands of objects
