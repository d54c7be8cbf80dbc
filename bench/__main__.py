"""``python -m bench``: methodhub's benchmark suite (docs/performance.md says what each figure means).

1. Calls through the HTTP API: N farm devices on real MQTT connections answer at once; wrk keeps
   1, 16, 64, 256 calls in flight (``POST /twins/{id}/methods``, keep-alive) for a fixed time.
2. The reference: the same traffic relayed by hand through Mosquitto, at the same concurrencies.
3. Connection scale: K idle SAS devices on a fresh hub: connects/s, RSS per connection, latency.
4. Workers: ``serve --workers 2`` against ``--workers 1`` (calls/s ratio; needs nats-server).
5. AMQP devices: phase 1's calls to N AMQP devices (C#'s pre-settled and Node's unsettled style)
   next to N MQTT devices on one hub, interleaved; then K idle AMQP devices against K idle MQTT ones.
6. Queued calls (bench/queued.py): ``POST /calls`` creates/s for offline devices, 4 calls each, and
   the time until every call is answered once the devices connect.
7. Jobs (bench/jobs.py): a job over J connected devices (10,000; quick 1,000): device calls/s, its
   statistics, the hub's CPU, and the p50/p99 of interactive calls meanwhile against a baseline.
8. Call history (bench/history.py): phase 1 at 64 calls in flight with ``serve --history off``, then
   ``--history on``: calls/s of each and the ratio (target: on within 5 % of off); with
   ``--history-postgres`` on a PostgreSQL registry too.
9. Cross-node calls (bench/workers.py; only with ``--only crossnode`` or ``--crossnode``): two hub
   nodes joined by a private nats-server, the devices on node B; calls/s, p50 and CPU per call at 1
   and 64 in flight entering at B (same node) and at A (the call crosses NATS), interleaved.

Optional measurements: ``--syscalls`` (phase 1; also phase 2): the hub's syscalls per call (reads,
writes, epoll_wait; ``perf trace -s``, else ``strace -c -f``, attached during an extra run at 64 in
flight) and the peers' voluntary context switches per call ("farm sleeps per call", wrk's, the
hub's own) at every level, from /proc and wait4.

Results go to ``bench/results/`` (``{timestamp}.json/.md/.png`` and ``latest.*``); progress to stderr,
headline figures to stdout. ``--quick`` finishes in about two minutes (``--only amqp --quick`` in one)
and writes to ``bench/results/quick/`` (git-ignored), never over the committed ``latest.*``, unless
``--out`` says where.

Two commits in the same run: ``python -m bench --compare REV [--rounds N] [--no-instructions]
[--duration S]`` runs ``python -m bench.ab REV HEAD`` (bench/ab.py): each commit checked out in a
temporary worktree, their figures interleaved over N rounds (default 3), then the instructions per
call of each under callgrind (unless ``--no-instructions``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, CpuPlan, ensure_tools, machine, progress, tool_version

MODES: dict[str, dict[str, Any]] = {
    # devices, concurrency, seconds per level, warmup seconds, idle devices, scale latency seconds
    "quick": {
        "devices": 1000,
        "concurrency": [1, 16, 64, 256],
        "duration": 2,
        "warmup": 1,
        "idle": 2000,
        "scale_seconds": 1,
        "job_devices": 1000,
        "queued_devices": 500,
        "job_baseline": 2,
    },
    "default": {
        "devices": 1000,
        "concurrency": [1, 16, 64, 256],
        "duration": 10,
        "warmup": 2,
        "idle": 10_000,
        "scale_seconds": 5,
        "job_devices": 10_000,
        "queued_devices": 2000,
        "job_baseline": 5,
    },
    "full": {
        "devices": 1000,
        "concurrency": [1, 16, 64, 256],
        "duration": 10,
        "warmup": 2,
        "idle": 100_000,
        "scale_seconds": 5,
        "job_devices": 10_000,
        "queued_devices": 2000,
        "job_baseline": 5,
    },
}


PHASES = ("hub", "reference", "scale", "workers", "amqp", "queued", "jobs", "history", "crossnode")
"""Phase names for ``--only``: 1 to 9 of the module docstring."""
OPTIONAL_PHASES = frozenset({"crossnode"})
"""Phases a run without ``--only`` leaves out unless asked for (``--crossnode``)."""
RESULTS = REPO / "bench" / "results"
QUICK_RESULTS = RESULTS / "quick"
"""Where ``--quick`` writes without ``--out``: git-ignored, so a quick run never rewrites the
committed ``bench/results/latest.*`` (the last full run's)."""
QUEUED_CALLS_PER_DEVICE = 4


def _phases(text: str) -> set[str]:
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = names - set(PHASES)
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"phases are {', '.join(PHASES)} (got {text!r})")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_true",
        help="short runs and 2,000 idle devices (~1.5 min; --only amqp ~1 min)",
    )
    mode.add_argument("--full", action="store_true", help="100,000 idle devices (capped by the fd limit)")
    parser.add_argument("--devices", type=int, help="devices answering calls (default 1000)")
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(x) for x in text.split(",") if x],
        help="calls in flight, comma-separated (default 1,16,64,256)",
    )
    parser.add_argument("--duration", type=int, help="seconds per concurrency level (default 10; quick 2)")
    parser.add_argument("--warmup", type=int, help="warm-up seconds before each system's runs (default 2)")
    parser.add_argument(
        "--idle", type=int, help="idle devices for the scale test (default 10000; 0 skips it)"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the Mosquitto reference")
    parser.add_argument(
        "--job-devices",
        type=int,
        help="connected devices the jobs phase's job calls (default 10000; quick 1000)",
    )
    parser.add_argument(
        "--queued-devices",
        type=int,
        help=f"offline devices of the queued phase, {QUEUED_CALLS_PER_DEVICE} calls each "
        "(default 2000; quick 500)",
    )
    parser.add_argument(
        "--only",
        type=_phases,
        metavar="PHASES",
        help=f"run only these phases, comma-separated: {', '.join(PHASES)} (e.g. --only amqp: AMQP "
        "against MQTT devices, calls and idle connections)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        metavar="N",
        help="compare `serve --workers N` with --workers 1 (default 2; 0 skips)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="phase 5 (amqp) also calls MQTT and AMQP devices over TLS (mqtts, amqps ports)",
    )
    parser.add_argument(
        "--history-postgres",
        action="store_true",
        help="phase 8 (history) also runs on a PostgreSQL registry (a private server; needs its binaries)",
    )
    parser.add_argument(
        "--history-rounds",
        type=int,
        default=3,
        help="phase 8 (history): off/on pairs run, their medians compared (default 3)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and load generator to CPUs")
    parser.add_argument(
        "--profile", action="store_true", help="extra run with py-spy on the hub (top functions)"
    )
    parser.add_argument(
        "--syscalls",
        action="store_true",
        help="phases 1 and 2 also count the server's syscalls per call (perf trace or strace, an extra "
        "run at 64 in flight) and the peers' context switches per call at every level",
    )
    parser.add_argument(
        "--crossnode",
        action="store_true",
        help="also run phase 9 (crossnode): calls to a device on another node, over NATS",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"results folder (default {os.path.relpath(RESULTS, REPO)}/; "
        f"--quick: {os.path.relpath(QUICK_RESULTS, REPO)}/, git-ignored)",
    )
    compare = parser.add_argument_group("comparing two commits (bench/ab.py)")
    compare.add_argument(
        "--compare",
        metavar="REV",
        help="same-run A/B of commit REV against HEAD (python -m bench.ab REV HEAD), instead of a run",
    )
    compare.add_argument(
        "--rounds", type=int, default=3, help="with --compare: interleaved rounds (default 3)"
    )
    compare.add_argument(
        "--no-instructions",
        action="store_true",
        help="with --compare: skip the instruction counts under callgrind (~1 min per commit)",
    )
    args = parser.parse_args(argv)
    if args.compare is not None:
        allowed = {"compare", "rounds", "no_instructions", "duration"}
        other = sorted(
            f"--{key.replace('_', '-')}"
            for key, value in vars(args).items()
            if key not in allowed and value != parser.get_default(key)
        )
        if other:
            parser.error(
                f"--compare takes --rounds, --no-instructions and --duration, not {', '.join(other)}"
            )
        if args.rounds < 1:
            parser.error("--rounds must be ≥ 1")
        return args  # bench.ab checks the commit
    if args.rounds != 3 or args.no_instructions:
        parser.error("--rounds and --no-instructions go with --compare REV")
    args.mode = "quick" if args.quick else "full" if args.full else "default"
    if args.out is None:
        args.out = QUICK_RESULTS if args.mode == "quick" else RESULTS
    if args.only is not None:
        args.phases = args.only
    else:
        args.phases = set(PHASES) - OPTIONAL_PHASES | ({"crossnode"} if args.crossnode else set())
    for key, value in MODES[args.mode].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.devices < 1 or args.duration < 1 or not args.concurrency or min(args.concurrency) < 1:
        parser.error("--devices, --duration and every --concurrency must be ≥ 1")
    if args.job_devices < 1 or args.queued_devices < 1:
        parser.error("--job-devices and --queued-devices must be ≥ 1")
    return args


def _git() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True
        )
        return out.stdout.strip() or "?"
    except OSError:
        return "?"


