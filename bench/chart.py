"""The results' PNG chart: throughput, latency percentiles and CPU per call per concurrency."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def chart(results: dict[str, Any], path: Path) -> bool:
    """Throughput, latency percentiles and CPU per call for each concurrency; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from bench.report import TARGETS  # bench.report imports this module

    systems = [s for s in (results.get("hub"), results.get("reference")) if s and s["runs"]]
    if not systems:
        return False
    colors = {"methodhub": "#1f77b4", "mosquitto": "#ff7f0e"}
    concurrencies = sorted({r["concurrency"] for s in systems for r in s["runs"]})
    fig, (ax_rate, ax_lat, ax_cpu) = plt.subplots(1, 3, figsize=(16, 5.2))
    width = 0.8 / len(systems)
    positions = range(len(concurrencies))
    for i, system in enumerate(systems):
        by_c = {r["concurrency"]: r for r in system["runs"]}
        xs = [p + (i - (len(systems) - 1) / 2) * width for p in positions]
        rates = [by_c[c]["calls_per_s"] if c in by_c else 0 for c in concurrencies]
        bars = ax_rate.bar(xs, rates, width, label=system["system"], color=colors.get(system["system"]))
        ax_rate.bar_label(bars, labels=[f"{v / 1000:.1f}k" for v in rates], fontsize=8)
        cpu = [by_c[c]["server_cpu_s_per_1000"] * 1000 if c in by_c else 0 for c in concurrencies]
        bars = ax_cpu.bar(xs, cpu, width, label=system["system"], color=colors.get(system["system"]))
        ax_cpu.bar_label(bars, labels=[f"{v:.0f}" for v in cpu], fontsize=8)
        style = "-" if system["system"] == "methodhub" else "--"
        for q, marker in (("p50", "o"), ("p90", "s"), ("p99", "^")):
            ys = [by_c[c]["latency_ms"][q] if c in by_c else float("nan") for c in concurrencies]
            ax_lat.plot(
                list(positions),
                ys,
                style,
                marker=marker,
                color=colors.get(system["system"]),
                label=f"{system['system']} {q}",
            )
    ax_rate.axhline(TARGETS["calls_per_s"], color="green", linestyle=":", linewidth=1, label="target 10k/s")
    ax_rate.set_title("Throughput (calls/s, higher is better)")
    ax_lat.axhline(
        TARGETS["p99_ms_at_target_rate"], color="red", linestyle=":", linewidth=1, label="p99 target 25 ms"
    )
    ax_lat.axhline(
        TARGETS["p50_ms_at_c1"], color="gray", linestyle=":", linewidth=1, label="p50 target (c=1) 0.5 ms"
    )
    ax_lat.set_yscale("log")
    ax_lat.set_title("Latency percentiles (ms, log scale, lower is better)")
    ax_cpu.set_title("Server CPU per call (µs, lower is better)")
    for ax in (ax_rate, ax_lat, ax_cpu):
        ax.set_xticks(list(positions), [str(c) for c in concurrencies])
        ax.set_xlabel("calls in flight")
        ax.grid(axis="y", alpha=0.3)
    ax_rate.legend(fontsize=8)
    ax_lat.legend(fontsize=7, ncol=2)
    ax_cpu.legend(fontsize=8)
    devices = systems[0]["devices"]
    title = f"methodhub vs hand-made relay over Mosquitto — {devices:,} devices answering at once"
    scale = results.get("scale")
    if scale:
        title += (
            f"\nscale: {scale['online']:,} idle SAS devices, {scale['connects_per_s']:,.0f} connects/s, "
            f"{scale['rss_per_connection_bytes'] / 1024:.1f} KiB hub RSS per connection"
        )
    fig.suptitle(title, fontsize=11)
    fig.text(
        0.01,
        0.01,
        f"{results['meta']['started_at']}  {results['meta']['cpu_plan']}",
        fontsize=7,
        color="gray",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.93 if scale else 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
