"""Run inside a private network namespace (``unshare -n``): a hub whose HTTPS port is 443, and the
Node service SDK scenario (node_service.js) against it. Microsoft's ``azure-iothub`` dials
``https://{HostName}:443`` and has no port or proxy option, so this is how the test gives it a hub
without taking port 443 on the machine.

Usage: ``unshare -n python netns_node_service.py DATA_DIR NODE_MODULES``; prints the scenario's JSON
result on stdout (progress and the hub's log on stderr) and exits 0 when the scenario ran.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    data_dir, node_modules = Path(sys.argv[1]), sys.argv[2]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    methodhub = [sys.executable, "-m", "methodhub", "--data-dir", str(data_dir)]
    hub = subprocess.Popen(
        [
            *methodhub,
            "serve",
            "--hostname",
            "localhost",
            "--https-port",
            "443",
            "--http-port",
            "0",
            "--mqtt-port",
            "0",
            "--mqtts-port",
            "-1",
            "--amqps-port",
            "-1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert hub.stderr is not None
        deadline = time.monotonic() + 30
        for line in hub.stderr:
            sys.stderr.write(line)
            if re.search(r"\bhttps listening on", line):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the hub did not start")
        threading.Thread(target=lambda: [sys.stderr.write(rest) for rest in hub.stderr], daemon=True).start()
        for device in ("node-a", "node-b"):
            subprocess.run([*methodhub, "device", "create", device], check=True, capture_output=True)
        cs = subprocess.run(
            [*methodhub, "connection-string"], check=True, capture_output=True, text=True
        ).stdout.strip()
        env = {
            **os.environ,
            "NODE_PATH": node_modules,
            "NODE_EXTRA_CA_CERTS": str(data_dir / "tls" / "ca.pem"),
        }
        result = subprocess.run(
            ["node", str(HERE / "node_service.js"), cs, "node-a", "node-b"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        sys.stderr.write(result.stderr)
        print(json.dumps({"returncode": result.returncode, "output": result.stdout.strip()}))
        return 0
    finally:
        hub.terminate()
        try:
            hub.wait(15)
        except subprocess.TimeoutExpired:
            hub.kill()


if __name__ == "__main__":
    raise SystemExit(main())
