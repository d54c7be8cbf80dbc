"""Microsoft's unmodified Node.js service SDK (``azure-iothub``): Registry list, twins and query,
JobClient jobs. Its REST client dials https://{HostName}:443 with no port or proxy option, so the
hub and the SDK run in a private network namespace (netns_node_service.py; the tests run as root)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.interop.node_support import node_sdk

pytestmark = pytest.mark.timeout(300)

RUNNER = Path(__file__).with_name("netns_node_service.py")


def test_registry_twins_queries_and_jobs_with_the_node_service_sdk(tmp_path: Path) -> None:
    modules = node_sdk()
    run = subprocess.run(
        ["unshare", "-n", sys.executable, str(RUNNER), str(tmp_path / "data"), str(modules)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    assert answer["returncode"] == 0, (answer, run.stderr[-3000:])
    out: dict[str, Any] = json.loads(answer["output"])
    assert out["list"] == ["node-a", "node-b"]  # Registry.list() asks for /devices/ (the trailing slash)
    assert (
        out["getTwin"]["deviceId"] == "node-a" and out["getTwin"]["etag"] and out["getTwin"]["desired"] == 1
    )
    # Twin.update sends If-Match with the etag the GET gave it (quoted); the hub stored the merge
    assert out["updateTwin"] == {"updated": True, "tags": {"city": "Redmond"}, "interval": 1000}
    assert out["staleEtag"]["error"] == "InvalidEtagError" and "412001" in out["staleEtag"]["message"]
    assert out["query"] == ["node-a"]
    assert out["queryPaged"] == ["node-a", "node-b"]  # one row a page: x-ms-continuation followed
    assert out["job"] == {
        "created": "queued",
        "type": "scheduleDeviceMethod",
        "got": out["job"]["got"],
        "cancelled": "cancelled",
    } and out["job"]["got"].startswith("node-")
    assert out["jobQuery"] == ["scheduleDeviceMethod"]  # the array IoT Hub returns, read by Node
