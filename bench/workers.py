"""Phase 4: ``serve --workers N`` against ``--workers 1`` on this machine, as a ratio of calls/s.

The same experiment as phase 1 (wrk → ``POST /twins/{id}/methods`` → farm devices), run twice on
fresh hubs: one process, then N worker processes sharing the ports (``SO_REUSEPORT``) and joined by
the private nats-server the parent starts for them. With N workers a call reaches the worker that
holds its device's connection with probability 1/N; the others cross through NATS.

Nothing is pinned in this phase (the workers need every CPU), so the load generator (wrk and the
device farm) and nats-server share the CPUs with the hub: on a 2-CPU machine the ratio measures what
a second worker gains when the whole machine is busy, not the scaling of the hub alone.

Phase 9 (``--only crossnode``, or ``--crossnode``) measures what that crossing costs in isolation:
two nodes sharing a registry and a private nats-server, every device on node B, and the same calls
entering at B (the device's node) or at A (A → NATS → B → device, and back), at 1 and 64 in flight,
interleaved: calls/s, p50 and CPU per call (both nodes and nats-server), and the differences.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.calls import DEVICE_PREFIX, CallRun, describe, measure
from bench.common import CpuPlan, cpu_seconds, progress
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


# -- phase 9: cross-node calls --------------------------------------------------------------------------

CROSSNODE_LEVELS = (1, 64)


@dataclass
class CrossNodeResult:
    """Phase 9: the devices on node B; calls entering at B (``same``) and at A (``other``: the call
    crosses NATS from A to B and back), the same farm and devices, interleaved per level."""

    devices: int
    cpus: int
    seconds: int
    runs: dict[str, list[CallRun]] = field(default_factory=dict)
    """``"same"`` and ``"other"`` → one run per level; server CPU = both nodes + nats-server."""
    added: list[dict[str, float]] = field(default_factory=list)
    """Per level: what crossing adds — p50 (µs), CPU per call (µs) — and the calls/s ratio other/same."""
    cpu_split: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    """``"same"`` / ``"other"`` → per level, µs of CPU per call of node ``a``, node ``b`` and ``nats``."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def crossnode_added(same: CallRun, other: CallRun) -> dict[str, float]:
    """What a call whose device is on the other node costs more than one on the same node."""
    return {
        "concurrency": same.concurrency,
        "p50_us": (other.latency_ms["p50"] - same.latency_ms["p50"]) * 1000,
        "cpu_us_per_call": (other.server_cpu_s_per_1000 - same.server_cpu_s_per_1000) * 1000,
        "calls_per_s_ratio": other.calls_per_s / same.calls_per_s if same.calls_per_s else 0.0,
    }


