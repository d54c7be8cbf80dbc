"""Queued calls (issue 12): ``python -m bench.queued [--devices N] [--calls-per-device K]``.

1. Creates: ``POST /calls`` for N offline devices, K calls each, 16 requests in flight, through the
   REST API (keep-alive, a raw HTTP/1.1 client): calls queued per second, and the hub's CPU per
   create.
2. Delivery after connect: the farm connects all N devices at once; the time from its first
   connect until every call is ``succeeded`` (each device gets its K calls one after another,
   creation order), and calls delivered per second over that time. The hub's sweep (1 s) is part
   of the figure: calls made for offline devices wait for it.

Figures go to stdout as one JSON line; progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import CpuPlan, progress
from bench.farm import FarmConfig, FarmProcess
from bench.hubproc import Hub, new_device_key, register_devices

PREFIX = "q-"


async def _create_all(hub: Hub, ids: list[str], per_device: int, concurrency: int = 16) -> float:
    """``POST /calls`` for every device ``per_device`` times, ``concurrency`` keep-alive connections
    (a raw HTTP/1.1 client, as :func:`bench.hubproc.register_devices`: httpx's own CPU per request
    would be the figure otherwise)."""
    queue = [device for n in range(per_device) for device in ids]
    head = (
        f"POST /calls HTTP/1.1\r\nHost: 127.0.0.1:{hub.http_port}\r\nAuthorization: {hub.owner_token}\r\n"
        "Content-Type: application/json\r\n"
    )

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.http_port)
        try:
            while queue:
                device = queue.pop()
                body = orjson.dumps(
                    {"deviceId": device, "methodName": "step", "payload": {"at": time.time()}}
                )
                writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                answer_head = await reader.readuntil(b"\r\n\r\n")
                status = int(answer_head.split(b" ", 2)[1])
                length = 0
                for line in answer_head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                answer = await reader.readexactly(length)
                if status != 202:
                    raise RuntimeError(f"POST /calls: {status} {answer[:200]!r}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


def _count_succeeded(hub: Hub) -> int:
    """Succeeded calls, by listing them (1000 a page)."""
    with httpx.Client(base_url=hub.url, headers={"Authorization": hub.owner_token}) as client:
        total, token = 0, None
        while True:
            params: dict[str, Any] = {"state": "succeeded", "limit": 1000}
            if token:
                params["continuationToken"] = token
            page = client.get("/calls", params=params).json()
            total += len(page["calls"])
            token = page["continuationToken"]
            if not token:
                return total


def run(devices: int, per_device: int, workdir: Path, plan: CpuPlan | None = None) -> dict[str, Any]:
    """The figures of the module docstring; ``plan``: pin the hub and the farm (the suite's phases)."""
    plan = plan or CpuPlan(None, None)
    hub = Hub(data_dir=workdir / "hub-queued", cpus=plan.server, nofile=devices + 4096)
    progress(f"queued calls: starting a hub for {devices:,} offline devices ({plan.describe()})")
    hub.start()
    farm: FarmProcess | None = None
    try:
        key = new_device_key()
        ids = [f"{PREFIX}{i:06d}" for i in range(devices)]
        register_s = register_devices(hub, ids, key)
        progress(f"queued calls: registered {devices:,} devices through the REST API in {register_s:.1f} s")
        calls = devices * per_device
        cpu0 = hub.cpu()
        seconds = asyncio.run(_create_all(hub, ids, per_device))
        create_cpu = hub.cpu() - cpu0
        progress(f"queued calls: {calls:,} created in {seconds:.2f} s ({calls / seconds:,.0f}/s)")
        started = time.perf_counter()
        farm = FarmProcess(
            FarmConfig(host="127.0.0.1", port=hub.mqtt_port, prefix=PREFIX, count=devices, key=key),
            cpus=plan.load,
        )
        online = farm.wait_online()
        progress(f"queued calls: {online['online']:,} devices online in {online['seconds']:.2f} s")
        deadline = time.perf_counter() + 120 + calls / 100
        done = 0
        while done < calls:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"only {done:,} of {calls:,} calls succeeded in time")
            time.sleep(0.2)
            done = _count_succeeded(hub)
        delivered = time.perf_counter() - started
        progress(
            f"queued calls: all {calls:,} answered {delivered:.2f} s after the devices started connecting"
        )
        return {
            "devices": devices,
            "calls_per_device": per_device,
            "creates_per_s": calls / seconds,
            "hub_cpu_per_create_us": create_cpu / calls * 1e6,
            "online_s": online["seconds"],
            "all_answered_after_connect_s": delivered,
            "delivered_per_s": calls / delivered,
        }
    finally:
        if farm is not None:
            farm.stop()
        hub.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.queued", description=__doc__)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--calls-per-device", type=int, default=4)
    parser.add_argument("--pin", action="store_true", help="hub on one CPU, the farm on the others")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="methodhub-bench-queued-") as workdir:
        figures = run(args.devices, args.calls_per_device, Path(workdir), CpuPlan.make(args.pin))
    print(json.dumps(figures))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
