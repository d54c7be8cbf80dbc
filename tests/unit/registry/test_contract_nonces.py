"""Registry contract: signature nonces shared by every process using the registry (every backend)."""

from __future__ import annotations

import asyncio

from methodhub.registry import Registry

NOW = 1_800_000_000.0


async def test_a_nonce_is_used_once_until_it_expires(registry: Registry, other: Registry) -> None:
    assert await registry.use_nonce("owner\nn-1", NOW + 900, NOW) is True
    assert await registry.use_nonce("owner\nn-1", NOW + 900, NOW + 1) is False
    # another process (worker, node) on the same registry sees it too
    assert await other.use_nonce("owner\nn-1", NOW + 900, NOW + 2) is False
    assert await other.use_nonce("service\nn-1", NOW + 900, NOW + 2) is True  # another key
    # once expired, the same nonce may be used again (its old request is refused as expired anyway)
    assert await other.use_nonce("owner\nn-1", NOW + 1900, NOW + 900) is True
    assert await registry.use_nonce("owner\nn-1", NOW + 1900, NOW + 901) is False


async def test_concurrent_uses_of_one_nonce_admit_exactly_one(registry: Registry, other: Registry) -> None:
    results = await asyncio.gather(
        *(reg.use_nonce("owner\nrace", NOW + 900, NOW) for reg in (registry, other) * 5)
    )
    assert sorted(results) == [False] * 9 + [True]


async def test_many_nonces_with_sweeps_of_expired_ones(registry: Registry) -> None:
    for n in range(2100):  # crosses the every-1000th-use sweep twice
        assert await registry.use_nonce(f"k{n}", NOW + n, NOW + n - 10) is True
    assert await registry.use_nonce("k2099", NOW + 5000, NOW + 2000) is False  # still live
    assert await registry.use_nonce("k5", NOW + 5000, NOW + 2000) is True  # long expired
