"""Node interop plumbing: Microsoft's Node.js device SDK installed from npm, and an agent to drive it.

The packages are pinned by ``tests/interop/node/package-lock.json`` (the versions
azure-amqp-wire.md was checked with). :func:`node_sdk` installs them once with ``npm ci`` into a
cache outside the repo, ``$METHODHUB_NODE_CACHE`` or ``~/.cache/methodhub/interop-node``, in a
directory named after the hash of the package files: a changed lock file gets a fresh install, an
unchanged one costs nothing. CI starts from a clean clone with an empty cache, so its first run
downloads from npm's registry (the only network the tests use besides PyPI).

How the SDK reaches the hub's free ports is explained in ``node_agent.js`` (its header) and
:class:`NodeTransport`.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tests.interop.support import AgentError, end_stdin_driven

PACKAGE_DIR = Path(__file__).with_name("node")
AGENT_SCRIPT = Path(__file__).with_name("node_agent.js")
PACKAGE_FILES = ("package.json", "package-lock.json")


class NodeSetupError(RuntimeError):
    """Node or npm is missing, or ``npm ci`` failed: the message says what to do."""


def node_cache_root() -> Path:
    if configured := os.environ.get("METHODHUB_NODE_CACHE"):
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "methodhub" / "interop-node"


def node_sdk(progress: TextIO | None = None) -> Path:
    """The ``node_modules`` directory holding the pinned SDK packages; installs them if needed.

    Progress goes to ``progress`` (default: stderr). Safe to call from several test runs at once:
    the install holds a lock file, and a finished install is moved into place in one rename.
    """
    out = progress or sys.stderr
    digest = hashlib.sha256(b"".join((PACKAGE_DIR / name).read_bytes() for name in PACKAGE_FILES)).hexdigest()
    root = node_cache_root()
    target = root / digest[:16]
    modules = target / "node_modules"
    if (target / "installed").exists():
        return modules
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        raise NodeSetupError(
            f"the Node SDK interop tests need {' and '.join(missing)} on PATH: install Node.js 20 or newer "
            "with npm (scripts/ensure-tools does it with apt-get: nodejs npm)"
        )
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "installed").exists():  # another run installed it while this one waited
            return modules
        shutil.rmtree(target, ignore_errors=True)  # an install that died half-way
        staging = Path(tempfile.mkdtemp(prefix=f"{digest[:16]}.", dir=root))
        try:
            for name in PACKAGE_FILES:
                shutil.copyfile(PACKAGE_DIR / name, staging / name)
            node_version = subprocess.run(
                ["node", "--version"], capture_output=True, text=True
            ).stdout.strip()
            print(
                f"interop: installing the Node SDK (npm ci, node {node_version}) into {target}",
                file=out,
                flush=True,
            )
            started = time.monotonic()
            _npm_ci(staging, target, out)
            (staging / "installed").write_text(f"{digest}\n")
            staging.rename(target)
            print(f"interop: Node SDK installed in {time.monotonic() - started:.0f} s", file=out, flush=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return modules


def _npm_ci(directory: Path, target: Path, out: TextIO) -> None:
    cmd = ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--no-update-notifier"]
    proc = subprocess.Popen(cmd, cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        print(f"  npm: {lines[-1]}", file=out, flush=True)
    if proc.wait() != 0:
        tail = "\n".join(lines[-30:])
        raise NodeSetupError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}) installing into {target}; the first run "
            f"needs npm's registry (npm config get registry), later runs use that cache:\n{tail}"
        )


@dataclass(frozen=True)
class NodeTransport:
    """One of the SDK's device transports, and how the tests route it to the hub.

    ``websocket=False``: the SDK dials ``HostName``'s port when it has one, so the tests rewrite the
    connection string to ``HostName=localhost:{hub port}`` (the SAS audience then names the port too;
    the hub accepts a hostname with a port). ``websocket=True``: the SDK dials ``:443`` whatever the
    connection string says, so the agent tunnels it through the ``ConnectProxy`` (``:443`` → the hub's
    HTTPS port) with the SDK's ``webSocketAgent`` option. No privileged ports, no network namespace:
    this runs as any user, in parallel with other test runs.
    """

    name: str
    """The agent's transport name (``node_agent.js`` TRANSPORTS)."""
    listener: str
    """The hub listener (``HubProcess.ports`` key) it reaches."""
    sdk_port: int
    """The port the SDK dials against Azure."""
    websocket: bool


