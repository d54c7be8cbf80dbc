"""Registry contract: persisted MQTT sessions (every backend in conftest.BACKENDS)."""

from __future__ import annotations

import asyncio

from methodhub.registry import Registry
from tests.unit.registry.conftest import NewRegistry

SUBS = {"$iothub/methods/POST/#": 1, "devices/dev1/messages/devicebound/#": 0}


async def test_unknown_session(registry: Registry) -> None:
    assert await registry.load_session("dev1") is None


async def test_save_then_load(registry: Registry) -> None:
    registry.save_session("dev1", SUBS)
    assert await registry.load_session("dev1") == SUBS
    await registry.flush_sessions()
    assert await registry.load_session("dev1") == SUBS


async def test_flushed_writes_are_visible_to_another_registry_object(
    registry: Registry, other: Registry
) -> None:
    registry.save_session("dev1", SUBS)
    registry.save_session("dev2", {"a": 0})
    await registry.flush_sessions()
    assert await other.load_session("dev1") == SUBS
    assert await other.load_session("dev2") == {"a": 0}


async def test_coalesced_writes_keep_the_last_value(registry: Registry, other: Registry) -> None:
    registry.save_session("dev1", {"a": 0})
    registry.save_session("dev1", {"a": 1, "b": 1})
    registry.save_session("dev2", {"x": 1})
    registry.delete_session("dev2")
    registry.save_session("dev3", {"y": 1})
    registry.delete_session("dev3")
    registry.save_session("dev3", {"z": 0})
    assert await registry.load_session("dev2") is None
    await registry.flush_sessions()
    assert await other.load_session("dev1") == {"a": 1, "b": 1}
    assert await other.load_session("dev2") is None
    assert await other.load_session("dev3") == {"z": 0}


async def test_delete_session(registry: Registry, other: Registry) -> None:
    registry.save_session("dev1", SUBS)
    await registry.flush_sessions()
    registry.delete_session("dev1")
    assert await registry.load_session("dev1") is None
    await registry.flush_sessions()
    assert await other.load_session("dev1") is None
    registry.delete_session("never-saved")
    await registry.flush_sessions()
    assert await registry.load_session("never-saved") is None


async def test_empty_subscriptions_are_a_session(registry: Registry, other: Registry) -> None:
    registry.save_session("dev1", {})
    await registry.flush_sessions()
    assert await other.load_session("dev1") == {}


async def test_saved_value_is_a_copy(registry: Registry) -> None:
    subs = {"a": 1}
    registry.save_session("dev1", subs)
    subs["b"] = 0
    loaded = await registry.load_session("dev1")
    assert loaded == {"a": 1}
    assert loaded is not None
    loaded["c"] = 1
    assert await registry.load_session("dev1") == {"a": 1}
    await registry.flush_sessions()
    assert await registry.load_session("dev1") == {"a": 1}


async def test_close_flushes_pending_writes(new_registry: NewRegistry) -> None:
    first = new_registry()
    await first.open()
    first.save_session("dev1", SUBS)
    first.save_session("dev1/mod", {"m": 1})
    await first.close()
    second = new_registry()
    await second.open()
    try:
        assert await second.load_session("dev1") == SUBS
        assert await second.load_session("dev1/mod") == {"m": 1}
    finally:
        await second.close()


async def test_writes_are_flushed_without_being_asked(registry: Registry, other: Registry) -> None:
    """Coalescing delays writes a little; it must not hold them until someone calls flush_sessions()."""
    registry.save_session("dev1", SUBS)
    for _ in range(200):
        if await other.load_session("dev1") == SUBS:
            break
        await asyncio.sleep(0.01)
    assert await other.load_session("dev1") == SUBS


async def test_deleting_a_device_deletes_its_sessions_and_its_modules(
    registry: Registry, other: Registry
) -> None:
    for device in ("dev1", "dev10", "dev2"):
        await registry.create_identity(device)
        await registry.create_identity(device, "m")
        registry.save_session(device, SUBS)
        registry.save_session(f"{device}/m", SUBS)
    await registry.flush_sessions()
    await registry.delete_identity("dev1")
    await registry.flush_sessions()
    for reg in (registry, other):
        assert await reg.load_session("dev1") is None
        assert await reg.load_session("dev1/m") is None
        assert await reg.load_session("dev10") == SUBS  # a prefix of the id is another device
        assert await reg.load_session("dev10/m") == SUBS
        assert await reg.load_session("dev2/m") == SUBS


async def test_deleting_a_device_drops_unflushed_session_writes(registry: Registry, other: Registry) -> None:
    await registry.create_identity("dev1")
    await registry.create_identity("dev1", "m")
    registry.save_session("dev1", SUBS)
    registry.save_session("dev1/m", SUBS)
    await registry.delete_identity("dev1")
    assert await registry.load_session("dev1") is None
    assert await registry.load_session("dev1/m") is None
    await registry.flush_sessions()
    assert await other.load_session("dev1") is None
    assert await other.load_session("dev1/m") is None


async def test_deleting_a_module_deletes_only_its_session(registry: Registry, other: Registry) -> None:
    await registry.create_identity("dev1")
    await registry.create_identity("dev1", "m")
    await registry.create_identity("dev1", "n")
    for client in ("dev1", "dev1/m", "dev1/n"):
        registry.save_session(client, SUBS)
    await registry.flush_sessions()
    await registry.delete_identity("dev1", "m")
    await registry.flush_sessions()
    assert await other.load_session("dev1/m") is None
    assert await other.load_session("dev1") == SUBS
    assert await other.load_session("dev1/n") == SUBS


async def test_a_session_write_in_flight_does_not_outlive_its_deleted_device(
    registry: Registry, other: Registry
) -> None:
    await registry.create_identity("dev1")
    await registry.create_identity("dev1", "m")
    registry.save_session("dev1/m", SUBS)
    flushing = asyncio.create_task(registry.flush_sessions())
    for _ in range(3):  # let its batch be taken and handed to the backend before the delete starts
        await asyncio.sleep(0)
    registry.save_session("dev1", SUBS)  # queued, not written, when the delete starts
    await registry.delete_identity("dev1")
    await flushing
    await registry.flush_sessions()
    for reg in (registry, other):
        assert await reg.load_session("dev1/m") is None
        assert await reg.load_session("dev1") is None
