"""The fuzz run: many concurrent connections of generated inputs, the canary, the log and /proc."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import resource
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from fuzz.amqpcanary import AmqpCanaryDevice
from fuzz.amqpgen import AmqpGenerator
from fuzz.canary import Canary, CanaryStats, MqttCanaryDevice
from fuzz.classify import signature
from fuzz.hub import HubUnderTest, LogRecord, LogWatch
from fuzz.inputs import (
    AMQP_TARGETS,
    MQTT_TARGETS,
    TARGETS,
    TLS_TARGETS,
    FuzzInput,
    InputFactory,
    render,
    wire_kind,
)
from fuzz.mqttgen import Credentials, MqttGenerator
from fuzz.wire import Endpoint, Limits, Outcome, send

FUZZ_DEVICES = 8
CANARY_ID = "fuzz-canary"
AMQP_CANARY_ID = "fuzz-canary-amqp"
RECENT_WINDOW = 2.0
"""Seconds of finished inputs kept to name the input that preceded a traceback."""


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def likely_targets(text: str) -> set[str]:
    """The targets whose inputs can have caused a traceback, judged by the code it went through."""
    if "SSL" in text:
        return {"mqtts", "amqps", "amqpws"}
    if "gateway/websocket.py" in text or "wsproto" in text or "serving /$iothub/websocket" in text:
        return {"ws", "websocket", "amqpws"}
    if "gateway/amqp" in text or "/amqp/" in text or "azure/amqp" in text:
        return set(AMQP_TARGETS)
    if "gateway/" in text or "/mqtt/" in text:
        return set(MQTT_TARGETS)
    if "api/" in text or "calls/" in text or "registry/" in text or "serving /" in text or "jsontext" in text:
        return {"http", "websocket"}
    return set(TARGETS)


@dataclass
class Settings:
    seed: int = 1
    duration: float | None = None
    packets: int | None = None
    mutated: int | None = None
    targets: list[str] = field(default_factory=lambda: list(TARGETS))
    concurrency: int = 48
    max_open: int = 3000
    limits: Limits = field(default_factory=Limits)
    canary_interval: float = 0.1
    canary_timeout: float = 5.0
    fd_slack: int = 10
    max_hangs: int = 500
    progress_every: float = 5.0
    quiet: bool = False


@dataclass
class TargetStats:
    connections: int = 0
    packets: int = 0
    mutations: int = 0
    malformed: int = 0
    intact: int = 0
    bytes_out: int = 0
    closed_by_hub: int = 0
    aborted: int = 0
    hangs: int = 0
    connect_errors: int = 0
    accepted: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    close_latency_max: float = 0.0
    ends: collections.Counter[str] = field(default_factory=collections.Counter)
    """AMQP: how the hub ended each connection (``close <condition>``, ``TCP close``, ...)."""
    put_token_statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    detach_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    """AMQP: the error conditions of the hub's detach and end frames."""
    garbled: int = 0

    def to_json(self, unit: str = "packets") -> dict[str, Any]:
        """The figures; ``unit`` names what ``packets`` counts (``frames`` for AMQP)."""
        out: dict[str, Any] = {
            "connections": self.connections,
            "bytes_sent": self.bytes_out,
            "closed_by_hub": self.closed_by_hub,
            "aborted_by_fuzzer": self.aborted,
            "hangs": self.hangs,
            "connect_errors": self.connect_errors,
            "max_close_latency_s": round(self.close_latency_max, 3),
        }
        if self.packets:
            out |= {
                unit: self.packets,
                f"{unit}_before_first_mutation": self.intact,
                f"mutated_{unit}": self.mutations,
                **({"malformed_frames": self.malformed} if unit == "frames" else {}),
                "authorized" if unit == "frames" else "accepted_connects": self.accepted,
            }
        if self.statuses:
            out["http_statuses"] = {str(k): v for k, v in sorted(self.statuses.items())}
        if self.ends:
            out["hub_ended_with"] = dict(self.ends.most_common())
            out["put_token_statuses"] = {str(k): v for k, v in sorted(self.put_token_statuses.items())}
            out["detach_and_end_errors"] = dict(self.detach_errors.most_common())
            out["garbled_answers"] = self.garbled
        return out


