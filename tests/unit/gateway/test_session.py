"""DeviceSession and SessionTable on their own: a fake channel, a store that can be held."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from methodhub.calls import Call, CallOutcome
from methodhub.errors import ErrorKind, HubError
from methodhub.gateway.dialect import DeviceView, Dialect, Principal
from methodhub.gateway.session import DeviceSession, SessionTable
from methodhub.metrics import Metrics
from methodhub.router import LocalRouter


class PlainDialect(Dialect):
    def __init__(self, name: str) -> None:
        self.name = name

    def claims(self, connect: Any) -> bool:
        return True

    async def authenticate(
        self, connect: Any, ctx: Any, *, use_cache: bool = True, client_certificate: Any = None
    ) -> Principal:
        raise NotImplementedError

    def grant(self, device: DeviceView, topic_filter: str, qos: int) -> int:
        return qos

    def on_publish(self, device: DeviceView, publish: Any) -> bool:
        return True

    def encode_call(self, device: DeviceView, call: Call, seq: int) -> tuple[str, str, bytes]:
        return str(seq), "t", call.payload

    def is_ready(self, device: DeviceView) -> bool:
        return True


class Channel:
    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.taken_over = False

    def deliver(self, call: Call, seq: int) -> str:
        self.delivered.append(str(seq))
        return str(seq)

    def ready_for_calls(self) -> bool:
        return True

    def close_taken_over(self) -> None:
        self.taken_over = True

    async def reverify(self) -> None:
        pass


class HeldStore:
    """A session store whose load waits until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def load_session(self, client_id: str) -> dict[str, int] | None:
        await self.release.wait()
        return None

    def save_session(self, client_id: str, subscriptions: Mapping[str, int]) -> None:
        pass

    def delete_session(self, client_id: str) -> None:
        pass


def submit(session: DeviceSession) -> asyncio.Future[CallOutcome]:
    reply: asyncio.Future[CallOutcome] = asyncio.get_running_loop().create_future()
    session.submit(Call("dev1", "m", b"{}", 30), reply)
    return reply


async def test_a_call_delivered_while_a_new_dialects_session_loads_fails_at_once() -> None:
    """The same identity reconnects speaking another dialect (CleanSession=0): its calls in flight
    fail, and so does one delivered to the old connection while the stored session was loading —
    before, nothing answered it and it waited for its response timeout."""
    store = HeldStore()
    store.release.set()
    table = SessionTable(LocalRouter(), store, Metrics())
    first, second = PlainDialect("first"), PlainDialect("second")
    old, _ = await table.open(Principal("dev1", None, "dev1", first), clean_start=True, persistent=False)
    old_channel = Channel()
    old.attach(old_channel)
    before = submit(old)
    store.release.clear()
    opening = asyncio.ensure_future(
        table.open(Principal("dev1", None, "dev1", second), clean_start=False, persistent=False)
    )
    await asyncio.sleep(0)
    with pytest.raises(HubError) as failed:
        await before
    assert failed.value.kind is ErrorKind.DEVICE_DISCONNECTED
    during = submit(old)  # the old connection is still the device's, and ready
    assert old_channel.delivered == ["1", "2"]
    store.release.set()
    new, present = await opening
    assert new is not old and not present
    new.attach(Channel())
    assert old_channel.taken_over
    old.detach(old_channel, "taken over")  # its connection ends later: the old session has no channel
    assert during.done()
    with pytest.raises(HubError) as failed:
        await during
    assert failed.value.kind is ErrorKind.DEVICE_DISCONNECTED


async def test_subscriptions_change_once_per_update_and_readiness_follows_the_channel() -> None:
    table = SessionTable(LocalRouter(), HeldStore(), Metrics())
    session, _ = await table.open(Principal("dev1", None, "dev1", PlainDialect("p")), True, False)
    assert not session.ready
    session.attach(Channel())
    assert session.ready and await table.router.wait_ready("dev1", 0)
    assert session.update_subscriptions({"a": 0, "b": 1})
    assert not session.update_subscriptions({"a": 0})  # nothing changed
    assert session.update_subscriptions({}, ["a", "missing"])
    assert dict(session.subscriptions) == {"b": 1}
