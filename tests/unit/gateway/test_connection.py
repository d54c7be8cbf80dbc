"""DeviceConnection with an in-memory transport: every connection ends, whatever fails in it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from methodhub.calls.model import Call
from methodhub.gateway.dialect import Dialect, Principal
from methodhub.gateway.gateway import Gateway
from methodhub.gateway.session import DeviceSession
from methodhub.metrics import Metrics
from methodhub.mqtt import Connect, MqttConnection, Publish, encode
from methodhub.router import LocalRouter


class MemoryTransport(asyncio.Transport):
    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.written = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True

    def write(self, data: Any) -> None:
        self.written += data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
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


class Store:
    async def load_session(self, client_id: str) -> dict[str, int] | None:
        return None

    def save_session(self, client_id: str, subscriptions: dict[str, int]) -> None:
        pass

    def delete_session(self, client_id: str) -> None:
        pass


class FakeDialect(Dialect):
    name = "test"

    def __init__(self) -> None:
        self.auth_delay = 0.0
        self.fail_on_publish = False

    def claims(self, connect: Connect) -> bool:
        return True

    async def authenticate(
        self, connect: Connect, ctx: Any, *, use_cache: bool = True, client_certificate: Any = None
    ) -> Principal:
        await asyncio.sleep(self.auth_delay)
        return Principal(connect.client_id, None, connect.client_id, self)

    def grant(self, session: DeviceSession, topic_filter: str, qos: int) -> int:
        return qos

    def on_publish(self, session: DeviceSession, publish: Publish) -> bool:
        if self.fail_on_publish:
            raise RuntimeError("a bug in a dialect")
        return True

    def encode_call(self, session: DeviceSession, call: Call, seq: int) -> tuple[str, str, bytes]:
        return str(seq), "t", b""

    def is_ready(self, session: DeviceSession) -> bool:
        return True


def make_gateway(dialect: Dialect, connect_timeout: float = 5.0) -> Gateway:
    return Gateway(
        registry=Store(),  # type: ignore[arg-type]
        router=LocalRouter(),
        metrics=Metrics(),
        hostname="hub",
        dialects=[dialect],
        max_packet_size=300_000,
        connect_packet_timeout=connect_timeout,
    )


def open_connection(gateway: Gateway) -> tuple[Any, MemoryTransport]:
    protocol = gateway.protocol_for("mqtt")
    transport = MemoryTransport(protocol)
    protocol.connection_made(transport)
    return protocol, transport


CONNECT = encode(Connect("dev1"), 4)


async def test_a_connect_whose_authentication_outlasts_the_deadline_is_closed() -> None:
    dialect = FakeDialect()
    dialect.auth_delay = 30
    gateway = make_gateway(dialect, connect_timeout=0.2)
    protocol, transport = open_connection(gateway)
    protocol.data_received(CONNECT)
    await asyncio.sleep(0.5)
    assert transport.closed and transport.written == b""
    assert protocol.auth_task.cancelled()
    assert gateway.metrics.device_limits.get("connect_deadline") == 1


async def test_a_failure_while_serving_packets_closes_the_connection_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dialect = FakeDialect()
    dialect.fail_on_publish = True
    gateway = make_gateway(dialect)
    protocol, transport = open_connection(gateway)
    protocol.data_received(CONNECT)
    await asyncio.sleep(0.05)
    assert transport.written == b"\x20\x02\x00\x00"
    with caplog.at_level(logging.ERROR, logger="methodhub.gateway"):
        protocol.data_received(encode(Publish("t", b"x"), 4) * 3)
    await asyncio.sleep(0)
    assert transport.aborted
    assert len([r for r in caplog.records if "unexpected error" in r.getMessage()]) == 1
    assert gateway.metrics.connection_failures.get() == 1
    assert len(gateway.sessions) == 0  # the session went with it


async def test_a_failing_task_closes_its_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    dialect = FakeDialect()
    gateway = make_gateway(dialect)

    def broken_attach(self: DeviceSession, connection: Any) -> None:
        raise RuntimeError("a bug after CONNACK")

    monkeypatch.setattr(DeviceSession, "attach", broken_attach)
    protocol, transport = open_connection(gateway)
    protocol.data_received(CONNECT)
    await asyncio.sleep(0.05)
    assert transport.aborted
    assert gateway.metrics.connection_failures.get() == 1


async def test_a_closing_connection_that_does_not_drain_is_aborted(monkeypatch: pytest.MonkeyPatch) -> None:
    import methodhub.gateway.mqtt_connection as connection_module

    monkeypatch.setattr(connection_module, "CLOSE_GRACE", 0.05)
    gateway = make_gateway(FakeDialect())
    protocol, transport = open_connection(gateway)
    transport.close = lambda: setattr(transport, "closed", True)  # type: ignore[method-assign]
    protocol.data_received(b"\x00\x00")  # a protocol error: the hub closes
    assert transport.closed and not transport.aborted
    await asyncio.sleep(0.1)
    assert transport.aborted


async def test_work_is_done_in_budgeted_slices_with_reading_paused() -> None:
    import methodhub.gateway.mqtt_connection as connection_module

    gateway = make_gateway(FakeDialect())
    protocol, transport = open_connection(gateway)
    protocol.data_received(CONNECT)
    await asyncio.sleep(0.05)
    transport.written.clear()
    count = connection_module.WORK_BUDGET * 3 + 1
    protocol.data_received(b"\xc0\x00" * count)
    assert not transport.reading
    await asyncio.sleep(0)  # the slice's burst, then the next slice (queued in the burst)
    assert len(transport.written) == 2 * connection_module.WORK_BUDGET  # one slice per iteration
    for _ in range(4):
        await asyncio.sleep(0)
    assert len(transport.written) == 2 * count and transport.reading


async def test_a_call_the_state_machine_refuses_to_send_fails_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reconnect storm answered some HTTP calls 500: publishing a call raised out of the session.
    Now such a call fails as 'disconnected' and the connection ends."""
    from methodhub.calls import CallEngine
    from methodhub.errors import ErrorKind, HubError
    from methodhub.mqtt import LocalProtocolError

    gateway = make_gateway(FakeDialect())
    protocol, transport = open_connection(gateway)
    protocol.data_received(CONNECT)
    await asyncio.sleep(0.05)

    def refuse(self: Any, packet: Any) -> bytes:
        raise LocalProtocolError("PUBLISH before the connection is accepted")

    monkeypatch.setattr(MqttConnection, "send", refuse)

    class Identities:
        async def get_identity(self, device_id: str, module_id: str | None = None) -> object:
            return object()

    engine = CallEngine(gateway.sessions.router, Identities())  # type: ignore[arg-type]
    result = engine.invoke(Call("dev1", "m", b"null", 5))
    with pytest.raises(HubError) as raised:
        await asyncio.wait_for(result, 2)
    assert raised.value.kind is ErrorKind.DEVICE_DISCONNECTED
    assert transport.aborted
