"""The call engine against the in-process router and a fake session: no sockets."""

from __future__ import annotations

import asyncio

import pytest

from methodhub.calls import Call, CallEngine, CallOutcome
from methodhub.calls.model import CallOrigin
from methodhub.errors import ErrorKind, HubError
from methodhub.metrics import Metrics
from methodhub.router import LocalRouter


class Identities:
    def __init__(self, *known: str) -> None:
        self.known = set(known)
        self.asked: list[tuple[str, str | None]] = []

    async def get_identity(self, device_id: str, module_id: str | None = None) -> object | None:
        self.asked.append((device_id, module_id))
        key = device_id if module_id is None else f"{device_id}/{module_id}"
        return object() if key in self.known else None


class FakeSession:
    """A CallLink that records what it was given and lets the test answer."""

    def __init__(self) -> None:
        self.calls: list[tuple[Call, asyncio.Future[CallOutcome]]] = []

    def submit(self, call: Call, reply: asyncio.Future[CallOutcome]) -> None:
        self.calls.append((call, reply))


def call(target: str = "dev", response_timeout: float = 5, connect_timeout: float = 0) -> Call:
    return Call(target, "m", b"null", response_timeout, connect_timeout)


@pytest.fixture
def parts():
    router = LocalRouter()
    metrics = Metrics()
    identities = Identities("dev", "dev/mod")
    return router, identities, metrics, CallEngine(router, identities, metrics)


async def test_online_device_answers(parts) -> None:
    router, identities, metrics, engine = parts
    session = FakeSession()
    router.announce("dev", session)
    result = engine.invoke(call())
    ((_, reply),) = session.calls
    reply.set_result(CallOutcome(200, b"1"))
    assert await result == CallOutcome(200, b"1")
    assert identities.asked == []  # the fast path never asks the registry
    assert metrics.calls.get("success") == 1


async def test_unknown_device_and_module(parts) -> None:
    _, _, _, engine = parts
    with pytest.raises(HubError) as device:
        await engine.invoke(call("ghost"))
    assert device.value.kind is ErrorKind.DEVICE_NOT_FOUND
    with pytest.raises(HubError) as module:
        await engine.invoke(call("dev/ghost"))
    assert module.value.kind is ErrorKind.MODULE_NOT_FOUND


async def test_offline_device(parts) -> None:
    _, _, metrics, engine = parts
    with pytest.raises(HubError) as offline:
        await engine.invoke(call())
    assert offline.value.kind is ErrorKind.DEVICE_OFFLINE
    assert offline.value.info == {"connect_timeout": 0.0}  # each front door words it (Azure: "00:00:00")
    assert metrics.calls.get("device_offline") == 1


async def test_connect_timeout_waits_for_the_device(parts) -> None:
    router, _, _, engine = parts
    session = FakeSession()
    result = engine.invoke(call(connect_timeout=5))
    await asyncio.sleep(0.05)
    assert not result.done()
    router.announce("dev", session)
    await asyncio.sleep(0.01)
    ((_, reply),) = session.calls
    reply.set_result(CallOutcome(204, b"null"))
    assert (await result).status == 204


async def test_response_timeout(parts) -> None:
    router, _, _, engine = parts
    session = FakeSession()
    router.announce("dev", session)
    with pytest.raises(HubError) as timeout:
        await engine.invoke(call(response_timeout=0.05))
    assert timeout.value.kind is ErrorKind.CALL_TIMEOUT
    ((_, reply),) = session.calls
    assert reply.done()  # the session sees its reply finished, so it forgets the request id


async def test_cancelling_abandons_the_delivery(parts) -> None:
    router, _, metrics, engine = parts
    session = FakeSession()
    router.announce("dev", session)
    result = engine.invoke(call())
    result.cancel()
    await asyncio.sleep(0)
    ((_, reply),) = session.calls
    assert reply.cancelled()
    assert metrics.calls.get("abandoned") == 1


async def test_disconnect_is_reported_as_is(parts) -> None:
    router, _, _, engine = parts
    session = FakeSession()
    router.announce("dev", session)
    result = engine.invoke(call())
    ((_, reply),) = session.calls
    reply.set_exception(HubError(ErrorKind.DEVICE_DISCONNECTED))
    with pytest.raises(HubError) as gone:
        await result
    assert gone.value.kind is ErrorKind.DEVICE_DISCONNECTED


async def test_withdrawn_link_is_offline_but_a_newer_one_survives(parts) -> None:
    router, _, _, engine = parts
    old, new = FakeSession(), FakeSession()
    router.announce("dev", old)
    router.announce("dev", new)
    router.withdraw("dev", old)  # the old connection finishing late must not remove the new one
    engine.invoke(call())
    assert len(new.calls) == 1 and old.calls == []
    router.withdraw("dev", new)
    with pytest.raises(HubError) as offline:
        await engine.invoke(call())
    assert offline.value.kind is ErrorKind.DEVICE_OFFLINE


