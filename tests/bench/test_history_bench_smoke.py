"""Smoke test of the suite's ``history`` phase (``python -m bench --only history``): tiny sizes must
give both sides' calls/s, their ratio and the records the "on" hub stored. No speed is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_history_on_and_off_in_one_run(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench", "--quick", "--only", "history", "--devices", "20"]
    command += ["--duration", "1", "--warmup", "0", "--history-rounds", "2", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"python -m bench failed:\n{done.stdout}\n{done.stderr}"
    history = json.loads((tmp_path / "latest.json").read_text())["history"]
    assert history["concurrency"] == 64 and history["target"] == 0.95
    for side in ("off", "on"):
        (run,) = history[side]["runs"]
        assert run["concurrency"] == 64 and run["errors"] == 0, run
        assert history["rounds"][0][side] == run["calls_per_s"] > 0  # the first round's runs
        assert history["calls_per_s"][side] == sum(r[side] for r in history["rounds"]) / 2  # median of 2
    assert len(history["rounds"]) == 2
    assert history["ratio"] == history["calls_per_s"]["on"] / history["calls_per_s"]["off"]
    # every call the "on" hub answered is in its history (those cut off when wrk stopped too)
    assert history["records"] >= history["on"]["runs"][0]["calls"] > 0
    assert "call history at c=64: on " in done.stdout
