"""Interop test plumbing: side venvs for official SDKs, an agent to drive them, a CONNECT proxy.

Why a proxy: Azure's device SDK dials port 8883 (MQTT/TLS) and 443 (WebSocket) and nothing else
(azure-direct-methods-wire.md §1.2). Binding those ports would make the tests need privileges and
collide with anything else on the machine. The SDK's documented ``proxy_options`` (an HTTP proxy,
``CONNECT host:port``) is the one supported way to reach another port, so the tests run a tiny
CONNECT proxy that sends ``:8883`` to the hub's MQTT/TLS listener and ``:443`` to its HTTPS listener
(both on free ports). TLS stays end to end between the SDK and the hub (SNI, certificate check and
all); the proxy only pipes bytes, and it records which targets the SDK asked for, so the tests also
check that the SDK really dialed 8883 or 443.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def side_venv(name: str, requirements: list[str]) -> Path:
    """A venv under ``REPO/.venv-interop/{name}`` with ``requirements`` installed (cached by their hash).

    Returns the venv's python. CI starts from a clean checkout, so the first run installs from PyPI.
    """
    root = REPO / ".venv-interop" / name
    python = root / "bin" / "python"
    stamp = root / "requirements.sha256"
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    root.parent.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements],
        check=True,
    )
    stamp.write_text(digest)
    return python


class AgentError(Exception):
    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(f"{answer['error']}: {answer['message']}")
        self.error: str = answer["error"]
        self.message: str = answer["message"]
        self.status_code: int | None = answer.get("status_code")
        self.body: str | None = answer.get("body")
        self.causes: list[str] = answer.get("causes", [])


class Agent:
    """A script in a side venv, driven by one JSON line per request (see ``azure_agent.py``)."""

    def __init__(self, python: Path, script: Path, env: dict[str, str] | None = None) -> None:
        self.stderr_lines: list[str] = []
        self.proc = subprocess.Popen(
            [str(python), str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        self._lock = threading.Lock()
        ready = self._read()
        if not ready.get("ready"):
            raise RuntimeError(f"agent did not start: {ready}")

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("agent exited:\n" + "\n".join(self.stderr_lines[-40:]))
        return json.loads(line)

    def call(self, op: str, **args: Any) -> Any:
        """Run ``op`` in the agent; returns its result or raises :class:`AgentError`."""
        with self._lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
            self.proc.stdin.flush()
            answer = self._read()
        if not answer["ok"]:
            raise AgentError(answer)
        return answer["result"]

    def close(self) -> None:
        end_stdin_driven(self.proc)


def end_stdin_driven(proc: subprocess.Popen[str]) -> None:
    """End a process driven through its stdin: close stdin (it exits), kill it after 10 s."""
    if proc.poll() is None:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ConnectProxy:
    """An HTTP CONNECT proxy on 127.0.0.1 that maps target *ports* to local ports.

    ``routes = {8883: 41234, 443: 41235}``: ``CONNECT anything:8883`` is piped to
    ``127.0.0.1:41234``. Other targets get ``403``. ``targets`` lists every CONNECT target seen.
    """

    def __init__(self, routes: dict[int, int]) -> None:
        self.routes = routes
        self.targets: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        self.targets.append(target)
        port = int(target.rpartition(":")[2]) if method == "CONNECT" else -1
        if port not in self.routes:
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.routes[port]))
        except OSError:  # the hub is down (a restart test): as a real proxy says it
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            upstream.sendall(rest)
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)

    def close(self) -> None:
        self._closed = True
        self.sock.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        source.close()