async def test_registry_failure_is_service_unavailable() -> None:
    class Broken:
        async def get_identity(self, device_id: str, module_id: str | None = None) -> object:
            raise OSError("database is locked")

    engine = CallEngine(LocalRouter(), Broken())
    with pytest.raises(HubError) as unavailable:
        await engine.invoke(call())
    assert unavailable.value.kind is ErrorKind.SERVICE_UNAVAILABLE


async def test_stop_answers_every_waiting_call_at_once_and_refuses_new_ones(parts) -> None:
    router, _, metrics, engine = parts
    session = FakeSession()
    router.announce("dev", session)
    delivered = engine.invoke(call(response_timeout=300))
    waiting = engine.invoke(call("dev/mod", connect_timeout=300))  # registered, not connected
    for _ in range(5):
        await asyncio.sleep(0)  # the registry lookup runs; the call waits for the module to connect
    assert not waiting.done()
    ((_, reply),) = session.calls

    engine.stop()
    for result in (delivered, waiting, engine.invoke(call())):
        with pytest.raises(HubError) as stopping:
            await result
        assert stopping.value.kind is ErrorKind.HUB_STOPPING
    assert reply.cancelled()  # the delivery is abandoned: a late answer is dropped
    for _ in range(10):  # the connect-wait task unwinds its cancellation
        await asyncio.sleep(0)
    assert not engine._background  # nothing left waiting for a device
    assert metrics.calls.get("hub_stopping") == 3


async def test_a_reply_failing_after_the_call_was_stopped_is_retrieved() -> None:
    """Found by the workers' stop test: a reply failed (another node answered HUB_STOPPING) while
    the engine stopped the call in the same loop iteration; ``_on_reply`` returned before retrieving
    the exception and asyncio logged "Future exception was never retrieved"."""
    import gc

    from methodhub.calls import CallEngine
    from methodhub.calls.model import Call

    loop = asyncio.get_running_loop()
    reported: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    replies: list[asyncio.Future] = []

    class HoldingRouter:
        def dispatch(self, call: Call, reply: asyncio.Future) -> None:
            replies.append(reply)

    class Identities:
        async def get_identity(self, device_id: str, module_id: str | None = None) -> object:
            return object()

    engine = CallEngine(HoldingRouter(), Identities())  # type: ignore[arg-type]
    result = engine.invoke(Call("dev", "m", b"null", 30))
    replies[0].set_exception(HubError(ErrorKind.HUB_STOPPING))  # its callback is only scheduled
    engine.stop()
    with pytest.raises(HubError):
        await result
    await asyncio.sleep(0)
    del result
    replies.clear()
    gc.collect()
    assert [c["message"] for c in reported] == []


async def test_every_call_is_timed_once_and_leaves_in_flight_whichever_way_it_ends(parts) -> None:
    from methodhub.calls.quotas import QuotaLimits, Quotas

    router, _, metrics, engine = parts
    session = FakeSession()
    router.announce("dev", session)
    answered = engine.invoke(call(), "azure")
    abandoned = engine.invoke(call(), "azure")
    assert metrics.in_flight["azure"] == 2
    session.calls[0][1].set_result(CallOutcome(200, b"1"))
    abandoned.cancel()
    await answered
    await asyncio.sleep(0)
    engine.quotas = Quotas(QuotaLimits(method_calls_per_second=1.0))
    refused = [engine.invoke(call(), "aliyun", CallOrigin("aliyun", "k")) for _ in range(4)]
    throttled = [r for r in refused if r.done()]
    assert throttled and metrics.in_flight["aliyun"] == len(refused) - len(throttled)  # refused: out at once
    engine.stop()
    late = engine.invoke(call(), "native")
    for result in [*refused, late]:
        with pytest.raises(HubError):
            await result
    await asyncio.sleep(0)
    assert set(metrics.in_flight.values()) == {0}
    seconds = metrics.call_seconds
    assert (seconds.count("azure", "answered"), seconds.count("azure", "error")) == (1, 1)
    assert seconds.count("aliyun", "error") == len(refused)  # throttled, or stopped while waiting
    assert seconds.count("native", "error") == 1  # refused: the hub is stopping


async def test_a_call_does_not_ask_for_the_running_loop_again(parts, monkeypatch: pytest.MonkeyPatch) -> None:
    """``asyncio.get_running_loop()`` is a getpid system call on Python 3.11: once per engine, not per
    call (issue 16)."""
    router, _, _, engine = parts
    session = FakeSession()
    router.announce("dev", session)
    asked: list[int] = []
    running_loop = asyncio.get_running_loop

    def counted() -> asyncio.AbstractEventLoop:
        asked.append(1)
        return running_loop()

    monkeypatch.setattr(asyncio, "get_running_loop", counted)
    results = [engine.invoke(call()) for _ in range(3)]
    assert len(asked) == 1
    for _, reply in session.calls:
        reply.set_result(CallOutcome(200, b"1"))
    assert [await result for result in results] == [CallOutcome(200, b"1")] * 3
