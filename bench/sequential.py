"""Sequential direct-method round trips through the HTTP API, one paho-mqtt device.

    python bench/sequential.py [--calls 2000] [--warmup 200]

Starts a hub (``methodhub serve`` on free ports, in a temporary data dir), connects one paho
device that answers every call at once, then makes calls one after another with a keep-alive
httpx client, exactly as ``methodhub invoke`` does (minus process start-up). Prints calls/s and
latency percentiles, and for reference the same client's round trip to the hub's ``/health``
(HTTP only, no MQTT leg), measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import Backend, HubProcess, PahoDevice


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(fn, count: int) -> list[float]:  # type: ignore[no-untyped-def]
    samples = []
    for i in range(count):
        started = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - started)
        if count >= 10 and i % (count // 10) == 0:
            print(f"  {i}/{count}", file=sys.stderr, end="\r")
    return samples


def report(name: str, samples: list[float]) -> None:
    total = sum(samples)
    print(
        f"{name:<28} {len(samples) / total:8.0f} /s   p50 {statistics.median(samples) * 1e3:6.3f} ms"
        f"   p99 {percentile(samples, 0.99) * 1e3:6.3f} ms   max {max(samples) * 1e3:6.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hub = HubProcess(Path(tmp) / "data").start()
        device = PahoDevice(hub, "bench-device", hub.create_device("bench-device")).online()
        device.serve(lambda name, payload: (200, payload))
        backend = Backend(hub)
        try:

            def call(i: int) -> None:
                response = backend.invoke("bench-device", "echo", {"i": i})
                assert response.status_code == 200, response.text

            def health(i: int) -> None:
                assert backend.http.get("/health").status_code == 200

            measure(call, args.warmup)
            measure(health, args.warmup)
            print(f"methodhub sequential round trips ({args.calls} each, one paho device, httpx keep-alive)")
            report("HTTP /health (reference)", measure(health, args.calls))
            report("direct method round trip", measure(call, args.calls))
        finally:
            backend.close()
            device.close()
            hub.stop()


if __name__ == "__main__":
    main()
