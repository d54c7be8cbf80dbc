"""Phase 4: ``serve --workers N`` against ``--workers 1`` on this machine, as a ratio of calls/s.

The same experiment as phase 1 (wrk → ``POST /twins/{id}/methods`` → farm devices), run twice on
fresh hubs: one process, then N worker processes sharing the ports (``SO_REUSEPORT``) and joined by
the private nats-server the parent starts for them. With N workers a call reaches the worker that
holds its device's connection with probability 1/N; the others cross through NATS.

Nothing is pinned in this phase (the workers need every CPU), so the load generator (wrk and the
device farm) and nats-server share the CPUs with the hub: on a 2-CPU machine the ratio measures what
a second worker gains when the whole machine is busy, not the scaling of the hub alone.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.calls import DEVICE_PREFIX, CallRun, describe, measure
from bench.common import CpuPlan, progress
from bench.farm import FarmConfig, FarmProcess
from bench.hubproc import Hub, new_device_key, register_devices
from bench.wrk import run_wrk, write_script

TARGET_RATIO = 1.6


@dataclass
class WorkersResult:
    workers: int
    devices: int
    cpus: int
    runs: dict[str, list[CallRun]] = field(default_factory=dict)
    """``"1"`` and ``"N"`` → one run per concurrency."""
    best: dict[str, float] = field(default_factory=dict)
    ratio: float = 0.0
    target: float = TARGET_RATIO

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _one(
    workers: int, devices: int, concurrency: list[int], seconds: int, warmup: int, workdir: Path
) -> list[CallRun]:
    plan = CpuPlan(None, None)
    hub = Hub(
        data_dir=workdir / f"hub-workers-{workers}",
        nofile=devices + 4096,
        args=["--workers", str(workers)] if workers > 1 else [],
    )
    progress(f"workers: starting the hub with --workers {workers} (not pinned)")
    hub.start()
    farm: FarmProcess | None = None
    runs: list[CallRun] = []
    try:
        key = new_device_key()
        ids = [f"{DEVICE_PREFIX}{i:06d}" for i in range(devices)]
        register_devices(hub, ids, key)
        farm = FarmProcess(
            FarmConfig(host="127.0.0.1", port=hub.mqtt_port, prefix=DEVICE_PREFIX, count=devices, key=key)
        )
        online = farm.wait_online()
        if online["failed"]:
            raise RuntimeError(f"{online['failed']} devices could not connect: {online['errors']}")
        script = write_script(
            workdir / f"calls-w{workers}.lua", prefix=DEVICE_PREFIX, count=devices, token=hub.owner_token
        )
        threads = os.cpu_count() or 1
        if warmup:
            run_wrk(hub.url, script, connections=max(concurrency), seconds=warmup, threads=threads)
        for c in concurrency:
            progress(f"workers: --workers {workers}, {c} calls in flight for {seconds} s")

            def once(c: int = c) -> tuple[int, float, int, dict[str, float], float]:
                r = run_wrk(hub.url, script, connections=c, seconds=seconds, threads=threads)
                return r.requests, r.seconds, r.error_count, r.latency_ms, r.cpu_s

            run = measure(f"methodhub --workers {workers}", c, hub.cpu, farm, plan, once)
            runs.append(run)
            progress("  " + describe(run))
    except BaseException:
        if hub.alive():
            progress("workers: hub log tail:\n" + hub.log_tail())
        raise
    finally:
        if farm is not None:
            farm.stop()
        hub.stop()
    return runs


def run_workers(
    workers: int, devices: int, concurrency: list[int], seconds: int, warmup: int, workdir: Path
) -> WorkersResult:
    result = WorkersResult(workers=workers, devices=devices, cpus=len(os.sched_getaffinity(0)))
    for n in (1, workers):
        runs = _one(n, devices, concurrency, seconds, warmup, workdir)
        result.runs[str(n)] = runs
        result.best[str(n)] = max((r.calls_per_s for r in runs), default=0.0)
    single = result.best["1"]
    result.ratio = result.best[str(workers)] / single if single else 0.0
    progress(
        f"workers: --workers {workers} {result.best[str(workers)]:,.0f} calls/s vs --workers 1 "
        f"{single:,.0f} calls/s: ×{result.ratio:.2f} (target ×{TARGET_RATIO:g})"
    )
    return result
