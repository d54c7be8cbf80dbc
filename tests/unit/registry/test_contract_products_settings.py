"""Registry contract: Alibaba product devices and hub-wide settings (every backend in conftest.BACKENDS)."""

from __future__ import annotations

import pytest

from methodhub.errors import ErrorKind
from methodhub.registry import Registry
from tests.unit.registry.conftest import NewRegistry
from tests.unit.registry.helpers import raises_hub_error

SECRET = "imported-Secret-0123456789"


async def test_product_device_is_an_ordinary_identity(registry: Registry, other: Registry) -> None:
    start = await registry.last_change_seq()
    device = await registry.create_product_device("a1PK", "dev1", device_secret=SECRET)
    assert (device.device_id, device.product_key, device.device_name) == ("a1PK:dev1", "a1PK", "dev1")
    assert device.device_secret == SECRET
    for reg in (registry, other):
        assert await reg.get_product_device("a1PK", "dev1") == device
        assert await reg.find_product_device("a1PK:dev1") == device
        assert await reg.get_identity("a1PK:dev1") == device.identity
    changes, _ = await registry.changes_since(start)
    assert [(c.kind, c.key) for c in changes] == [("identity", "a1PK:dev1")]


async def test_generated_secret(registry: Registry) -> None:
    device = await registry.create_product_device("a1PK", "dev1", status="disabled")
    assert len(device.device_secret) == 32 and device.device_secret.isalnum()
    assert device.identity.status == "disabled"
    assert await registry.get_product_device("a1PK", "dev1") == device


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("a1:PK", "dev1"), {}),
        (("a1PK", "de"), {}),
        (("a1PK", "dev/1"), {}),
        (("a1PK", "dev2"), {"device_secret": "short"}),
        (("a1PK", "dev2"), {"device_secret": "has spaces in it 0123"}),
        (("a1PK", "dev2"), {"status": "asleep"}),
    ],
)
async def test_bad_product_devices_are_refused(
    registry: Registry, args: tuple[str, str], kwargs: dict[str, str]
) -> None:
    start = await registry.last_change_seq()
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT):
        await registry.create_product_device(*args, **kwargs)
    assert await registry.count_devices() == 0
    assert await registry.changes_since(start) == ([], start)


async def test_duplicate_product_device(registry: Registry) -> None:
    first = await registry.create_product_device("a1PK", "dev1")
    with raises_hub_error(ErrorKind.DEVICE_ALREADY_EXISTS):
        await registry.create_product_device("a1PK", "dev1", device_secret=SECRET)
    assert await registry.get_product_device("a1PK", "dev1") == first


async def test_an_azure_device_of_the_same_id_has_no_names_and_blocks_them(registry: Registry) -> None:
    await registry.create_identity("a1PK:dev3")
    assert await registry.find_product_device("a1PK:dev3") is None
    with raises_hub_error(ErrorKind.DEVICE_ALREADY_EXISTS):
        await registry.create_product_device("a1PK", "dev3")
    assert await registry.get_product_device("a1PK", "dev3") is None


async def test_unknown_product_devices(registry: Registry) -> None:
    assert await registry.get_product_device("a1PK", "nobody") is None
    assert await registry.find_product_device("nobody") is None
    assert await registry.get_product_device("a1PK", "dev\x00") is None


async def test_deleting_the_identity_deletes_its_names(registry: Registry, other: Registry) -> None:
    device = await registry.create_product_device("a1PK", "dev1")
    await registry.create_product_device("a1PK", "dev2")
    await registry.delete_identity("a1PK:dev1")
    assert await other.get_product_device("a1PK", "dev1") is None
    assert await other.find_product_device("a1PK:dev1") is None
    assert await other.get_product_device("a1PK", "dev2") is not None  # same product, still there
    again = await registry.create_product_device("a1PK", "dev1")
    assert again.device_secret != device.device_secret


async def test_product_devices_survive_a_reopen(new_registry: NewRegistry) -> None:
    first = new_registry()
    await first.open()
    device = await first.create_product_device("a1PK", "dev1")
    await first.close()
    second = new_registry()
    await second.open()
    try:
        assert await second.get_product_device("a1PK", "dev1") == device
    finally:
        await second.close()


# -- settings ---------------------------------------------------------------------------------------------


async def test_settings(registry: Registry, other: Registry) -> None:
    assert await registry.get_setting("hostname") is None
    await registry.set_setting("hostname", "hub.example.com")
    assert await other.get_setting("hostname") == "hub.example.com"
    await other.set_setting("hostname", "hub2.example.com")
    assert await registry.get_setting("hostname") == "hub2.example.com"
    assert await registry.get_setting("Hostname") is None


async def test_list_and_count_a_products_devices(registry: Registry, other: Registry) -> None:
    for name in ("dev-a", "dev-b", "dev-c", "dev-d"):
        await registry.create_product_device("a1PK", name)
    await registry.create_product_device("a1Other", "dev-a")
    await registry.create_identity("a1PK:not-named")  # the id's shape, but no Alibaba names
    for reg in (registry, other):
        assert await reg.count_product_devices("a1PK") == 4
        assert await reg.count_product_devices("a1None") == 0
        listed = await reg.list_product_devices("a1PK")
        assert [d.device_name for d in listed] == ["dev-d", "dev-c", "dev-b", "dev-a"]  # newest first
        assert listed[0] == await reg.get_product_device("a1PK", "dev-d")
        page = await reg.list_product_devices("a1PK", limit=2, offset=1)
        assert [d.device_name for d in page] == ["dev-c", "dev-b"]
        assert await reg.list_product_devices("a1PK", offset=4) == []
        assert await reg.list_product_devices("a1\x00PK") == []
    await registry.delete_identity("a1PK:dev-c")
    assert await registry.count_product_devices("a1PK") == 3
    assert [d.device_name for d in await registry.list_product_devices("a1PK")] == ["dev-d", "dev-b", "dev-a"]