def ab_argv(args: argparse.Namespace) -> list[str]:
    """``python -m bench --compare REV …`` as the arguments of ``python -m bench.ab``."""
    out = [args.compare, "HEAD", "--rounds", str(args.rounds)]
    if args.duration is not None:
        out += ["--duration", str(args.duration)]
    if args.no_instructions:
        out.append("--no-instructions")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare is not None:
        from bench import ab

        return ab.main(ab_argv(args))
    ensure_tools()
    import methodhub
    from bench.amqp_compare import run_amqp_calls, run_amqp_scale
    from bench.calls import CallOptions, run_hub, run_reference
    from bench.profiling import profile_text
    from bench.report import evaluate_targets, headline, ratios, write_results
    from bench.scale import run_scale

    started = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    plan = CpuPlan.make(not args.no_pin)
    results: dict[str, Any] = {
        "schema": 1,
        "meta": {
            "started_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
            "command": "python -m bench "
            + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
            "machine": machine(),
            "cpu_plan": plan.describe(),
            "tools": {
                "wrk": tool_version("wrk"),
                "mosquitto": tool_version("mosquitto"),
                "methodhub": methodhub.__version__,
                "git": _git(),
            },
        },
        "config": {
            "mode": args.mode,
            "devices": args.devices,
            "concurrency": args.concurrency,
            "duration": args.duration,
            "warmup": args.warmup,
            "idle": args.idle,
            "workers": args.workers,
            "tls": args.tls,
            "job_devices": args.job_devices,
            "queued_devices": args.queued_devices,
            "queued_calls_per_device": QUEUED_CALLS_PER_DEVICE,
            "pinned": not args.no_pin,
            "syscalls": args.syscalls,
            "phases": [p for p in PHASES if p in args.phases],
        },
    }
    progress(
        f"{args.mode} run: {args.devices:,} devices, concurrency {args.concurrency}, {args.duration} s each, "
        f"{args.idle:,} idle devices; phases {', '.join(p for p in PHASES if p in args.phases)}; "
        f"{plan.describe()}"
    )
    with tempfile.TemporaryDirectory(prefix="methodhub-bench-") as tmp:
        workdir = Path(tmp)
        options = CallOptions(
            devices=args.devices,
            concurrency=args.concurrency,
            seconds=args.duration,
            warmup=args.warmup,
            workdir=workdir,
            plan=plan,
            profile=(args.out / f"{stamp}-profile.txt") if args.profile else None,
            syscalls=args.syscalls,
        )
        if args.profile:
            args.out.mkdir(parents=True, exist_ok=True)
        phases = args.phases
        if "hub" in phases:
            results["hub"] = run_hub(options).to_json()
        if "reference" in phases and not args.no_reference:
            results["reference"] = run_reference(options).to_json()
            results["ratios"] = ratios(results)
        if "scale" in phases and args.idle > 0:
            scale = run_scale(
                args.idle, workdir, plan, latency_seconds=args.scale_seconds, profile=options.profile
            )
            results["scale"] = scale.to_json()
        if "amqp" in phases:
            comparison = run_amqp_calls(options, tls=args.tls)
            if args.idle > 0:
                run_amqp_scale(comparison, args.idle, options, args.scale_seconds, results.get("scale"))
            results["amqp"] = comparison.to_json()
        if "workers" in phases and args.workers > 1:
            from bench.workers import run_workers

            results["workers"] = run_workers(
                args.workers,
                args.devices,
                [c for c in args.concurrency if c >= 16] or args.concurrency,
                args.duration,
                args.warmup,
                workdir,
            ).to_json()
        if "crossnode" in phases:
            from bench.workers import run_crossnode

            results["crossnode"] = run_crossnode(args.devices, args.duration, args.warmup, workdir).to_json()
        if "queued" in phases:
            from bench.queued import run as run_queued

            results["queued"] = run_queued(args.queued_devices, QUEUED_CALLS_PER_DEVICE, workdir, plan)
        if "jobs" in phases:
            from bench.jobs import run as run_jobs

            results["jobs"] = run_jobs(
                args.job_devices,
                workdir,
                plan,
                baseline_s=args.job_baseline,
                profile=options.profile.with_suffix(".job.folded") if options.profile else None,
            ).to_json()
        if "history" in phases:
            from bench.history import run as run_history

            results["history"] = run_history(
                options, postgres=args.history_postgres, rounds=args.history_rounds
            ).to_json()
    results["targets"] = evaluate_targets(results)
    results["meta"]["elapsed_s"] = time.time() - started
    written = write_results(results, args.out, stamp)
    if options.profile is not None:
        amqp = results.get("amqp") or {}
        profiles = [
            (results.get("hub") or {}).get("profile"),
            (results.get("scale") or {}).get("connect_profile"),
            *(amqp.get("profiles") or {}).values(),
            ((amqp.get("scale") or {}).get("amqp") or {}).get("connect_profile"),
            ((results.get("jobs") or {}).get("job_alone") or {}).get("profile"),
        ]
        text = "\n".join(f"== hub profile: {p['what']}\n\n{profile_text(p)}" for p in profiles if p)
        if text:
            options.profile.write_text(text)
    print("\n".join(headline(results)))
    if "history" in results:
        from bench.history import HistoryResult
        from bench.history import headline as history_headline

        history = HistoryResult(**results["history"])
        print(history_headline(history))
        if history.postgres is not None:
            print(history_headline(HistoryResult(**history.postgres), " postgres"))
    print(
        "targets: "
        + "; ".join(
            f"{t['target']}: {t['measured']} ({ {True: 'met', False: 'NOT met', None: 'n/a'}[t['met']] })"
            for t in results["targets"]
        )
    )
    for kind, path in written.items():
        if not kind.startswith("latest"):
            print(f"{kind}: {os.path.relpath(path)}")
    if args.profile and options.profile is not None and options.profile.exists():
        print(f"profile: {os.path.relpath(options.profile)}")
    progress(f"done in {results['meta']['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
