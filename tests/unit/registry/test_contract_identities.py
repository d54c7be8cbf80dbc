"""Registry contract: devices and modules (runs against every backend in conftest.BACKENDS)."""

from __future__ import annotations

import base64
import time

import pytest

from methodhub.errors import ErrorKind
from methodhub.registry import Identity, Registry, SymmetricKeys
from tests.unit.registry.helpers import key_of, raises_hub_error

GOOD_KEYS = SymmetricKeys(key_of(32, 1), key_of(32, 2))


def assert_valid_generated_key(key: str) -> None:
    assert len(base64.b64decode(key, validate=True)) == 32
    assert len(key) == 44


# -- create / get -------------------------------------------------------------------------------------------


async def test_create_device_and_get_it_back(registry: Registry) -> None:
    before = time.time()
    created = await registry.create_identity("dev1")
    assert created.device_id == "dev1"
    assert created.module_id is None
    assert created.key == "dev1"
    assert created.status == "enabled"
    assert created.etag
    assert created.generation_id
    assert before - 1 <= created.created_at <= time.time() + 1
    assert not created.iot_edge
    assert await registry.get_identity("dev1") == created


async def test_generated_keys_are_32_random_bytes(registry: Registry) -> None:
    a = await registry.create_identity("a")
    b = await registry.create_identity("b")
    for key in (a.keys.primary, a.keys.secondary, b.keys.primary, b.keys.secondary):
        assert_valid_generated_key(key)
    assert len({a.keys.primary, a.keys.secondary, b.keys.primary, b.keys.secondary}) == 4
    assert a.generation_id != b.generation_id


async def test_explicit_keys_are_stored(registry: Registry) -> None:
    await registry.create_identity("dev1", keys=GOOD_KEYS)
    got = await registry.get_identity("dev1")
    assert got is not None
    assert got.keys == GOOD_KEYS


@pytest.mark.parametrize("n_bytes", [16, 64])
async def test_keys_of_16_to_64_bytes_are_accepted(registry: Registry, n_bytes: int) -> None:
    keys = SymmetricKeys(key_of(n_bytes, 1), key_of(n_bytes, 2))
    assert (await registry.create_identity("dev1", keys=keys)).keys == keys


BAD_KEYS = {
    "not base64": "this is not base64!",
    "15 bytes": key_of(15),
    "65 bytes": key_of(65),
    "empty": "",
    "base64 with whitespace": key_of(32)[:10] + " " + key_of(32)[10:],
}


@pytest.mark.parametrize("bad", sorted(BAD_KEYS))
@pytest.mark.parametrize("which", ["primary", "secondary"])
async def test_bad_explicit_keys_are_refused_on_create(registry: Registry, bad: str, which: str) -> None:
    good = key_of(32)
    keys = SymmetricKeys(BAD_KEYS[bad], good) if which == "primary" else SymmetricKeys(good, BAD_KEYS[bad])
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT):
        await registry.create_identity("dev1", keys=keys)
    assert await registry.get_identity("dev1") is None


@pytest.mark.parametrize("bad", sorted(BAD_KEYS))
async def test_bad_explicit_keys_are_refused_on_update(registry: Registry, bad: str) -> None:
    created = await registry.create_identity("dev1")
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT):
        await registry.update_identity("dev1", keys=SymmetricKeys(key_of(32), BAD_KEYS[bad]))
    assert await registry.get_identity("dev1") == created


async def test_get_unknown_is_none(registry: Registry) -> None:
    assert await registry.get_identity("nobody") is None
    assert await registry.get_identity("nobody", "mod") is None
    await registry.create_identity("dev1")
    assert await registry.get_identity("dev1", "nomod") is None


async def test_ids_are_case_sensitive(registry: Registry) -> None:
    await registry.create_identity("Dev")
    await registry.create_identity("dev")
    assert await registry.count_devices() == 2


