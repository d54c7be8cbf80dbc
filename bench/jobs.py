"""Jobs (issue 12): ``python -m bench.jobs [--devices N]``, and the suite's ``jobs`` phase.

One hub (pinned like the other phases: hub on one CPU, farm and wrk on the other); N devices
``job-000000…`` registered through the REST API and connected with the MQTT farm (each answers
every call at once), plus one interactive device ``ia-000000`` in a farm of its own. The hub runs
with ``--max-packets-per-second 0``: the interactive device answers several thousand calls/s, more
than the default limit (2,000 packets/s per connection) lets one connection send.

1. Baseline: wrk keeps ``interactive`` calls in flight (``POST /twins/ia-000000/methods``) for a
   few seconds: p50/p99/max.
2. A ``scheduleDeviceMethod`` job over the N devices with nothing else running (``job_alone``),
   then a second one (``job``, the targets' run) with the same interactive load meanwhile. Each is
   a job (``PUT /jobs/v2/{id}``, queryCondition
   ``STARTSWITH(deviceId, 'job-')``); the second has wrk calling from just before the create until
   the job is ``completed``. ``GET /jobs/v2/{id}`` every 0.2 s: the job's duration from the
   create (the bench's clock just before the PUT) to ``completed`` (the job's own ``endTime``:
   the hub runs on this machine's clock; the poll that saw it, up to 0.2 s later, is
   ``completed_seen_s``), and to the first poll whose statistics show every device ended. Device
   calls/s = succeeded / (create → completed); the calls' own span (first call made → last call
   answered, from the call records) is reported next to it. The job's ``deviceJobStatistics`` at the
   end (every device must succeed), the hub's CPU during the job, the interactive p50/p99/max.

Targets (issue 12): ≥ 5,000 device calls/s; interactive p99 ≤ 25 ms while the job runs.
Figures go to stdout as one JSON line with ``python -m bench.jobs``; progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import API_VERSION, CpuPlan, progress
from bench.farm import PER_SOURCE_ADDRESS, FarmConfig, FarmProcess
from bench.hubproc import Hub, new_device_key, register_devices
from bench.profiling import PySpy, profile_text
from bench.wrk import BackgroundWrk, WrkResult, run_wrk, write_script

JOB_PREFIX = "job-"
INTERACTIVE_PREFIX = "ia-"
TARGET_CALLS_PER_S = 5000.0
TARGET_INTERACTIVE_P99_MS = 25.0
POLL_S = 0.2


@dataclass
class JobsResult:
    devices: int
    interactive_in_flight: int
    register_s: float
    online_s: float
    baseline: dict[str, Any]
    """Interactive calls before the job: calls, calls/s, errors, latency_ms."""
    job_alone: dict[str, Any] = field(default_factory=dict)
    """A first job with no interactive load: create → completed seconds, → all ended, device calls/s,
    statistics, hub CPU, calls span (and the profile, with ``profile``)."""
    job: dict[str, Any] = field(default_factory=dict)
    """The same figures of a second job, with the interactive load meanwhile (the targets' run)."""
    during: dict[str, Any] = field(default_factory=dict)
    """Interactive calls while the job ran."""
    failures: list[str] = field(default_factory=list)
    targets: dict[str, float] = field(
        default_factory=lambda: {
            "device_calls_per_s": TARGET_CALLS_PER_S,
            "interactive_p99_ms": TARGET_INTERACTIVE_P99_MS,
        }
    )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _interactive(r: WrkResult) -> dict[str, Any]:
    return {
        "calls": r.requests,
        "seconds": r.seconds,
        "calls_per_s": r.calls_per_s,
        "errors": r.error_count,
        "error_kinds": {kind: n for kind, n in r.errors.items() if n},
        "latency_ms": r.latency_ms,
    }


def _describe(what: str, r: dict[str, Any]) -> str:
    ms = r["latency_ms"]
    return (
        f"{what}: {r['calls_per_s']:,.0f} calls/s, p50 {ms['p50']:.2f} ms, p99 {ms['p99']:.2f} ms, "
        f"max {ms['max']:.1f} ms" + (f", {r['errors']} ERRORS {r['error_kinds']}" if r["errors"] else "")
    )


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _calls_span(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """From the job's call records: first created → last completed, and how many are in each state."""
    first, last, token = math.inf, 0.0, None
    states: dict[str, int] = {}
    while True:
        params: dict[str, Any] = {"jobId": job_id, "limit": 1000}
        if token:
            params["continuationToken"] = token
        page = client.get("/calls", params=params).json()
        for call in page["calls"]:
            states[call["state"]] = states.get(call["state"], 0) + 1
            created, completed = _epoch(call.get("createdTime")), _epoch(call.get("completedTime"))
            if created is not None:
                first = min(first, created)
            if completed is not None:
                last = max(last, completed)
        token = page["continuationToken"]
        if not token:
            break
    span = last - first if last > first else 0.0
    return {"seconds": span, "states": states}


def run(
    devices: int,
    workdir: Path,
    plan: CpuPlan,
    *,
    interactive: int = 2,
    baseline_s: int = 5,
    budget_s: float = 600,
    profile: Path | None = None,
) -> JobsResult:
    """``profile``: py-spy on the hub while the job runs (folded stacks there; the summary in the
    result's ``job.profile``)."""
    hub = Hub(
        data_dir=workdir / "hub-jobs",
        cpus=plan.server,
        nofile=devices + 4096,
        # the interactive device answers thousands of calls/s: above the per-connection packet limit
        args=["--max-packets-per-second", "0"],
    )
    progress(f"jobs: starting a hub for {devices:,} job devices ({plan.describe()})")
    hub.start()
    farms: list[FarmProcess] = []
    try:
        key = new_device_key()
        ids = [f"{JOB_PREFIX}{i:06d}" for i in range(devices)] + [f"{INTERACTIVE_PREFIX}000000"]
        register_s = register_devices(hub, ids, key)
        progress(
            f"jobs: registered {len(ids):,} devices through the REST API in {register_s:.1f} s "
            f"({len(ids) / register_s:,.0f}/s)"
        )
        sources = []
        if devices > PER_SOURCE_ADDRESS:
            sources = [f"127.0.0.{2 + i}" for i in range(math.ceil(devices / PER_SOURCE_ADDRESS))]
        farm = FarmProcess(
            FarmConfig(
                host="127.0.0.1",
                port=hub.mqtt_port,
                prefix=JOB_PREFIX,
                count=devices,
                key=key,
                sources=sources,
            ),
            cpus=plan.load,
        )
        farms.append(farm)
        online = farm.wait_online()
        progress(f"jobs: {online['online']:,} job devices online in {online['seconds']:.1f} s")
        if online["failed"]:
            raise RuntimeError(f"{online['failed']} job devices could not connect: {online['errors']}")
        ia = FarmProcess(
            FarmConfig(host="127.0.0.1", port=hub.mqtt_port, prefix=INTERACTIVE_PREFIX, count=1, key=key),
            cpus=plan.load,
        )
        farms.append(ia)
        if ia.wait_online()["online"] != 1:
            raise RuntimeError("the interactive device could not connect")
        script = write_script(
            workdir / "jobs-interactive.lua", prefix=INTERACTIVE_PREFIX, count=1, token=hub.owner_token
        )
        run_wrk(hub.url, script, connections=interactive, seconds=1, cpus=plan.load)  # warm-up
        progress(f"jobs: interactive baseline, {interactive} calls in flight for {baseline_s} s")
        baseline = _interactive(
            run_wrk(hub.url, script, connections=interactive, seconds=baseline_s, cpus=plan.load)
        )
        progress("  " + _describe("baseline", baseline))
        result = JobsResult(
            devices=devices,
            interactive_in_flight=interactive,
            register_s=register_s,
            online_s=float(online["seconds"]),
            baseline=baseline,
        )
        result.job_alone, _ = _run_job(hub, devices, script, 0, plan, budget_s, profile, "alone")
        result.job, result.during = _run_job(
            hub, devices, script, interactive, plan, budget_s, None, "loaded"
        )
        result.failures = _failures(result)
        return result
    except BaseException:
        if hub.alive():
            progress("jobs: hub log tail:\n" + hub.log_tail())
        raise
    finally:
        for f in farms:
            f.stop()
        hub.stop()


def _run_job(
    hub: Hub,
    devices: int,
    script: Path,
    interactive: int,
    plan: CpuPlan,
    budget_s: float,
    profile: Path | None,
    name: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One job over the devices, ``interactive`` calls in flight meanwhile (0: none)."""
    job_id = f"bench-{name}-{int(time.time())}"
    body = {
        "jobId": job_id,
        "type": "scheduleDeviceMethod",
        "cloudToDeviceMethod": {"methodName": "update", "payload": {"v": 2}, "responseTimeoutInSeconds": 30},
        "queryCondition": f"STARTSWITH(deviceId, '{JOB_PREFIX}')",
        "startTime": None,
        "maxExecutionTimeInSeconds": int(budget_s),
    }
    url = f"/jobs/v2/{job_id}"
    params = {"api-version": API_VERSION}
    with httpx.Client(base_url=hub.url, headers={"Authorization": hub.owner_token}, timeout=30) as client:
        spy = PySpy(hub.pid, profile) if profile is not None else None
        load = None
        if interactive:
            load = BackgroundWrk(
                hub.url, script, connections=interactive, cpus=plan.load, limit_s=int(budget_s)
            )
            time.sleep(0.5)  # wrk connected and calling before the job starts
        try:
            mark = hub.log_mark()
            cpu0 = hub.cpu()
            progress(
                f"jobs: creating job {job_id} over {devices:,} devices, "
                + (
                    f"{interactive} interactive calls in flight meanwhile"
                    if interactive
                    else "nothing else running"
                )
            )
            started = time.perf_counter()
            created_epoch = time.time()  # the hub's clock is this machine's: its endTime is on it
            created = client.put(url, params=params, json=body)
            if created.status_code != 200:
                raise RuntimeError(f"PUT {url}: {created.status_code} {created.text[:300]}")
            ended_s: float | None = None
            last_report = started
            while True:
                time.sleep(POLL_S)
                now = time.perf_counter()
                if now - started > budget_s + 30:
                    raise RuntimeError(f"job {job_id} did not complete in {budget_s + 30:.0f} s")
                job = client.get(url, params=params).json()
                stats = job.get("deviceJobStatistics") or {}
                done = stats.get("succeededCount", 0) + stats.get("failedCount", 0)
                if ended_s is None and stats.get("deviceCount") == devices and done >= devices:
                    ended_s = now - started
                if job["status"] in ("completed", "failed", "cancelled"):
                    seen_s = now - started
                    end = _epoch(job.get("endTime"))
                    completed_s = end - created_epoch if end is not None else seen_s
                    break
                if now - last_report >= 2:
                    last_report = now
                    progress(f"  {job['status']}: {done:,} of {devices:,} devices ended")
            cpu = hub.cpu() - cpu0
            gc = hub.gc_since(mark)
        finally:
            during = _interactive(load.stop()) if load is not None else {}
            summary = spy.stop() if spy is not None else {}
        span = _calls_span(client, job_id)
    succeeded = int(stats.get("succeededCount", 0))
    figures = {
        "job_id": job_id,
        "status": job["status"],
        "failure_reason": job.get("failureReason"),
        "statistics": stats,
        "completed_s": completed_s,
        "completed_seen_s": seen_s,
        "all_ended_s": ended_s,
        "device_calls_per_s": succeeded / completed_s if completed_s else 0.0,
        "calls_span_s": span["seconds"],
        "calls_span_per_s": succeeded / span["seconds"] if span["seconds"] else 0.0,
        "call_states": span["states"],
        "hub_cpu_s": cpu,
        "hub_cpu_share": cpu / completed_s if completed_s else 0.0,
        "hub_cpu_us_per_device_call": cpu / max(1, succeeded) * 1e6,
        "gc": gc,
    }
    if summary:
        figures["profile"] = {
            "what": f"a job over {devices:,} devices",
            "calls_per_s": figures["device_calls_per_s"],
            "hub_cpu_us_per_call": figures["hub_cpu_us_per_device_call"],
            **summary,
        }
    progress(
        f"jobs: {job['status']} in {completed_s:.2f} s (every device ended after "
        f"{ended_s if ended_s is not None else float('nan'):.2f} s): {succeeded:,} succeeded, "
        f"{figures['device_calls_per_s']:,.0f} device calls/s (calls' own span {span['seconds']:.2f} s: "
        f"{figures['calls_span_per_s']:,.0f}/s), hub CPU {cpu:.1f} s ({figures['hub_cpu_share']:.0%}, "
        f"{figures['hub_cpu_us_per_device_call']:.0f} µs per device call)"
    )
    if during:
        progress("  " + _describe("interactive during the job", during))
    return figures, during


def _failures(result: JobsResult) -> list[str]:
    out = []
    for name, job in (("job alone", result.job_alone), ("job", result.job)):
        stats = job.get("statistics", {})
        if job.get("status") != "completed":
            out.append(f"{name} ended {job.get('status')}: {job.get('failure_reason')}")
        if stats.get("succeededCount") != result.devices:
            out.append(
                f"{name}: {stats.get('succeededCount', 0):,} of {result.devices:,} devices succeeded: {stats}"
            )
    for what in ("baseline", "during"):
        errors = getattr(result, what).get("errors", 0)
        if errors:
            out.append(f"{errors} interactive call errors ({what})")
    return out


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for the suite's report."""
    rate = result["job"]["device_calls_per_s"]
    alone = result["job_alone"]["device_calls_per_s"]
    p99 = result["during"]["latency_ms"]["p99"]
    devices = result["devices"]
    return [
        (
            f"job over {devices:,} connected devices ≥ {TARGET_CALLS_PER_S:,.0f} device calls/s",
            f"{rate:,.0f} device calls/s with interactive calls meanwhile (create → completed "
            f"{result['job']['completed_s']:.2f} s; job alone {alone:,.0f}/s)"
            + (f"; {'; '.join(result['failures'])}" if result["failures"] else ""),
            rate >= TARGET_CALLS_PER_S and not result["failures"],
        ),
        (
            f"interactive p99 ≤ {TARGET_INTERACTIVE_P99_MS:g} ms while the job runs",
            f"p99 {p99:.2f} ms (baseline {result['baseline']['latency_ms']['p99']:.2f} ms)",
            p99 <= TARGET_INTERACTIVE_P99_MS,
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.jobs", description=__doc__)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--interactive", type=int, default=2, help="interactive calls in flight (1-4)")
    parser.add_argument("--baseline", type=int, default=5, help="seconds of interactive baseline")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--profile", type=Path, help="py-spy on the hub during the job: folded stacks here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="methodhub-bench-jobs-") as workdir:
        result = run(
            args.devices,
            Path(workdir),
            CpuPlan.make(not args.no_pin),
            interactive=args.interactive,
            baseline_s=args.baseline,
            profile=args.profile,
        ).to_json()
    if result["job_alone"].get("profile"):
        progress("hub profile during the job alone:\n" + profile_text(result["job_alone"]["profile"]))
    for target, measured, met in targets(result):
        progress(f"target {target}: {measured} ({'met' if met else 'NOT met'})")
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
