"""py-spy on the hub: record while something runs, then the top functions by self and inclusive time."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import progress


class PySpy:
    """``py-spy record`` attached to ``pid`` until :meth:`stop` (folded stacks in ``out``)."""

    def __init__(self, pid: int, out: Path, rate: int = 250) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        # the venv's bin folder need not be on PATH (`.venv/bin/python -m bench`)
        pyspy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if pyspy is None:
            progress("profile: py-spy is not installed (pip install py-spy, or methodhub[bench]); skipped")
            return
        command = [pyspy, "record", "--pid", str(pid), "--format", "raw", "--output", str(out)]
        command += ["--rate", str(rate), "--nonblocking"]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached and sampling before the work starts

    def stop(self) -> dict[str, Any]:
        """Stop recording; the summary (``top_functions``), or {} if nothing was recorded."""
        if self.proc is None:
            return {}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.out.exists():
            progress("profile: py-spy wrote nothing (is ptrace permitted?)")
            return {}
        return top_functions(self.out.read_text())


def top_functions(folded: str, top: int = 25) -> dict[str, Any]:
    """Self and inclusive shares per function from py-spy's ``--format raw`` (folded stacks)."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in folded.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        raw_frames = [f for f in stack.split(";") if f]
        if not raw_frames or _idle(raw_frames[-1]):
            continue
        count = int(count_text)
        total += count
        frames = [_frame(f) for f in raw_frames]
        self_time[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    share = (lambda n: n / total) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "self": [[name, share(n)] for name, n in self_time.most_common(top)],
        "inclusive": [[name, share(n)] for name, n in inclusive.most_common(top + 10)],
    }


def profile_text(summary: dict[str, Any]) -> str:
    lines = [
        f"py-spy: {summary['samples']} samples of the hub's busy Python stacks (idle threads left out).",
        "Self time includes the C functions a line calls (e.g. transport.write = the send syscall);",
        "'Runner.run (asyncio/runners.py)' self time is the event loop's own C code (uvloop: epoll,",
        "recv, dispatching callbacks).",
        "",
        "self time:",
    ]
    lines += [f"  {pct:6.1%}  {name}" for name, pct in summary["self"]]
    lines += ["", "inclusive time:"]
    lines += [f"  {pct:6.1%}  {name}" for name, pct in summary["inclusive"]]
    return "\n".join(lines) + "\n"


IDLE_LEAVES = (
    ("_worker (", "concurrent/futures/thread.py"),  # an executor thread waiting for work
    ("wait (", "threading.py"),
    ("_wait_for_tstate_lock (", "threading.py"),
)


def _idle(frame: str) -> bool:
    return any(frame.startswith(name) and where in frame for name, where in IDLE_LEAVES)


def _frame(frame: str) -> str:
    """``func (path/to/file.py:123)`` → ``func (methodhub/file.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("/site-packages/", "/src/", "/lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})" if where else name