async def test_create_disabled_device_with_reason(registry: Registry) -> None:
    created = await registry.create_identity("dev1", status="disabled", status_reason="stolen")
    got = await registry.get_identity("dev1")
    assert got is not None
    assert (got.status, got.status_reason) == ("disabled", "stolen")
    assert got == created


async def test_iot_edge_flag_is_stored(registry: Registry) -> None:
    await registry.create_identity("edge1", iot_edge=True)
    got = await registry.get_identity("edge1")
    assert got is not None and got.iot_edge


async def test_invalid_status_is_refused(registry: Registry) -> None:
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT, "enabled"):
        await registry.create_identity("dev1", status="Enabled")
    assert await registry.get_identity("dev1") is None


async def test_duplicate_device(registry: Registry) -> None:
    first = await registry.create_identity("dev1")
    with raises_hub_error(ErrorKind.DEVICE_ALREADY_EXISTS, "dev1"):
        await registry.create_identity("dev1")
    assert await registry.get_identity("dev1") == first


# -- modules ------------------------------------------------------------------------------------------------


async def test_create_module(registry: Registry) -> None:
    await registry.create_identity("dev1")
    module = await registry.create_identity("dev1", "mod-a")
    assert (module.device_id, module.module_id, module.key) == ("dev1", "mod-a", "dev1/mod-a")
    assert_valid_generated_key(module.keys.primary)
    assert await registry.get_identity("dev1", "mod-a") == module
    device = await registry.get_identity("dev1")
    assert device is not None and device.module_id is None
    assert device.keys != module.keys


async def test_same_module_id_on_two_devices(registry: Registry) -> None:
    await registry.create_identity("dev1")
    await registry.create_identity("dev2")
    a = await registry.create_identity("dev1", "m")
    b = await registry.create_identity("dev2", "m")
    assert a.keys != b.keys


async def test_module_of_unknown_device(registry: Registry) -> None:
    with raises_hub_error(ErrorKind.DEVICE_NOT_FOUND, "ghost"):
        await registry.create_identity("ghost", "mod")
    assert await registry.get_identity("ghost", "mod") is None
    assert await registry.get_identity("ghost") is None


async def test_duplicate_module(registry: Registry) -> None:
    await registry.create_identity("dev1")
    await registry.create_identity("dev1", "m")
    with raises_hub_error(ErrorKind.MODULE_ALREADY_EXISTS, "'m'"):
        await registry.create_identity("dev1", "m")


async def test_modules_are_not_devices(registry: Registry) -> None:
    await registry.create_identity("dev1")
    await registry.create_identity("dev1", "m1")
    await registry.create_identity("dev1", "m2")
    assert await registry.count_devices() == 1
    assert [i.device_id for i in await registry.list_identities()] == ["dev1"]


# -- ids ----------------------------------------------------------------------------------------------------

BAD_IDS = ["", "a b", "a+b", "a#b", "a/b", "dev\n", "dév", "a\x00b", "x" * 129, "tab\t"]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_invalid_device_ids_are_refused(registry: Registry, bad: str) -> None:
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT):
        await registry.create_identity(bad)
    assert await registry.count_devices() == 0


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_invalid_module_ids_are_refused(registry: Registry, bad: str) -> None:
    await registry.create_identity("dev1")
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT):
        await registry.create_identity("dev1", bad)
    assert await registry.list_identities("dev1") == []


@pytest.mark.parametrize("good", ["x" * 128, "-.%_*?!(),:=@$'", "A1", "a.b-c_d"])
async def test_valid_unusual_ids_are_accepted(registry: Registry, good: str) -> None:
    await registry.create_identity(good)
    await registry.create_identity(good, good)
    assert (await registry.get_identity(good)) is not None
    assert (await registry.get_identity(good, good)) is not None


# -- update -------------------------------------------------------------------------------------------------


