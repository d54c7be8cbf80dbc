"""The hub under test: one the harness starts (``bench.hubproc.Hub``, with the TLS listeners and the
plain AMQP listener on), or one already running (``--hub-url``, its data dir's ``hub.json``); its log,
RSS and file descriptors."""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
from bench.common import API_VERSION, cpu_seconds, memory, parse_cs, sign
from bench.hubproc import Hub

FIXED_EXPIRY = 4102444800
"""2100-01-01: the fuzz devices' SAS tokens expire then, so a seed gives the same bytes every run."""


OWN_HUB_HTTP_DEADLINE = 10
"""Seconds the fuzzer's own hub gives an HTTP request head and body (``--http-head-timeout`` and
``--http-body-timeout``; the hub's defaults are 10 and 30)."""


@dataclass
class HubUnderTest:
    http_url: str
    ports: dict[str, int]
    hostname: str
    owner_token: str
    ca_file: Path | None
    pid: int | None
    log_path: Path | None
    own: Hub | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def http_host(self) -> str:
        return urlsplit(self.http_url).netloc

    # -- starting / attaching --

    @staticmethod
    def start(data_dir: Path) -> HubUnderTest:
        """Start a hub of the fuzzer's own (a temporary data dir, free ports, TLS on, plain AMQP on)."""
        # The hub's own HTTP deadlines, shortened for the body so that a run's last connections are
        # judged quickly: every incomplete request is answered 408 within OWN_HUB_HTTP_DEADLINE.
        deadline = str(OWN_HUB_HTTP_DEADLINE)
        hub = Hub(
            data_dir=data_dir,
            args=[
                *("--mqtts-port", "0", "--https-port", "0", "--amqps-port", "0", "--amqp-port", "0"),
                *("--http-head-timeout", deadline, "--http-body-timeout", deadline),
            ],
        ).start()
        runtime = json.loads((data_dir / "hub.json").read_text())
        ports = {"mqtt": hub.mqtt_port, "http": hub.http_port}
        for name in ("mqtts", "https", "amqp", "amqps"):
            if runtime.get(name):
                ports[name] = int(str(runtime[name]).rsplit(":", 1)[1])
        return HubUnderTest(
            http_url=hub.url,
            ports=ports,
            hostname=runtime.get("hostname", "localhost"),
            owner_token=hub.owner_token,
            ca_file=Path(runtime["ca"]) if runtime.get("ca") else None,
            pid=hub.pid,
            log_path=hub.log_path,
            own=hub,
        )

    @staticmethod
    def attach(
        url: str, data_dir: Path | None, connection_string: str | None, log_path: Path | None
    ) -> HubUnderTest:
        """A hub already running at ``url``; ports, pid and CA from ``DATA_DIR/hub.json`` when given."""
        runtime: dict[str, object] = {}
        if data_dir is not None and (data_dir / "hub.json").exists():
            runtime = json.loads((data_dir / "hub.json").read_text())
        host = urlsplit(url).hostname or "127.0.0.1"
        ports = {"http": urlsplit(url).port or 80}
        for name in ("mqtt", "mqtts", "https", "amqp", "amqps"):
            if runtime.get(name):
                ports[name] = int(str(runtime[name]).rsplit(":", 1)[1])
        if connection_string is None:
            if data_dir is None:
                raise SystemExit(
                    "fuzz: --hub-url needs --connection-string or --data-dir (for the owner's key)"
                )
            connection_string = subprocess.run(
                [sys.executable, "-m", "methodhub", "--data-dir", str(data_dir), "connection-string"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        owner = parse_cs(connection_string)
        token = sign(
            owner["HostName"],
            owner["SharedAccessKey"],
            int(time.time()) + 24 * 3600,
            owner["SharedAccessKeyName"],
            plus=True,
        )
        pid = runtime.get("pid")
        notes = []
        if not isinstance(pid, int) or not Path(f"/proc/{pid}").exists():
            pid = None
            notes.append("the hub's pid is unknown (no local hub.json): RSS and fds are not sampled")
        if log_path is None:
            notes.append("no --hub-log: the hub's log is not scanned for tracebacks")
        ca = runtime.get("ca")
        hub = HubUnderTest(
            url.rstrip("/"),
            ports,
            owner["HostName"],
            token,
            Path(str(ca)) if ca else None,
            pid,
            log_path,
            None,
            notes,
        )
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("fuzz: fuzz only a hub on this machine (127.0.0.1)")
        return hub

    def stop(self) -> int | None:
        return self.own.stop() if self.own is not None else None

    # -- process figures --

    def rss(self) -> int | None:
        if self.pid is None:
            return None
        try:
            return memory(self.pid)[0]
        except OSError:
            return None

    def fds(self) -> int | None:
        if self.pid is None:
            return None
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return None

    def cpu(self) -> float | None:
        """CPU seconds the hub has used so far."""
        if self.pid is None:
            return None
        try:
            return cpu_seconds(self.pid)
        except OSError:
            return None

    def alive(self) -> bool:
        if self.own is not None:
            return self.own.alive()
        return self.pid is None or Path(f"/proc/{self.pid}").exists()

    # -- devices --

    def device_key(self, seed: int, device_id: str) -> str:
        return base64.b64encode(
            hashlib.sha256(f"methodhub-fuzz:{seed}:{device_id}".encode()).digest()
        ).decode()

    def device_token(self, device_id: str, key: str) -> str:
        return sign(f"{self.hostname}/devices/{device_id}", key, FIXED_EXPIRY)

    def register(self, client: httpx.Client, device_id: str, key: str) -> None:
        """Create ``device_id`` with ``key`` (or set its key if it exists)."""
        body = {
            "deviceId": device_id,
            "authentication": {"type": "sas", "symmetricKey": {"primaryKey": key, "secondaryKey": key}},
        }
        url = f"/devices/{quote(device_id, safe='')}?api-version={API_VERSION}"
        headers = {"Authorization": self.owner_token}
        answer = client.put(url, json=body, headers=headers)
        if answer.status_code == 409:
            answer = client.put(url, json=body, headers={**headers, "If-Match": "*"})
        if answer.status_code != 200:
            raise SystemExit(
                f"fuzz: could not register {device_id}: {answer.status_code} {answer.text[:200]}"
            )


LOG_RECORD_START = re.compile(r"^(\d{4}-\d\d-\d\dT\S+ [A-Z]+ |\{)")
ASYNCIO_PROBLEMS = (
    "Fatal error on ",  # "... transport", "... SSL protocol"
    "Future exception was never retrieved",
    "Task exception was never retrieved",
    "Exception in callback",
    "Task was destroyed but it is pending",
    "Unhandled error in exception handler",
)
PROBLEM_WORDS = ("Traceback", *ASYNCIO_PROBLEMS)
ASYNCIO_KIND = re.compile(
    r"(Fatal error on (?:SSL protocol|transport)|Future exception was never retrieved"
    r"|Task exception was never retrieved|Exception in callback|Task was destroyed but it is pending"
    r"|Unhandled error in exception handler)"
)


PEER = re.compile(r"peer=127\.0\.0\.1:(\d+)")
CLIENT = re.compile(r"(?:client_id|device)=(\S+)")


@dataclass(slots=True)
class LogRecord:
    seen: float
    """time.monotonic() when the harness read its first line."""
    lines: list[str]
    nearby_ports: list[int] = field(default_factory=list)
    """Client ports named (``peer=``) in this record and the few before it: the likely culprits."""
    nearby_clients: list[str] = field(default_factory=list)
    """Client ids named (``client_id=``, ``device=``) in this record and the few before it."""

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def is_problem(self) -> bool:
        return any(word in line for line in self.lines for word in PROBLEM_WORDS)

    def signature(self) -> str:
        """What distinguishes one traceback from another: the message kind, the exception (numbers and
        quoted values blanked) and the innermost methodhub frame."""
        head = self.lines[0]
        m = ASYNCIO_KIND.search(head)
        kind = m.group(1) if m else ""
        if kind.startswith("Fatal error on"):  # the same failure over TCP and TLS
            kind = "Fatal error on transport"
        if not kind:
            kind = re.sub(r"^\S+ [A-Z]+ ", "", head)
            kind = re.sub(r"\s\w+=.*$", "", kind)[:80]
        frame = ""
        for line in self.lines:
            m = re.search(r'File "([^"]*methodhub[^"]*)", line \d+, in (\S+)', line)
            if m:
                frame = f"{m.group(1).split('methodhub/', 1)[-1]}:{m.group(2)}"
        exc = ""
        for line in reversed(self.lines):
            if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b", line) or re.match(
                r"^[\w.]+: ", line
            ):
                exc = line.strip()
                break
        exc = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", exc)
        exc = re.sub(r"0x[0-9a-f]+|\d+", "N", exc)[:160]
        return " | ".join(part for part in (kind, exc, frame) if part)


class LogWatch:
    """Follows the hub's log file; groups lines into records; keeps the problem records."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.offset = 0
        self.pending: LogRecord | None = None
        self.partial = ""
        self.problems: list[LogRecord] = []
        self.lines_read = 0
        self.recent_ports: collections.deque[int] = collections.deque(maxlen=4)
        self.recent_clients: collections.deque[str] = collections.deque(maxlen=4)

    def skip_to_end(self) -> None:
        if self.path is not None and self.path.exists():
            self.offset = self.path.stat().st_size

    def poll(self) -> list[LogRecord]:
        """New problem records since the last poll (a record is complete when the next begins)."""
        if self.path is None or not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        text = self.partial + data.decode("utf-8", "replace")
        lines = text.split("\n")
        self.partial = lines.pop()
        found: list[LogRecord] = []
        now = time.monotonic()
        for line in lines:
            if line.startswith("bench-gc "):
                continue
            self.lines_read += 1
            starts = LOG_RECORD_START.match(line) or any(line.startswith(p) for p in ASYNCIO_PROBLEMS)
            if starts or self.pending is None:
                self._flush(found)
                self.pending = LogRecord(now, [line])
            else:
                self.pending.lines.append(line)
        return found

    def flush(self) -> list[LogRecord]:
        found = self.poll()
        self._flush(found)
        return found

    def _flush(self, found: list[LogRecord]) -> None:
        record = self.pending
        self.pending = None
        if record is None:
            return
        ports = [int(m.group(1)) for line in record.lines for m in PEER.finditer(line)]
        clients = [m.group(1) for m in CLIENT.finditer(record.lines[0]) if m.group(1) not in ("-", '""')]
        if record.is_problem():
            record.nearby_ports = [*ports, *reversed(self.recent_ports)]
            record.nearby_clients = [*clients, *reversed(self.recent_clients)]
            self.problems.append(record)
            found.append(record)
        self.recent_ports.extend(ports)
        self.recent_clients.extend(clients)