def run_crossnode(
    devices: int,
    seconds: int,
    warmup: int,
    workdir: Path,
    concurrency: tuple[int, ...] = CROSSNODE_LEVELS,
) -> CrossNodeResult:
    """Two nodes (``serve --nats URL --registry shared.db``, each with its own data dir, as on two
    machines) and a private nats-server; the farm's devices connect to node B. Not pinned: two hubs,
    nats-server, wrk and the farm share the CPUs, as in phase 4."""
    from methodhub.process.workers import EmbeddedNats, find_nats_server

    binary = find_nats_server()
    if binary is None:
        raise SystemExit("bench: the crossnode phase needs nats-server (scripts/ensure-tools)")
    result = CrossNodeResult(devices=devices, cpus=len(os.sched_getaffinity(0)), seconds=seconds)
    nats = EmbeddedNats(binary)
    nats.start()
    registry = workdir / "crossnode-registry.db"
    nodes: dict[str, Hub] = {}
    farm: FarmProcess | None = None
    plan = CpuPlan(None, None)
    try:
        for name in ("a", "b"):
            nodes[name] = Hub(
                data_dir=workdir / f"crossnode-{name}",
                nofile=devices + 4096,
                args=["--nats", nats.url, "--registry", str(registry)],
            ).start()
        progress(f"crossnode: nodes A and B over nats-server {nats.url} (not pinned)")
        a, b = nodes["a"], nodes["b"]
        key = new_device_key()
        ids = [f"{DEVICE_PREFIX}{i:06d}" for i in range(devices)]
        register_devices(a, ids, key)
        farm = FarmProcess(
            FarmConfig(host="127.0.0.1", port=b.mqtt_port, prefix=DEVICE_PREFIX, count=devices, key=key)
        )
        online = farm.wait_online()
        if online["failed"]:
            raise RuntimeError(f"{online['failed']} devices could not connect: {online['errors']}")
        assert nats.pid is not None
        nats_pid = nats.pid

        def cpu() -> float:
            return a.cpu() + b.cpu() + cpu_seconds(nats_pid)

        threads = os.cpu_count() or 1
        scripts = {
            side: write_script(
                workdir / f"crossnode-{side}.lua", prefix=DEVICE_PREFIX, count=devices, token=hub.owner_token
            )
            for side, hub in (("same", b), ("other", a))
        }
        entry = {"same": b, "other": a}
        if warmup:
            for side in ("same", "other"):
                run_wrk(
                    entry[side].url,
                    scripts[side],
                    connections=max(concurrency),
                    seconds=warmup,
                    threads=threads,
                )
        for i, c in enumerate(concurrency):
            for side in ("same", "other") if i % 2 == 0 else ("other", "same"):
                where = "node B, the devices' node" if side == "same" else "node A, over NATS to B"
                progress(f"crossnode: {c} calls in flight for {seconds} s entering at {where}")

                def once(c: int = c, side: str = side) -> tuple[int, float, int, dict[str, float], float]:
                    r = run_wrk(
                        entry[side].url, scripts[side], connections=c, seconds=seconds, threads=threads
                    )
                    return r.requests, r.seconds, r.error_count, r.latency_ms, r.cpu_s

                before = (a.cpu(), b.cpu(), cpu_seconds(nats_pid))
                run = measure(f"crossnode {side}", c, cpu, farm, plan, once)
                after = (a.cpu(), b.cpu(), cpu_seconds(nats_pid))
                split = {
                    name: (t1 - t0) / max(1, run.calls) * 1e6
                    for name, t0, t1 in zip(("a", "b", "nats"), before, after, strict=True)
                }
                result.runs.setdefault(side, []).append(run)
                result.cpu_split.setdefault(side, []).append({"concurrency": c, **split})
                progress(
                    "  " + describe(run) + f"; µs CPU per call: node A {split['a']:.0f}, node B "
                    f"{split['b']:.0f}, nats-server {split['nats']:.0f}"
                )
        for same, other in zip(result.runs["same"], result.runs["other"], strict=True):
            result.added.append(crossnode_added(same, other))
            progress("crossnode: " + crossnode_line(result.added[-1], asdict(same), asdict(other)))
    except BaseException:
        for name, hub in nodes.items():
            if hub.alive():
                progress(f"crossnode: node {name.upper()} log tail:\n" + hub.log_tail())
        raise
    finally:
        if farm is not None:
            farm.stop()
        for hub in nodes.values():
            hub.stop()
        nats.stop()
    return result


def crossnode_line(added: dict[str, float], same: dict[str, Any], other: dict[str, Any]) -> str:
    """One level's figures: ``same`` and ``other`` are the runs (as JSON) entering at B and at A."""
    s, o = same, other
    return (
        f"c={s['concurrency']}: device on the same node {s['calls_per_s']:,.0f} calls/s, p50 "
        f"{s['latency_ms']['p50']:.3f} ms, {s['server_cpu_s_per_1000'] * 1000:.0f} µs CPU per call; "
        f"on the other node {o['calls_per_s']:,.0f} calls/s, p50 {o['latency_ms']['p50']:.3f} ms, "
        f"{o['server_cpu_s_per_1000'] * 1000:.0f} µs: +{added['p50_us']:.0f} µs p50, "
        f"+{added['cpu_us_per_call']:.0f} µs CPU per call (both nodes + nats-server), "
        f"calls/s ×{added['calls_per_s_ratio']:.2f}"
    )


def crossnode_headline(crossnode: dict[str, Any]) -> list[str]:
    """The headline lines of ``results["crossnode"]``."""
    same = {r["concurrency"]: r for r in crossnode["runs"].get("same", [])}
    other = {r["concurrency"]: r for r in crossnode["runs"].get("other", [])}
    return [
        "crossnode "
        + crossnode_line(added, same[int(added["concurrency"])], other[int(added["concurrency"])])
        for added in crossnode["added"]
    ]


def crossnode_markdown(crossnode: dict[str, Any], runs_table: Callable[[list[Any], str], str]) -> list[str]:
    """The report's section of ``results["crossnode"]`` (``runs_table``: bench.report's table of runs)."""
    parts = [
        f"## Cross-node calls ({crossnode['devices']:,} devices on node B, not pinned)",
        "",
        "The same calls entering at node B (the devices' node) and at node A (over NATS to B and back); "
        f"CPU = both nodes + nats-server, on {crossnode['cpus']} CPUs shared with wrk and the farm.",
        "",
    ]
    for side, title in (("same", "entering at B: same node"), ("other", "entering at A: other node")):
        parts += [f"### {title}", "", runs_table(crossnode["runs"][side], "nodes"), ""]
    rows = [
        f"| {side} | {x['concurrency']} | {x['a']:.0f} | {x['b']:.0f} | {x['nats']:.0f} |"
        for side in ("same", "other")
        for x in crossnode.get("cpu_split", {}).get(side, [])
    ]
    if rows:
        parts += [
            "### µs of CPU per call, by process",
            "",
            "| device on | in flight | node A | node B | nats-server |",
            "|:---|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    return parts
