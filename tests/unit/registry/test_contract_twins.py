"""Registry contract: device and module twins (every backend in conftest.BACKENDS)."""

from __future__ import annotations

import asyncio
import time

from methodhub.errors import ErrorKind
from methodhub.registry import Registry
from methodhub.registry.twins import Twin, patch_reported, patch_twin, replace_twin
from tests.unit.registry.helpers import raises_hub_error


async def test_a_new_identity_has_an_empty_twin_and_none_is_there_without_one(registry: Registry) -> None:
    await registry.create_identity("dev1")
    await registry.create_identity("dev1", "mod1")
    twin = await registry.get_twin("dev1")
    assert twin is not None
    assert (twin.device_id, twin.module_id, twin.tags, twin.desired, twin.reported) == (
        "dev1",
        None,
        {},
        {},
        {},
    )
    assert (twin.version, twin.desired_version, twin.reported_version) == (1, 1, 1) and twin.etag
    module = await registry.get_twin("dev1", "mod1")
    assert module is not None and module.module_id == "mod1"
    assert await registry.get_twin("nobody") is None
    assert await registry.get_twin("dev1", "nomod") is None


async def test_updates_are_stored_and_seen_by_another_process(registry: Registry, other: Registry) -> None:
    await registry.create_identity("dev1")
    now = time.time()
    stored = await registry.update_twin(
        "dev1", None, lambda t: patch_twin(t, {"site": "A"}, {"interval": 30}, now)
    )
    assert stored.tags == {"site": "A"} and stored.desired == {"interval": 30}
    assert (stored.version, stored.desired_version) == (2, 2)
    assert await other.get_twin("dev1") == stored
    reported = await other.update_twin("dev1", None, lambda t: patch_reported(t, {"fw": "1.2"}, now))
    assert reported.reported == {"fw": "1.2"} and reported.reported_version == 2
    assert reported.desired == {"interval": 30}  # the device's change kept the service's
    assert await registry.get_twin("dev1") == reported


async def test_the_etag_guards_an_update(registry: Registry) -> None:
    await registry.create_identity("dev1")
    first = await registry.get_twin("dev1")
    assert first is not None
    now = time.time()
    second = await registry.update_twin(
        "dev1", None, lambda t: patch_twin(t, {"a": 1}, None, now), etag=first.etag
    )
    assert second.etag != first.etag
    with raises_hub_error(ErrorKind.PRECONDITION_FAILED):
        await registry.update_twin(
            "dev1", None, lambda t: patch_twin(t, {"a": 2}, None, now), etag=first.etag
        )
    third = await registry.update_twin("dev1", None, lambda t: replace_twin(t, {"b": 1}, None, now), etag="*")
    assert third.tags == {"b": 1}


async def test_a_failing_change_stores_nothing_and_unknown_identities_are_not_found(
    registry: Registry,
) -> None:
    await registry.create_identity("dev1")
    before = await registry.get_twin("dev1")
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT):
        await registry.update_twin("dev1", None, lambda t: patch_twin(t, {"bad.key": 1}, None, time.time()))
    assert await registry.get_twin("dev1") == before
    with raises_hub_error(ErrorKind.DEVICE_NOT_FOUND):
        await registry.update_twin("nobody", None, lambda t: t)
    with raises_hub_error(ErrorKind.MODULE_NOT_FOUND):
        await registry.update_twin("dev1", "nomod", lambda t: t)


async def test_desired_changes_are_in_the_change_feed_reported_ones_are_not(registry: Registry) -> None:
    await registry.create_identity("dev1")
    start = await registry.last_change_seq()
    now = time.time()
    await registry.update_twin("dev1", None, lambda t: patch_reported(t, {"x": 1}, now))
    await registry.update_twin("dev1", None, lambda t: patch_twin(t, {"t": 1}, None, now))  # tags only
    await registry.update_twin("dev1", None, lambda t: patch_twin(t, None, {"d": 1}, now))
    changes, _ = await registry.changes_since(start)
    assert [(c.kind, c.key) for c in changes] == [("twin", "dev1")]


async def test_concurrent_updates_are_serialized(registry: Registry, other: Registry) -> None:
    await registry.create_identity("dev1")
    now = time.time()

    def bump(n: int):  # type: ignore[no-untyped-def]
        return lambda t: patch_reported(t, {f"k{n}": n}, now)

    await asyncio.gather(*(r.update_twin("dev1", None, bump(n)) for n, r in enumerate([registry, other] * 5)))
    twin = await registry.get_twin("dev1")
    assert twin is not None
    assert twin.reported == {f"k{n}": n for n in range(10)} and twin.reported_version == 11


async def test_deleting_the_identity_deletes_its_twin(registry: Registry) -> None:
    await registry.create_identity("dev1")
    await registry.update_twin("dev1", None, lambda t: patch_twin(t, {"a": 1}, None, time.time()))
    await registry.delete_identity("dev1")
    await registry.create_identity("dev1")
    twin = await registry.get_twin("dev1")
    assert isinstance(twin, Twin) and twin.tags == {} and twin.version == 1