TRANSPORTS = {
    transport.name: transport
    for transport in (
        NodeTransport("mqtt", "mqtts", 8883, websocket=False),
        NodeTransport("mqttws", "https", 443, websocket=True),
        NodeTransport("amqp", "amqps", 5671, websocket=False),
        NodeTransport("amqpws", "https", 443, websocket=True),
    )
}


def with_host_port(cs: str, port: int) -> str:
    """``cs`` with ``HostName=host:port``."""
    parts = []
    for part in cs.strip().split(";"):
        key, _, value = part.partition("=")
        parts.append(f"HostName={value.rsplit(':', 1)[0]}:{port}" if key == "HostName" else part)
    return ";".join(parts)


class NodeAgent:
    """``node node_agent.js``: requests with ids, answers matched to them, events collected as they come."""

    def __init__(self, node_modules: Path, script: Path = AGENT_SCRIPT) -> None:
        self.stderr_lines: list[str] = []
        self._events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._pending: dict[int, queue.Queue[dict[str, Any] | None]] = {}
        self._ids = itertools.count(1)
        self._write_lock = threading.Lock()
        self._ready: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.proc = subprocess.Popen(
            ["node", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NODE_PATH": str(node_modules)},
        )
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        try:
            ready = self._ready.get(timeout=30)
        except queue.Empty:
            ready = None
        if not ready:
            self.close()
            raise RuntimeError("node agent did not start:\n" + self.stderr_tail())

    def stderr_tail(self, lines: int = 40) -> str:
        return "\n".join(self.stderr_lines[-lines:])

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            if "event" in message:
                with self._changed:
                    self._events.append(message)
                    self._changed.notify_all()
            elif "ready" in message:
                self._ready.put(message)
            elif (waiting := self._pending.pop(message.get("id"), None)) is not None:
                waiting.put(message)
        self._ready.put(None)  # the agent exited: wake everyone who waits for it
        for waiting in list(self._pending.values()):
            waiting.put(None)
        with self._changed:
            self._changed.notify_all()

    def call(self, op: str, timeout: float = 60, **args: Any) -> Any:
        """Run ``op`` in the agent; returns its result or raises :class:`AgentError`."""
        request_id = next(self._ids)
        answer_box: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._pending[request_id] = answer_box
        with self._write_lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"id": request_id, "op": op, "args": args}) + "\n")
            self.proc.stdin.flush()
        try:
            answer = answer_box.get(timeout=timeout)
        except queue.Empty:
            self._pending.pop(request_id, None)
            raise TimeoutError(
                f"node agent: no answer to {op} in {timeout} s:\n{self.stderr_tail()}"
            ) from None
        if answer is None:
            raise RuntimeError(f"node agent exited during {op}:\n{self.stderr_tail()}")
        if not answer["ok"]:
            raise AgentError(answer)
        return answer["result"]

    def events(self, client: str, kind: str | None = None) -> list[dict[str, Any]]:
        with self._changed:
            return [e for e in self._events if e["client"] == client and kind in (None, e["event"])]

    def wait_events(
        self,
        client: str,
        kind: str,
        count: int = 1,
        where: Callable[[dict[str, Any]], bool] = lambda event: True,
        timeout: float = 15,
    ) -> list[dict[str, Any]]:
        """All events of ``client`` of this ``kind`` for which ``where`` holds, once there are ``count``.

        Events come on the agent's stdout, so one can still be on its way when a REST call the event
        belongs to has already returned: wait for what is expected, then look at all of it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [e for e in self._events if e["client"] == client and e["event"] == kind and where(e)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    seen = [e for e in self._events if e["client"] == client]
                    raise AssertionError(
                        f"{len(found)} of {count} {kind} events from {client} in {timeout} s; "
                        f"its events: {seen}"
                    )
                self._changed.wait(left)

    def wait_event(
        self,
        client: str,
        kind: str,
        where: Callable[[dict[str, Any]], bool] = lambda event: True,
        timeout: float = 15,
    ) -> dict[str, Any]:
        """The first event of ``client`` of this ``kind`` for which ``where`` holds (waits for it)."""
        return self.wait_events(client, kind, 1, where, timeout)[0]

    def kill(self) -> None:
        """End the agent abruptly: its connections drop without a goodbye (the kernel closes them)."""
        self.proc.kill()
        self.proc.wait()

    def close(self) -> None:
        end_stdin_driven(self.proc)