async def test_update_keys_changes_etag(registry: Registry) -> None:
    created = await registry.create_identity("dev1")
    updated = await registry.update_identity("dev1", keys=GOOD_KEYS, etag=created.etag)
    assert updated.keys == GOOD_KEYS
    assert updated.etag != created.etag
    assert updated.updated_at >= created.updated_at
    assert updated.generation_id == created.generation_id
    assert updated.created_at == created.created_at
    assert await registry.get_identity("dev1") == updated


async def test_every_update_changes_etag(registry: Registry) -> None:
    etags = {(await registry.create_identity("dev1")).etag}
    for _ in range(3):
        etags.add((await registry.update_identity("dev1", status_reason="x")).etag)
    assert len(etags) == 4


async def test_stale_etag_is_refused_and_changes_nothing(registry: Registry) -> None:
    created = await registry.create_identity("dev1")
    await registry.update_identity("dev1", status_reason="first")
    with raises_hub_error(ErrorKind.PRECONDITION_FAILED):
        await registry.update_identity("dev1", keys=GOOD_KEYS, etag=created.etag)
    got = await registry.get_identity("dev1")
    assert got is not None
    assert got.keys == created.keys
    assert got.status_reason == "first"


@pytest.mark.parametrize("etag", [None, "*"])
async def test_unconditional_update(registry: Registry, etag: str | None) -> None:
    await registry.create_identity("dev1")
    await registry.update_identity("dev1", status_reason="moved")
    updated = await registry.update_identity("dev1", etag=etag, status="disabled")
    assert updated.status == "disabled"


async def test_update_status(registry: Registry) -> None:
    created = await registry.create_identity("dev1")
    disabled = await registry.update_identity("dev1", status="disabled", status_reason="maintenance")
    assert (disabled.status, disabled.status_reason) == ("disabled", "maintenance")
    assert disabled.status_updated_at >= created.status_updated_at
    assert disabled.keys == created.keys  # untouched
    enabled = await registry.update_identity("dev1", status="enabled")
    assert enabled.status == "enabled"
    assert enabled.status_reason == "maintenance"  # kept unless given
    got = await registry.get_identity("dev1")
    assert got is not None and got.status == "enabled"


async def test_update_invalid_status(registry: Registry) -> None:
    created = await registry.create_identity("dev1")
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT):
        await registry.update_identity("dev1", status="off")
    assert await registry.get_identity("dev1") == created


async def test_update_module_keys(registry: Registry) -> None:
    await registry.create_identity("dev1")
    module = await registry.create_identity("dev1", "m")
    device_before = await registry.get_identity("dev1")
    updated = await registry.update_identity("dev1", "m", keys=GOOD_KEYS, etag=module.etag)
    assert updated.keys == GOOD_KEYS and updated.etag != module.etag
    assert await registry.get_identity("dev1") == device_before


async def test_update_unknown(registry: Registry) -> None:
    with raises_hub_error(ErrorKind.DEVICE_NOT_FOUND):
        await registry.update_identity("nobody", status="disabled")
    await registry.create_identity("dev1")
    with raises_hub_error(ErrorKind.MODULE_NOT_FOUND):
        await registry.update_identity("dev1", "nomod", status_reason="x")


# -- delete -------------------------------------------------------------------------------------------------


async def test_delete_device(registry: Registry) -> None:
    created = await registry.create_identity("dev1")
    await registry.create_identity("dev2")
    await registry.delete_identity("dev1", etag=created.etag)
    assert await registry.get_identity("dev1") is None
    assert await registry.get_identity("dev2") is not None
    assert await registry.count_devices() == 1


async def test_delete_with_stale_etag_is_refused(registry: Registry) -> None:
    created = await registry.create_identity("dev1")
    await registry.update_identity("dev1", status_reason="x")
    with raises_hub_error(ErrorKind.PRECONDITION_FAILED):
        await registry.delete_identity("dev1", etag=created.etag)
    assert await registry.get_identity("dev1") is not None
    await registry.delete_identity("dev1", etag="*")
    assert await registry.get_identity("dev1") is None


