"""Unit tests of the suite's own tools: ``--compare`` handing over to bench.ab, where ``--quick``
writes, the p99 target of the level it names, and reading strace's and perf's syscall summaries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import bench.__main__ as bench_main
import bench.ab as ab
import pytest
from bench.report import evaluate_targets, headline
from bench.syscalls import headline as syscalls_headline
from bench.syscalls import parse_perf_trace_summary, parse_strace_summary, per_call
from bench.workers import crossnode_added, crossnode_headline

REPO = Path(__file__).resolve().parents[2]

# -- --compare -----------------------------------------------------------------------------------------


def _compare(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> tuple[int, list[list[str]]]:
    calls: list[list[str]] = []

    def fake_ab(args: list[str] | None = None) -> int:
        calls.append(list(args or []))
        return 7

    monkeypatch.setattr(ab, "main", fake_ab)
    return bench_main.main(argv), calls


def test_compare_hands_rev_rounds_and_instructions_to_bench_ab(monkeypatch: pytest.MonkeyPatch) -> None:
    code, calls = _compare(monkeypatch, ["--compare", "e40c65b", "--rounds", "5", "--no-instructions"])
    assert code == 7  # bench.ab's exit code is the suite's
    assert calls == [["e40c65b", "HEAD", "--rounds", "5", "--no-instructions"]]


def test_compare_defaults_three_rounds_with_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    _, calls = _compare(monkeypatch, ["--compare", "HEAD~2"])
    assert calls == [["HEAD~2", "HEAD", "--rounds", "3"]]


def test_compare_passes_an_explicit_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    _, calls = _compare(monkeypatch, ["--compare", "abc123", "--duration", "2", "--rounds", "1"])
    assert calls == [["abc123", "HEAD", "--rounds", "1", "--duration", "2"]]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--compare", "abc", "--quick"], "not --quick"),
        (["--compare", "abc", "--only", "hub", "--syscalls"], "not --only, --syscalls"),
        (["--compare", "abc", "--rounds", "0"], "--rounds must be ≥ 1"),
        (["--rounds", "2"], "go with --compare"),
        (["--no-instructions"], "go with --compare"),
    ],
)
def test_compare_refuses_options_it_would_ignore(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as raised:
        _compare(monkeypatch, argv)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_compare_reaches_bench_ab_which_checks_the_commit() -> None:
    """The real hand-over, no benchmark run: bench.ab parses the arguments and refuses the commit."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--compare", "no-such-rev-xyz", "--rounds", "1", "--no-instructions"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "bench.ab: 'no-such-rev-xyz' is not a commit" in done.stderr


# -- where results go ----------------------------------------------------------------------------------


def test_quick_writes_to_the_ignored_quick_folder_unless_out_is_given(tmp_path: Path) -> None:
    assert bench_main.parse_args(["--quick"]).out == REPO / "bench" / "results" / "quick"
    assert bench_main.parse_args(["--quick", "--out", str(tmp_path)]).out == tmp_path
    assert bench_main.parse_args([]).out == REPO / "bench" / "results"  # full runs: latest.* as before
    assert bench_main.parse_args(["--full"]).out == REPO / "bench" / "results"
    ignored = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "-q", "bench/results/quick/latest.json"], check=False
    )
    assert ignored.returncode == 0, "bench/results/quick/ must be git-ignored"
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "-q", "bench/results/latest.json"], check=False
    )
    assert tracked.returncode == 1, "bench/results/latest.json is committed, not ignored"


def test_crossnode_runs_only_when_asked() -> None:
    assert "crossnode" not in bench_main.parse_args([]).phases
    assert "crossnode" in bench_main.parse_args(["--crossnode"]).phases
    assert bench_main.parse_args(["--only", "crossnode"]).phases == {"crossnode"}


# -- the p99 target quotes the level it names ----------------------------------------------------------


def _run(c: int, rate: float, p50: float, p99: float) -> dict[str, Any]:
    return {
        "concurrency": c,
        "calls_per_s": rate,
        "latency_ms": {"p50": p50, "p90": p99 * 0.9, "p99": p99, "max": p99 * 2},
        "server_cpu_s_per_1000": 0.06,
        "errors": 0,
    }


def _results(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"hub": {"system": "methodhub", "devices": 1000, "runs": runs, "peak_rss_bytes": 50 * 2**20}}


def test_p99_target_is_that_of_the_best_level() -> None:
    # the 2026-11-29 run: c=16 had the least p99 of the levels over 10,000 calls/s, c=64 the most calls/s
    runs = [
        _run(1, 4936, 0.188, 0.313),
        _run(16, 15511, 0.985, 1.343),
        _run(64, 16625, 3.803, 4.793),
        _run(256, 15446, 16.2, 20.952),
    ]
    targets = {t["target"]: t for t in evaluate_targets(_results(runs))}
    assert targets["Calls/s through the HTTP API"]["note"].startswith("c=64,")
    p99 = targets["p99 at that rate"]
    assert p99["measured"] == "4.8 ms at c=64"  # not c=16's 1.3 ms
    assert p99["note"] == "16,625 calls/s" and p99["met"] is True
    assert headline(_results(runs))[0].startswith(
        "methodhub: 16,625 calls/s at c=64 (p50 3.80 ms, p99 4.79 ms)"
    )


def test_p99_target_below_the_rate_is_not_judged() -> None:
    targets = {t["target"]: t for t in evaluate_targets(_results([_run(1, 3000, 0.2, 30.0)]))}
    p99 = targets["p99 at that rate"]
    assert p99["measured"] == "30.0 ms at c=1" and p99["met"] is None
    assert "not reached" in p99["note"]


