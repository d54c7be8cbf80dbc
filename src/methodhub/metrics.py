"""Process-wide counters, gauges and histograms, rendered in the Prometheus text format at
``GET /metrics`` (docs/metrics.md lists every metric, its labels and what it means).

Deliberately tiny: a counter increment on the hot path is one dict operation, a histogram
observation a dict lookup, a bisect and two increments (no locks: one event loop per process).
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Sequence
from time import perf_counter
from typing import Any

log = logging.getLogger("methodhub.metrics")

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""Upper bounds (seconds) of the latency histograms: 0.1 ms to 30 s, about 2.5x apart (and +Inf)."""

FRONT_DOORS = ("azure", "aliyun", "native", "job")
"""Where a call came in: Azure REST, the Alibaba POP API, a queued call, a job's device call."""
OUTCOMES = ("answered", "offline", "timeout", "error")
"""How a call ended, in ``methodhub_call_duration_seconds``."""
TRANSPORTS = ("mqtt", "mqtt-ws", "amqp", "amqp-ws")

_LISTENER_TRANSPORTS = {
    ("mqtt", "mqtt"): ("mqtt", "false"),
    ("mqtt", "mqtts"): ("mqtt", "true"),
    ("mqtt", "ws"): ("mqtt-ws", "false"),
    ("mqtt", "wss"): ("mqtt-ws", "true"),
    ("amqp", "amqp"): ("amqp", "false"),
    ("amqp", "amqps"): ("amqp", "true"),
    ("amqp", "wss"): ("amqp-ws", "true"),
}
"""(protocol, listener name) → (transport, tls) labels."""