async def test_delete_unknown(registry: Registry) -> None:
    with raises_hub_error(ErrorKind.DEVICE_NOT_FOUND):
        await registry.delete_identity("nobody")
    await registry.create_identity("dev1")
    with raises_hub_error(ErrorKind.MODULE_NOT_FOUND):
        await registry.delete_identity("dev1", "nomod")


async def test_delete_device_cascades_to_its_modules_only(registry: Registry) -> None:
    for device in ("dev1", "dev1x", "dev2"):
        await registry.create_identity(device)
        await registry.create_identity(device, "m")
    await registry.create_identity("dev1", "n")
    await registry.delete_identity("dev1")
    assert await registry.get_identity("dev1", "m") is None
    assert await registry.get_identity("dev1", "n") is None
    assert await registry.list_identities("dev1") == []
    assert await registry.get_identity("dev1x", "m") is not None
    assert await registry.get_identity("dev2", "m") is not None
    # the id is free again, with no modules left behind
    await registry.create_identity("dev1")
    assert await registry.list_identities("dev1") == []


async def test_delete_module_keeps_device(registry: Registry) -> None:
    await registry.create_identity("dev1")
    await registry.create_identity("dev1", "m")
    await registry.create_identity("dev1", "n")
    await registry.delete_identity("dev1", "m")
    assert await registry.get_identity("dev1") is not None
    assert await registry.get_identity("dev1", "m") is None
    assert [i.module_id for i in await registry.list_identities("dev1")] == ["n"]


# -- list / count -------------------------------------------------------------------------------------------


async def test_list_devices_in_id_order(registry: Registry) -> None:
    """Ids are case-sensitive ASCII and ordered by code point (PostgreSQL: COLLATE "C"), the order
    ``after`` paging relies on."""
    for device in ("c", "a", "B", "b"):
        await registry.create_identity(device)
    listed = await registry.list_identities()
    assert [i.device_id for i in listed] == sorted(["c", "a", "B", "b"])
    assert all(isinstance(i, Identity) and i.module_id is None for i in listed)


async def test_list_paging_with_limit_and_after(registry: Registry) -> None:
    ids = [f"dev{i:02d}" for i in range(7)]
    for device in reversed(ids):
        await registry.create_identity(device)
    pages: list[list[str]] = []
    after = None
    while page := await registry.list_identities(limit=3, after=after):
        pages.append([i.device_id for i in page])
        after = page[-1].device_id
    assert pages == [ids[0:3], ids[3:6], ids[6:7]]
    assert [i.device_id for i in await registry.list_identities(after="dev03")] == ids[4:]
    assert [i.device_id for i in await registry.list_identities(after="dev035", limit=1)] == ["dev04"]


async def test_list_modules_of_a_device(registry: Registry) -> None:
    await registry.create_identity("dev1")
    await registry.create_identity("dev2")
    for module in ("z", "a", "m"):
        await registry.create_identity("dev1", module)
    await registry.create_identity("dev2", "other")
    modules = await registry.list_identities("dev1")
    assert [(i.device_id, i.module_id) for i in modules] == [("dev1", "a"), ("dev1", "m"), ("dev1", "z")]
    assert [i.module_id for i in await registry.list_identities("dev1", limit=1, after="a")] == ["m"]
    assert await registry.list_identities("dev3") == []


async def test_count_devices(registry: Registry) -> None:
    assert await registry.count_devices() == 0
    for i in range(5):
        await registry.create_identity(f"d{i}")
    await registry.create_identity("d0", "m")
    assert await registry.count_devices() == 5
    await registry.delete_identity("d0")
    assert await registry.count_devices() == 4


async def test_another_registry_object_sees_writes(registry: Registry, other: Registry) -> None:
    created = await registry.create_identity("dev1")
    assert await other.get_identity("dev1") == created
    updated = await other.update_identity("dev1", keys=GOOD_KEYS)
    assert await registry.get_identity("dev1") == updated
    await registry.delete_identity("dev1")
    assert await other.get_identity("dev1") is None
