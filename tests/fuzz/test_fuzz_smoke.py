"""Smoke test of the fuzz harness (``python -m fuzz``, docs/fuzzing.md): a short seeded pass against a
hub of its own, over MQTT, HTTP, WebSocket and AMQP, must end with no connection left open past its
bound, no traceback in the hub's log, no file descriptor left behind, every AMQP answer decodable,
every put-token of a well-formed AMQP dialogue answered, and every call to the MQTT and the AMQP
canary answered.

A failure names the findings (their signatures and minimal inputs are in the report printed
below); replay one with ``python -m fuzz --replay FILE.json``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SECONDS = 25
"""Fuzzing time; with the hub's start, the last connections' close bound and the report: < 60 s."""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("fuzz") / "report.json"
    command = [sys.executable, "-m", "fuzz", "--seed", "7", "--duration", str(SECONDS), "--triage-time", "0"]
    command += ["--report", str(out), "--quiet"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=100)
    assert out.exists(), f"python -m fuzz wrote no report (exit {done.returncode}):\n{done.stderr[-3000:]}"
    doc: dict[str, Any] = json.loads(out.read_text())
    doc["_summary"] = done.stderr
    doc["_exit"] = done.returncode
    return doc


def _findings(doc: dict[str, Any], kind: str) -> str:
    found = [f for f in doc["findings"] if f["kind"] == kind]
    return "\n".join(f"  x{f['count']} {f['signature']}" for f in found)


@pytest.mark.timeout(120)
def test_every_target_was_fuzzed(report: dict[str, Any]) -> None:
    for target in ("mqtt", "mqtts", "ws", "http", "websocket", "amqp", "amqps", "amqpws"):
        assert report["per_target"][target]["connections"] > 0, target
    assert report["mqtt_packets"] > 10_000
    assert report["mqtt_mutated_packets"] > 1000
    assert report["amqp_frames"] > 10_000
    assert report["amqp_mutated_frames"] > 1000
    assert report["amqp_malformed_frames"] > 300
    for target in ("amqp", "amqps", "amqpws"):  # dialogues got as far as an authorized device
        assert report["per_target"][target]["authorized"] > 0, target
    assert report["hub"]["fds_start"] is not None and report["hub"]["rss_start_mb"] is not None


def test_no_connection_outlives_its_bound(report: dict[str, Any]) -> None:
    hangs = report["hangs"]
    assert hangs == 0, f"{hangs} connection(s) not closed in time:\n{_findings(report, 'hang')}"


def test_no_traceback_in_the_hub_log(report: dict[str, Any]) -> None:
    assert report["tracebacks"] == 0, f"tracebacks in the hub's log:\n{_findings(report, 'traceback')}"


def test_no_file_descriptor_left_behind(report: dict[str, Any]) -> None:
    hub = report["hub"]
    assert hub["fd_growth"] <= report["limits"]["fd_slack"], (
        f"the hub holds {hub['fd_growth']} more fds after the fuzz connections closed "
        f"({hub['fds_start']} -> {hub['fds_end']})"
    )


def test_the_canary_was_always_answered(report: dict[str, Any]) -> None:
    canary = report["canary"]
    assert canary["calls"] > 50
    assert canary["failures_total"] == 0, json.dumps(canary["failures"][:10], indent=1)
    transports = {device["transport"]: device for device in canary["devices"].values()}
    assert set(transports) == {"mqtt", "amqp"}
    for device in transports.values():
        assert device["calls"] > 25 and device["ok"] == device["calls"]


def test_the_amqp_answers_decode_and_put_tokens_are_answered(report: dict[str, Any]) -> None:
    assert report["garbled_amqp_answers"] == 0, _findings(report, "garbled")
    assert report["unanswered_put_tokens"] == 0, _findings(report, "unanswered")


def test_exit_code_is_the_verdict(report: dict[str, Any]) -> None:
    assert report["_exit"] == (0 if report["verdict"]["ok"] else 1), report["_summary"][-2000:]
