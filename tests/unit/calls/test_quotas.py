"""Token buckets and the node's quotas, on a fake clock."""

from __future__ import annotations

import pytest

from methodhub.calls.quotas import POLICY_BUCKETS_MAX, QuotaLimits, Quotas, Throttled, TokenBucket
from methodhub.errors import ErrorKind


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_starts_full_and_refuses_past_its_burst_with_the_wait() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=8, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.take()
    assert wait == pytest.approx(0.125)  # one token at 8/s
    clock.now += 0.0625
    assert bucket.take() == pytest.approx(0.0625)  # half a token there: the other half to wait for
    clock.now += 0.0625
    assert bucket.take() == 0.0


def test_a_bucket_refills_at_its_rate_up_to_its_burst_only() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=4, clock=clock)
    for _ in range(4):
        assert bucket.take() == 0.0
    clock.now += 3600  # idle for an hour: full again, not 7200 tokens
    taken = 0
    while bucket.take() == 0.0:
        taken += 1
    assert taken == 4
    assert bucket.full is False
    clock.now += 2
    assert bucket.full is True


def test_a_refused_request_takes_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    assert bucket.take() == 0.0
    for _ in range(100):  # hammering while empty does not push the next token further away
        assert bucket.take() == pytest.approx(1.0)
    clock.now += 1.0
    assert bucket.take() == 0.0


def test_default_burst_is_one_second_of_rate_and_at_least_one() -> None:
    assert TokenBucket(50).burst == 50
    assert TokenBucket(0.1).burst == 1  # a slow rate still lets one request through
    with pytest.raises(ValueError, match="rate must be above 0"):
        TokenBucket(0)


def test_the_hub_call_rate_refuses_with_a_typed_error_and_counts() -> None:
    clock = FakeClock()
    refused: list[str] = []
    quotas = Quotas(QuotaLimits(method_calls_per_second=2), on_throttled=refused.append, clock=clock)
    quotas.check_call("service")
    quotas.check_call(None)
    with pytest.raises(Throttled) as caught:
        quotas.check_call("service")
    assert caught.value.kind is ErrorKind.THROTTLED
    assert caught.value.limit == "method_calls"
    assert caught.value.retry_after == pytest.approx(0.5)
    assert refused == ["method_calls"]
    clock.now += 0.5
    quotas.check_call("service")


def test_the_per_policy_rate_is_each_callers_own() -> None:
    clock = FakeClock()
    quotas = Quotas(QuotaLimits(method_calls_per_policy_per_second=1), clock=clock)
    quotas.check_call("alice")
    quotas.check_call("bob")  # bob has his own bucket
    quotas.check_call(None)  # no caller known: only the hub's rate applies (none here)
    with pytest.raises(Throttled) as caught:
        quotas.check_call("alice")
    assert caught.value.limit == "method_calls_per_policy"
    assert "'alice'" in caught.value.message


def test_idle_policy_buckets_are_dropped_past_the_cap() -> None:
    clock = FakeClock()
    quotas = Quotas(QuotaLimits(method_calls_per_policy_per_second=1), clock=clock)
    for n in range(POLICY_BUCKETS_MAX):
        quotas.check_call(f"p{n}")
    clock.now += 10  # all idle (full) again
    quotas.check_call("newcomer")
    assert len(quotas._per_policy) == 1


def test_limits_off_have_no_bucket_and_never_refuse() -> None:
    quotas = Quotas(QuotaLimits())
    assert quotas.method_calls is None and quotas.registry is None and quotas.device_connects is None
    for _ in range(10_000):
        quotas.check_call("service")
        quotas.check(quotas.registry, "registry_operations")
        assert quotas.connect_wait() == 0.0
    assert QuotaLimits().any is False


def test_registry_and_connect_buckets() -> None:
    clock = FakeClock()
    refused: list[str] = []
    quotas = Quotas(
        QuotaLimits(registry_operations_per_second=1, device_connects_per_second=1),
        on_throttled=refused.append,
        clock=clock,
    )
    quotas.check(quotas.registry, "registry_operations")
    with pytest.raises(Throttled, match="registry operations"):
        quotas.check(quotas.registry, "registry_operations")
    assert quotas.connect_wait() == 0.0
    assert quotas.connect_wait() == pytest.approx(1.0)
    assert refused == ["registry_operations", "device_connects"]


def test_burst_seconds_scale_every_bucket() -> None:
    quotas = Quotas(
        QuotaLimits(method_calls_per_second=40, registry_operations_per_second=2, burst_seconds=60)
    )
    assert quotas.method_calls is not None and quotas.method_calls.burst == 2400
    assert quotas.registry is not None and quotas.registry.burst == 120


def test_per_node_shares_divide_every_rate() -> None:
    limits = QuotaLimits(
        method_calls_per_second=90,
        method_calls_per_policy_per_second=30,
        device_connects_per_second=300,
        registry_operations_per_second=3,
        job_device_operations_per_second=9,
        nodes=3,
    )
    share = limits.per_node()
    assert (
        share.method_calls_per_second,
        share.method_calls_per_policy_per_second,
        share.device_connects_per_second,
        share.registry_operations_per_second,
        share.job_device_operations_per_second,
        share.nodes,
    ) == (30, 10, 100, 1, 3, 1)
    assert QuotaLimits(method_calls_per_second=5).per_node().method_calls_per_second == 5


def test_describe_names_the_rates_that_are_on() -> None:
    assert QuotaLimits().describe() == "none (burst 1 s)"
    limits = QuotaLimits(method_calls_per_second=40, device_connects_per_second=100, nodes=2, preset="S1")
    assert (
        limits.describe() == "S1: method calls 40/s, device connects 100/s (burst 1 s, 1/2 of each per node)"
    )
