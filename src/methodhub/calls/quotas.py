"""Rate limits (quotas) on what callers and devices ask of a hub: token buckets, protocol-free.

Azure IoT Hub and Alibaba Cloud protect their services with throttles that answer "too many
requests" instead of falling over; a hub with :class:`Quotas` does the same. Each limit is a
:class:`TokenBucket`: ``rate`` tokens per second refill it up to ``burst``; a request takes one
token, or is refused with the seconds until one is there (what a front door puts in its
``Retry-After``). The front doors ask, and render the refusal in their cloud's words::

    quotas = Quotas(QuotaLimits(method_calls_per_second=100), on_throttled=metrics.throttled.inc)
    quotas.check_call(policy)       # raises Throttled("method_calls", 0.01) past the rate
    quotas.check(quotas.registry)   # one registry operation

Cost: a limit that is off is ``None`` and costs one attribute test; one that is on costs a clock
read and a few float operations (``python -m bench.quotas`` measures both, ≪ 1 µs).

A hub-wide limit in a cluster is approximated by per-node shares: each node enforces
``limit / nodes`` (:attr:`QuotaLimits.nodes`), which is exact while callers spread over the nodes
evenly (a load balancer in front of the REST API) and conservative otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from methodhub.errors import ErrorKind, HubError

__all__ = ["QuotaLimits", "Quotas", "Throttled", "TokenBucket"]

MIN_BURST = 1.0
"""A bucket holds at least one token, so a rate below 1/s still lets a request through now and then."""
DEFAULT_BURST_SECONDS = 1.0
"""Without an explicit burst, a bucket holds one second of its rate: short bursts pass, a sustained
excess is refused within a second. (Azure shapes traffic over minutes; a hub that wants that sets
``burst_seconds`` higher.)"""
POLICY_BUCKETS_MAX = 10_000
"""Per-policy buckets kept at most; past it the full ones (idle callers) are dropped. There are as
many policies as an operator creates, so this is a guard, not a working limit."""


class Throttled(HubError):
    """A request over a quota: ``THROTTLED`` with the limit's name and the seconds to wait."""

    __slots__ = ("limit", "retry_after")

    def __init__(self, limit: str, retry_after: float, message: str | None = None) -> None:
        super().__init__(
            ErrorKind.THROTTLED,
            message
            or f"The hub's {limit.replace('_', ' ')} quota is exhausted; retry in "
            f"{max(retry_after, 0.001):.3g} s.",
        )
        self.limit = limit
        self.retry_after = retry_after


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` held; starts full.

    Args:
        rate: tokens per second (> 0).
        burst: tokens held at most (default: one second of ``rate``, at least 1).
        clock: seconds, monotonic (default :func:`time.monotonic`; tests pass a fake one).
    """

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        if not rate > 0:
            raise ValueError(f"rate must be above 0, not {rate!r}")
        self.rate = float(rate)
        self.burst = max(MIN_BURST, float(burst if burst is not None else rate * DEFAULT_BURST_SECONDS))
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()

    def take(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens if they are there: returns 0.0. Otherwise takes nothing and returns
        the seconds until they will be (> 0). A cost above ``burst`` never passes: callers keep
        costs at or below ``burst`` (every caller here takes 1, and ``burst`` is at least 1)."""
        now = self._clock()
        tokens = self._tokens + (now - self._stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self._stamp = now
        if tokens >= cost:
            self._tokens = tokens - cost
            return 0.0
        self._tokens = tokens
        return (cost - tokens) / self.rate

    @property
    def full(self) -> bool:
        """Whether the bucket would be full now (its owner has been idle)."""
        return self._tokens + (self._clock() - self._stamp) * self.rate >= self.burst


@dataclass(slots=True, frozen=True)
class QuotaLimits:
    """The rates a hub enforces (per second; ``None`` = no limit). Defaults: none.

    The per-hub rates are the whole hub's; each node enforces its share (``rate / nodes``).
    """

    method_calls_per_second: float | None = None
    """Synchronous calls (Azure direct methods, Alibaba RRpc and thing services) per second."""
    method_calls_per_policy_per_second: float | None = None
    """The same per caller: the shared access policy (Azure ``skn``) or AccessKeyId (Alibaba)."""
    device_connects_per_second: float | None = None
    """New device connections (MQTT CONNECT, AMQP CBS put-token of a new identity) per second."""
    registry_operations_per_second: float | None = None
    """Identity registry operations (create, get, list, update, delete) per second."""
    job_device_operations_per_second: float | None = None
    """Device calls jobs start per second (jobs pace to it rather than fail)."""
    burst_seconds: float = DEFAULT_BURST_SECONDS
    """How many seconds of its rate each bucket holds (its burst)."""
    nodes: int = 1
    """Nodes sharing the per-hub limits (``--workers`` multiplies it; a cluster of machines sets it)."""
    preset: str | None = None
    """The preset these came from (``S1``, ``S2``, ``S3``), for ``methodhub status`` and the log."""

    def per_node(self) -> QuotaLimits:
        """These limits divided among :attr:`nodes` (what one node enforces), with ``nodes`` = 1."""
        if self.nodes <= 1:
            return self
        share = 1.0 / self.nodes

        def part(rate: float | None) -> float | None:
            return None if rate is None else rate * share

        return replace(
            self,
            method_calls_per_second=part(self.method_calls_per_second),
            method_calls_per_policy_per_second=part(self.method_calls_per_policy_per_second),
            device_connects_per_second=part(self.device_connects_per_second),
            registry_operations_per_second=part(self.registry_operations_per_second),
            job_device_operations_per_second=part(self.job_device_operations_per_second),
            nodes=1,
        )

    def describe(self) -> str:
        """One line for the log: the rates that are on, e.g. ``method calls 40/s, ...``."""
        parts = [
            f"{name} {rate:g}/s"
            for name, rate in (
                ("method calls", self.method_calls_per_second),
                ("method calls per policy", self.method_calls_per_policy_per_second),
                ("device connects", self.device_connects_per_second),
                ("registry operations", self.registry_operations_per_second),
                ("job device operations", self.job_device_operations_per_second),
            )
            if rate is not None
        ]
        text = ", ".join(parts) or "none"
        text += f" (burst {self.burst_seconds:g} s"
        text += f", 1/{self.nodes} of each per node)" if self.nodes > 1 else ")"
        return f"{self.preset}: {text}" if self.preset else text

    @property
    def any(self) -> bool:
        """Whether any rate is limited."""
        return any(
            rate is not None
            for rate in (
                self.method_calls_per_second,
                self.method_calls_per_policy_per_second,
                self.device_connects_per_second,
                self.registry_operations_per_second,
                self.job_device_operations_per_second,
            )
        )


def _ignore(limit: str) -> None:
    pass


@dataclass(slots=True)
class Quotas:
    """One node's buckets for :class:`QuotaLimits` (already its share: see :meth:`QuotaLimits.per_node`).

    Args:
        limits: the rates; a ``None`` rate has no bucket.
        on_throttled: told the limit's name at each refusal (the hub counts them).
        clock: seconds, monotonic.
    """

    limits: QuotaLimits = field(default_factory=QuotaLimits)
    on_throttled: Callable[[str], None] = _ignore
    clock: Callable[[], float] = time.monotonic
    method_calls: TokenBucket | None = field(init=False, default=None)
    device_connects: TokenBucket | None = field(init=False, default=None)
    registry: TokenBucket | None = field(init=False, default=None)
    _per_policy: dict[str, TokenBucket] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.method_calls = self._bucket(self.limits.method_calls_per_second)
        self.device_connects = self._bucket(self.limits.device_connects_per_second)
        self.registry = self._bucket(self.limits.registry_operations_per_second)

    def _bucket(self, rate: float | None) -> TokenBucket | None:
        if rate is None:
            return None
        return TokenBucket(rate, rate * self.limits.burst_seconds, self.clock)

    def check_call(self, policy: str | None) -> None:
        """One synchronous call by ``policy`` (None: unknown caller, only the hub's rate applies).

        Raises:
            Throttled: ``method_calls`` or ``method_calls_per_policy`` is exhausted.
        """
        bucket = self.method_calls
        if bucket is not None:
            wait = bucket.take()
            if wait:
                self.on_throttled("method_calls")
                raise Throttled("method_calls", wait)
        rate = self.limits.method_calls_per_policy_per_second
        if rate is not None and policy is not None:
            own = self._per_policy.get(policy)
            if own is None:
                own = self._policy_bucket(policy, rate)
            wait = own.take()
            if wait:
                self.on_throttled("method_calls_per_policy")
                raise Throttled(
                    "method_calls_per_policy",
                    wait,
                    f"Policy '{policy}' made more than {rate:g} calls per second; retry in "
                    f"{max(wait, 0.001):.3g} s.",
                )

    def _policy_bucket(self, policy: str, rate: float) -> TokenBucket:
        buckets = self._per_policy
        if len(buckets) >= POLICY_BUCKETS_MAX:
            for name in [name for name, bucket in buckets.items() if bucket.full]:
                del buckets[name]
        bucket = buckets[policy] = TokenBucket(rate, rate * self.limits.burst_seconds, self.clock)
        return bucket

    def check(self, bucket: TokenBucket | None, limit: str) -> None:
        """One request against ``bucket`` (None: no limit), named ``limit`` in the refusal.

        Raises:
            Throttled: the bucket is empty.
        """
        if bucket is not None:
            wait = bucket.take()
            if wait:
                self.on_throttled(limit)
                raise Throttled(limit, wait)

    def connect_wait(self) -> float:
        """0.0 if a new device connection may proceed now, else the seconds to wait (counted as
        throttled ``device_connects``): the gateways refuse it in their protocol's words."""
        bucket = self.device_connects
        if bucket is None:
            return 0.0
        wait = bucket.take()
        if wait:
            self.on_throttled("device_connects")
        return wait


NO_QUOTAS = Quotas()
"""A hub without limits (the default)."""
