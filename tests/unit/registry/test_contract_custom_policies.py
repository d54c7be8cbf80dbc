"""Registry contract: custom shared access policies (create, update keys or rights, delete), next to the
built-in five, on every backend in conftest.BACKENDS."""

from __future__ import annotations

import pytest

from methodhub.errors import ErrorKind
from methodhub.registry import DEFAULT_POLICIES, Registry, Right, SymmetricKeys
from methodhub.registry.policies import parse_rights
from tests.unit.registry.helpers import key_of, raises_hub_error

READ_CONNECT = frozenset({Right.SERVICE_CONNECT, Right.REGISTRY_READ})


async def test_create_a_custom_policy_next_to_the_built_in_ones(registry: Registry, other: Registry) -> None:
    await registry.ensure_default_policies()
    created = await registry.create_policy("ops-team", READ_CONNECT)
    assert created.name == "ops-team" and created.rights == READ_CONNECT
    assert SymmetricKeys.is_valid_key(created.keys.primary) and created.keys.primary != created.keys.secondary
    assert await other.get_policy("ops-team") == created  # another process sees it
    assert {p.name for p in await registry.list_policies()} == {*DEFAULT_POLICIES, "ops-team"}
    assert await registry.ensure_default_policies() is False  # a custom policy is no first start


async def test_create_with_given_keys(registry: Registry) -> None:
    keys = SymmetricKeys(key_of(32, 1), key_of(32, 2))
    created = await registry.create_policy("given", frozenset({Right.DEVICE_CONNECT}), keys)
    assert (await registry.get_policy("given")) == created and created.keys == keys


async def test_create_refuses_a_taken_name_bad_names_no_rights_and_bad_keys(registry: Registry) -> None:
    await registry.ensure_default_policies()
    start = await registry.last_change_seq()
    before = await registry.get_policy("service")
    with raises_hub_error(ErrorKind.CONFLICT, "'service' already exists"):
        await registry.create_policy("service", READ_CONNECT)
    assert await registry.get_policy("service") == before  # its keys and rights untouched
    for bad in ("", "with space", "x" * 65, "naïve", "a/b", "nul\x00"):
        with raises_hub_error(ErrorKind.INVALID_ARGUMENT, "policy name"):
            await registry.create_policy(bad, READ_CONNECT)
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT, "at least one right"):
        await registry.create_policy("empty", frozenset())
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT, "base64"):
        await registry.create_policy("badkeys", READ_CONNECT, SymmetricKeys("nope", key_of(32)))
    assert await registry.changes_since(start) == ([], start)  # failed writes record nothing


async def test_update_keys_or_rights(registry: Registry, other: Registry) -> None:
    created = await registry.create_policy("p", READ_CONNECT)
    new_keys = SymmetricKeys(key_of(32, 3), created.keys.secondary)
    rotated = await registry.update_policy("p", keys=new_keys)
    assert rotated.keys == new_keys and rotated.rights == READ_CONNECT
    narrowed = await registry.update_policy("p", rights=frozenset({Right.REGISTRY_READ}))
    assert narrowed.keys == new_keys and narrowed.rights == {Right.REGISTRY_READ}
    assert await other.get_policy("p") == narrowed


async def test_update_and_delete_of_an_unknown_policy(registry: Registry) -> None:
    start = await registry.last_change_seq()
    with raises_hub_error(ErrorKind.NOT_FOUND, "'nosuch'"):
        await registry.update_policy("nosuch", keys=SymmetricKeys.generate())
    with raises_hub_error(ErrorKind.NOT_FOUND, "'nosuch'"):
        await registry.delete_policy("nosuch")
    with raises_hub_error(ErrorKind.NOT_FOUND):
        await registry.delete_policy("bad name\x00")
    assert await registry.changes_since(start) == ([], start)


async def test_delete(registry: Registry, other: Registry) -> None:
    await registry.ensure_default_policies()
    await registry.create_policy("gone", READ_CONNECT)
    await other.delete_policy("gone")
    assert await registry.get_policy("gone") is None
    assert {p.name for p in await registry.list_policies()} == set(DEFAULT_POLICIES)


async def test_every_change_is_in_the_feed(registry: Registry) -> None:
    start = await registry.last_change_seq()
    await registry.create_policy("p", READ_CONNECT)
    await registry.update_policy("p", keys=SymmetricKeys.generate())
    await registry.delete_policy("p")
    changes, _ = await registry.changes_since(start)
    assert [(c.kind, c.key) for c in changes] == [("policy", "p")] * 3


def test_parse_rights() -> None:
    assert parse_rights("ServiceConnect,RegistryRead") == READ_CONNECT
    assert parse_rights(" registryread , SERVICECONNECT ") == READ_CONNECT  # as az accepts them
    assert parse_rights("ServiceConnect,ServiceConnect") == {Right.SERVICE_CONNECT}
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT, "unknown right(s) Admin"):
        parse_rights("ServiceConnect,Admin")
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT, "no rights given"):
        parse_rights(" , ")


@pytest.mark.parametrize("name", ["a", "ops.team_1-x", "x" * 64])
async def test_names_azure_accepts(registry: Registry, name: str) -> None:
    assert (await registry.create_policy(name, READ_CONNECT)).name == name
