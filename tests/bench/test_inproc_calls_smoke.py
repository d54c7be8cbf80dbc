"""Smoke test of ``bench/inproc_calls.py``: a few hundred calls through the whole hub in one process
must all be answered and the figure printed. No timing is asserted: CI machines vary."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_small_run_answers_every_call_and_prints_the_figure() -> None:
    command = [sys.executable, "bench/inproc_calls.py", "--calls", "200", "--rounds", "1", "--warmup", "50"]
    command += ["--connections", "8", "--loop", "asyncio"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"bench/inproc_calls.py failed:\n{done.stdout}\n{done.stderr}"
    match = re.search(r"CPU best ([\d.]+) median ([\d.]+) µs/call", done.stdout)
    assert match is not None, done.stdout
    assert float(match.group(1)) > 0 and float(match.group(1)) <= float(match.group(2))
    assert "1 rounds × 200 calls" in done.stdout
