"""Phase 3: connection scale. K idle devices with SAS authentication on one hub.

A fresh hub registers K devices (REST API), then one farm process connects them all the way
Azure's SDKs do (CleanSession=0, SAS token, SUBSCRIBE ``$iothub/methods/POST/#``), at most
``window`` connects in flight. Reported: connects/s (TCP + CONNECT/CONNACK + SUBSCRIBE/SUBACK, all K
devices, divided by the time from the first connect to the last SUBACK), the hub's RSS per
connection ((RSS with K devices online − RSS with K devices registered but none connected) / K),
and the latency of calls to random devices while all K are connected (wrk, 1 call in flight, and
a short run at higher concurrency).

``transport="amqp"`` (phase 5, bench/amqp_compare.py) does the same with AMQP devices on the hub's
plain AMQP port: a connect is then TCP + header/open/begin + the ``$cbs`` links and a put-token +
the two methods links (bench/amqp_farm.py), until the last device's methods links are attached.

Both processes need K file descriptors: the suite raises RLIMIT_NOFILE for the hub and the farm
(``preexec_fn``), and K is capped at what this machine's hard limit allows (reported). Above
5,000 connections the farm spreads its source addresses over 127.0.0.2, 127.0.0.3, ... (5,000
each): one (source, destination) pair has only ~28k ephemeral ports, and the kernel's search for a
free one gets expensive long before they run out.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import CpuPlan, nofile_ceiling, progress
from bench.farm import PER_SOURCE_ADDRESS, FarmConfig, FarmProcess
from bench.hubproc import Hub, new_device_key, register_devices
from bench.profiling import PySpy
from bench.wrk import run_wrk, write_script

IDLE_PREFIX = "idle-"
FD_MARGIN = 512


@dataclass
class ScaleResult:
    transport: str
    """The devices' transport: ``mqtt`` (CONNECT + SUBSCRIBE) or ``amqp`` (bench/amqp_farm.py's
    handshake: open, begin, CBS put-token, the two methods links)."""
    requested: int
    devices: int
    capped_by: str | None
    online: int
    failed: int
    connect_errors: dict[str, int]
    register_s: float
    connect_s: float
    connects_per_s: float
    rss_before_bytes: int
    rss_after_bytes: int
    rss_per_connection_bytes: float
    peak_rss_bytes: int
    hub_cpu_connect_s: float
    farm_cpu_connect_s: float
    gc_connect: dict[str, float] = field(default_factory=dict)
    latency: list[dict[str, Any]] = field(default_factory=list)
    connect_profile: dict[str, Any] = field(default_factory=dict)
    onboarding: dict[str, Any] = field(default_factory=dict)
    """New devices registered while the K devices are connected, and the call latency meanwhile."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def capped(requested: int) -> tuple[int, str | None]:
    """K, lowered to what one process's fd limit allows here (hub and farm each hold K sockets)."""
    ceiling = nofile_ceiling() - FD_MARGIN
    if requested <= ceiling:
        return requested, None
    return ceiling, f"RLIMIT_NOFILE hard limit {ceiling + FD_MARGIN} (no CAP_SYS_RESOURCE to raise it)"


