"""Phase 5: AMQP devices next to MQTT devices, on one hub, the runs interleaved.

Calls: one hub with its plain MQTT and plain AMQP listeners (``--amqp-port 0``) and three farms of
N devices each, registered through the REST API: MQTT (phase 1's farm, ``bench-*``), AMQP with
C#'s pre-settled transfers (``amqp-*``, the headline: like MQTT's QoS 0, no acknowledgements) and
AMQP with Node's unsettled ones (``amqpn-*``: a disposition each way per call). At each concurrency
wrk runs against each farm's devices in turn, the order rotating from level to level, so the drift
of a shared machine lands on all three alike. Per system and concurrency: calls/s, p50/p99, hub CPU
per call; and AMQP / MQTT per concurrency (calls/s target ≥ 0.8). With ``tls`` (``--tls``) two more
farms: MQTT and AMQP (pre-settled) over TLS, on the hub's ``mqtts`` and ``amqps`` ports, the second
compared with the first.

Scale: K idle AMQP devices on a fresh hub (connects/s, hub RSS per connection, calls at 1 in flight
among them), next to K idle MQTT devices: phase 3's figures when it ran in the same suite, else a
run of its own with the same K (RSS per AMQP connection target ≤ 2 × MQTT's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.calls import CallOptions, SystemResult, describe, load_cpus, measure, profile_run
from bench.common import progress
from bench.farm import FarmConfig, FarmProcess
from bench.hubproc import Hub, new_device_key, register_devices
from bench.scale import run_scale
from bench.wrk import run_wrk, write_script
from methodhub.process.tls import ca_cert_path

SYSTEMS = {
    # name: (device prefix, transport, pre-settled, TLS)
    "mqtt": ("bench-", "mqtt", True, False),
    "amqp": ("amqp-", "amqp", True, False),
    "amqp-unsettled": ("amqpn-", "amqp", False, False),
}
TLS_SYSTEMS = {
    "mqtt-tls": ("benchs-", "mqtt", True, True),
    "amqp-tls": ("amqps-", "amqp", True, True),
}
DESCRIPTIONS = {
    "mqtt": "MQTT 3.1.1, QoS 0 both ways",
    "amqp": "AMQP 1.0, pre-settled both ways (C#)",
    "amqp-unsettled": "AMQP 1.0, unsettled both ways (Node)",
    "mqtt-tls": "MQTT 3.1.1 over TLS, QoS 0 both ways",
    "amqp-tls": "AMQP 1.0 over TLS, pre-settled both ways (C#)",
}
BASELINE = {"amqp": "mqtt", "amqp-unsettled": "mqtt", "amqp-tls": "mqtt-tls"}
"""The MQTT system each AMQP system is compared with."""
TARGET_CALLS_RATIO = 0.8
TARGET_RSS_RATIO = 2.0


@dataclass
class AmqpComparison:
    devices: int
    systems: dict[str, SystemResult] = field(default_factory=dict)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    """Per concurrency, each AMQP system / MQTT: calls/s, p50, p99, hub CPU per call."""
    best: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per system, its run with the most calls/s."""
    scale: dict[str, Any] = field(default_factory=dict)
    """``mqtt`` and ``amqp``: the scale results; ``rss_ratio``, ``connects_ratio``: AMQP / MQTT."""
    profiles: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["descriptions"] = {name: DESCRIPTIONS[name] for name in self.systems}
        out["baselines"] = {name: BASELINE[name] for name in self.systems if name in BASELINE}
        out["targets"] = {"calls_ratio": TARGET_CALLS_RATIO, "rss_ratio": TARGET_RSS_RATIO}
        return out


