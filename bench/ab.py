"""``python -m bench.ab OLD NEW``: two commits' speed measured in the same run, interleaved.

For each commit a detached git worktree is made in a temporary folder; each round runs, for OLD then
NEW (then NEW then OLD in the next round, so neither always goes first on a machine that warms up or
gets busier):

* ``python -m bench --quick --no-reference --idle 0 --workers 0 --concurrency 64 --duration 4`` —
  calls/s and hub CPU per call at 64 in flight;
* ``python bench/http_server.py inproc`` — the HTTP server's own cost per request, no sockets;
* ``python bench/inproc_calls.py`` — the hub's CPU per call over its whole path (HTTP front door,
  engine, router, gateway, MQTT), in one process, no sockets: best and median of its rounds.

Then, once per commit (unless ``--no-instructions``): ``python bench/inproc_calls.py --instructions``,
the instructions per call under valgrind's callgrind — the one figure a busy machine does not move
(it repeats to ~0.3 %), so one run each is enough.

Each commit runs its *own* ``bench/`` and ``src/`` (``PYTHONPATH``), with this interpreter and its
installed dependencies — except ``bench/inproc_calls.py``: NEW's copy is put into OLD's tree, so both
run the same harness (it imports either code layout). The summary prints every round and the
NEW/OLD ratio of the medians (and of the bests). The machine should be otherwise idle: a busy
neighbour moves the timed figures by more than 3 %.

``python -m bench --compare OLD [--rounds N] [--no-instructions] [--duration S]`` is
``python -m bench.ab OLD HEAD`` with those options.

Example::

    python -m bench.ab e40c65b HEAD --rounds 3
    python -m bench.ab e40c65b HEAD --rounds 5 --no-calls   # the in-process figures only
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import REPO, progress

CONCURRENCY = 64


def _rev(rev: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"], capture_output=True, text=True
    )
    if out.returncode != 0:
        raise SystemExit(f"bench.ab: '{rev}' is not a commit of {REPO}")
    return out.stdout.strip()


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{tree / 'src'}{os.pathsep}{tree}"
    return env


def _calls(tree: Path, out: Path, duration: int) -> dict[str, float]:
    command = [sys.executable, "-m", "bench", "--quick", "--no-reference", "--idle", "0", "--workers", "0"]
    command += ["--concurrency", str(CONCURRENCY), "--duration", str(duration), "--out", str(out)]
    if '"--only"' in (tree / "bench" / "__main__.py").read_text():  # since the AMQP phase: phase 1 alone
        command += ["--only", "hub"]
    subprocess.run(
        command, cwd=tree, env=_env(tree), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    results = json.loads((out / "latest.json").read_text())
    runs = {int(r["concurrency"]): r for r in results["hub"]["runs"]}
    run = runs.get(CONCURRENCY) or runs[max(runs)]
    # server_cpu_s_per_1000: CPU seconds per 1,000 calls = milliseconds per call; × 1000 → µs
    return {
        "calls_per_s": float(run["calls_per_s"]),
        "cpu_us_per_call": float(run["server_cpu_s_per_1000"]) * 1000,
        "p50_ms": float(run["latency_ms"]["p50"]),
        "p99_ms": float(run["latency_ms"]["p99"]),
    }


def _inproc(tree: Path) -> float:
    out = subprocess.run(
        [sys.executable, "bench/http_server.py", "inproc"],
        cwd=tree,
        env=_env(tree),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"([\d.]+) µs/request", out)
    if match is None:
        raise SystemExit(f"bench.ab: cannot read the inproc figure from:\n{out}")
    return float(match.group(1))


CALLS_SCRIPT = Path("bench") / "inproc_calls.py"


def _inproc_calls(tree: Path, *extra: str) -> str:
    return subprocess.run(
        [sys.executable, str(CALLS_SCRIPT), *extra],
        cwd=tree,
        env=_env(tree),
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _inproc_calls_cpu(tree: Path) -> dict[str, float]:
    out = _inproc_calls(tree)
    match = re.search(r"CPU best ([\d.]+) median ([\d.]+) µs/call", out)
    if match is None:
        raise SystemExit(f"bench.ab: cannot read the inproc calls figure from:\n{out}")
    return {"calls_cpu_best_us": float(match.group(1)), "calls_cpu_median_us": float(match.group(2))}


def _inproc_calls_instructions(tree: Path) -> float:
    out = _inproc_calls(tree, "--instructions")
    match = re.search(r"([\d,]+) instructions/call", out)
    if match is None:
        raise SystemExit(f"bench.ab: cannot read the instruction count from:\n{out}")
    return float(match.group(1).replace(",", ""))


def _share_calls_harness(trees: dict[str, Path]) -> None:
    """NEW's ``bench/inproc_calls.py`` (or this checkout's, if NEW has none) into OLD's tree."""
    source = trees["new"] / CALLS_SCRIPT
    if not source.exists():
        source = Path(__file__).resolve().parent / CALLS_SCRIPT.name
    for tree in trees.values():
        if tree / CALLS_SCRIPT != source:
            shutil.copyfile(source, tree / CALLS_SCRIPT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("old", help="the reference commit")
    parser.add_argument("new", nargs="?", default="HEAD", help="the commit under test (default HEAD)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--duration", type=int, default=4, help=f"seconds at {CONCURRENCY} in flight per run (default 4)"
    )
    parser.add_argument(
        "--no-calls", action="store_true", help="skip the socket benchmark (python -m bench --quick)"
    )
    parser.add_argument(
        "--no-instructions", action="store_true", help="skip the callgrind instruction count (~1 min/commit)"
    )
    args = parser.parse_args(argv)
    if not args.no_instructions and shutil.which("valgrind") is None:
        raise SystemExit("bench.ab: the instruction count needs valgrind: install it, or --no-instructions")
    revs = {"old": _rev(args.old), "new": _rev(args.new)}
    figures: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    instructions: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="methodhub-ab-") as tmp:
        trees = {}
        for name, rev in revs.items():
            tree = Path(tmp) / name
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), rev], check=True
            )
            trees[name] = tree
        try:
            _share_calls_harness(trees)
            for round_ in range(args.rounds):
                order = ["old", "new"] if round_ % 2 == 0 else ["new", "old"]
                for name in order:
                    progress(f"round {round_ + 1}/{args.rounds}: {name} ({revs[name][:10]})")
                    figure: dict[str, Any] = {"inproc_us": _inproc(trees[name])}
                    figure.update(_inproc_calls_cpu(trees[name]))
                    if not args.no_calls:
                        figure.update(_calls(trees[name], Path(tmp) / f"{name}-{round_}", args.duration))
                    figures[name].append(figure)
            if not args.no_instructions:
                for name in ("old", "new"):
                    progress(f"instructions per call: {name} ({revs[name][:10]}), under callgrind")
                    instructions[name] = _inproc_calls_instructions(trees[name])
        finally:
            for tree in trees.values():
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False
                )
    keys = ["inproc_us", "calls_cpu_best_us", "calls_cpu_median_us"]
    keys += [] if args.no_calls else ["calls_per_s", "cpu_us_per_call", "p50_ms", "p99_ms"]
    labels = {
        "inproc_us": "HTTP inproc µs/request",
        "calls_cpu_best_us": "inproc calls CPU µs/call, best",
        "calls_cpu_median_us": "inproc calls CPU µs/call, median",
        "calls_per_s": f"calls/s at {CONCURRENCY} in flight",
        "cpu_us_per_call": "hub CPU µs/call",
        "p50_ms": f"p50 ms at {CONCURRENCY} in flight",
        "p99_ms": f"p99 ms at {CONCURRENCY} in flight",
    }
    print(f"old {revs['old'][:10]}  new {revs['new'][:10]}  ({args.rounds} interleaved rounds)")
    for key in keys:
        old = [f[key] for f in figures["old"]]
        new = [f[key] for f in figures["new"]]
        best = max if key == "calls_per_s" else min  # the best of a cost is its least
        medians = statistics.median(new) / statistics.median(old)
        bests = best(new) / best(old)
        digits = 2 if key.endswith("_ms") else 1
        olds, news = (", ".join(f"{v:,.{digits}f}" for v in values) for values in (old, new))
        print(
            f"{labels[key]:>32}: old {olds} | new {news} | new/old medians {medians:.3f}, bests {bests:.3f}"
        )
    if instructions:
        ratio = instructions["new"] / instructions["old"]
        print(
            f"{'inproc calls instructions/call':>32}: old {instructions['old']:,.0f} | "
            f"new {instructions['new']:,.0f} | new/old {ratio:.4f} (callgrind, deterministic)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