def transport_labels(protocol: str, listener: str) -> tuple[str, str]:
    """The ``transport`` and ``tls`` labels of a device connection on ``listener``."""
    return _LISTENER_TRANSPORTS.get((protocol, listener), (protocol, "false"))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Counter:
    """A monotonically increasing count, optionally split by one label."""

    __slots__ = ("help", "label", "name", "values")

    def __init__(self, name: str, help: str, label: str | None = None) -> None:
        self.name = name
        self.help = help
        self.label = label
        self.values: dict[str, float] = {}

    def inc(self, label_value: str = "", amount: float = 1) -> None:
        values = self.values
        values[label_value] = values.get(label_value, 0) + amount

    def get(self, label_value: str = "") -> float:
        return self.values.get(label_value, 0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        if not self.values and self.label is None:
            lines.append(f"{self.name} 0")
        for value, count in sorted(self.values.items()):
            labels = f'{{{self.label}="{_escape(value)}"}}' if self.label else ""
            lines.append(f"{self.name}{labels} {_number(count)}")
        return lines


class LabeledCounter:
    """A count split by several labels; ``known`` label values are rendered (as 0) from the start,
    so dashboards and alerts see every series before its first event."""

    __slots__ = ("help", "labels", "name", "values")

    def __init__(
        self, name: str, help: str, labels: Sequence[str], known: Iterable[tuple[str, ...]] = ()
    ) -> None:
        self.name = name
        self.help = help
        self.labels = tuple(labels)
        self.values: dict[tuple[str, ...], float] = dict.fromkeys(known, 0)

    def inc(self, *label_values: str) -> None:
        values = self.values
        values[label_values] = values.get(label_values, 0) + 1

    def get(self, *label_values: str) -> float:
        return self.values.get(label_values, 0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        for values, count in sorted(self.values.items()):
            lines.append(f"{self.name}{_labels(self.labels, values)} {_number(count)}")
        return lines


class Gauge:
    """A value read when the metrics are rendered."""

    __slots__ = ("help", "name", "read")

    def __init__(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.name = name
        self.help = help
        self.read = read

    def render(self) -> list[str]:
        return [
            f"# HELP {self.name} {self.help}",
            f"# TYPE {self.name} gauge",
            f"{self.name} {_number(self.read())}",
        ]


class LabeledGauge:
    """Values by label, read when the metrics are rendered: ``read`` returns ``{label values: value}``."""

    __slots__ = ("help", "labels", "name", "read")

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str],
        read: Callable[[], dict[tuple[str, ...], float]],
    ) -> None:
        self.name = name
        self.help = help
        self.labels = tuple(labels)
        self.read = read

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge"]
        for values, value in sorted(self.read().items()):
            lines.append(f"{self.name}{_labels(self.labels, values)} {_number(value)}")
        return lines


class _Series:
    __slots__ = ("counts", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)
        """Observations per bucket (not cumulative; the last one is +Inf's)."""
        self.sum = 0.0


class Histogram:
    """A Prometheus histogram with fixed bucket bounds, split by labels.

    :meth:`observe` is a dict lookup, a bisect and two increments; rendering makes the buckets
    cumulative and adds ``+Inf``, ``_sum`` and ``_count``. ``known`` label values are rendered
    (all zeros) from the start.
    """

    __slots__ = ("bounds", "help", "labels", "name", "series")

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
        known: Iterable[tuple[str, ...]] = (),
    ) -> None:
        self.name = name
        self.help = help
        self.labels = tuple(labels)
        self.bounds = tuple(sorted(buckets))
        self.series: dict[tuple[str, ...], _Series] = {key: _Series(len(self.bounds)) for key in known}
        if not self.labels:
            self.series[()] = _Series(len(self.bounds))

    def observe(self, label_values: tuple[str, ...], value: float) -> None:
        """Count one observation of ``value`` (seconds) for ``label_values``."""
        series = self.series.get(label_values)
        if series is None:
            series = self.series[label_values] = _Series(len(self.bounds))
        series.counts[bisect_left(self.bounds, value)] += 1  # bucket bounds are inclusive ("le")
        series.sum += value

    def count(self, *label_values: str) -> int:
        series = self.series.get(label_values)
        return 0 if series is None else sum(series.counts)

    def render(self) -> list[str]:
        name = self.name
        lines = [f"# HELP {name} {self.help}", f"# TYPE {name} histogram"]
        for values, series in sorted(self.series.items()):
            cumulative = 0
            for bound, count in zip((*self.bounds, float("inf")), series.counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else _number(bound)
                bucket = _labels(self.labels, values, 'le="' + le + '"')
                lines.append(f"{name}_bucket{bucket} {cumulative}")
            labels = _labels(self.labels, values)
            lines.append(f"{name}_sum{labels} {_number(series.sum)}")
            lines.append(f"{name}_count{labels} {cumulative}")
        return lines


Metric = Counter | LabeledCounter | Gauge | LabeledGauge | Histogram


class Metrics:
    """The hub's metrics. One instance per hub, passed to whoever counts."""

    def __init__(self) -> None:
        self.calls = Counter("methodhub_calls_total", "Calls finished, by outcome.", "outcome")
        self.stray_responses = Counter(
            "methodhub_stray_responses_total",
            "Device responses dropped because their request id was unknown, already answered, "
            "or belonged to another device.",
        )
        self.connections = Counter(
            "methodhub_mqtt_connections_total", "MQTT connections accepted (CONNACK 0)."
        )
        self.connects_refused = Counter(
            "methodhub_mqtt_connects_refused_total", "MQTT CONNECTs refused, by reason.", "reason"
        )
        self.protocol_errors = Counter(
            "methodhub_mqtt_protocol_errors_total", "MQTT connections closed for a protocol violation."
        )
        self.telemetry = Counter(
            "methodhub_telemetry_messages_total", "Device-to-cloud messages accepted and discarded."
        )
        self.device_limits = Counter(
            "methodhub_mqtt_limits_total",
            "MQTT connections closed or requests refused by a limit (packet rate, CONNECT deadline, "
            "subscriptions), by limit.",
            "limit",
        )
        self.amqp_connections = Counter(
            "methodhub_amqp_connections_total",
            "AMQP device sessions opened (an identity authorized by put-token or SASL PLAIN and its "
            "session open).",
        )
        self.amqp_auth_refused = Counter(
            "methodhub_amqp_auth_refused_total",
            "AMQP credentials refused, by where they came (put_token, sasl_plain).",
            "reason",
        )
        self.amqp_protocol_errors = Counter(
            "methodhub_amqp_protocol_errors_total",
            "AMQP connections, sessions or links ended for a protocol violation.",
        )
        self.amqp_limits = Counter(
            "methodhub_amqp_limits_total",
            "AMQP connections closed or refused by a limit (connections, put-token deadline), by limit.",
            "limit",
        )
        self.connection_failures = Counter(
            "methodhub_connection_failures_total",
            "Connections closed because serving them failed unexpectedly (a bug: see the log).",
        )
        self.history_dropped = Counter(
            "methodhub_call_history_dropped_total",
            "Call history records dropped unwritten (the store fell behind, or failed to take them).",
        )
        self.call_seconds = Histogram(
            "methodhub_call_duration_seconds",
            "Synchronous call latency from the front door's request to the outcome, by front door "
            "(azure, aliyun, queued, job) and outcome (answered, offline, timeout, error).",
            ("front_door", "outcome"),
            known=[(door, outcome) for door in FRONT_DOORS for outcome in OUTCOMES],
        )
        self.in_flight: dict[str, int] = dict.fromkeys(FRONT_DOORS, 0)
        """Calls started and not yet ended, by front door."""
        self.device_connects = LabeledCounter(
            "methodhub_device_connects_total",
            "Device connections established (authenticated), by transport and TLS.",
            ("transport", "tls"),
            known=sorted(set(_LISTENER_TRANSPORTS.values())),
        )
        self.device_disconnects = LabeledCounter(
            "methodhub_device_disconnects_total",
            "Established device connections ended (by either side), by transport and TLS.",
            ("transport", "tls"),
            known=sorted(set(_LISTENER_TRANSPORTS.values())),
        )
        self.auth_failures = LabeledCounter(
            "methodhub_auth_failures_total",
            "Credentials refused, by side (device, service) and reason.",
            ("side", "reason"),
        )
        self.throttled = Counter(
            "methodhub_throttled_total",
            "Requests refused over a quota (429 / Throttling.User / CONNACK), by limit: method_calls, "
            "method_calls_per_policy, device_connects, registry_operations.",
            "limit",
        )
        self.registry_seconds = Histogram(
            "methodhub_registry_operation_duration_seconds",
            "Registry (SQLite or PostgreSQL) operation durations, queueing for the database thread or "
            "pool included, by operation kind (read, write).",
            ("operation",),
            known=[("read",), ("write",)],
        )
        self.loop_lag = Histogram(
            "methodhub_event_loop_lag_seconds",
            "How late the event loop ran a timer (scheduling delay), measured every "
            f"{LOOP_LAG_INTERVAL:g} s.",
        )
        self.loop_lag_last = 0.0
        self._gauges: list[Gauge | LabeledGauge] = []
        self._refreshers: list[_Refresher] = []
        self.labeled_gauge(
            "methodhub_calls_in_flight",
            "Calls started and not yet ended, by front door.",
            ("front_door",),
            lambda: {(door,): count for door, count in self.in_flight.items()},
        )
        self.gauge(
            "methodhub_event_loop_lag_last_seconds",
            "The event loop's latest scheduling delay.",
            lambda: self.loop_lag_last,
        )

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self._gauges.append(Gauge(name, help, read))

    def labeled_gauge(
        self,
        name: str,
        help: str,
        labels: Sequence[str],
        read: Callable[[], dict[tuple[str, ...], float]],
    ) -> None:
        self._gauges.append(LabeledGauge(name, help, labels, read))

    def stored_gauge(
        self,
        name: str,
        help: str,
        labels: Sequence[str],
        fetch: Callable[[], Awaitable[dict[tuple[str, ...], float]]],
        max_age: float = 5.0,
    ) -> None:
        """A gauge read from the registry: ``fetch`` runs before a scrape renders (:meth:`refresh`),
        at most once per ``max_age`` seconds, so scrapes never hammer the registry."""
        refresher = _Refresher(fetch, max_age)
        self._refreshers.append(refresher)
        self.labeled_gauge(name, help, labels, lambda: refresher.values)

    async def refresh(self) -> None:
        """Bring the stored gauges up to date (those older than their ``max_age``)."""
        for refresher in self._refreshers:
            await refresher.refresh()

    # -- instrumentation -----------------------------------------------------------------------------

    def call_started(self, front_door: str) -> float:
        """A call came in through ``front_door``: one more in flight; returns the time it started
        (``perf_counter()``), for :meth:`call_ended`."""
        self.in_flight[front_door] = self.in_flight.get(front_door, 0) + 1
        return perf_counter()

    def call_ended(self, front_door: str, started: float, result: asyncio.Future[Any]) -> None:
        """The call :meth:`call_started` returned ``started`` for ended with ``result`` (done):
        its latency into the histogram by outcome, one fewer in flight. (The engine calls it from
        the done-callback it has on every call anyway: a callback of its own cost a loop turn's
        dispatch per call.)"""
        elapsed = perf_counter() - started
        self.in_flight[front_door] -= 1
        if result.cancelled():
            outcome = "error"  # the caller gave up (e.g. its HTTP client went away)
        else:
            exc = result.exception()
            kind = getattr(exc, "kind", None)
            outcome = "answered" if exc is None else _CALL_OUTCOMES.get(getattr(kind, "name", ""), "error")
        self.call_seconds.observe((front_door, outcome), elapsed)

    def device_connected(self, protocol: str, listener: str) -> None:
        self.device_connects.inc(*transport_labels(protocol, listener))

    def device_disconnected(self, protocol: str, listener: str) -> None:
        self.device_disconnects.inc(*transport_labels(protocol, listener))

    def auth_failed(self, side: str, reason: str) -> None:
        """Credentials refused: ``side`` is ``device`` or ``service``."""
        self.auth_failures.inc(side, reason)

    def registry_timed(self, operation: str, started: float) -> None:
        """A registry operation of kind ``operation`` that started at ``perf_counter()`` ended now."""
        self.registry_seconds.observe((operation,), perf_counter() - started)

    async def watch_event_loop(self, interval: float = 0.0) -> None:
        """Until cancelled: sleep ``interval`` seconds, observe how much later than asked the loop
        woke up (``methodhub_event_loop_lag_seconds``)."""
        interval = interval or LOOP_LAG_INTERVAL
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + interval
            await asyncio.sleep(interval)
            lag = max(0.0, loop.time() - asked)
            self.loop_lag_last = lag
            self.loop_lag.observe((), lag)

    def render(self) -> str:
        lines: list[str] = []
        items: list[Metric] = [
            self.calls,
            self.stray_responses,
            self.connections,
            self.connects_refused,
            self.protocol_errors,
            self.telemetry,
            self.device_limits,
            self.amqp_connections,
            self.amqp_auth_refused,
            self.amqp_protocol_errors,
            self.amqp_limits,
            self.connection_failures,
            self.history_dropped,
            self.call_seconds,
            self.device_connects,
            self.device_disconnects,
            self.auth_failures,
            self.throttled,
            self.registry_seconds,
            self.loop_lag,
            *self._gauges,
        ]
        for item in items:
            lines.extend(item.render())
        return "\n".join(lines) + "\n"


LOOP_LAG_INTERVAL = 0.5
"""Seconds between two event-loop lag measurements."""
STORED_GAUGE_TIMEOUT = 2.0
"""Seconds a scrape waits for the registry (then it answers with the last values read)."""

_CALL_OUTCOMES = {"DEVICE_OFFLINE": "offline", "CALL_TIMEOUT": "timeout"}


class _Refresher:
    __slots__ = ("fetch", "fetched_at", "max_age", "values")

    def __init__(self, fetch: Callable[[], Awaitable[dict[tuple[str, ...], float]]], max_age: float) -> None:
        self.fetch = fetch
        self.max_age = max_age
        self.fetched_at = float("-inf")
        self.values: dict[tuple[str, ...], float] = {}

    async def refresh(self) -> None:
        now = time.monotonic()
        if now - self.fetched_at < self.max_age:
            return
        self.fetched_at = now  # also when it fails: an unreachable registry is asked again in max_age
        try:
            async with asyncio.timeout(STORED_GAUGE_TIMEOUT):
                self.values = await self.fetch()
        except Exception as exc:  # the scrape still answers, with the last values
            log.warning("metrics: reading a stored gauge failed: %s", exc or type(exc).__name__)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