# -- syscall summaries ---------------------------------------------------------------------------------

STRACE_C = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 45.22    0.018059         222        81         3 futex
  3.24    0.001295           3       402           sendto
  2.92    0.001167           2       400           writev
  2.79    0.001113           1       821           epoll_wait
  2.70    0.001078           2       524           read
  1.12    0.000446           1       405         2 recvfrom
  0.08    0.000032           1        30           write
  0.04    0.000014           0       101           getpid
------ ----------- ----------- --------- --------- ----------------
100.00    0.039936           3      2764         5 total
"""
"""``strace -c -f -p PID`` (strace 6.1), cut to a few rows: errors is blank when there are none."""

PERF_TRACE_S = """\

 Summary of events:

 python3 (29705), 5690 events, 97.0%

   syscall            calls  errors  total       min       avg       max       stddev
                                     (msec)    (msec)    (msec)    (msec)        (%)
   --------------- --------  ------ -------- --------- --------- ---------     ------
   clock_nanosleep      712      0   778.238     0.000     1.093     2.514      0.31%
   epoll_wait           711      0    13.803     0.014     0.019     1.645     11.97%
   sendto               711      0    12.995     0.014     0.018     0.599      5.68%
   recvfrom             711      0    12.967     0.014     0.018     0.441      4.53%


 python3 (29751), 174 events, 3.0%

   syscall            calls  errors  total       min       avg       max       stddev
                                     (msec)    (msec)    (msec)    (msec)        (%)
   --------------- --------  ------ -------- --------- --------- ---------     ------
   clock_nanosleep       87      0   870.174     0.000    10.002    12.079      1.19%
   sendto                 9      0     0.100     0.010     0.011     0.020      1.00%

"""
"""``perf trace -s -p PID``: one table per thread."""


def test_strace_summary_rows_with_and_without_errors() -> None:
    counts = parse_strace_summary(STRACE_C)
    assert counts == {
        "futex": 81,
        "sendto": 402,
        "writev": 400,
        "epoll_wait": 821,
        "read": 524,
        "recvfrom": 405,
        "write": 30,
        "getpid": 101,
    }  # no "total", no header


def test_perf_trace_summary_sums_the_threads() -> None:
    counts = parse_perf_trace_summary(PERF_TRACE_S)
    assert counts == {"clock_nanosleep": 799, "epoll_wait": 711, "sendto": 720, "recvfrom": 711}


def test_syscalls_per_call_groups_reads_writes_and_epoll() -> None:
    figures = per_call(parse_strace_summary(STRACE_C), calls=200)
    assert figures["reads"] == pytest.approx((524 + 405) / 200)
    assert figures["writes"] == pytest.approx((402 + 400 + 30) / 200)
    assert figures["epoll_wait"] == pytest.approx(821 / 200)
    assert figures["total"] == pytest.approx(2764 / 200)
    assert next(iter(figures["by_syscall"])) == "epoll_wait"  # most frequent first
    with pytest.raises(ValueError):
        per_call({"read": 1}, calls=0)


def test_syscalls_headline() -> None:
    system = {
        "system": "methodhub",
        "syscalls": {
            **per_call({"read": 300, "write": 200, "epoll_wait": 10}, 100),
            "tool": "strace",
            "concurrency": 64,
            "traced_calls_per_s": 9159.0,
        },
        "runs": [
            {"concurrency": 1, "wakeups": {"farm": 1.0, "caller": 1.0, "server": 2.02}},
            {"concurrency": 64, "wakeups": {"farm": 0.65, "caller": 0.05, "server": 0.0}},
        ],
    }
    assert syscalls_headline(system) == [
        "methodhub syscalls per call at c=64: 5.10 (3.00 reads, 2.00 writes, 0.10 epoll_wait; strace, "
        "traced run at 9,159 calls/s)",
        "methodhub sleeps per call (farm / caller / server): c=1 1.00 / 1.00 / 2.02; c=64 0.65 / 0.05 / 0.00",
    ]
    assert syscalls_headline({"system": "mosquitto", "runs": [{"concurrency": 1}]}) == []


# -- cross-node ----------------------------------------------------------------------------------------


def test_crossnode_added_and_headline() -> None:
    from bench.calls import CallRun

    def run(system: str, rate: float, p50: float, cpu: float) -> CallRun:
        return CallRun(system, 64, int(rate), 1.0, rate, 0, {"p50": p50, "p99": p50 * 2}, 0, cpu, 0, 0, 0, 0)

    same, other = run("same", 18000, 3.4, 0.043), run("other", 13500, 4.4, 0.068)
    added = crossnode_added(same, other)
    assert added["p50_us"] == pytest.approx(1000)
    assert added["cpu_us_per_call"] == pytest.approx(25)
    assert added["calls_per_s_ratio"] == pytest.approx(0.75)
    from dataclasses import asdict

    lines = crossnode_headline({"runs": {"same": [asdict(same)], "other": [asdict(other)]}, "added": [added]})
    assert lines == [
        "crossnode c=64: device on the same node 18,000 calls/s, p50 3.400 ms, 43 µs CPU per call; on the "
        "other node 13,500 calls/s, p50 4.400 ms, 68 µs: +1000 µs p50, +25 µs CPU per call (both nodes + "
        "nats-server), calls/s ×0.75"
    ]
