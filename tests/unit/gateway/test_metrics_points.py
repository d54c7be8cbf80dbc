"""Each instrumented point of methodhub.metrics, through the in-memory hub (tests/unit/gateway/azure_hub.py)
and the real authenticators and registry."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from methodhub.calls.delivery import QueuedCalls
from methodhub.calls.jobs import Job, JobType
from methodhub.calls.queued import CallState
from methodhub.dialects.aliyun.pop_auth import PopAuthenticator
from methodhub.dialects.azure.sas import generate_sas_token
from methodhub.dialects.azure.service_auth import ServiceAuthenticator
from methodhub.dialects.azure.topics import response_topic
from methodhub.errors import ErrorKind, HubError
from methodhub.job_runner import JobRunner
from methodhub.registry import Identity, Right, SqliteRegistry, SymmetricKeys
from tests.unit.gateway.amqp_device import AmqpDevice
from tests.unit.gateway.azure_hub import HOST, Hub, azure_connect
from tests.unit.gateway.test_mqtt_connection import METHODS, request_of


async def until(predicate: object, rounds: int = 200) -> None:
    for _ in range(rounds):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.001)
    raise AssertionError("not reached")


async def test_an_answered_call_is_in_the_latency_histogram(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    result = hub.call("dev1", "reboot")
    _, rid, _ = await request_of(device)
    assert hub.metrics.in_flight["azure"] == 1
    device.answer(response_topic(200, rid), b"{}")
    await result
    await asyncio.sleep(0)
    assert hub.metrics.call_seconds.count("azure", "answered") == 1
    assert hub.metrics.in_flight["azure"] == 0
    series = hub.metrics.call_seconds.series[("azure", "answered")]
    assert 0 < series.sum < 30


async def test_an_offline_device_and_a_timeout_are_their_outcomes(hub: Hub, dev1: Identity) -> None:
    with pytest.raises(HubError):
        await hub.call("dev1", "m")  # not connected
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
    with pytest.raises(HubError) as late:
        await hub.call("dev1", "m", timeout=0.01)
    assert late.value.kind is ErrorKind.CALL_TIMEOUT
    await asyncio.sleep(0)
    assert hub.metrics.call_seconds.count("azure", "offline") == 1
    assert hub.metrics.call_seconds.count("azure", "timeout") == 1


async def test_mqtt_connects_and_disconnects_by_transport(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    await device.online(azure_connect("dev1", dev1.keys.primary))
    assert hub.metrics.device_connects.get("mqtt", "false") == 1
    assert hub.metrics.device_disconnects.get("mqtt", "false") == 0
    device.transport.close()
    await device.closed()
    assert hub.metrics.device_disconnects.get("mqtt", "false") == 1
    text = hub.metrics.render()
    assert 'methodhub_device_connects_total{transport="mqtt",tls="false"} 1' in text
    assert 'methodhub_device_disconnects_total{transport="mqtt-ws",tls="true"} 0' in text


async def test_an_mqtt_auth_failure_counts_its_reason(hub: Hub, dev1: Identity) -> None:
    device = hub.device()
    device.send(azure_connect("dev1", SymmetricKeys.generate().primary))
    await device.connack()
    await device.closed()
    assert hub.metrics.auth_failures.get("device", "mqtt_not_authorized") == 1
    assert hub.metrics.device_connects.get("mqtt", "false") == 0
    assert hub.metrics.device_disconnects.get("mqtt", "false") == 0  # it never was connected


async def test_amqp_connects_disconnects_and_a_bad_token(hub: Hub, dev1: Identity) -> None:
    device = AmqpDevice(hub)  # on the "amqps" listener
    await device.online("dev1", dev1.keys.primary)
    await until(lambda: hub.metrics.device_connects.get("amqp", "true") == 1)
    device.transport.close()
    await until(lambda: hub.metrics.device_disconnects.get("amqp", "true") == 1)
    intruder = AmqpDevice(hub)
    await intruder.begin()
    await intruder.put_token(
        generate_sas_token(f"{HOST}/devices/dev1", SymmetricKeys.generate().primary, int(time.time()) + 60),
        "dev1",
    )
    assert hub.metrics.auth_failures.get("device", "amqp_put_token") == 1


def _service_token(policy: str, key: str, expiry: float | None = None) -> str:
    return generate_sas_token(HOST, key, int(expiry or time.time() + 60), policy)


async def test_service_auth_failures_report_their_reason(registry: SqliteRegistry) -> None:
    await registry.ensure_default_policies()
    service = await registry.get_policy("service")
    assert service is not None
    auth = ServiceAuthenticator(registry, HOST)
    reasons: list[str] = []
    auth.on_failure = reasons.append
    attempts = [
        None,
        "SharedAccessSignature garbage",
        _service_token("nobody", service.keys.primary),
        _service_token("service", SymmetricKeys.generate().primary),
        _service_token("service", service.keys.primary, time.time() - 10),
        _service_token("service", service.keys.primary),  # valid, but lacks RegistryRead
    ]
    for header in attempts:
        with pytest.raises(HubError):
            await auth.authenticate(header, HOST, Right.REGISTRY_READ)
    assert reasons == ["missing", "malformed", "unknown_policy", "bad_signature", "expired", "missing_right"]
    assert await auth.authenticate(attempts[-1], HOST, Right.SERVICE_CONNECT) == "service"
    assert len(reasons) == 6  # success is not counted


async def test_pop_auth_refusals_report_their_kind_but_not_an_unreachable_registry(
    registry: SqliteRegistry,
) -> None:
    auth = PopAuthenticator(registry)
    reasons: list[str] = []
    auth.on_failure = reasons.append
    auth.refused(HubError(ErrorKind.SIGNATURE_MISMATCH))
    auth.refused(HubError(ErrorKind.SERVICE_UNAVAILABLE))
    assert reasons == ["signature_mismatch"]


async def test_registry_operations_are_timed(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "r.db")
    seen: list[tuple[str, float]] = []
    registry.timed = lambda kind, started: seen.append((kind, time.perf_counter() - started))
    await registry.open()
    try:
        await registry.create_identity("dev9")  # a write (a transaction)
        await registry.get_identity("dev9")  # a batched read
        assert await registry.live_call_states() == {}
    finally:
        await registry.close()
    kinds = {kind for kind, _ in seen}
    assert {"read", "write"} <= kinds
    assert all(0 <= elapsed < 30 for _, elapsed in seen)


async def test_the_hub_metrics_histogram_takes_registry_timings(hub: Hub) -> None:
    hub.registry.timed = hub.metrics.registry_timed
    try:
        await hub.registry.get_identity("nobody")
    finally:
        hub.registry.timed = None
    assert hub.metrics.registry_seconds.count("read") == 1


async def test_a_queued_calls_attempt_is_timed_as_queued(
    hub: Hub, dev1: Identity, registry: SqliteRegistry
) -> None:
    queued = QueuedCalls(registry, hub.engine, hub.router, registry, "node-1", sweep_interval=3600)
    try:
        call, _ = await queued.create("dev1", None, "reboot", b"{}")
        device = hub.device()
        await device.online(azure_connect("dev1", dev1.keys.primary), METHODS)
        await queued.sweep()
        _, rid, _ = await request_of(device)
        device.answer(response_topic(200, rid), b"{}")
        assert (await queued.wait(call.call_id, 10)).state is CallState.SUCCEEDED
    finally:
        await queued.stop()
    assert hub.metrics.call_seconds.count("native", "answered") == 1
    assert hub.metrics.call_seconds.count("azure", "answered") == 0


async def test_a_jobs_device_call_is_timed_as_job(hub: Hub, registry: SqliteRegistry) -> None:
    identity = await registry.create_identity("jd0")
    calls = QueuedCalls(registry, hub.engine, hub.router, registry, "n1", sweep_interval=3600)
    runner = JobRunner(registry, calls, "n1", interval=3600)
    try:
        device = hub.device()
        await device.online(azure_connect("jd0", identity.keys.primary), METHODS)
        request = {"methodName": "reboot", "payload": "{}", "responseTimeoutInSeconds": 30}
        now = time.time()
        await runner.create(Job("j1", JobType.DEVICE_METHOD, "*", request, now, now, 60.0))
        await runner.run_now()
        await calls.sweep()
        _, rid, _ = await request_of(device)
        device.answer(response_topic(200, rid), b"{}")
        [call] = await registry.list_calls(job_id="j1")
        assert (await calls.wait(call.call_id, 10)).state is CallState.SUCCEEDED
    finally:
        await runner.stop()
        await calls.stop()
    assert hub.metrics.call_seconds.count("job", "answered") == 1
    assert hub.metrics.call_seconds.count("native", "answered") == 0
