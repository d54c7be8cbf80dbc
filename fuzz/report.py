"""The report: JSON with every figure, reproducer files, a short summary, and the verdict."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fuzz.inputs import AMQP_TARGETS, MQTT_TARGETS, FuzzInput, render
from fuzz.run import Finding, RunResult
from fuzz.triage import Triaged


def steps_hex(inp: FuzzInput) -> str:
    """The writes as hex, ``|`` between writes, ``<wait>`` where the fuzzer waited for an answer
    (``<wait-put-token>``: for the hub's answer to an AMQP put-token)."""
    parts = []
    for op, arg in render(inp):
        if op == "write":
            parts.append(arg.hex())  # type: ignore[union-attr]
        elif op in ("wait", "wait-attach", "wait-put-token"):
            parts.append(f"<{op}>")
    return " | ".join(parts)


class Reporter:
    def __init__(self, path: Path, seed: int) -> None:
        self.path = path
        self.seed = seed
        self.repro_dir = path.parent / f"{path.stem}-reproducers"
        self.saved = 0

    def save(self, name: str, inp: FuzzInput, note: str) -> str:
        """Write ``inp`` as ``NAME.json`` (replay with ``python -m fuzz --replay FILE``) and ``NAME.bin``."""
        self.repro_dir.mkdir(parents=True, exist_ok=True)
        steps = render(inp)
        doc = {"note": note, "seed": self.seed, **inp.to_json(steps)}
        (self.repro_dir / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        (self.repro_dir / f"{name}.bin").write_bytes(b"".join(arg for op, arg in steps if op == "write"))  # type: ignore[misc]
        self.saved += 1
        return str((self.repro_dir / f"{name}.json").relative_to(self.path.parent))

    def finding_json(self, number: int, finding: Finding, triaged: Triaged | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": finding.kind,
            "signature": finding.signature,
            "count": finding.count,
            "first_at_s": round(finding.first_at, 2),
            "detail": finding.detail,
        }
        if finding.targets:
            out["targets"] = dict(finding.targets.most_common())
        if finding.variants:
            out["protocol_errors"] = dict(finding.variants.most_common(15))
        if finding.log_text:
            out["log"] = finding.log_text
        base = f"{number:02d}-{finding.kind}"
        if finding.kind == "traceback":
            if finding.candidates:
                preceding = finding.candidates[0]
                out["preceding_input"] = self.save(
                    f"{base}-preceding-{preceding.target}",
                    preceding,
                    "the input sent last before the traceback",
                )
        else:
            out["examples"] = []
            for i, (inp, what) in enumerate(finding.examples[:3]):
                out["examples"].append(
                    {
                        "what": what,
                        "target": inp.target,
                        "units": inp.describe()[:12],
                        "file": self.save(f"{base}-{i}-{inp.target}", inp, what),
                    }
                )
        if triaged is not None:
            out["confirmed_alone"] = triaged.confirmed
            if triaged.note:
                out["triage_note"] = triaged.note
            if triaged.input is not None and finding.kind == "traceback":
                out["reproducer"] = self.save(
                    f"{base}-reproducer-{triaged.input.target}", triaged.input, finding.signature
                )
            if triaged.minimal is not None:
                m = triaged.minimal
                out["minimal"] = {
                    "target": m.target,
                    "plan": m.plan,
                    "units": m.describe(),
                    "writes_hex": steps_hex(m) if len(steps_hex(m)) < 4000 else steps_hex(m)[:4000] + "…",
                    "file": self.save(f"{base}-minimal-{m.target}", m, finding.signature),
                }
        return out

    def write(
        self,
        result: RunResult,
        triage: dict[tuple[str, str], Triaged],
        verdict: list[str],
        hub_notes: list[str],
    ) -> dict[str, Any]:
        s = result.settings
        mqtt = [st for t, st in result.stats.items() if t in MQTT_TARGETS]
        amqp = [st for t, st in result.stats.items() if t in AMQP_TARGETS]
        packets = sum(st.packets for st in mqtt)
        mutations = sum(st.mutations for st in mqtt)
        frames = sum(st.packets for st in amqp)
        findings = sorted(result.findings.values(), key=lambda f: (f.kind, -f.count))
        doc: dict[str, Any] = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(result.started_wall)),
            "seed": s.seed,
            "targets": s.targets,
            "budget": {"duration_s": s.duration, "packets": s.packets, "mutated_packets": s.mutated},
            "fuzz_seconds": round(result.fuzz_seconds, 1),
            "inputs": result.inputs,
            "mqtt_packets": packets,
            "mqtt_mutated_packets": mutations,
            "mqtt_packets_per_s": round(packets / result.fuzz_seconds) if result.fuzz_seconds else 0,
            "mqtt_packets_before_first_mutation": sum(st.intact for st in mqtt),
            "amqp_frames": frames,
            "amqp_mutated_frames": sum(st.mutations for st in amqp),
            "amqp_malformed_frames": sum(st.malformed for st in amqp),
            "amqp_frames_per_s": round(frames / result.fuzz_seconds) if result.fuzz_seconds else 0,
            "amqp_frames_before_first_mutation": sum(st.intact for st in amqp),
            "cpu_seconds": {
                "hub": round(result.hub_cpu_seconds, 1) if result.hub_cpu_seconds is not None else None,
                "fuzzer": round(result.fuzzer_cpu_seconds, 1),
            },
            "limits": {
                "close_timeout_s": s.limits.close_timeout,
                "connect_bound_s": s.limits.connect_bound,
                "stall_bound_s": s.limits.stall_bound,
                "fd_slack": s.fd_slack,
            },
            "per_target": {
                t: st.to_json("frames" if t in AMQP_TARGETS else "packets") for t, st in result.stats.items()
            },
            "hangs": sum(st.hangs for st in result.stats.values()),
            "tracebacks": sum(f.count for f in findings if f.kind == "traceback"),
            "http_500": sum(f.count for f in findings if f.kind == "http-500"),
            "garbled_amqp_answers": sum(f.count for f in findings if f.kind == "garbled"),
            "unanswered_put_tokens": sum(f.count for f in findings if f.kind == "unanswered"),
            "hub": {
                "alive_at_end": result.hub_alive,
                "rss_start_mb": _mb(result.rss_start),
                "rss_end_mb": _mb(result.rss_end),
                "fds_start": result.fds_start,
                "fds_peak": result.fds_peak,
                "fds_end": result.fds_end,
                "fd_growth": (result.fds_end - result.fds_start)
                if result.fds_end is not None and result.fds_start is not None
                else None,
                "log_lines_read": result.log_lines,
                "notes": hub_notes,
            },
            "canary": result.canary.to_json(),
            "stopped_early": result.stopped_early or None,
            "findings": [
                self.finding_json(i + 1, f, triage.get((f.kind, f.signature))) for i, f in enumerate(findings)
            ],
            "verdict": {"ok": not verdict, "failures": verdict},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(doc, indent=1) + "\n")
        return doc


