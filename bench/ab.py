"""``python -m bench.ab OLD NEW``: two commits' speed measured in the same run, interleaved.

For each commit a detached git worktree is made in a temporary folder; each round runs, for OLD then
NEW (then NEW then OLD in the next round, so neither always goes first on a machine that warms up or
gets busier):

* ``python -m bench --quick --no-reference --idle 0 --workers 0 --concurrency 64 --duration 4`` —
  calls/s and hub CPU per call at 64 in flight;
* ``python bench/http_server.py inproc`` — the HTTP server's own cost per request, no sockets.

Each commit runs its *own* ``bench/`` and ``src/`` (``PYTHONPATH``), with this interpreter and its
installed dependencies. The summary prints every round and the NEW/OLD ratio of the medians. The
machine should be otherwise idle: a busy neighbour moves these figures by more than 3 %.

Example::

    python -m bench.ab e40c65b HEAD --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
    parser.add_argument("--no-calls", action="store_true", help="only the in-process HTTP figure")
    args = parser.parse_args(argv)
    revs = {"old": _rev(args.old), "new": _rev(args.new)}
    figures: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="methodhub-ab-") as tmp:
        trees = {}
        for name, rev in revs.items():
            tree = Path(tmp) / name
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree), rev], check=True
            )
            trees[name] = tree
        try:
            for round_ in range(args.rounds):
                order = ["old", "new"] if round_ % 2 == 0 else ["new", "old"]
                for name in order:
                    progress(f"round {round_ + 1}/{args.rounds}: {name} ({revs[name][:10]})")
                    figure: dict[str, Any] = {"inproc_us": _inproc(trees[name])}
                    if not args.no_calls:
                        figure.update(_calls(trees[name], Path(tmp) / f"{name}-{round_}", args.duration))
                    figures[name].append(figure)
        finally:
            for tree in trees.values():
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False
                )
    keys = ["inproc_us"] + ([] if args.no_calls else ["calls_per_s", "cpu_us_per_call"])
    labels = {
        "inproc_us": "HTTP inproc µs/request",
        "calls_per_s": f"calls/s at {CONCURRENCY} in flight",
        "cpu_us_per_call": "hub CPU µs/call",
    }
    print(f"old {revs['old'][:10]}  new {revs['new'][:10]}  ({args.rounds} interleaved rounds)")
    for key in keys:
        old = [f[key] for f in figures["old"]]
        new = [f[key] for f in figures["new"]]
        ratio = statistics.median(new) / statistics.median(old)
        olds, news = (", ".join(f"{v:,.1f}" for v in values) for values in (old, new))
        print(f"{labels[key]:>28}: old {olds} | new {news} | new/old (medians) {ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