def run_scale(
    requested: int,
    workdir: Path,
    plan: CpuPlan,
    latency_seconds: int,
    concurrency: int = 64,
    window: int = 256,
    time_budget: float = 600,
    profile: Path | None = None,
    transport: str = "mqtt",
    latency_levels: tuple[int, ...] | None = None,
    onboarding: bool = True,
) -> ScaleResult:
    """K idle devices of ``transport`` on a fresh hub; calls at ``latency_levels`` in flight (default
    1 and ``concurrency``) among them, then (``onboarding``) registrations while they are connected."""
    count, cap = capped(requested)
    what = "scale" if transport == "mqtt" else f"scale ({transport})"
    if cap:
        progress(f"{what}: {requested:,} idle devices requested, capped at {count:,}: {cap}")
    amqp = transport == "amqp"
    hub = Hub(
        data_dir=workdir / ("hub-scale-amqp" if amqp else "hub-scale"),
        cpus=plan.server,
        nofile=count + 4096,
        listeners=("amqp",) if amqp else (),
    )
    progress(f"{what}: starting a fresh hub for {count:,} idle devices")
    hub.start()
    farm: FarmProcess | None = None
    try:
        key = new_device_key()
        register_s = register_devices(hub, [f"{IDLE_PREFIX}{i:06d}" for i in range(count)], key)
        progress(f"{what}: registered {count:,} devices in {register_s:.1f} s ({count / register_s:,.0f}/s)")
        time.sleep(1.0)  # let the change feed catch up with the registrations
        rss_before = hub.rss()
        mark = hub.log_mark()
        folded = f".connect-{transport}.folded" if amqp else ".connect.folded"
        spy = PySpy(hub.pid, profile.with_suffix(folded)) if profile is not None else None
        cpu_before = hub.cpu()
        sources = []
        if count > PER_SOURCE_ADDRESS:
            sources = [f"127.0.0.{2 + i}" for i in range(math.ceil(count / PER_SOURCE_ADDRESS))]
        farm = FarmProcess(
            FarmConfig(
                host="127.0.0.1",
                port=hub.amqp_port if amqp else hub.mqtt_port,
                prefix=IDLE_PREFIX,
                count=count,
                key=key,
                window=window,
                sources=sources,
                transport=transport,
            ),
            cpus=plan.load,
        )
        progress(f"{what}: connecting {count:,} devices ({window} connects in flight)")
        online = _wait_online(farm, time_budget)
        hub_cpu_connect = hub.cpu() - cpu_before
        connect_profile = spy.stop() if spy is not None else {}
        farm_cpu_connect = farm.cpu()  # includes its start-up (~0.2 s)
        connect_s = float(online["seconds"])
        progress(
            f"{what}: {online['online']:,} online in {connect_s:.1f} s ({online['online'] / connect_s:,.0f} "
            f"connects/s), {online['failed']} failed {online['errors'] or ''}"
        )
        time.sleep(1.0)  # session writes and buffers settle
        rss_after = hub.rss()
        result = ScaleResult(
            transport=transport,
            requested=requested,
            devices=count,
            capped_by=cap,
            online=int(online["online"]),
            failed=int(online["failed"]),
            connect_errors=dict(online["errors"]),
            register_s=register_s,
            connect_s=connect_s,
            connects_per_s=online["online"] / connect_s if connect_s else 0.0,
            rss_before_bytes=rss_before,
            rss_after_bytes=rss_after,
            rss_per_connection_bytes=(rss_after - rss_before) / max(1, online["online"]),
            peak_rss_bytes=0,
            hub_cpu_connect_s=hub_cpu_connect,
            farm_cpu_connect_s=farm_cpu_connect,
            gc_connect=hub.gc_since(mark),
        )
        if connect_profile:
            result.connect_profile = {
                "what": f"{count:,} {transport.upper()} devices connecting",
                "hub_cpu_us_per_connect": hub_cpu_connect / max(1, online["online"]) * 1e6,
                "connects_per_s": result.connects_per_s,
                **connect_profile,
            }
        progress(
            f"{what}: hub RSS {rss_before / 2**20:.0f} → {rss_after / 2**20:.0f} MiB, "
            f"{result.rss_per_connection_bytes / 1024:.1f} KiB per connection"
        )
        script = write_script(workdir / "scale.lua", prefix=IDLE_PREFIX, count=count, token=hub.owner_token)
        for c in sorted(set(latency_levels if latency_levels is not None else (1, concurrency))):
            progress(f"{what}: calls to random devices among {count:,}, {c} in flight, {latency_seconds} s")
            mark = hub.log_mark()
            r = run_wrk(hub.url, script, connections=c, seconds=latency_seconds, cpus=plan.load)
            gc = hub.gc_since(mark)
            result.latency.append(
                {
                    "concurrency": c,
                    "calls": r.requests,
                    "calls_per_s": r.calls_per_s,
                    "errors": r.error_count,
                    "latency_ms": r.latency_ms,
                    "gc": gc,
                }
            )
            progress(
                f"  c={c}: {r.calls_per_s:,.0f} calls/s, p50 {r.latency_ms['p50']:.2f} ms, "
                f"p99 {r.latency_ms['p99']:.2f} ms, GC pauses {gc['pauses']} (max {gc['max_ms']:.0f} ms)"
                + (f", {r.error_count} ERRORS" if r.error_count else "")
            )
        if onboarding:
            result.onboarding = _onboard(hub, key, count, script, plan, latency_seconds)
        result.peak_rss_bytes = hub.peak_rss()
        return result
    except BaseException:
        if hub.alive():
            progress(f"{what}: hub log tail:\n" + hub.log_tail())
        raise
    finally:
        if farm is not None:
            farm.stop()
        hub.stop()


def _onboard(hub: Hub, key: str, count: int, script: Path, plan: CpuPlan, seconds: int) -> dict[str, Any]:
    """Register new devices (10 % of K, 100-2,000) while calls at 1 in flight measure the latency."""
    import threading

    new = min(2000, max(100, count // 10))
    progress(f"scale: registering {new:,} more devices while {count:,} are connected (calls at 1 in flight)")
    took: list[float] = []

    def register() -> None:
        time.sleep(0.5)
        took.append(register_devices(hub, [f"new-{i:06d}" for i in range(new)], key))

    thread = threading.Thread(target=register, daemon=True)
    mark = hub.log_mark()
    thread.start()
    r = run_wrk(hub.url, script, connections=1, seconds=seconds + 3, cpus=plan.load)
    thread.join(300)
    gc = hub.gc_since(mark)
    result = {
        "devices": new,
        "register_s": took[0] if took else None,
        "calls_per_s": r.calls_per_s,
        "errors": r.error_count,
        "latency_ms": r.latency_ms,
        "gc": gc,
    }
    ms = r.latency_ms
    progress(
        f"  registered {new:,} in {took[0] if took else float('nan'):.1f} s; calls meanwhile: "
        f"p50 {ms['p50']:.2f} ms, p99 {ms['p99']:.2f} ms, max {ms['max']:.0f} ms"
    )
    return result


def _wait_online(farm: FarmProcess, budget: float) -> dict[str, Any]:
    """The farm's "online" report, or a kill after ``budget`` seconds (a bounded run)."""
    import threading

    timer = threading.Timer(budget, farm.proc.kill)
    timer.start()
    try:
        return farm.wait_online()
    finally:
        timer.cancel()