def run_amqp_calls(options: CallOptions, tls: bool = False) -> AmqpComparison:
    """The calls half of the phase; ``tls``: also MQTT and AMQP over TLS (``mqtt-tls``, ``amqp-tls``)."""
    plan = options.plan
    result = AmqpComparison(options.devices)
    n = options.devices
    systems = {**SYSTEMS, **(TLS_SYSTEMS if tls else {})}
    hub = Hub(
        data_dir=options.workdir / "hub-amqp",
        cpus=plan.server,
        nofile=len(systems) * n + 4096,
        listeners=("amqp", "mqtts", "amqps") if tls else ("amqp",),
    )
    progress(f"amqp: starting a hub with MQTT and AMQP listeners ({plan.describe()})")
    hub.start()
    farms: dict[str, FarmProcess] = {}
    try:
        key = new_device_key()
        ids = [f"{prefix}{i:06d}" for prefix, *_ in systems.values() for i in range(n)]
        seconds = register_devices(hub, ids, key)
        progress(f"amqp: registered {len(ids):,} devices through the REST API in {seconds:.1f} s")
        scripts = {}
        for name, (prefix, transport, presettled, secure) in systems.items():
            port = hub.ports[transport + ("s" if secure else "")]
            config = FarmConfig(
                host="127.0.0.1",
                port=port,
                prefix=prefix,
                count=n,
                key=key,
                transport=transport,
                presettled=presettled,
                tls_ca=str(ca_cert_path(hub.data_dir)) if secure else None,
            )
            farms[name] = farm = FarmProcess(config, cpus=plan.load)
            online = farm.wait_online()
            progress(f"amqp: {online['online']:,} {name} farm devices online in {online['seconds']:.2f} s")
            if online["failed"]:
                raise RuntimeError(f"{online['failed']} {name} devices could not connect: {online['errors']}")
            system = SystemResult(name, n)
            system.setup = {
                "online_s": online["seconds"],
                "connects_per_s": online["online"] / online["seconds"],
            }
            result.systems[name] = system
            scripts[name] = write_script(
                options.workdir / f"amqp-{name}.lua", prefix=prefix, count=n, token=hub.owner_token
            )
        threads = load_cpus(plan)
        names = list(systems)
        if options.warmup:
            for name in names:
                progress(f"amqp: warming up {name} for {options.warmup} s")
                run_wrk(
                    hub.url,
                    scripts[name],
                    connections=max(options.concurrency),
                    seconds=options.warmup,
                    cpus=plan.load,
                )
        for level, concurrency in enumerate(options.concurrency):
            order = names[level % len(names) :] + names[: level % len(names)]
            for name in order:
                progress(f"amqp: {name}, {concurrency} calls in flight for {options.seconds} s")

                def once(
                    c: int = concurrency, name: str = name
                ) -> tuple[int, float, int, dict[str, float], float]:
                    r = run_wrk(
                        hub.url,
                        scripts[name],
                        connections=c,
                        seconds=options.seconds,
                        threads=threads,
                        cpus=plan.load,
                    )
                    return r.requests, r.seconds, r.error_count, r.latency_ms, r.cpu_s

                mark = hub.log_mark()
                run = measure(name, concurrency, hub.cpu, farms[name], plan, once)
                run.gc = hub.gc_since(mark)
                result.systems[name].runs.append(run)
                progress("  " + describe(run))
        for name, system in result.systems.items():
            system.peak_rss_bytes = hub.peak_rss()
            system.setup["farm"] = stats = farms[name].stats()
            if stats.get("queued") or stats.get("lost") or stats.get("errors"):
                progress(
                    f"amqp: {name} farm: {stats.get('queued', 0):,} answers waited for the hub's credit or "
                    f"window (longest {stats.get('queued_max_s', 0) * 1000:.0f} ms), {stats.get('lost', 0)} "
                    f"devices lost, errors {stats.get('errors') or 'none'}"
                )
            best = max(system.runs, key=lambda r: r.calls_per_s)
            result.best[name] = asdict(best)
        result.ratios = _ratios(result)
        if options.profile is not None:
            concurrency = result.best["amqp"]["concurrency"]
            for name in ("amqp", "mqtt"):
                profile = profile_run(hub, scripts[name], options, threads, concurrency, f"calls-{name}")
                if profile:
                    profile["what"] = f"{DESCRIPTIONS[name]} devices, {concurrency} calls in flight"
                    result.profiles[name] = profile
    except BaseException:
        if hub.alive():
            progress("amqp: hub log tail:\n" + hub.log_tail())
        raise
    finally:
        for farm in farms.values():
            farm.stop()
        hub.stop()
    return result


def _ratios(result: AmqpComparison) -> list[dict[str, Any]]:
    out = []
    for name, system in result.systems.items():
        if name not in BASELINE:
            continue
        mqtt = {r.concurrency: r for r in result.systems[BASELINE[name]].runs}
        for run in system.runs:
            base = mqtt.get(run.concurrency)
            if base is None:
                continue

            def div(a: float, b: float) -> float | None:
                return a / b if b else None

            out.append(
                {
                    "system": name,
                    "baseline": BASELINE[name],
                    "concurrency": run.concurrency,
                    "calls_per_s": div(run.calls_per_s, base.calls_per_s),
                    "p50": div(run.latency_ms["p50"], base.latency_ms["p50"]),
                    "p99": div(run.latency_ms["p99"], base.latency_ms["p99"]),
                    "cpu_per_call": div(run.server_cpu_s_per_1000, base.server_cpu_s_per_1000),
                }
            )
    for name in result.systems:
        if name in BASELINE:
            best_mqtt = result.best[BASELINE[name]]["calls_per_s"]
            out.append(
                {
                    "system": name,
                    "baseline": BASELINE[name],
                    "concurrency": "best",
                    "calls_per_s": result.best[name]["calls_per_s"] / best_mqtt if best_mqtt else None,
                    "p50": None,
                    "p99": None,
                    "cpu_per_call": None,
                }
            )
    return out


def run_amqp_scale(
    comparison: AmqpComparison,
    idle: int,
    options: CallOptions,
    latency_seconds: int,
    mqtt_scale: dict[str, Any] | None,
) -> None:
    """K idle AMQP devices on a fresh hub, next to phase 3's MQTT figures (or a run of its own)."""
    if mqtt_scale is None:
        mqtt = run_scale(
            idle, options.workdir, options.plan, latency_seconds, latency_levels=(1,), onboarding=False
        )
        mqtt_scale = mqtt.to_json()
    amqp = run_scale(
        idle,
        options.workdir,
        options.plan,
        latency_seconds,
        profile=options.profile,
        transport="amqp",
        latency_levels=(1,),
        onboarding=False,
    ).to_json()
    per_mqtt = mqtt_scale["rss_per_connection_bytes"]
    comparison.scale = {
        "mqtt": mqtt_scale,
        "amqp": amqp,
        "rss_ratio": amqp["rss_per_connection_bytes"] / per_mqtt if per_mqtt > 0 else None,
        "connects_ratio": (
            amqp["connects_per_s"] / mqtt_scale["connects_per_s"] if mqtt_scale["connects_per_s"] else None
        ),
    }
