"""The metrics types (methodhub.metrics): histogram rendering, the call timer, stored gauges, loop lag."""

from __future__ import annotations

import asyncio
import time

import pytest

from methodhub import metrics as metrics_module
from methodhub.errors import ErrorKind, HubError
from methodhub.metrics import LATENCY_BUCKETS, Histogram, Metrics, transport_labels


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` → value of every sample line."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def test_histogram_buckets_are_cumulative_with_inf_sum_and_count() -> None:
    histogram = Histogram("t_seconds", "Test.", ("door",), buckets=(0.1, 1.0, 10.0))
    for value in (0.05, 0.1, 0.5, 2.0, 99.0):  # 0.1 is on a bound: "le" is inclusive
        histogram.observe(("a",), value)
    lines = histogram.render()
    assert lines[:2] == ["# HELP t_seconds Test.", "# TYPE t_seconds histogram"]
    assert lines[2:] == [
        't_seconds_bucket{door="a",le="0.1"} 2',
        't_seconds_bucket{door="a",le="1"} 3',
        't_seconds_bucket{door="a",le="10"} 4',
        't_seconds_bucket{door="a",le="+Inf"} 5',
        't_seconds_sum{door="a"} 101.65',
        't_seconds_count{door="a"} 5',
    ]
    assert histogram.count("a") == 5 and histogram.count("b") == 0


def test_known_series_render_as_zeros_and_unlabelled_histograms_have_one() -> None:
    histogram = Histogram("t_seconds", "Test.", ("door",), buckets=(1.0,), known=[("x",)])
    assert 't_seconds_bucket{door="x",le="+Inf"} 0' in histogram.render()
    plain = Histogram("p_seconds", "Plain.", buckets=(1.0,))
    plain.observe((), 3.0)
    assert plain.render()[2:] == ['p_seconds_bucket{le="1"} 0', 'p_seconds_bucket{le="+Inf"} 1',
                                  "p_seconds_sum 3", "p_seconds_count 1"]  # fmt: skip


def test_latency_buckets_span_a_tenth_of_a_millisecond_to_thirty_seconds() -> None:
    assert LATENCY_BUCKETS[0] == 0.0001 and LATENCY_BUCKETS[-1] == 30.0
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    metrics.auth_failed("service", 'a"b\\c')
    assert 'methodhub_auth_failures_total{side="service",reason="a\\"b\\\\c"} 1' in metrics.render()


async def test_a_call_is_timed_by_front_door_and_outcome_and_counted_in_flight() -> None:
    metrics = Metrics()
    loop = asyncio.get_running_loop()
    answered, offline, timeout, failed, abandoned = (loop.create_future() for _ in range(5))
    calls = [
        ("azure", answered),
        ("aliyun", offline),
        ("native", timeout),
        ("job", failed),
        ("azure", abandoned),
    ]
    started = [metrics.call_started(door) for door, _ in calls]
    assert metrics.in_flight == {"azure": 2, "aliyun": 1, "native": 1, "job": 1}
    answered.set_result(object())
    offline.set_exception(HubError(ErrorKind.DEVICE_OFFLINE))
    timeout.set_exception(HubError(ErrorKind.CALL_TIMEOUT))
    failed.set_exception(HubError(ErrorKind.DEVICE_NOT_FOUND))
    abandoned.cancel()
    for (door, future), at in zip(calls, started, strict=True):
        metrics.call_ended(door, at, future)
    seconds = metrics.call_seconds
    assert seconds.count("azure", "answered") == 1
    assert seconds.count("aliyun", "offline") == 1
    assert seconds.count("native", "timeout") == 1
    assert seconds.count("job", "error") == 1
    assert seconds.count("azure", "error") == 1  # the caller gave up
    assert metrics.in_flight == dict.fromkeys(("azure", "aliyun", "native", "job"), 0)
    text = samples(metrics.render())
    assert text['methodhub_calls_in_flight{front_door="azure"}'] == 0
    assert text['methodhub_call_duration_seconds_count{front_door="azure",outcome="answered"}'] == 1
    # every front door and outcome is there from the start (dashboards see every series)
    assert text['methodhub_call_duration_seconds_count{front_door="job",outcome="offline"}'] == 0
    for future in (offline, timeout, failed):
        future.exception()


def test_transport_labels_by_listener() -> None:
    assert transport_labels("mqtt", "mqtt") == ("mqtt", "false")
    assert transport_labels("mqtt", "mqtts") == ("mqtt", "true")
    assert transport_labels("mqtt", "ws") == ("mqtt-ws", "false")
    assert transport_labels("mqtt", "wss") == ("mqtt-ws", "true")
    assert transport_labels("amqp", "amqps") == ("amqp", "true")
    assert transport_labels("amqp", "wss") == ("amqp-ws", "true")


async def test_a_stored_gauge_is_read_at_most_once_per_max_age() -> None:
    metrics = Metrics()
    reads: list[int] = []

    async def fetch() -> dict[tuple[str, ...], float]:
        reads.append(1)
        return {("queued",): float(len(reads))}

    metrics.stored_gauge("t_calls", "Test.", ("state",), fetch, max_age=5.0)
    assert 't_calls{state="queued"}' not in metrics.render()  # nothing before the first refresh
    for _ in range(3):  # three scrapes in a row: one read
        await metrics.refresh()
    assert len(reads) == 1 and samples(metrics.render())['t_calls{state="queued"}'] == 1
    metrics._refreshers[0].fetched_at -= 5.0  # five seconds later
    await metrics.refresh()
    assert len(reads) == 2 and samples(metrics.render())['t_calls{state="queued"}'] == 2


async def test_a_failing_stored_gauge_keeps_its_last_values() -> None:
    metrics = Metrics()

    async def fetch() -> dict[tuple[str, ...], float]:
        raise HubError(ErrorKind.SERVICE_UNAVAILABLE)

    metrics.stored_gauge("t_calls", "Test.", ("state",), fetch)
    await metrics.refresh()  # no exception: the scrape still answers
    assert "# TYPE t_calls gauge" in metrics.render()


async def test_event_loop_lag_is_observed() -> None:
    metrics = Metrics()
    task = asyncio.get_running_loop().create_task(metrics.watch_event_loop(0.01))
    await asyncio.sleep(0.005)
    time.sleep(0.05)  # noqa: ASYNC251 (block the loop on purpose: the probe wakes about 40 ms late)
    await asyncio.sleep(0.03)
    task.cancel()
    assert metrics.loop_lag.count() >= 1
    assert metrics.loop_lag_last >= 0.0
    assert metrics.loop_lag.series[()].sum >= 0.03
    assert 'methodhub_event_loop_lag_seconds_bucket{le="+Inf"}' in metrics.render()


async def test_a_slow_registry_does_not_hold_a_scrape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "STORED_GAUGE_TIMEOUT", 0.01)
    metrics = Metrics()

    async def fetch() -> dict[tuple[str, ...], float]:
        await asyncio.sleep(3600)
        return {}

    metrics.stored_gauge("t_calls", "Test.", ("state",), fetch)
    async with asyncio.timeout(5):
        await metrics.refresh()
