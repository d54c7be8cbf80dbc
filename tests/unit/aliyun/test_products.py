"""Alibaba names ↔ methodhub device ids, name rules, secrets, and the registry's product devices."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from methodhub.errors import ErrorKind, HubError
from methodhub.registry import SqliteRegistry, product_device_id, split_product_device_id, validate_device_id
from methodhub.registry.products import DEVICE_NAME_CHARACTERS, generate_device_secret

product_keys = st.text(string.ascii_letters + string.digits, min_size=1, max_size=32)
device_names = st.text("".join(sorted(DEVICE_NAME_CHARACTERS)), min_size=4, max_size=32)


@given(product_keys, device_names, product_keys, device_names)
def test_id_mapping_is_reversible_collision_free_and_a_valid_azure_id(pk1, dn1, pk2, dn2) -> None:  # type: ignore[no-untyped-def]
    device_id = product_device_id(pk1, dn1)
    assert validate_device_id(device_id) == device_id
    assert split_product_device_id(device_id) == (pk1, dn1)
    assert (product_device_id(pk2, dn2) == device_id) == ((pk1, dn1) == (pk2, dn2))


def test_ids_without_the_shape_do_not_split() -> None:
    for device_id in ("pump-17", ":dev1", "a1PK:", "a1PK:abc", "a-1:dev1", "a1PK:dev 1"):
        assert split_product_device_id(device_id) is None, device_id


def test_generated_secrets_look_like_alibabas() -> None:
    secrets = {generate_device_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(len(s) == 32 and s.isalnum() and s.isascii() for s in secrets)


async def test_registry_product_devices(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db")
    await registry.open()
    try:
        device = await registry.create_product_device(
            "a1PK", "dev1", device_secret="imported-Secret-0123456789"
        )
        assert device.device_id == "a1PK:dev1" and device.device_secret == "imported-Secret-0123456789"
        assert await registry.get_product_device("a1PK", "dev1") == device
        assert await registry.find_product_device("a1PK:dev1") == device
        assert await registry.get_identity("a1PK:dev1") == device.identity  # an ordinary identity
        assert (await registry.changes_since(0))[0][-1].key == "a1PK:dev1"  # on the change feed

        for args, kwargs, kind in (
            (("a1PK", "dev1"), {}, ErrorKind.DEVICE_ALREADY_EXISTS),
            (("a1:PK", "dev1"), {}, ErrorKind.INVALID_ARGUMENT),
            (("a1PK", "de"), {}, ErrorKind.INVALID_ARGUMENT),
            (("a1PK", "dev/1"), {}, ErrorKind.INVALID_ARGUMENT),
            (("a1PK", "dev2"), {"device_secret": "short"}, ErrorKind.INVALID_ARGUMENT),
            (("a1PK", "dev2"), {"device_secret": "has spaces in it 0123"}, ErrorKind.INVALID_ARGUMENT),
            (("a1PK", "dev2"), {"status": "asleep"}, ErrorKind.INVALID_ARGUMENT),
        ):
            with pytest.raises(HubError) as raised:
                await registry.create_product_device(*args, **kwargs)
            assert raised.value.kind is kind, args
        assert await registry.get_product_device("a1PK", "dev2") is None

        # An Azure device whose id has the same shape has no Alibaba names, and blocks them.
        await registry.create_identity("a1PK:dev3")
        assert await registry.find_product_device("a1PK:dev3") is None
        with pytest.raises(HubError) as raised:
            await registry.create_product_device("a1PK", "dev3")
        assert raised.value.kind is ErrorKind.DEVICE_ALREADY_EXISTS

        # Deleting the identity deletes its Alibaba names; the name can be registered again.
        await registry.delete_identity("a1PK:dev1")
        assert await registry.get_product_device("a1PK", "dev1") is None
        again = await registry.create_product_device("a1PK", "dev1")
        assert again.device_secret != device.device_secret
    finally:
        await registry.close()


async def test_product_devices_survive_a_reopen(tmp_path: Path) -> None:
    registry = SqliteRegistry(tmp_path / "registry.db")
    await registry.open()
    device = await registry.create_product_device("a1PK", "dev1")
    await registry.close()
    reopened = SqliteRegistry(tmp_path / "registry.db")
    await reopened.open()
    try:
        assert await reopened.get_product_device("a1PK", "dev1") == device
    finally:
        await reopened.close()
