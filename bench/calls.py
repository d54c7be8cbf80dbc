"""Phases 1 and 2: call throughput and latency through the hub's HTTP API, and the Mosquitto reference.

Both phases run the same closed-loop experiment at each concurrency: ``N`` farm devices answer at
once, a caller keeps ``concurrency`` calls in flight for ``seconds``, and we read the server's CPU
time from /proc around the run. Hub: wrk → ``POST /twins/{id}/methods`` → MQTT → farm.
Reference: Python MQTT caller → Mosquitto → farm (``relay`` dialect) and back.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import CpuPlan, progress, tcp_counters
from bench.farm import FarmConfig, FarmProcess
from bench.hubproc import Hub, new_device_key, register_devices
from bench.profiling import PySpy
from bench.reference import CallerConfig, Mosquitto, run_caller
from bench.syscalls import Tracer, per_call, voluntary_switches
from bench.wrk import run_wrk, write_script

DEVICE_PREFIX = "bench-"


@dataclass
class CallRun:
    """One system at one concurrency."""

    system: str
    concurrency: int
    calls: int
    seconds: float
    calls_per_s: float
    errors: int
    latency_ms: dict[str, float]
    server_cpu_s: float
    server_cpu_s_per_1000: float
    server_cpu_util: float
    caller_cpu_s: float
    farm_cpu_s: float
    loadgen_cpu_util: float
    """(caller + farm CPU seconds) / wall seconds / CPUs given to the load generator: near 1.0 the
    load generator, not the server, may be what limits the rate."""
    gc: dict[str, float] | None = None
    """The hub's garbage-collector pauses during the run (None for Mosquitto)."""
    tcp: dict[str, int] | None = None
    """Listen-queue overflows and SYN retransmits in this network namespace during the run: a connect
    of wrk's that waited for a SYN retransmit (1 s) shows as a ~1 s latency outlier."""
    wakeups: dict[str, float] | None = None
    """With ``--syscalls``: voluntary context switches per call of the ``farm``, the ``caller`` (wrk,
    or the reference's caller) and the ``server`` (bench/syscalls.py)."""


