"""An in-memory hub for gateway tests: a real Gateway with the Azure dialects (MQTT and AMQP), a real
SQLite registry, a real CallEngine over a LocalRouter, and devices that talk to a DeviceConnection
through a transport that records bytes instead of a socket.

A :class:`Device` encodes what it sends with a client-role :class:`~methodhub.mqtt.MqttConnection`
and decodes what the hub wrote with the same state machine, so both sides of the wire are checked.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from methodhub.calls import Call, CallEngine, CallOutcome
from methodhub.dialects.azure.amqp import AzureAmqpDialect
from methodhub.dialects.azure.mqtt import AzureDialect
from methodhub.dialects.azure.sas import generate_sas_token
from methodhub.dialects.azure.topics import API_VERSION
from methodhub.dialects.azure.twin import DeviceTwins
from methodhub.gateway.gateway import Gateway
from methodhub.gateway.mqtt_connection import DeviceConnection
from methodhub.metrics import Metrics
from methodhub.mqtt import (
    Connack,
    Connect,
    MqttConnection,
    Packet,
    PacketReceived,
    ProtocolError,
    Publish,
    Role,
    Suback,
    Subscribe,
)
from methodhub.registry import SqliteRegistry
from methodhub.router import LocalRouter

HOST = "hub.example"
WAIT = 30.0
"""Seconds a test waits for something that should happen within a few loop iterations; it only
turns a hang into a clear failure (no test depends on how fast anything is)."""


class MemoryTransport(asyncio.Transport):
    """Records what the protocol writes; ``close`` ends the connection on the next loop iteration,
    as a socket transport does. ``written`` is set whenever bytes arrive or the transport closes."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.data = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True
        self.written = asyncio.Event()

    def write(self, data: Any) -> None:
        self.data += data
        self.written.set()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.written.set()
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


class Device:
    """The device end of one in-memory connection."""

    def __init__(self, gateway: Gateway, level: int = 4) -> None:
        self.protocol: DeviceConnection = gateway.protocol_for("mqtt")
        self.transport = MemoryTransport(self.protocol)
        self.protocol.connection_made(self.transport)
        self.mqtt = MqttConnection(Role.CLIENT)
        self.level = level
        self._read = 0
        self._packets: deque[Packet] = deque()
        self.errors: list[ProtocolError] = []
        self._packet_ids = iter(range(1, 65536))

    # -- sending --------------------------------------------------------------------------------------

    def send(self, packet: Packet) -> None:
        self.protocol.data_received(self.mqtt.send(packet))

    def send_connect(self, connect: Connect) -> None:
        self.send(connect)

    def subscribe(self, *filters: str, qos: int = 0) -> int:
        packet_id = next(self._packet_ids)
        self.send(Subscribe(packet_id=packet_id, subscriptions=[(f, qos) for f in filters]))
        return packet_id

    def answer(self, topic: str, payload: bytes, qos: int = 0) -> None:
        packet_id = next(self._packet_ids) if qos else None
        self.send(Publish(topic=topic, payload=payload, qos=qos, packet_id=packet_id))

    # -- receiving ------------------------------------------------------------------------------------

    def _decode(self) -> None:
        data = bytes(self.transport.data[self._read :])
        self._read = len(self.transport.data)
        if data:
            for event in self.mqtt.receive_data(data):
                if isinstance(event, PacketReceived):
                    self._packets.append(event.packet)
                elif isinstance(event, ProtocolError):
                    self.errors.append(event)

    def received(self) -> list[Packet]:
        """Every packet the hub wrote that was not read yet."""
        self._decode()
        packets = list(self._packets)
        self._packets.clear()
        return packets

    async def next_packet(self) -> Packet:
        """The next packet the hub writes (waits for it); fails if the connection closes first."""
        async with asyncio.timeout(WAIT):
            while True:
                self._decode()
                if self._packets:
                    return self._packets.popleft()
                assert not self.transport.closed, "the hub closed the connection without writing more"
                self.transport.written.clear()
                await self.transport.written.wait()

    async def connack(self) -> Connack:
        packet = await self.next_packet()
        assert isinstance(packet, Connack), packet
        return packet

    async def closed(self) -> None:
        """Wait until the hub has closed this connection and the protocol has seen it end."""
        async with asyncio.timeout(WAIT):
            while not self.transport.closed:
                self.transport.written.clear()
                await self.transport.written.wait()
            await asyncio.sleep(0)  # connection_lost runs on the next loop iteration

    async def online(self, connect: Connect, *filters: str) -> Connack:
        """CONNECT, expect CONNACK 0, SUBSCRIBE to ``filters`` (if any) and expect all granted."""
        self.send(connect)
        connack = await self.connack()
        assert connack.reason_code == 0, connack
        if filters:
            packet_id = self.subscribe(*filters)
            suback = await self.next_packet()
            assert isinstance(suback, Suback) and suback.packet_id == packet_id, suback
            assert all(code < 0x80 for code in suback.reason_codes), suback
        return connack


def azure_connect(
    device_id: str,
    key: str,
    *,
    module_id: str | None = None,
    level: int = 4,
    clean: bool = True,
    keepalive: int = 60,
    expiry: int | None = None,
    host: str = HOST,
    properties: dict[str, Any] | None = None,
) -> Connect:
    """A CONNECT as Azure's device SDKs build it, signed with ``key``."""
    client_id = device_id if module_id is None else f"{device_id}/{module_id}"
    resource = f"{HOST}/devices/{device_id}" + (f"/modules/{module_id}" if module_id else "")
    token = generate_sas_token(resource, key, expiry if expiry is not None else int(time.time()) + 3600)
    return Connect(
        client_id=client_id,
        clean_session=clean,
        keepalive=keepalive,
        username=f"{host}/{client_id}/?api-version={API_VERSION}",
        password=token.encode(),
        protocol_level=level,
        properties=properties,
    )


class Hub:
    """The pieces of one node a gateway test needs."""

    def __init__(self, registry: SqliteRegistry, router: LocalRouter | None = None) -> None:
        self.registry = registry
        self.router = router if router is not None else LocalRouter()
        self.metrics = Metrics()
        self.gateway = Gateway(
            registry=registry,
            router=self.router,
            metrics=self.metrics,
            hostname=HOST,
            dialects=[AzureDialect(DeviceTwins(registry))],
            max_packet_size=300_000,
            amqp_dialect=AzureAmqpDialect(DeviceTwins(registry)),
        )
        self.engine = CallEngine(self.router, registry, self.metrics)

    def call(
        self, target: str, method: str, payload: bytes = b"{}", timeout: float = 3600
    ) -> asyncio.Future[CallOutcome]:
        """Start a call; the long response timeout means only the device's answer (or its
        disconnection) ends it in a test."""
        return self.engine.invoke(Call(target, method, payload, timeout))

    async def callable(self, key: str) -> bool:
        """Whether calls for ``key`` find a ready session now (the router has it announced)."""
        return await self.router.wait_ready(key, 0)

    def device(self, level: int = 4) -> Device:
        return Device(self.gateway, level)

    async def close(self) -> None:
        self.engine.stop()
        await self.gateway.close()
