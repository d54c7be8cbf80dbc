"""Smoke test of the benchmark suite (``python -m bench``): a few seconds of ``--quick`` with a tiny
device count must produce well-formed results. No timing is asserted: CI machines vary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _positive(value: Any, where: str) -> None:
    assert isinstance(value, int | float), f"{where} is not a number: {value!r}"
    assert value > 0, f"{where} is not positive: {value!r}"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("bench-results")
    command = [sys.executable, "-m", "bench", "--quick", "--devices", "20", "--concurrency", "1"]
    command += ["--duration", "2", "--warmup", "0", "--idle", "200", "--out", str(out)]
    command += ["--job-devices", "20", "--queued-devices", "20"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"python -m bench failed:\n{done.stdout}\n{done.stderr}"
    return out, done


def test_writes_json_markdown_and_chart(run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = run
    for name in ("latest.json", "latest.md", "latest.png"):
        assert (out / name).stat().st_size > 0, name
    stamped = {p.suffix for p in out.iterdir() if not p.name.startswith("latest.")}
    assert {".json", ".md", ".png"} <= stamped
    assert (out / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "latest.md").read_text()
    for heading in (
        "## Headline",
        "## methodhub",
        "## Reference",
        "## Ratios",
        "## Connection scale",
        "## --workers 2 against --workers 1",
        "## Targets",
    ):
        assert heading in markdown


def test_results_are_well_formed(run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = run
    results = json.loads((out / "latest.json").read_text())
    assert {"meta", "config", "hub", "reference", "ratios", "scale", "workers", "targets"} <= results.keys()
    workers = results["workers"]
    for key in ("1", "2"):
        assert [r["errors"] for r in workers["runs"][key]] == [0], workers["runs"][key]
        _positive(workers["best"][key], f"workers {key} calls/s")
    _positive(workers["ratio"], "workers ratio")
    assert results["config"]["devices"] == 20
    for system in ("hub", "reference"):
        runs = results[system]["runs"]
        assert [r["concurrency"] for r in runs] == [1]
        for r in runs:
            assert r["errors"] == 0, r
            for key in (
                "calls",
                "seconds",
                "calls_per_s",
                "server_cpu_s_per_1000",
                "caller_cpu_s",
                "farm_cpu_s",
            ):
                _positive(r[key], f"{system} {key}")
            for q in ("p50", "p90", "p99", "max"):
                _positive(r["latency_ms"][q], f"{system} latency {q}")
            assert r["latency_ms"]["p50"] <= r["latency_ms"]["p99"] <= r["latency_ms"]["max"]
        _positive(results[system]["peak_rss_bytes"], f"{system} peak RSS")
    ratio = results["ratios"][0]
    for key in ("calls_per_s", "p50", "p99", "cpu_per_call"):
        _positive(ratio[key], f"ratio {key}")
    scale = results["scale"]
    assert scale["online"] == 200 and scale["failed"] == 0
    for key in ("connects_per_s", "rss_after_bytes", "peak_rss_bytes"):
        _positive(scale[key], f"scale {key}")
    assert scale["latency"] and all(x["calls"] > 0 and x["errors"] == 0 for x in scale["latency"])
    assert all({"target", "goal", "measured", "met"} <= t.keys() for t in results["targets"])


def test_prints_headline(run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    _, done = run
    assert "calls/s" in done.stdout and "targets:" in done.stdout
    assert "[bench" in done.stderr  # progress goes to stderr
