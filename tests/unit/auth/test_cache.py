"""The verified-token cache: hits until expiry, per-owner invalidation, bounded size."""

from __future__ import annotations

from methodhub.auth import VerifiedTokenCache


def test_hit_until_expiry_then_miss() -> None:
    cache = VerifiedTokenCache()
    cache.put("tok", "principal", expiry=100.0, owner="dev1")
    assert cache.get("tok", now=50.0) == "principal"
    assert cache.get("tok", now=99.999) == "principal"
    assert cache.get("tok", now=100.0) is None
    assert len(cache) == 0  # an expired entry is dropped when found
    assert cache.get("tok", now=50.0) is None


def test_unknown_credential_misses() -> None:
    cache = VerifiedTokenCache()
    cache.put("tok", "p", 100.0, "dev1")
    assert cache.get("other", 0.0) is None


def test_put_again_replaces_principal_and_expiry() -> None:
    cache = VerifiedTokenCache()
    cache.put("tok", "old", 100.0, "dev1")
    cache.put("tok", "new", 200.0, "dev1")
    assert len(cache) == 1
    assert cache.get("tok", 150.0) == "new"


def test_invalidate_drops_only_that_owners_entries() -> None:
    cache = VerifiedTokenCache()
    cache.put("a1", "A", 100.0, "dev-a")
    cache.put("a2", "A", 100.0, "dev-a")
    cache.put("b1", "B", 100.0, "dev-b")
    cache.put("p1", ("service", frozenset()), 100.0, "policy:service")
    cache.invalidate("dev-a")
    assert cache.get("a1", 0.0) is None
    assert cache.get("a2", 0.0) is None
    assert cache.get("b1", 0.0) == "B"
    assert cache.get("p1", 0.0) is not None
    cache.invalidate("policy:service")
    assert cache.get("p1", 0.0) is None
    assert len(cache) == 1


def test_invalidate_unknown_owner_is_harmless() -> None:
    cache = VerifiedTokenCache()
    cache.put("a", "A", 100.0, "dev-a")
    cache.invalidate("nobody")
    assert cache.get("a", 0.0) == "A"


def test_entries_added_after_invalidation_are_kept() -> None:
    cache = VerifiedTokenCache()
    cache.put("old", "A", 100.0, "dev-a")
    cache.invalidate("dev-a")
    cache.put("new", "A", 100.0, "dev-a")
    assert cache.get("new", 0.0) == "A"
    assert cache.get("old", 0.0) is None


def test_expired_then_reput_entry_is_still_invalidated_by_owner() -> None:
    cache = VerifiedTokenCache()
    cache.put("tok", "A", 10.0, "dev-a")
    assert cache.get("tok", 20.0) is None
    cache.put("tok", "A", 100.0, "dev-a")
    cache.invalidate("dev-a")
    assert cache.get("tok", 20.0) is None


def test_clear() -> None:
    cache = VerifiedTokenCache()
    cache.put("a", "A", 100.0, "dev-a")
    cache.put("b", "B", 100.0, "dev-b")
    cache.clear()
    assert len(cache) == 0
    assert cache.get("a", 0.0) is None


def test_full_cache_drops_the_oldest_half() -> None:
    cache = VerifiedTokenCache(max_entries=10)
    for i in range(10):
        cache.put(f"t{i}", i, 100.0, f"dev{i}")
    assert len(cache) == 10
    cache.put("t10", 10, 100.0, "dev10")
    assert len(cache) == 6
    assert all(cache.get(f"t{i}", 0.0) is None for i in range(5))
    assert [cache.get(f"t{i}", 0.0) for i in range(5, 11)] == [5, 6, 7, 8, 9, 10]
    # owners of evicted entries are forgotten too: invalidating them touches nothing left
    cache.invalidate("dev0")
    assert len(cache) == 6


def test_refreshing_an_entry_of_a_full_cache_evicts_nothing() -> None:
    cache = VerifiedTokenCache(max_entries=4)
    for i in range(4):
        cache.put(f"t{i}", i, 100.0, "dev")
    cache.put("t0", "again", 200.0, "dev")
    assert len(cache) == 4
    assert cache.get("t0", 150.0) == "again"


def test_size_stays_bounded_under_many_distinct_tokens() -> None:
    cache = VerifiedTokenCache(max_entries=100)
    for i in range(1000):
        cache.put(f"t{i}", i, 100.0, f"dev{i % 7}")
        assert len(cache) <= 100
    assert cache.get("t999", 0.0) == 999