@dataclass
class Finding:
    kind: str
    """"hang", "traceback", "http-500", "garbled" (an AMQP answer that does not decode) or
    "unanswered" (a put-token the hub must answer, in a well-formed dialogue, got no answer)."""
    signature: str
    count: int = 0
    first_at: float = 0.0
    detail: str = ""
    examples: list[tuple[FuzzInput, str]] = field(default_factory=list)
    """(input, what happened) — the first few."""
    candidates: list[FuzzInput] = field(default_factory=list)
    """For a traceback: the inputs that were being sent just before it, nearest first."""
    log_text: str = ""
    targets: collections.Counter[str] = field(default_factory=collections.Counter)
    variants: collections.Counter[str] = field(default_factory=collections.Counter)
    """For a hang: the protocol errors (as the hub's parser names them) seen in this group."""


@dataclass
class RunResult:
    settings: Settings
    started_wall: float
    fuzz_seconds: float
    stats: dict[str, TargetStats]
    findings: dict[tuple[str, str], Finding]
    canary: CanaryStats
    rss_start: int | None
    rss_end: int | None
    fds_start: int | None
    fds_end: int | None
    fds_peak: int | None
    hub_alive: bool
    stopped_early: str
    inputs: int
    log_lines: int
    hub_cpu_seconds: float | None
    fuzzer_cpu_seconds: float


