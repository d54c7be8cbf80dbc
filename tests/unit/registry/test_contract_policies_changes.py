"""Registry contract: shared access policies and the change feed (every backend in conftest.BACKENDS)."""

from __future__ import annotations

import base64

from methodhub.errors import ErrorKind
from methodhub.registry import DEFAULT_POLICIES, Change, Registry, Right
from tests.unit.registry.helpers import raises_hub_error


async def test_no_policies_before_first_start(registry: Registry) -> None:
    assert await registry.list_policies() == []
    assert await registry.get_policy("iothubowner") is None


async def test_default_policies_are_created_once(registry: Registry, other: Registry) -> None:
    assert await registry.ensure_default_policies() is True
    first = await registry.list_policies()
    assert await registry.ensure_default_policies() is False
    assert await other.ensure_default_policies() is False  # another process starting later
    assert await registry.list_policies() == first  # keys were not regenerated


async def test_default_policies_are_azures_five(registry: Registry) -> None:
    await registry.ensure_default_policies()
    policies = {p.name: p for p in await registry.list_policies()}
    assert set(policies) == {"iothubowner", "service", "device", "registryRead", "registryReadWrite"}
    assert policies["iothubowner"].rights == frozenset(Right)
    assert policies["service"].rights == {Right.SERVICE_CONNECT}
    assert policies["device"].rights == {Right.DEVICE_CONNECT}
    assert policies["registryRead"].rights == {Right.REGISTRY_READ}
    assert policies["registryReadWrite"].rights == {Right.REGISTRY_READ, Right.REGISTRY_WRITE}
    assert {name: p.rights for name, p in policies.items()} == DEFAULT_POLICIES
    keys = [k for p in policies.values() for k in (p.keys.primary, p.keys.secondary)]
    assert all(len(base64.b64decode(k, validate=True)) == 32 for k in keys)
    assert len(set(keys)) == 10


async def test_get_policy(registry: Registry, other: Registry) -> None:
    await registry.ensure_default_policies()
    listed = {p.name: p for p in await registry.list_policies()}
    assert await registry.get_policy("service") == listed["service"]
    assert await other.get_policy("service") == listed["service"]
    assert await registry.get_policy("Service") is None  # names are case-sensitive
    assert await registry.get_policy("nosuch") is None


# -- change feed --------------------------------------------------------------------------------------------


async def test_empty_feed(registry: Registry) -> None:
    seq = await registry.last_change_seq()
    assert await registry.changes_since(seq) == ([], seq)


async def test_identity_changes_are_recorded_in_order(registry: Registry) -> None:
    start = await registry.last_change_seq()
    await registry.create_identity("dev1")
    await registry.create_identity("dev1", "m")
    await registry.update_identity("dev1", status="disabled")
    await registry.update_identity("dev1", "m", status_reason="x")
    await registry.create_identity("dev2")
    await registry.delete_identity("dev2")
    changes, next_seq = await registry.changes_since(start)
    assert [(c.kind, c.key) for c in changes] == [
        ("identity", "dev1"),
        ("identity", "dev1/m"),
        ("identity", "dev1"),
        ("identity", "dev1/m"),
        ("identity", "dev2"),
        ("identity", "dev2"),
    ]
    seqs = [c.seq for c in changes]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] > start
    assert next_seq == seqs[-1] == await registry.last_change_seq()
    assert await registry.changes_since(next_seq) == ([], next_seq)


async def test_changes_since_the_middle(registry: Registry) -> None:
    await registry.create_identity("a")
    middle = await registry.last_change_seq()
    await registry.create_identity("b")
    changes, _ = await registry.changes_since(middle)
    assert [c.key for c in changes] == ["b"]
    assert all(isinstance(c, Change) for c in changes)


async def test_deleting_a_device_reports_its_modules(registry: Registry) -> None:
    await registry.create_identity("dev1")
    await registry.create_identity("dev1", "m1")
    await registry.create_identity("dev1", "m2")
    start = await registry.last_change_seq()
    await registry.delete_identity("dev1")
    changes, _ = await registry.changes_since(start)
    assert {(c.kind, c.key) for c in changes} == {
        ("identity", "dev1"),
        ("identity", "dev1/m1"),
        ("identity", "dev1/m2"),
    }


async def test_failed_writes_record_nothing(registry: Registry) -> None:
    await registry.create_identity("dev1")
    start = await registry.last_change_seq()
    with raises_hub_error(ErrorKind.DEVICE_ALREADY_EXISTS):
        await registry.create_identity("dev1")
    with raises_hub_error(ErrorKind.PRECONDITION_FAILED):
        await registry.update_identity("dev1", etag="stale")
    with raises_hub_error(ErrorKind.PRECONDITION_FAILED):
        await registry.delete_identity("dev1", etag="stale")
    with raises_hub_error(ErrorKind.DEVICE_NOT_FOUND):
        await registry.create_identity("nobody", "m")
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT):
        await registry.create_identity("bad id")
    assert await registry.changes_since(start) == ([], start)


async def test_policy_changes_are_recorded(registry: Registry) -> None:
    start = await registry.last_change_seq()
    await registry.ensure_default_policies()
    changes, _ = await registry.changes_since(start)
    assert {(c.kind, c.key) for c in changes} == {("policy", name) for name in DEFAULT_POLICIES}
    seq = await registry.last_change_seq()
    await registry.ensure_default_policies()
    assert await registry.last_change_seq() == seq


async def test_another_registry_object_sees_changes(registry: Registry, other: Registry) -> None:
    start = await registry.last_change_seq()
    await other.create_identity("from-cli")
    changes, _ = await registry.changes_since(start)
    assert [(c.kind, c.key) for c in changes] == [("identity", "from-cli")]


async def test_prune_keeps_recent_changes(registry: Registry) -> None:
    start = await registry.last_change_seq()
    await registry.create_identity("a")
    await registry.prune_changes(3600)
    assert [c.key for c in (await registry.changes_since(start))[0]] == ["a"]


async def test_prune_forgets_old_changes_and_never_reuses_seqs(registry: Registry) -> None:
    start = await registry.last_change_seq()
    await registry.create_identity("a")
    await registry.create_identity("b")
    _, cursor = await registry.changes_since(start)
    await registry.prune_changes(0)
    assert (await registry.changes_since(start))[0] == []
    # a reader that had already seen 'b' still gets what happens next
    await registry.create_identity("c")
    changes, after = await registry.changes_since(cursor)
    assert [c.key for c in changes] == ["c"]
    assert after > cursor
    assert await registry.last_change_seq() == after
