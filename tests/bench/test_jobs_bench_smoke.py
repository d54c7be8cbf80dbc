"""Smoke test of the suite's ``queued`` and ``jobs`` phases (``python -m bench --only queued,jobs``):
tiny sizes must produce well-formed results in the json and md report. No speed is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
JOB_DEVICES = 30
QUEUED_DEVICES = 20


def _positive(value: Any, where: str) -> None:
    assert isinstance(value, int | float), f"{where} is not a number: {value!r}"
    assert value > 0, f"{where} is not positive: {value!r}"


def _cpu(value: Any, where: str) -> None:
    """A CPU-time figure: a number, possibly 0 at these tiny sizes (/proc counts 10 ms ticks)."""
    assert isinstance(value, int | float), f"{where} is not a number: {value!r}"
    assert value >= 0, f"{where} is negative: {value!r}"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("bench-results")
    command = [sys.executable, "-m", "bench", "--quick", "--only", "queued,jobs"]
    command += ["--job-devices", str(JOB_DEVICES), "--queued-devices", str(QUEUED_DEVICES), "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"python -m bench failed:\n{done.stdout}\n{done.stderr}"
    return out, done


def test_queued_figures(run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = run
    queued = json.loads((out / "latest.json").read_text())["queued"]
    assert queued["devices"] == QUEUED_DEVICES
    assert queued["calls_per_device"] == 4
    for key in ("creates_per_s", "online_s", "all_answered_after_connect_s"):
        _positive(queued[key], f"queued {key}")
    _cpu(queued["hub_cpu_per_create_us"], "queued hub_cpu_per_create_us")
    _positive(queued["delivered_per_s"], "queued delivered/s")


def test_job_figures(run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = run
    results = json.loads((out / "latest.json").read_text())
    assert results["config"]["phases"] == ["queued", "jobs"]
    jobs = results["jobs"]
    assert jobs["devices"] == JOB_DEVICES
    assert jobs["failures"] == []
    for name in ("job_alone", "job"):
        job = jobs[name]
        assert job["status"] == "completed", job
        stats = job["statistics"]
        assert stats["deviceCount"] == stats["succeededCount"] == JOB_DEVICES, stats
        assert stats["failedCount"] == stats["pendingCount"] == stats["runningCount"] == 0, stats
        assert job["call_states"] == {"succeeded": JOB_DEVICES}
        for key in ("completed_s", "all_ended_s", "device_calls_per_s", "calls_span_s"):
            _positive(job[key], f"{name} {key}")
        _cpu(job["hub_cpu_s"], f"{name} hub_cpu_s")
        assert job["all_ended_s"] <= job["completed_seen_s"]  # polls: every device ended, then completed
        # the job's own endTime comes before the poll that saw it (clocks: time.time vs perf_counter)
        assert job["completed_s"] <= job["completed_seen_s"] + 0.05
    for name in ("baseline", "during"):
        r = jobs[name]
        assert r["errors"] == 0, r
        _positive(r["calls"], f"interactive {name} calls")
        ms = r["latency_ms"]
        assert 0 < ms["p50"] <= ms["p99"] <= ms["max"], ms


def test_report_has_targets_and_sections(run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, done = run
    results = json.loads((out / "latest.json").read_text())
    names = [t["target"] for t in results["targets"]]
    assert names == [f"Job over {JOB_DEVICES} connected devices", "Interactive p99 while the job runs"]
    assert all(t["met"] in (True, False) for t in results["targets"])
    markdown = (out / "latest.md").read_text()
    for heading in ("## Queued calls", "## Jobs (30 connected devices)", "## Targets"):
        assert heading in markdown
    assert "jobs: 30 devices" in done.stdout
    assert "queued calls:" in done.stdout