class Fuzzer:
    def __init__(self, hub: HubUnderTest, settings: Settings) -> None:
        self.hub = hub
        self.settings = settings
        self.stats = {t: TargetStats() for t in settings.targets}
        self.findings: dict[tuple[str, str], Finding] = {}
        self.log = LogWatch(hub.log_path)
        self.recent: collections.deque[tuple[float, FuzzInput, int]] = collections.deque()
        self.active: dict[int, tuple[FuzzInput, Outcome]] = {}
        self.started = time.monotonic()
        self.stopped_early = ""
        self.fds_peak: int | None = None
        self.total_packets = 0
        self.total_mutated = 0
        self.total_frames = 0
        self.inputs = 0
        self.endpoints: dict[str, Endpoint] = {}

    # -- setup --

    def _endpoints(self) -> dict[str, Endpoint]:
        return endpoints(self.hub, self.settings.targets)

    def _devices(self) -> tuple[list[Credentials], dict[str, str], dict[str, str]]:
        """The fuzz devices (registered); their keys; the canaries' SAS tokens by device id."""
        seed = self.settings.seed
        devices = []
        keys = {}
        with httpx.Client(base_url=self.hub.http_url, timeout=30) as http:
            for i in range(FUZZ_DEVICES):
                device_id = f"fuzz-{i}"
                key = keys[device_id] = self.hub.device_key(seed, device_id)
                self.hub.register(http, device_id, key)
                devices.append(
                    Credentials(device_id, self.hub.device_token(device_id, key), self.hub.hostname)
                )
            tokens = {}
            for canary_id in (CANARY_ID, AMQP_CANARY_ID):
                canary_key = self.hub.device_key(seed, canary_id)
                self.hub.register(http, canary_id, canary_key)
                tokens[canary_id] = self.hub.device_token(canary_id, canary_key)
        return devices, keys, tokens

    def _canary(self, tokens: dict[str, str]) -> Canary:
        hub = self.hub
        devices: list[Any] = [
            MqttCanaryDevice("127.0.0.1", hub.ports["mqtt"], hub.hostname, CANARY_ID, tokens[CANARY_ID])
        ]
        if "amqp" in hub.ports:
            devices.append(
                AmqpCanaryDevice(
                    "127.0.0.1", hub.ports["amqp"], hub.hostname, AMQP_CANARY_ID, tokens[AMQP_CANARY_ID]
                )
            )
        elif AMQP_TARGETS & set(self.settings.targets):
            self.hub.notes.append("no plain AMQP listener (hub.json 'amqp'): no AMQP canary")
        return Canary(
            http_url=hub.http_url,
            owner_token=hub.owner_token,
            devices=devices,
            interval=self.settings.canary_interval,
            call_timeout=self.settings.canary_timeout,
        )

    def say(self, message: str) -> None:
        if not self.settings.quiet:
            print(f"[fuzz {time.monotonic() - self.started:7.1f}s] {message}", file=sys.stderr, flush=True)

    # -- the run --

    def run(self) -> RunResult:
        devices, keys, tokens = self._devices()
        self.endpoints = self._endpoints()
        canary = self._canary(tokens)
        canary.start()
        https = self.hub.ports.get("https")
        factory = InputFactory(
            self.settings.seed,
            self.settings.targets,
            MqttGenerator(devices, str(self.settings.seed)),
            self.hub.http_host,
            self.hub.owner_token,
            AmqpGenerator(devices, self.hub.hostname, keys),
            f"{self.hub.hostname}:{https}" if https else "",
        )
        time.sleep(0.5)
        rss_start, fds_start = self.hub.rss(), self.hub.fds()
        self.fds_peak = fds_start
        started_wall = time.time()
        self.started = time.monotonic()
        hub_cpu, own_cpu = self.hub.cpu(), _own_cpu()
        try:
            asyncio.run(self._fuzz(factory, canary))
        finally:
            stats = canary.stop()
        fuzz_seconds = time.monotonic() - self.started
        hub_cpu_end = self.hub.cpu()
        hub_cpu_used = hub_cpu_end - hub_cpu if hub_cpu is not None and hub_cpu_end is not None else None
        own_cpu_used = _own_cpu() - own_cpu
        fds_end = self._settled_fds(fds_start)
        self._poll_log(final=True)
        return RunResult(
            settings=self.settings,
            started_wall=started_wall,
            fuzz_seconds=fuzz_seconds,
            stats=self.stats,
            findings=self.findings,
            canary=stats,
            rss_start=rss_start,
            rss_end=self.hub.rss(),
            fds_start=fds_start,
            fds_end=fds_end,
            fds_peak=self.fds_peak,
            hub_alive=self.hub.alive(),
            stopped_early=self.stopped_early,
            inputs=self.inputs,
            log_lines=self.log.lines_read,
            hub_cpu_seconds=hub_cpu_used,
            fuzzer_cpu_seconds=own_cpu_used,
        )

    def _settled_fds(self, start: int | None) -> int | None:
        """The hub's fd count once the fuzz connections are gone (waits up to 10 s for it to settle)."""
        deadline = time.monotonic() + 10
        last = self.hub.fds()
        while last is not None and start is not None and last > start + self.settings.fd_slack:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
            last = self.hub.fds()
        return last

    async def _fuzz(self, factory: InputFactory, canary: Canary) -> None:
        settings = self.settings
        sending = asyncio.Semaphore(settings.concurrency)
        open_slots = asyncio.Semaphore(settings.max_open)
        tasks: set[asyncio.Task[None]] = set()
        monitor = asyncio.create_task(self._monitor(canary))
        index = 0
        try:
            while True:
                if settings.packets is not None and self.total_packets >= settings.packets:
                    break
                if settings.mutated is not None and self.total_mutated >= settings.mutated:
                    break
                elapsed = time.monotonic() - self.started
                if settings.duration is not None and elapsed >= settings.duration:
                    break
                if self.stopped_early:
                    break
                await open_slots.acquire()
                await sending.acquire()
                inp = factory.make(index)
                index += 1
                self.inputs = index
                if inp.target in MQTT_TARGETS:
                    self.total_packets += inp.packets
                    self.total_mutated += inp.mutations
                elif inp.target in AMQP_TARGETS:
                    self.total_frames += inp.packets
                task = asyncio.create_task(self._one(inp, sending, open_slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks)
        finally:
            monitor.cancel()
            for task in tasks:
                task.cancel()

    def _bound(self, inp: FuzzInput) -> float:
        limits = self.settings.limits
        return limits.stall_bound if inp.target == "http" else limits.connect_bound

    async def _one(self, inp: FuzzInput, sending: asyncio.Semaphore, open_slots: asyncio.Semaphore) -> None:
        settings = self.settings
        released = False
        try:
            end = inp.end
            bound = self._bound(inp)
            if end == "silent" and not inp.silent_ok:
                end = "fin"
            left = (
                settings.duration - (time.monotonic() - self.started)
                if settings.duration is not None
                else None
            )
            if end == "silent" and left is not None and bound > left:
                # near the end of a timed run, a silent connection would outlive it: send FIN instead
                end = "fin"
            if inp.plan == "dribble" and left is not None and bound > left:
                inp = dataclasses.replace(inp, plan="stages")  # likewise a dribbling one
            steps = render(inp)
            outcome = Outcome()
            self.active[inp.index] = (inp, outcome)

            def sent() -> None:
                # the sending slot is held only while writing: a connection waiting for the hub to
                # close it does not slow the others
                nonlocal released
                if not released:
                    released = True
                    sending.release()

            await send(
                self.endpoints[inp.endpoint],
                wire_kind(inp.target),
                steps,
                end,
                bound,
                settings.limits,
                sent,
                outcome,
                inp.sasl_plain,
            )
            self.active.pop(inp.index, None)
            now = time.monotonic()
            self.recent.append((outcome.last_write or now, inp, outcome.local_port))
            while self.recent and self.recent[0][0] < now - RECENT_WINDOW:
                self.recent.popleft()
            self._account(inp, steps, end, outcome)
        finally:
            self.active.pop(inp.index, None)
            if not released:
                sending.release()
            open_slots.release()

    def _account(self, inp: FuzzInput, steps: list[Any], end: str, outcome: Outcome) -> None:
        st = self.stats[inp.target]
        st.connections += 1
        st.packets += inp.packets
        st.mutations += inp.mutations
        st.malformed += inp.malformed
        st.intact += inp.intact_prefix
        st.bytes_out += sum(len(arg) for op, arg in steps if op == "write")
        if outcome.error:
            st.connect_errors += 1
            return
        if end == "abort":
            st.aborted += 1
        if outcome.closed_by_hub:
            st.closed_by_hub += 1
            if outcome.close_latency is not None:
                st.close_latency_max = max(st.close_latency_max, outcome.close_latency)
        if outcome.accepted:
            st.accepted += 1
        st.statuses.update(outcome.statuses)
        if outcome.amqp is not None:
            st.ends[outcome.amqp_end] += 1
            st.put_token_statuses.update(outcome.amqp.put_token_statuses)
            st.detach_errors.update(outcome.amqp.detach_errors + outcome.amqp.end_errors)
            # (not after a wait for attaches ran out: the put-token may have raced its credit)
            unanswered = not outcome.amqp.put_token_statuses and outcome.stalled in ("", "wait-put-token")
            if inp.expects_cbs_answer and outcome.open_after_steps and unanswered:
                self._finding("unanswered", f"{inp.target}: a put-token the hub must answer was not", inp, "")
            if outcome.amqp.garbled:
                st.garbled += 1
                self._finding(
                    "garbled", f"{inp.target}: {outcome.amqp.garbled[:120]}", inp, outcome.amqp.garbled
                )
        if outcome.hang:
            st.hangs += 1
            group, variant = signature(inp, outcome.hang)
            finding = self._finding("hang", group, inp, outcome.hang)
            finding.targets[inp.target] += 1
            if variant:
                finding.variants[variant] += 1
            hangs = sum(s.hangs for s in self.stats.values())
            if hangs >= self.settings.max_hangs and not self.stopped_early:
                self.stopped_early = f"stopped after {hangs} hangs (--max-hangs)"
        if 500 in outcome.statuses:
            label = next((u.label for u in inp.units), "")
            finding = self._finding("http-500", f"{inp.target}: {label.split(':')[0]}", inp, "HTTP 500")
            finding.targets[inp.target] += 1

    def _finding(self, kind: str, sig: str, inp: FuzzInput | None, what: str) -> Finding:
        key = (kind, sig)
        finding = self.findings.get(key)
        if finding is None:
            finding = self.findings[key] = Finding(
                kind, sig, first_at=time.monotonic() - self.started, detail=what
            )
        finding.count += 1
        if inp is not None and len(finding.examples) < 5:
            finding.examples.append((inp, what))
        return finding

    # -- monitoring --

    def _poll_log(self, final: bool = False) -> None:
        records = self.log.flush() if final else self.log.poll()
        for record in records:
            self._traceback(record)

    def _traceback(self, record: LogRecord) -> None:
        finding = self._finding("traceback", record.signature(), None, record.lines[0][:200])
        if not finding.log_text:
            finding.log_text = record.text[:4000]
        if len(finding.candidates) < 40:
            known = {c.index for c in finding.candidates}
            finding.candidates.extend(
                c for c in self._candidates(record, 40 - len(finding.candidates)) if c.index not in known
            )

    def _candidates(self, record: LogRecord, limit: int) -> list[FuzzInput]:
        """Inputs sent in the ``RECENT_WINDOW`` before the record was seen (and those still sending):
        first those whose client port the log names near it, then the nearest in time."""
        seen = record.seen
        ports = record.nearby_ports
        clients = [c.encode() for c in record.nearby_clients]
        likely = likely_targets(record.text)
        pool = [(seen - t, inp, port) for t, inp, port in self.recent if t <= seen + 0.3]
        pool += [
            (seen - (out.last_write or out.first_write or seen), inp, out.local_port)
            for inp, out in self.active.values()
        ]

        def named(inp: FuzzInput) -> bool:
            first = inp.units[0].data if inp.units else b""
            return any(c in first for c in clients)

        pool.sort(
            key=lambda item: (
                ports.index(item[2]) if item[2] in ports else len(ports),
                not named(item[1]),
                item[1].target not in likely,
                abs(item[0]),
            )
        )
        seen_ids: set[int] = set()
        out = []
        for _, inp, _ in pool:
            if inp.index not in seen_ids:
                seen_ids.add(inp.index)
                out.append(inp)
            if len(out) >= limit:
                break
        return out

    async def _monitor(self, canary: Canary) -> None:
        last_progress = time.monotonic()
        last_packets = 0
        while True:
            await asyncio.sleep(0.05)
            self._poll_log()
            now = time.monotonic()
            if now - last_progress >= self.settings.progress_every:
                fds = self.hub.fds()
                if fds is not None and (self.fds_peak is None or fds > self.fds_peak):
                    self.fds_peak = fds
                rss = self.hub.rss()
                calls, ok = canary.snapshot()
                rate = (self.total_packets - last_packets) / (now - last_progress)
                conns = sum(s.connections for s in self.stats.values())
                hangs = sum(s.hangs for s in self.stats.values())
                tracebacks = sum(f.count for f in self.findings.values() if f.kind == "traceback")
                amqp = f", {self.total_frames:,} AMQP frames" if self.total_frames else ""
                self.say(
                    f"{conns} connections, {self.total_packets:,} MQTT packets ({rate:,.0f}/s), "
                    f"{self.total_mutated:,} mutated{amqp} | "
                    f"hangs {hangs} | tracebacks {tracebacks} | "
                    f"canary {100.0 * ok / calls if calls else 0:.1f}% of {calls} | "
                    f"hub rss {(rss or 0) / 1e6:.0f} MB, fds {fds}"
                )
                last_progress, last_packets = now, self.total_packets
                if not self.hub.alive():
                    self.stopped_early = "the hub exited"


def endpoints(hub: HubUnderTest, targets: list[str]) -> dict[str, Endpoint]:
    """Where each target's inputs go (and, for the TLS ports, plain TCP to them: ``NAME-no-tls``)."""
    out: dict[str, Endpoint] = {}
    port_of = {"mqtt": "mqtt", "mqtts": "mqtts", "amqp": "amqp", "amqps": "amqps", "amqpws": "https"}
    for target in targets:
        port = port_of.get(target, "http")
        if port not in hub.ports:
            raise SystemExit(f"fuzz: target {target} needs the hub's {port} listener (hub.json)")
        if target in TLS_TARGETS:
            if hub.ca_file is None:
                raise SystemExit(f"fuzz: target {target} needs the hub's CA (hub.json 'ca')")
            context = ssl.create_default_context(cafile=str(hub.ca_file))
            out[target] = Endpoint("127.0.0.1", hub.ports[port], context, "localhost")
            out[f"{target}-no-tls"] = Endpoint("127.0.0.1", hub.ports[port])
        else:
            out[target] = Endpoint("127.0.0.1", hub.ports[port])
    return out
