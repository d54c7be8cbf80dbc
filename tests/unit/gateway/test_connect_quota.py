"""The device connect rate (calls/quotas.py) at the gateways: MQTT CONNACK 3 / 0x9F, AMQP close
with amqp:resource-limit-exceeded; a token's clock skew moves its connection's end."""

from __future__ import annotations

import time

from methodhub.amqp.events import ConnectionClosed
from methodhub.calls.quotas import QuotaLimits, Quotas
from methodhub.config import TokenPolicy
from methodhub.registry import Identity
from tests.unit.gateway.amqp_device import AmqpDevice
from tests.unit.gateway.azure_hub import Hub, azure_connect


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _limit(hub: Hub, rate: float) -> tuple[Quotas, FakeClock]:
    clock = FakeClock()
    refused: list[str] = []
    quotas = Quotas(QuotaLimits(device_connects_per_second=rate), refused.append, clock)
    hub.gateway.context.quotas = quotas
    return quotas, clock


async def test_mqtt_connects_over_the_rate_get_connack_3_and_v5_0x9f(hub: Hub, dev1: Identity) -> None:
    _, clock = _limit(hub, 1)
    first = hub.device()
    first.send(azure_connect("dev1", dev1.keys.primary))
    assert (await first.connack()).reason_code == 0
    v311 = hub.device()
    v311.send(azure_connect("dev1", dev1.keys.primary))
    assert (await v311.connack()).reason_code == 3  # server unavailable
    await v311.closed()
    v5 = hub.device(level=5)
    v5.send(azure_connect("dev1", dev1.keys.primary, level=5))
    assert (await v5.connack()).reason_code == 0x9F  # connection rate exceeded
    assert hub.gateway.connection_state("dev1")[0] is True  # the first one is untouched
    clock.now += 1.0
    again = hub.device()
    again.send(azure_connect("dev1", dev1.keys.primary))
    assert (await again.connack()).reason_code == 0


async def test_a_refused_connect_is_refused_before_its_credentials_are_read(hub: Hub, dev1: Identity) -> None:
    _limit(hub, 1)
    first = hub.device()
    first.send(azure_connect("nobody", dev1.keys.primary))  # takes the token, then fails auth
    assert (await first.connack()).reason_code == 5
    second = hub.device()
    second.send(azure_connect("nobody", dev1.keys.primary))
    assert (await second.connack()).reason_code == 3
    assert hub.metrics.auth_failures.get("device", "mqtt_not_authorized") == 1


async def test_amqp_connections_over_the_rate_are_closed_resource_limit_exceeded(
    hub: Hub, dev1: Identity
) -> None:
    _limit(hub, 1)
    first = AmqpDevice(hub)
    await first.online("dev1", dev1.keys.primary)
    second = AmqpDevice(hub)
    closed = await second.until(lambda: second.take(ConnectionClosed))
    error = closed[0].error
    assert error is not None and error.condition == "amqp:resource-limit-exceeded"
    assert "new device connections per second" in (error.description or "")
    await second.closed()
    assert hub.gateway.sessions.get("dev1") is not None  # the first one is untouched


async def test_mqtt_with_a_clock_skew_accepts_a_late_token_within_it_and_refuses_one_past_it(
    hub: Hub, dev1: Identity
) -> None:
    dialect = hub.gateway.context.dialects[0]
    dialect.token_policy = TokenPolicy(clock_skew=120)  # type: ignore[attr-defined]
    expiry = int(time.time()) - 60  # expired a minute ago: within the skew
    device = hub.device()
    device.send(azure_connect("dev1", dev1.keys.primary, expiry=expiry))
    assert (await device.connack()).reason_code == 0
    late = hub.device()
    late.send(azure_connect("dev1", dev1.keys.primary, expiry=int(time.time()) - 121))
    assert (await late.connack()).reason_code == 5
