"""Registry contract: a product's thing models (TSL text per module), on every backend."""

from __future__ import annotations

from methodhub.errors import ErrorKind
from methodhub.registry import Registry
from tests.unit.registry.helpers import raises_hub_error

TSL = '{"services": [{"identifier": "Echo", "callType": "async"}], "schema": "kept as given"}'


async def test_no_tsl_until_one_is_set(registry: Registry) -> None:
    await registry.create_product_device("a1PK", "dev1")
    assert await registry.get_product_tsl("a1PK") is None
    assert await registry.get_product_tsl("nosuch") is None


async def test_set_replace_and_read_from_another_handle(registry: Registry, other: Registry) -> None:
    await registry.create_product_device("a1PK", "dev1")
    await registry.set_product_tsl("a1PK", TSL)
    assert await other.get_product_tsl("a1PK") == TSL  # the text as given, byte for byte
    await other.set_product_tsl("a1PK", '{"services": []}')
    assert await registry.get_product_tsl("a1PK") == '{"services": []}'


async def test_modules_are_separate(registry: Registry) -> None:
    await registry.set_product_tsl("a1PK", TSL)
    await registry.set_product_tsl("a1PK", '{"services": [], "functionBlockId": "m1"}', "m1")
    assert await registry.get_product_tsl("a1PK") == TSL
    assert await registry.get_product_tsl("a1PK", "m1") == '{"services": [], "functionBlockId": "m1"}'
    assert await registry.get_product_tsl("a1PK", "m2") is None
    assert await registry.get_product_tsl("b1PK") is None


async def test_a_tsl_before_the_first_device_creates_the_product(registry: Registry) -> None:
    await registry.set_product_tsl("a1PK", TSL)
    device = await registry.create_product_device("a1PK", "dev1")  # the product exists already: fine
    assert await registry.get_product_device("a1PK", "dev1") == device
    assert await registry.get_product_tsl("a1PK") == TSL


async def test_bad_product_key_is_refused(registry: Registry) -> None:
    with raises_hub_error(ErrorKind.INVALID_ARGUMENT):
        await registry.set_product_tsl("a1:PK", TSL)
    assert await registry.get_product_tsl("a1:PK") is None
