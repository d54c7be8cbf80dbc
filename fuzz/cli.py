"""``python -m fuzz``: argument parsing, the hub's life cycle, the run, triage, the report."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from fuzz.hub import OWN_HUB_HTTP_DEADLINE, HubUnderTest
from fuzz.inputs import TARGETS, load_steps, wire_kind
from fuzz.report import Reporter, summary, verdict
from fuzz.run import Fuzzer, Settings, endpoints
from fuzz.triage import Triage
from fuzz.wire import Endpoint, Limits, send

HUB_CONNECT_TIMEOUT = 10.0
"""The hub's CONNECT deadline (``HubConfig.connect_packet_timeout``)."""


def _targets(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in names if t not in TARGETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"targets are a comma-separated subset of {','.join(TARGETS)}")
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fuzz",
        description="Fuzz a methodhub hub: MQTT and AMQP (TCP, TLS, WebSocket), HTTP (docs/fuzzing.md).",
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--duration", type=float, metavar="SECONDS", help="fuzz for this long (default 60)")
    budget.add_argument("--packets", type=int, metavar="N", help="fuzz until N MQTT packets were sent")
    budget.add_argument(
        "--mutated",
        type=int,
        metavar="N",
        help="fuzz until N mutated (or value-fuzzed) MQTT packets were sent",
    )
    p.add_argument("--seed", type=int, default=1, help="same seed, same inputs (default 1)")
    p.add_argument(
        "--targets",
        type=_targets,
        default=list(TARGETS),
        help=f"comma-separated (default {','.join(TARGETS)})",
    )
    p.add_argument(
        "--report",
        type=Path,
        default=Path("fuzz/results/report.json"),
        help="the JSON report (default fuzz/results/report.json); reproducers go next to it",
    )
    p.add_argument(
        "--hub-url",
        default=None,
        help="fuzz this running hub (e.g. http://127.0.0.1:8080) instead of starting one",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="with --hub-url: its data dir (hub.json: ports, pid, CA; the owner key)",
    )
    p.add_argument("--connection-string", default=None, help="with --hub-url: the owner connection string")
    p.add_argument(
        "--hub-log",
        type=Path,
        default=None,
        help="with --hub-url: the hub's log file, scanned for tracebacks",
    )
    p.add_argument("--concurrency", type=int, default=48, help="connections sending at once (default 48)")
    p.add_argument(
        "--close-timeout",
        type=float,
        default=5.0,
        help="seconds the hub has to close after the fuzzer's FIN (5)",
    )
    p.add_argument(
        "--connect-bound",
        type=float,
        default=HUB_CONNECT_TIMEOUT + 5,
        help="seconds a silent MQTT connection without CONNACK, or an AMQP one that authorized nothing, "
        "may stay open (the hub's CONNECT / authorization deadline 10 s + 5)",
    )
    p.add_argument(
        "--stall-bound",
        type=float,
        default=OWN_HUB_HTTP_DEADLINE + 5.0,
        help="seconds a silent, incomplete HTTP request may stay open (15: the fuzzer's own hub's "
        "HTTP head/body deadline of 10 s + 5; against another hub, its --http-body-timeout + 5)",
    )
    p.add_argument("--fd-slack", type=int, default=10, help="fd growth tolerated at the end (10)")
    p.add_argument("--max-hangs", type=int, default=500, help="stop the run after this many hangs (500)")
    p.add_argument("--canary-interval", type=float, default=0.1, help="seconds between canary calls (0.1)")
    p.add_argument(
        "--canary-timeout", type=float, default=5.0, help="a canary call slower than this fails (5)"
    )
    p.add_argument(
        "--triage-time",
        type=float,
        default=120.0,
        help="seconds to confirm and shrink findings after the run (120; 0 = off)",
    )
    p.add_argument("--keep-hub", action="store_true", help="keep the hub's temporary data dir and log")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument(
        "--replay",
        type=Path,
        default=None,
        metavar="FILE.json",
        help="send one reproducer file and report what the hub did",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.duration is None and args.packets is None and args.mutated is None:
        args.duration = 60.0
    limits = Limits(
        close_timeout=args.close_timeout, connect_bound=args.connect_bound, stall_bound=args.stall_bound
    )
    settings = Settings(
        seed=args.seed,
        duration=args.duration,
        packets=args.packets,
        mutated=args.mutated,
        targets=args.targets,
        concurrency=args.concurrency,
        limits=limits,
        canary_interval=args.canary_interval,
        canary_timeout=args.canary_timeout,
        fd_slack=args.fd_slack,
        max_hangs=args.max_hangs,
        quiet=args.quiet,
    )
    temp: Path | None = None
    if args.hub_url:
        hub = HubUnderTest.attach(args.hub_url, args.data_dir, args.connection_string, args.hub_log)
    else:
        temp = Path(tempfile.mkdtemp(prefix="methodhub-fuzz-"))
        try:
            hub = HubUnderTest.start(temp / "hub")
        except RuntimeError as exc:
            raise SystemExit(f"fuzz: the hub did not start: {exc}") from None
    try:
        _use_uvloop()
        code = _replay(hub, args.replay, limits) if args.replay is not None else _fuzz(hub, settings, args)
    finally:
        hub.stop()
        if temp is not None:
            if args.keep_hub:
                print(f"fuzz: the hub's data dir and log are in {temp}", file=sys.stderr)
            else:
                shutil.rmtree(temp, ignore_errors=True)
    raise SystemExit(code)


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _fuzz(hub: HubUnderTest, settings: Settings, args: argparse.Namespace) -> int:
    fuzzer = Fuzzer(hub, settings)
    if settings.duration is not None:
        budget = f"{settings.duration:g} s"
    elif settings.packets is not None:
        budget = f"{settings.packets:,} MQTT packets"
    else:
        budget = f"{settings.mutated:,} mutated MQTT packets"
    fuzzer.say(
        f"seed {settings.seed}, {budget}, targets {','.join(settings.targets)}, "
        f"hub {hub.http_url} (pid {hub.pid})"
    )
    result = fuzzer.run()
    failures = verdict(result)
    triaged = {}
    if args.triage_time > 0 and result.findings and hub.alive():
        fuzzer.say(
            f"confirming and shrinking {len(result.findings)} finding(s) (up to {args.triage_time:g} s)"
        )
        known = dict(fuzzer.endpoints)
        known.setdefault("mqtt", Endpoint("127.0.0.1", hub.ports["mqtt"]))
        if "amqp" in hub.ports:
            known.setdefault("amqp", Endpoint("127.0.0.1", hub.ports["amqp"]))
        triage = Triage(known, fuzzer.log, settings.limits, args.triage_time)

        async def work() -> None:
            # tracebacks first (each is a distinct bug), then hang groups; most frequent first
            order = sorted(
                (kv for kv in result.findings.items() if kv[1].kind in ("traceback", "hang")),
                key=lambda kv: (kv[1].kind != "traceback", -kv[1].count),
            )
            for done, (key, finding) in enumerate(order):
                triage.share(len(order) - done)
                if triage.left() <= 0:
                    break
                if finding.kind == "traceback":
                    triaged[key] = await triage.traceback(finding)
                else:
                    triaged[key] = await triage.hang(finding)

        asyncio.run(work())
    reporter = Reporter(args.report, settings.seed)
    doc = reporter.write(result, triaged, failures, hub.notes)
    print(summary(doc), file=sys.stderr)
    print(
        f"report: {args.report}" + (f" (reproducers in {reporter.repro_dir})" if reporter.saved else ""),
        file=sys.stderr,
    )
    return 1 if failures else 0


def _replay(hub: HubUnderTest, path: Path, limits: Limits) -> int:
    import json

    import httpx

    from fuzz.hub import LogWatch
    from fuzz.run import FUZZ_DEVICES

    target, end, steps = load_steps(path)
    doc = json.loads(path.read_text())
    seed = int(doc.get("seed", 1))
    with httpx.Client(base_url=hub.http_url, timeout=30) as http:  # the devices its CONNECTs sign for
        for i in range(FUZZ_DEVICES):
            hub.register(http, f"fuzz-{i}", hub.device_key(seed, f"fuzz-{i}"))
    endpoint = endpoints(hub, [target.removesuffix("-no-tls")])[target]
    log = LogWatch(hub.log_path)
    log.skip_to_end()
    bound = limits.stall_bound if target == "http" else limits.connect_bound
    started = time.monotonic()
    kind = wire_kind(target.removesuffix("-no-tls"))
    sasl_plain = bool(doc.get("sasl_plain"))
    outcome = asyncio.run(send(endpoint, kind, steps, end, bound, limits, sasl_plain=sasl_plain))
    time.sleep(0.5)
    records = log.flush()
    print(f"replayed {path} on {target} (end: {end}) in {time.monotonic() - started:.2f} s")
    print(
        f"  hub answered {outcome.bytes_in} bytes; CONNACK {outcome.connack}; "
        f"HTTP statuses {outcome.statuses or '-'}"
    )
    if outcome.amqp is not None:
        answers = outcome.amqp
        print(
            f"  AMQP: ended with {outcome.amqp_end}; put-token statuses {answers.put_token_statuses or '-'}; "
            f"detach/end errors {answers.detach_errors + answers.end_errors or '-'}"
        )
    if outcome.hang:
        print(f"  HANG: {outcome.hang}")
    else:
        print("  closed by the hub" if outcome.closed_by_hub else "  closed by the fuzzer")
    for record in records:
        print("  traceback: " + record.signature())
        print("    " + record.text.replace("\n", "\n    ")[:3000])
    if not records and not outcome.hang:
        print("  nothing wrong seen")
    return 1 if (records or outcome.hang) else 0
