"""``--syscalls``: a server's syscalls per call, and its peers' wake-ups (voluntary context switches).

**Syscalls.** :class:`Tracer` attaches ``strace -c -f`` (else ``perf trace -s``) to the server while
one extra run goes on, then reads the summary table: calls per syscall, summed over the threads.
Divided by the calls the run made, that is what one call costs in syscalls — ``reads`` (read, recv,
recvfrom, recvmsg), ``writes`` (write, send, sendto, sendmsg, writev), ``epoll_wait`` (and
epoll_pwait) and the total. A tracer slows the server it traces (ptrace stops it at every syscall),
so the extra run's calls/s is not a figure of the hub's, and a slower server batches a little more
per loop turn: the counts are an upper bound of the untraced ones' batching, not their timing.

**Wake-ups.** A process that waits for input and has none sleeps; when the input comes the kernel
wakes it: one *voluntary* context switch. ``voluntary_ctxt_switches`` in /proc/PID/task/*/status
(summed over the threads) before and after a run, per call, is how often each peer — the device
farm, the server itself — went to sleep per call; for wrk, which exits at the end of its run,
``wait4``'s ``ru_nvcsw`` gives the same count over all its threads. No tracer is attached for these,
so they come from the measured runs themselves.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import progress

READS = frozenset({"read", "readv", "recv", "recvfrom", "recvmsg", "recvmmsg"})
WRITES = frozenset({"write", "writev", "send", "sendto", "sendmsg", "sendmmsg"})
EPOLL = frozenset({"epoll_wait", "epoll_pwait", "epoll_pwait2"})

_STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$")
"""``% time  seconds  usecs/call  calls  [errors]  syscall`` (errors is blank when there are none)."""
_PERF_ROW = re.compile(r"^\s+([a-z_0-9]+)\s+(\d+)\s+\d+\s+[\d.]+\s")
"""``syscall  calls  errors  total  min  avg  max  stddev`` under each thread of ``perf trace -s``."""


def parse_strace_summary(text: str) -> dict[str, int]:
    """Calls per syscall from ``strace -c``'s table (its ``total`` row left out)."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        match = _STRACE_ROW.match(line)
        if match and match.group(2) != "total":
            counts[match.group(2)] = counts.get(match.group(2), 0) + int(match.group(1))
    return counts


def parse_perf_trace_summary(text: str) -> dict[str, int]:
    """Calls per syscall from ``perf trace -s``'s summary, summed over its per-thread tables."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        match = _PERF_ROW.match(line)
        if match and match.group(1) != "syscall":
            counts[match.group(1)] = counts.get(match.group(1), 0) + int(match.group(2))
    return counts


def per_call(counts: dict[str, int], calls: int) -> dict[str, Any]:
    """Syscalls per call: reads, writes, epoll_wait, the total, and each syscall's own figure."""
    if calls <= 0:
        raise ValueError("no calls to divide by")

    def share(names: frozenset[str]) -> float:
        return sum(n for name, n in counts.items() if name in names) / calls

    return {
        "calls": calls,
        "reads": share(READS),
        "writes": share(WRITES),
        "epoll_wait": share(EPOLL),
        "total": sum(counts.values()) / calls,
        "by_syscall": {name: n / calls for name, n in sorted(counts.items(), key=lambda kv: -kv[1])},
    }


def tracer_command(pid: int, out: Path) -> tuple[str, list[str]] | None:
    """``(tool, command)`` attaching a syscall counter to ``pid``; None when neither is installed."""
    strace = shutil.which("strace")
    if strace is not None:
        return "strace", [strace, "-c", "-f", "-p", str(pid), "-o", str(out)]
    perf = shutil.which("perf")
    if perf is not None:
        return "perf", [perf, "trace", "-s", "-p", str(pid), "-o", str(out)]
    return None


class Tracer:
    """A syscall counter attached to ``pid`` until :meth:`stop` (None from it: not available)."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        chosen = tracer_command(pid, out)
        if chosen is None:
            progress("syscalls: neither strace nor perf is installed (apt-get install strace); skipped")
            self.tool = ""
            return
        self.tool, command = chosen
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # attached to every thread before the run starts
        if self.proc.poll() is not None:
            error = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            progress(f"syscalls: {self.tool} could not attach ({error.strip()}); skipped")
            self.proc = None

    def stop(self) -> dict[str, int] | None:
        """Detach; calls per syscall over the traced time, or None if nothing was traced."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # both print their summary when interrupted
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            text = self.out.read_text(errors="replace")
        except OSError:
            progress(f"syscalls: {self.tool} wrote nothing; skipped")
            return None
        counts = parse_strace_summary(text) if self.tool == "strace" else parse_perf_trace_summary(text)
        if not counts:
            progress(f"syscalls: no summary in {self.tool}'s output ({self.out}); skipped")
            return None
        return counts


def voluntary_switches(pid: int) -> int:
    """Voluntary context switches of ``pid`` so far, summed over its threads (0 once it is gone)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
                        break
        except OSError:  # the thread exited meanwhile
            continue
    return total


def headline(system: dict[str, Any]) -> list[str]:
    """The lines of one system's (``results["hub"]`` or ``["reference"]``) syscall figures."""
    lines = []
    name = system["system"]
    sc = system.get("syscalls") or {}
    if sc:
        lines.append(
            f"{name} syscalls per call at c={sc['concurrency']}: {sc['total']:.2f} ({sc['reads']:.2f} reads, "
            f"{sc['writes']:.2f} writes, {sc['epoll_wait']:.2f} epoll_wait; {sc['tool']}, traced run at "
            f"{sc['traced_calls_per_s']:,.0f} calls/s)"
        )
    levels = [
        f"c={run['concurrency']} {w['farm']:.2f} / {w['caller']:.2f} / {w['server']:.2f}"
        for run in system.get("runs") or []
        if (w := run.get("wakeups"))
    ]
    if levels:
        lines.append(f"{name} sleeps per call (farm / caller / server): " + "; ".join(levels))
    return lines