def _mb(value: int | None) -> float | None:
    return round(value / 1e6, 1) if value is not None else None


def verdict(result: RunResult) -> list[str]:
    """Why the run fails (empty: it passes)."""
    out = []
    hangs = sum(st.hangs for st in result.stats.values())
    if hangs:
        out.append(f"{hangs} connection(s) not closed in time")
    tracebacks = sum(f.count for f in result.findings.values() if f.kind == "traceback")
    if tracebacks:
        out.append(f"{tracebacks} traceback(s) in the hub's log")
    http500 = sum(f.count for f in result.findings.values() if f.kind == "http-500")
    if http500:
        out.append(f"{http500} HTTP 500 answer(s) to bad input")
    garbled = sum(f.count for f in result.findings.values() if f.kind == "garbled")
    if garbled:
        out.append(f"{garbled} AMQP answer(s) of the hub that do not decode")
    unanswered = sum(f.count for f in result.findings.values() if f.kind == "unanswered")
    if unanswered:
        out.append(f"{unanswered} put-token(s) of well-formed dialogues not answered")
    if result.fds_start is not None and result.fds_end is not None:
        growth = result.fds_end - result.fds_start
        if growth > result.settings.fd_slack:
            out.append(
                f"the hub holds {growth} more file descriptors than at the start "
                f"(slack {result.settings.fd_slack})"
            )
    if result.canary.failures or not result.canary.calls:
        out.append(f"canary: {len(result.canary.failures)} of {result.canary.calls} calls failed")
    if not result.hub_alive:
        out.append("the hub exited during the run")
    return out


def summary(doc: dict[str, Any]) -> str:
    lines = [
        f"fuzz: seed {doc['seed']}, {doc['fuzz_seconds']} s, {doc['inputs']} connections, "
        f"{doc['mqtt_packets']:,} MQTT packets ({doc['mqtt_packets_per_s']:,}/s, "
        f"{doc['mqtt_mutated_packets']:,} mutated), "
        f"{doc['amqp_frames']:,} AMQP frames ({doc['amqp_mutated_frames']:,} mutated, "
        f"{doc['amqp_malformed_frames']:,} malformed)",
    ]
    for target, st in doc["per_target"].items():
        extra = f", {st['packets']:,} packets" if "packets" in st else ""
        if "frames" in st:
            extra = f", {st['frames']:,} frames, {st['authorized']:,} authorized"
        lines.append(
            f"  {target:9} {st['connections']:7,} connections{extra}, {st['hangs']} hangs, "
            f"max close {st['max_close_latency_s']} s"
        )
        if st.get("hub_ended_with"):
            ends = ", ".join(f"{k} {v}" for k, v in list(st["hub_ended_with"].items())[:6])
            lines.append(f"            hub ended them: {ends}")
    hub, canary = doc["hub"], doc["canary"]
    lines.append(
        f"  hub: rss {hub['rss_start_mb']} -> {hub['rss_end_mb']} MB, "
        f"fds {hub['fds_start']} -> {hub['fds_end']} "
        f"(peak {hub['fds_peak']}); canary {canary['success_pct']}% of {canary['calls']} calls "
        f"(p99 {canary['latency_ms']['p99']} ms)"
    )
    for name, dev in canary.get("devices", {}).items():
        lines.append(
            f"    canary {name} ({dev['transport']}): {dev['success_pct']}% of {dev['calls']} calls, "
            f"p99 {dev['latency_ms']['p99']} ms, {dev['device_disconnects']} disconnects"
        )
    for f in doc["findings"]:
        line = f"  {f['kind'].upper():10} x{f['count']:<5} {f['signature'][:150]}"
        if "minimal" in f:
            line += f"\n             minimal ({f['minimal']['target']}): {f['minimal']['writes_hex'][:300]}"
        lines.append(line)
    if doc["stopped_early"]:
        lines.append(f"  {doc['stopped_early']}")
    lines.append("PASS" if doc["verdict"]["ok"] else "FAIL: " + "; ".join(doc["verdict"]["failures"]))
    return "\n".join(lines)