@dataclass
class SystemResult:
    system: str
    devices: int
    runs: list[CallRun] = field(default_factory=list)
    peak_rss_bytes: int = 0
    setup: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    syscalls: dict[str, Any] = field(default_factory=dict)
    """With ``--syscalls``: the server's syscalls per call in an extra traced run (bench/syscalls.py)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CallOptions:
    devices: int
    concurrency: list[int]
    seconds: int
    warmup: int
    workdir: Path
    plan: CpuPlan
    profile: Path | None = None
    syscalls: bool = False
    """Count wake-ups per call at every level, and syscalls per call in an extra traced run."""

    @property
    def syscalls_level(self) -> int:
        """The level of the traced run: 64 in flight, else the highest level run."""
        return SYSCALLS_LEVEL if SYSCALLS_LEVEL in self.concurrency else max(self.concurrency)


SYSCALLS_LEVEL = 64


def load_cpus(plan: CpuPlan) -> int:
    import os

    return len(plan.load) if plan.load is not None else os.cpu_count() or 1


def measure(
    system: str,
    concurrency: int,
    server_cpu: Callable[[], float],
    farm: FarmProcess,
    plan: CpuPlan,
    run: Callable[[], tuple[int, float, int, dict[str, float], float]],
) -> CallRun:
    tcp0 = tcp_counters()
    cpu0, farm0, wall0 = server_cpu(), farm.cpu(), time.perf_counter()
    calls, seconds, errors, latency, caller_cpu = run()
    wall = time.perf_counter() - wall0
    server_cpu_s, farm_cpu_s = server_cpu() - cpu0, farm.cpu() - farm0
    tcp1 = tcp_counters()
    return CallRun(
        system=system,
        concurrency=concurrency,
        calls=calls,
        seconds=seconds,
        calls_per_s=calls / seconds if seconds else 0.0,
        errors=errors,
        latency_ms=latency,
        server_cpu_s=server_cpu_s,
        server_cpu_s_per_1000=server_cpu_s / calls * 1000 if calls else 0.0,
        server_cpu_util=server_cpu_s / wall if wall else 0.0,
        caller_cpu_s=caller_cpu,
        farm_cpu_s=farm_cpu_s,
        loadgen_cpu_util=(caller_cpu + farm_cpu_s) / wall / load_cpus(plan) if wall else 0.0,
        tcp={key: tcp1[key] - tcp0[key] for key in tcp1.keys() & tcp0.keys()},
    )


def describe(run: CallRun) -> str:
    lat = run.latency_ms
    text = (
        f"{run.system} c={run.concurrency}: {run.calls_per_s:,.0f} calls/s, p50 {lat['p50']:.2f} ms, "
        f"p99 {lat['p99']:.2f} ms, server CPU {run.server_cpu_s_per_1000 * 1000:.0f} µs/call, "
        f"load generator {run.loadgen_cpu_util:.0%} busy"
    )
    if run.gc and run.gc["pauses"]:
        text += f", GC pauses {run.gc['pauses']} (max {run.gc['max_ms']:.0f} ms)"
    if run.wakeups:
        w = run.wakeups
        text += f", sleeps per call: farm {w['farm']:.2f}, caller {w['caller']:.2f}, server {w['server']:.2f}"
    if run.tcp and (run.tcp.get("ListenOverflows") or run.tcp.get("TCPSynRetrans")):
        text += (
            f", {run.tcp.get('ListenOverflows', 0)} listen-queue overflows and "
            f"{run.tcp.get('TCPSynRetrans', 0)} SYN retransmits (1 s each)"
        )
    return text + (f", {run.errors} ERRORS" if run.errors else "")


def run_hub(
    options: CallOptions, *, system: str = "methodhub", hub_args: list[str] | None = None
) -> SystemResult:
    """Phase 1: the hub's HTTP API (``system``: the name in the results and a data dir of its own;
    ``hub_args``: more ``serve`` arguments, for phases comparing settings)."""
    plan = options.plan
    result = SystemResult(system, options.devices)
    data_dir = options.workdir / ("hub-calls" if system == "methodhub" else f"hub-{system.replace(' ', '-')}")
    hub = Hub(data_dir=data_dir, cpus=plan.server, nofile=options.devices + 4096, args=hub_args or [])
    progress(f"{system}: starting the hub ({plan.describe()})")
    hub.start()
    farm: FarmProcess | None = None
    try:
        key = new_device_key()
        ids = [f"{DEVICE_PREFIX}{i:06d}" for i in range(options.devices)]
        seconds = register_devices(hub, ids, key)
        progress(f"{system}: registered {len(ids):,} devices through the REST API in {seconds:.1f} s")
        farm = FarmProcess(
            FarmConfig(
                host="127.0.0.1", port=hub.mqtt_port, prefix=DEVICE_PREFIX, count=options.devices, key=key
            ),
            cpus=plan.load,
        )
        online = farm.wait_online()
        progress(f"{system}: {online['online']:,} farm devices online in {online['seconds']:.2f} s")
        if online["failed"]:
            raise RuntimeError(f"{online['failed']} devices could not connect: {online['errors']}")
        result.setup = {"register_s": seconds, "online_s": online["seconds"]}
        script = write_script(
            options.workdir / "calls.lua", prefix=DEVICE_PREFIX, count=options.devices, token=hub.owner_token
        )
        threads = load_cpus(plan)
        if options.warmup:
            progress(f"{system}: warming up for {options.warmup} s")
            run_wrk(
                hub.url, script, connections=max(options.concurrency), seconds=options.warmup, cpus=plan.load
            )
        for concurrency in options.concurrency:
            progress(f"{system}: {concurrency} calls in flight for {options.seconds} s")

            caller_switches = [0]

            def once(
                c: int = concurrency, switches: list[int] = caller_switches
            ) -> tuple[int, float, int, dict[str, float], float]:
                r = run_wrk(
                    hub.url, script, connections=c, seconds=options.seconds, threads=threads, cpus=plan.load
                )
                switches[0] = r.voluntary_switches
                return r.requests, r.seconds, r.error_count, r.latency_ms, r.cpu_s

            mark = hub.log_mark()
            before = Switches.take(hub.pid, farm.pid)
            run = measure(system, concurrency, hub.cpu, farm, plan, once)
            if options.syscalls:
                run.wakeups = before.per_call(Switches.take(hub.pid, farm.pid), caller_switches[0], run.calls)
            run.gc = hub.gc_since(mark)
            result.runs.append(run)
            progress("  " + describe(run))
        if options.syscalls:
            level = options.syscalls_level

            def traced() -> int:
                return run_wrk(
                    hub.url,
                    script,
                    connections=level,
                    seconds=options.seconds,
                    threads=threads,
                    cpus=plan.load,
                ).requests

            result.syscalls = syscalls_run(system, hub.pid, level, options.workdir / "hub.syscalls", traced)
        if options.profile is not None and result.runs:
            best = max(result.runs, key=lambda r: r.calls_per_s)
            result.profile = profile_run(hub, script, options, threads, best.concurrency)
        result.peak_rss_bytes = hub.peak_rss()
    except BaseException:
        if hub.alive():
            progress(f"{system}: hub log tail:\n" + hub.log_tail())
        raise
    finally:
        if farm is not None:
            farm.stop()
        hub.stop()
    return result


def profile_run(
    hub: Hub, script: Path, options: CallOptions, threads: int, concurrency: int, name: str = "calls"
) -> dict[str, Any]:
    """An extra run with py-spy attached to the hub (not part of the figures); returns its summary.
    The folded stacks go to ``{options.profile}.{name}.folded``."""
    assert options.profile is not None
    seconds = options.seconds
    progress(f"profile: py-spy on the hub, {concurrency} calls in flight for {seconds} s ({name})")
    spy = PySpy(hub.pid, options.profile.with_suffix(f".{name}.folded"))
    cpu0 = hub.cpu()
    r = run_wrk(
        hub.url, script, connections=concurrency, seconds=seconds, threads=threads, cpus=options.plan.load
    )
    cpu = hub.cpu() - cpu0
    summary = spy.stop()
    if summary:
        summary = {
            "what": f"{concurrency} calls in flight",
            "concurrency": concurrency,
            "calls_per_s": r.calls_per_s,
            "hub_cpu_us_per_call": cpu / r.requests * 1e6 if r.requests else 0.0,
            **summary,
        }
    return summary


@dataclass(frozen=True)
class Switches:
    """Voluntary context switches of a server and the device farm at one moment."""

    server: int
    farm: int

    @staticmethod
    def take(server_pid: int, farm_pid: int) -> Switches:
        return Switches(voluntary_switches(server_pid), voluntary_switches(farm_pid))

    def per_call(self, after: Switches, caller: int, calls: int) -> dict[str, float]:
        """Each process's sleeps per call between this and ``after`` (``caller``: the caller's count)."""
        calls = max(1, calls)
        return {
            "farm": (after.farm - self.farm) / calls,
            "caller": caller / calls,
            "server": (after.server - self.server) / calls,
        }


def syscalls_run(system: str, pid: int, level: int, out: Path, run: Callable[[], int]) -> dict[str, Any]:
    """An extra run (``run``, returning its calls) with a syscall counter attached to ``pid``: the
    server's syscalls per call, or {} when no tracer could attach."""
    progress(f"{system}: syscalls per call, a tracer attached, {level} calls in flight")
    tracer = Tracer(pid, out)
    if tracer.proc is None:
        return {}
    started = time.perf_counter()
    calls = run()
    seconds = time.perf_counter() - started
    counts = tracer.stop()
    if counts is None or calls <= 0:
        return {}
    figures = per_call(counts, calls)
    figures.update(tool=tracer.tool, concurrency=level, traced_calls_per_s=calls / seconds)
    progress(
        f"  {system} c={level}: {figures['total']:.2f} syscalls per call ({figures['reads']:.2f} reads, "
        f"{figures['writes']:.2f} writes, {figures['epoll_wait']:.2f} epoll_wait; {tracer.tool})"
    )
    return figures


