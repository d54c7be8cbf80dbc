"""The console's histogram reading (static/metrics.js), run in Node: quantiles as Prometheus'
histogram_quantile computes them, over the observations between two scrapes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[3] / "src" / "methodhub" / "console" / "static" / "metrics.js"

SCRIPT = """
import { buckets, quantile } from %s;
const scrape = (counts) => new Map(Object.entries(counts));
const name = "methodhub_call_duration_seconds";
const key = (door, le) => `${name}_bucket{front_door="${door}",outcome="answered",le="${le}"}`;
// two front doors, summed: 0.001 → 10, 0.01 → 30, +Inf → 40 (cumulative) at the second scrape
const before = buckets(scrape({
  [key("azure", "0.001")]: 2, [key("azure", "0.01")]: 2, [key("azure", "+Inf")]: 2,
  "methodhub_calls_total": 5,
}), name);
const after = buckets(scrape({
  [key("azure", "0.001")]: 7, [key("azure", "0.01")]: 17, [key("azure", "+Inf")]: 22,
  [key("aliyun", "0.001")]: 5, [key("aliyun", "0.01")]: 15, [key("aliyun", "+Inf")]: 20,
}), name);
console.log(JSON.stringify({
  after, p25: quantile(0.25, before, after), p50: quantile(0.5, before, after),
  p99: quantile(0.99, before, after), none: quantile(0.5, after, after),
  fromZero: quantile(0.5, [], after),
}));
"""


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    assert found, "Node.js is needed (scripts/ensure-tools installs it)"
    return found


def test_quantiles_between_two_scrapes(node: str) -> None:
    script = SCRIPT % json.dumps(MODULE.as_uri())
    command = [node, "--input-type=module", "-e", script]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    # summed over front doors, sorted by le, +Inf as null in JSON (Infinity)
    assert out["after"] == [[0.001, 12], [0.01, 32], [None, 42]]
    # between the scrapes: 10 in ≤ 1 ms, 20 more in ≤ 10 ms, 10 above: 40 in all
    assert out["p25"] == pytest.approx(0.001)  # rank 10: the first bucket's last, at its bound
    assert out["p50"] == pytest.approx(0.001 + 0.009 * (20 - 10) / 20)  # rank 20: 10th of the second's 20
    assert out["p99"] == pytest.approx(0.01)  # rank 39.6, in +Inf: the highest finite bound, as Prometheus
    assert out["none"] is None  # no observation between them
    assert out["fromZero"] == pytest.approx(0.001 + 0.009 * (21 - 12) / 20)
