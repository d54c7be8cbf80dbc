"""Smoke tests of the suite's optional modes with tiny sizes: ``--syscalls`` (strace attached to the
hub and to Mosquitto), phase 9 (``--only crossnode``: two nodes over nats-server), and a ``--quick``
run without ``--out`` leaving ``bench/results/latest.*`` alone. No speed is asserted."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import bench.__main__ as bench_main
import pytest

REPO = Path(__file__).resolve().parents[2]


def _bench(*args: str, out: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bench", "--quick", *args, "--warmup", "0", "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"python -m bench failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_syscalls_and_sleeps_per_call(tmp_path: Path) -> None:
    done = _bench(
        "--only", "hub,reference", "--devices", "20", "--concurrency", "1,64", "--duration", "1",
        "--syscalls", out=tmp_path,
    )  # fmt: skip
    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["config"]["syscalls"] is True
    for key, name in (("hub", "methodhub"), ("reference", "mosquitto")):
        system = results[key]
        sc = system["syscalls"]
        assert sc["tool"] in ("strace", "perf") and sc["concurrency"] == 64 and sc["calls"] > 0
        # every call is read and answered: at least one read and one write per call (in and out)
        assert sc["reads"] > 0 and sc["writes"] > 0, sc
        assert sc["total"] >= sc["reads"] + sc["writes"] + sc["epoll_wait"]
        assert sum(sc["by_syscall"].values()) == pytest.approx(sc["total"])
        for run in system["runs"]:
            wakeups = run["wakeups"]
            assert set(wakeups) == {"farm", "caller", "server"}
            assert all(v >= 0 for v in wakeups.values())
            if run["concurrency"] == 1:  # one call in flight: the farm waits for each request
                assert wakeups["farm"] > 0.5 and wakeups["caller"] > 0.5, wakeups
        assert f"{name} syscalls per call at c=64: " in done.stdout
        assert f"{name} sleeps per call (farm / caller / server): c=1 " in done.stdout


def test_without_syscalls_no_tracer_and_no_wakeups(tmp_path: Path) -> None:
    _bench("--only", "hub", "--devices", "10", "--concurrency", "1", "--duration", "1", out=tmp_path)
    hub = json.loads((tmp_path / "latest.json").read_text())["hub"]
    assert hub["syscalls"] == {} and hub["runs"][0]["wakeups"] is None


def test_crossnode_same_node_against_other_node(tmp_path: Path) -> None:
    done = _bench("--only", "crossnode", "--devices", "20", "--duration", "1", out=tmp_path)
    results = json.loads((tmp_path / "latest.json").read_text())
    crossnode = results["crossnode"]
    for side in ("same", "other"):
        runs = crossnode["runs"][side]
        assert [r["concurrency"] for r in runs] == [1, 64]
        for r in runs:
            assert r["errors"] == 0 and r["calls"] > 0 and r["server_cpu_s"] > 0, r
    assert [a["concurrency"] for a in crossnode["added"]] == [1, 64]
    for added, same, other in zip(
        crossnode["added"], crossnode["runs"]["same"], crossnode["runs"]["other"], strict=True
    ):
        assert added["p50_us"] == pytest.approx(
            (other["latency_ms"]["p50"] - same["latency_ms"]["p50"]) * 1000
        )
    for side in ("same", "other"):  # the three processes' CPU add up to the run's server CPU
        for split, run in zip(crossnode["cpu_split"][side], crossnode["runs"][side], strict=True):
            total = (split["a"] + split["b"] + split["nats"]) * run["calls"] / 1e6
            assert total == pytest.approx(run["server_cpu_s"], abs=0.1), (split, run["server_cpu_s"])
    assert done.stdout.count("crossnode c=") == 2
    assert "## Cross-node calls" in (tmp_path / "latest.md").read_text()


def test_quick_without_out_leaves_the_committed_latest_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real ``main``, in this process, with the results folders moved into tmp_path."""
    results, quick = tmp_path / "results", tmp_path / "results" / "quick"
    results.mkdir()
    committed = {}
    for name in ("latest.json", "latest.md", "latest.png"):
        (results / name).write_bytes((REPO / "bench" / "results" / name).read_bytes())
        committed[name] = hashlib.sha256((results / name).read_bytes()).hexdigest()
    monkeypatch.setattr(bench_main, "RESULTS", results)
    monkeypatch.setattr(bench_main, "QUICK_RESULTS", quick)
    argv = ["--quick", "--only", "hub", "--devices", "10", "--concurrency", "1", "--duration", "1"]
    assert bench_main.main([*argv, "--warmup", "0"]) == 0
    for name, digest in committed.items():
        assert hashlib.sha256((results / name).read_bytes()).hexdigest() == digest, name
    assert json.loads((quick / "latest.json").read_text())["config"]["mode"] == "quick"
    assert len(list(quick.glob("2*.json"))) == 1