def run_reference(options: CallOptions) -> SystemResult:
    """Phase 2: the same traffic relayed by hand through Mosquitto."""
    plan = options.plan
    result = SystemResult("mosquitto", options.devices)
    broker = Mosquitto(workdir=options.workdir / "mosquitto", cpus=plan.server, nofile=options.devices + 4096)
    progress("mosquitto: starting the reference broker")
    broker.start()
    farm: FarmProcess | None = None
    try:
        farm = FarmProcess(
            FarmConfig(
                host="127.0.0.1",
                port=broker.port,
                dialect="relay",
                prefix=DEVICE_PREFIX,
                count=options.devices,
            ),
            cpus=plan.load,
        )
        online = farm.wait_online()
        progress(f"mosquitto: {online['online']:,} farm devices online in {online['seconds']:.2f} s")
        result.setup = {"online_s": online["seconds"]}

        def caller(concurrency: int, seconds: int) -> dict[str, Any]:
            config = CallerConfig(
                port=broker.port,
                prefix=DEVICE_PREFIX,
                count=options.devices,
                concurrency=concurrency,
                seconds=seconds,
            )
            return run_caller(config, cpus=plan.load)

        if options.warmup:
            progress(f"mosquitto: warming up for {options.warmup} s")
            caller(max(options.concurrency), options.warmup)
        for concurrency in options.concurrency:
            progress(f"mosquitto: {concurrency} calls in flight for {options.seconds} s")

            def once(c: int = concurrency) -> tuple[int, float, int, dict[str, float], float]:
                r = caller(c, options.seconds)
                return r["requests"], r["seconds"], sum(r["errors"].values()), r["latency_ms"], r["cpu_s"]

            before = Switches.take(broker.pid, farm.pid)
            children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_nvcsw  # the caller, once reaped
            run = measure("mosquitto", concurrency, broker.cpu, farm, plan, once)
            if options.syscalls:
                caller_switches = resource.getrusage(resource.RUSAGE_CHILDREN).ru_nvcsw - children
                run.wakeups = before.per_call(Switches.take(broker.pid, farm.pid), caller_switches, run.calls)
            result.runs.append(run)
            progress("  " + describe(run))
        if options.syscalls:
            level = options.syscalls_level

            def traced() -> int:
                return int(caller(level, options.seconds)["requests"])

            result.syscalls = syscalls_run(
                "mosquitto", broker.pid, level, options.workdir / "mosquitto.syscalls", traced
            )
        result.peak_rss_bytes = broker.peak_rss()
    finally:
        if farm is not None:
            farm.stop()
        broker.stop()
    return result
