"""Shared helpers for the benchmark suite: SAS tokens, /proc sampling, limits, CPU pinning, progress."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

REPO = Path(__file__).resolve().parents[1]
HOSTNAME = "localhost"
API_VERSION = "2021-04-12"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
REQUIRED_TOOLS = ("wrk", "mosquitto", "nats-server")  # nats-server: the --workers phase

_started = time.monotonic()


def progress(message: str) -> None:
    """One progress line on stderr, prefixed with the seconds since the suite started."""
    print(f"[bench {time.monotonic() - _started:6.1f}s] {message}", file=sys.stderr, flush=True)


def sign(resource_uri: str, key: str, expiry: int, key_name: str | None = None, *, plus: bool = False) -> str:
    """An Azure SAS token, computed independently of methodhub (as Azure's SDKs do)."""
    sr = quote_plus(resource_uri) if plus else quote(resource_uri, safe="")
    digest = hmac.new(base64.b64decode(key), f"{sr}\n{expiry}".encode(), hashlib.sha256).digest()
    token = (
        f"SharedAccessSignature sr={sr}&sig={quote(base64.b64encode(digest).decode(), safe='')}&se={expiry}"
    )
    return token + (f"&skn={key_name}" if key_name else "")


def parse_cs(text: str) -> dict[str, str]:
    """A connection string (``A=b;C=d``) as a dict."""
    return dict(part.split("=", 1) for part in text.strip().split(";") if part)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# -- tools ------------------------------------------------------------------------------------------


def missing_tools() -> list[str]:
    return [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None and not _sbin(tool)]


def _sbin(tool: str) -> str | None:
    """Debian installs mosquitto in /usr/sbin, which is not on every user's PATH."""
    for folder in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        if os.access(f"{folder}/{tool}", os.X_OK):
            return f"{folder}/{tool}"
    return None


def tool_path(tool: str) -> str:
    found = shutil.which(tool) or _sbin(tool)
    if found is None:
        raise SystemExit(
            f"bench: '{tool}' is not installed; run scripts/ensure-tools (apt-get install {tool})"
        )
    return found


def ensure_tools(install: bool = True) -> None:
    """Make sure wrk and mosquitto are there: run scripts/ensure-tools if not, else explain and exit."""
    missing = missing_tools()
    if not missing:
        return
    script = REPO / "scripts" / "ensure-tools"
    if install and script.exists():
        progress(f"installing missing tools ({', '.join(missing)}) with {script.relative_to(REPO)}")
        subprocess.run([str(script)], check=False)
        missing = missing_tools()
    if missing:
        raise SystemExit(
            f"bench: missing tools: {', '.join(missing)}. Install them with scripts/ensure-tools "
            f"(Debian/Ubuntu: apt-get install -y {' '.join(missing)}) and run again."
        )


def tool_version(tool: str) -> str:
    args = {"wrk": ["-v"], "mosquitto": ["-h"]}.get(tool, ["--version"])
    try:
        out = subprocess.run([tool_path(tool), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    first = (out.stdout or out.stderr).strip().splitlines()
    if not first:
        return "?"
    words = first[0].replace("debian/", "").split()
    if tool == "wrk" and len(words) > 1:
        return f"wrk {words[1]}"
    return " ".join(w for w in words if w != "version")


# -- limits and CPUs --------------------------------------------------------------------------------


def raise_nofile(wanted: int) -> int:
    """Raise this process's RLIMIT_NOFILE towards ``wanted`` (as far as the hard limit allows,
    or beyond it with CAP_SYS_RESOURCE); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    target = wanted if hard == resource.RLIM_INFINITY else max(hard, wanted)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
    except (ValueError, OSError):
        new_soft = hard if hard == resource.RLIM_INFINITY else min(hard, wanted)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def nofile_ceiling() -> int:
    """The most file descriptors one process can get here (the hard limit, unless we may raise it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard + 1))
    except (ValueError, OSError):
        return int(hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text())
    except OSError:
        return int(hard)


@dataclass(frozen=True)
class CpuPlan:
    """Which CPUs the system under test and the load generator run on (None = no pinning)."""

    server: frozenset[int] | None
    load: frozenset[int] | None

    @staticmethod
    def make(pin: bool) -> CpuPlan:
        cpus = sorted(os.sched_getaffinity(0))
        if not pin or len(cpus) < 2:
            return CpuPlan(None, None)
        return CpuPlan(frozenset(cpus[:1]), frozenset(cpus[1:]))

    def describe(self) -> str:
        if self.server is None or self.load is None:
            return "not pinned"
        return f"server on CPU {_cpus(self.server)}, load generator on CPU {_cpus(self.load)}"


def _cpus(cpus: Iterable[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def preexec(cpus: frozenset[int] | None, nofile: int | None) -> Callable[[], None]:
    """A ``preexec_fn`` that pins the child to ``cpus`` and raises its fd limit."""

    def setup() -> None:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        if nofile is not None:
            raise_nofile(nofile)

    return setup


# -- /proc sampling ---------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(child) for child in f.read().split())
        except OSError:
            continue
    return out


def tcp_counters() -> dict[str, int]:
    """This network namespace's TCP counters that explain ~1 s latency outliers (/proc/net/netstat):
    ``ListenOverflows`` (a connect found a listener's accept queue full) and ``TCPSynRetrans`` (SYNs
    sent again, after 1 s the first time). Empty when /proc has no such file."""
    try:
        lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()]
    except OSError:
        return {}
    rows = [line for line in lines if line and line[0] == "TcpExt:"]
    if len(rows) < 2:
        return {}
    values = dict(zip(rows[0][1:], rows[1][1:], strict=False))
    return {key: int(values[key]) for key in ("ListenOverflows", "TCPSynRetrans") if key in values}


def memory(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of ``pid`` in bytes, from /proc/PID/status (VmRSS, VmHWM)."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return rss, hwm


def machine() -> dict[str, object]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
    }
