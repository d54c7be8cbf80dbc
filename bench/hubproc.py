"""The hub under test: ``methodhub serve`` in a subprocess, its CPU and memory, and bulk registration."""

from __future__ import annotations

import asyncio
import base64
import functools
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import orjson

from bench.common import API_VERSION, HOSTNAME, cpu_seconds, memory, parse_cs, preexec, process_tree, sign

LISTENING = re.compile(r"(\w+) listening on (\S+):(\d+)")
GC_LINE = re.compile(r"^bench-gc gen=(\d) ms=([\d.]+)$", re.MULTILINE)

GC_PROBE = """
import gc, sys, time

def _bench_gc_probe():
    started = [0.0]

    def probe(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - started[0]) * 1000
        if ms >= 1.0 or info["generation"] == 2:
            sys.stderr.write(f"bench-gc gen={info['generation']} ms={ms:.2f}\\n")

    gc.callbacks.append(probe)

_bench_gc_probe()
sys.argv[0] = "methodhub"
from methodhub.cli.app import main
main()
"""
"""``python -m methodhub`` plus a garbage-collector probe: every collection that takes ≥ 1 ms, and
every full (generation 2) one, is logged to the hub's stderr, so the suite can tell GC pauses from
other stalls. The probe costs one Python call per collection."""


@dataclass
class ServerProcess:
    """A server subprocess whose CPU time and memory we sample from /proc."""

    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        """CPU seconds of the process and its children (``--workers``: the workers and the
        nats-server the parent started for them)."""
        total = 0.0
        for pid in process_tree(self.pid):
            try:
                total += cpu_seconds(pid)
            except OSError:  # exited meanwhile
                pass
        return total

    def rss(self) -> int:
        return memory(self.pid)[0]

    def peak_rss(self) -> int:
        return memory(self.pid)[1]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@dataclass
class Hub(ServerProcess):
    """``methodhub serve`` on free ports with its own data dir; stderr goes to ``hub.log``."""

    data_dir: Path = Path()
    cpus: frozenset[int] | None = None
    nofile: int | None = None
    args: list[str] = field(default_factory=list)
    """More ``serve`` arguments, e.g. ``["--workers", "2"]``."""
    listeners: tuple[str, ...] = ()
    """Listeners besides plain MQTT and HTTP to open on free ports, e.g. ``("amqp",)``
    (``--amqp-port 0``); every other one is off."""
    ports: dict[str, int] = field(default_factory=dict)
    owner_token: str = ""

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self, timeout: float = 30) -> Hub:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-c",
            GC_PROBE,
            "--data-dir",
            str(self.data_dir),
            "serve",
            "--mqtt-port",
            "0",
            "--http-port",
            "0",
            "--hostname",
            HOSTNAME,
        ]
        for flag in other_port_flags():  # TLS/WebSocket/AMQP listeners: off, so fixed ports never clash
            cmd += [flag, "0" if flag.removeprefix("--").removesuffix("-port") in self.listeners else "-1"]
        cmd += self.args
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=log,
            preexec_fn=preexec(self.cpus, self.nofile),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            self.ports = {m.group(1): int(m.group(3)) for m in LISTENING.finditer(text)}
            # with --workers N the parent writes hub.json once every worker listens
            wanted = {"mqtt", "http", *self.listeners}
            if wanted <= self.ports.keys() and (self.data_dir / "hub.json").exists():
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"the hub exited at start:\n{text}")
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"the hub did not start in {timeout} s:\n{self.log_path.read_text()}")
        at = self.args.index("--registry") if "--registry" in self.args else None
        registry = self.args[at : at + 2] if at is not None else []  # the keys are where the hub's are
        cs = subprocess.run(
            [
                sys.executable,
                "-m",
                "methodhub",
                "--data-dir",
                str(self.data_dir),
                *registry,
                "connection-string",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        owner = parse_cs(cs)
        self.owner_token = sign(
            owner["HostName"],
            owner["SharedAccessKey"],
            int(time.time()) + 24 * 3600,
            owner["SharedAccessKeyName"],
            plus=True,
        )
        return self

    @property
    def mqtt_port(self) -> int:
        return self.ports["mqtt"]

    @property
    def amqp_port(self) -> int:
        return self.ports["amqp"]

    @property
    def http_port(self) -> int:
        return self.ports["http"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log_mark(self) -> int:
        """A position in the hub's log, for :meth:`gc_since`."""
        return self.log_path.stat().st_size

    def gc_since(self, mark: int) -> dict[str, float]:
        """Garbage-collector pauses logged since ``mark``: count (≥ 1 ms or full), full ones, max, total."""
        with self.log_path.open("rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        pauses = [(int(gen), float(ms)) for gen, ms in GC_LINE.findall(text)]
        return {
            "pauses": len(pauses),
            "full": sum(1 for gen, _ in pauses if gen == 2),
            "max_ms": max((ms for _, ms in pauses), default=0.0),
            "total_ms": sum(ms for _, ms in pauses),
        }

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace")
        return "\n".join([line for line in text.splitlines() if not line.startswith("bench-gc ")][-lines:])


@functools.cache
def other_port_flags() -> list[str]:
    """``serve`` flags of listeners other than plain MQTT and HTTP (e.g. ``--mqtts-port``)."""
    help_text = subprocess.run(
        [sys.executable, "-m", "methodhub", "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    flags = set(re.findall(r"--[a-z]+-port\b", help_text)) - {"--mqtt-port", "--http-port"}
    return sorted(flags)


def new_device_key() -> str:
    """A random 32-byte symmetric key, base64 (Azure's format)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def register_devices(hub: Hub, ids: list[str], key: str, concurrency: int = 16) -> float:
    """Register ``ids`` through the REST API (``PUT /devices/{id}``), all with primary key ``key``.

    Returns the seconds it took. Every device gets the same key, so the device farm can sign each
    device's SAS token itself; the hub still verifies one token per device. (A raw keep-alive
    HTTP/1.1 client: httpx spends ~1 ms of CPU per request, more than the hub does.)
    """
    secondary = new_device_key()
    started = time.perf_counter()

    def request(device_id: str) -> bytes:
        body = orjson.dumps(
            {
                "deviceId": device_id,
                "authentication": {
                    "type": "sas",
                    "symmetricKey": {"primaryKey": key, "secondaryKey": secondary},
                },
            }
        )
        return (
            f"PUT /devices/{quote(device_id, safe='')}?api-version={API_VERSION} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{hub.http_port}\r\nAuthorization: {hub.owner_token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def worker(queue: list[str]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.http_port)
        try:
            while queue:
                device_id = queue.pop()
                writer.write(request(device_id))
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                answer = await reader.readexactly(length)
                if status not in (200, 409):
                    raise RuntimeError(f"PUT /devices/{device_id}: {status} {answer[:300]!r}")
        finally:
            writer.close()

    async def run() -> None:
        queue = list(reversed(ids))
        await asyncio.gather(*(worker(queue) for _ in range(min(concurrency, len(ids)))))

    asyncio.run(run())
    return time.perf_counter() - started
