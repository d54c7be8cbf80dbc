"""``methodhub status``: the hub running on the data dir: its addresses (``hub.json``), version,
devices online (cluster-wide, from its ``GET /devices``) and calls/s (two reads of its
``/metrics`` call counter a second apart); exit 5 if no hub is running."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from methodhub.cli.exits import EXIT_UNAVAILABLE, fail
from methodhub.cli.hub_api import get_json, hub_client, owner_token
from methodhub.cli.progress import Progress
from methodhub.cli.registry import hub_hostname, open_hub_registry
from methodhub.cli.running_hub import LISTENER_NAMES, running_hub_address
from methodhub.process.datadir import read_runtime

if TYPE_CHECKING:
    import httpx

CALLS_COUNTER = "methodhub_calls_total"
"""The ``/metrics`` counter of finished calls (by outcome) that calls/s is measured on."""
RATE_INTERVAL = 1.0
PROGRESS_STEPS = 10
MAX_LISTED = 10000
"""``GET /devices`` lists at most this many devices (Azure's ``top``)."""


def add_status_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    status = commands.add_parser(
        "status",
        parents=[common],
        help="the running hub: addresses, version, devices online, calls/s",
        description="Ask the hub running on the data dir how it is: where it listens, its version, "
        "how many devices are online (cluster-wide) and its calls per second (this node's, measured "
        "over one second). Exit 5 if no hub is running.",
    )
    status.add_argument("--json", action="store_true", help="one JSON object, for scripts")


def print_status(args: argparse.Namespace, data_dir: Path) -> None:
    url = running_hub_address(args, data_dir, ("http", "https"), "--data-dir DIR of a running hub")
    runtime = read_runtime(data_dir) or {}
    report = asyncio.run(_status(args, data_dir, url, runtime))
    if args.json:
        print(json.dumps(report, indent=2))
        return
    version = report["version"] or "unknown"
    print(f"hub: pid {report['pid']}, version {version}, hostname {report['hostname']}")
    for name, address in report["addresses"].items():
        print(f"  {LISTENER_NAMES.get(name, name)}: {address}")
    online, total = report["devicesOnline"], report["devices"]
    more = "+" if total is not None and total >= MAX_LISTED else ""
    print(f"devices online: {online}{more} of {total}{more}")
    rate = report["callsPerSecond"]
    print(f"calls/s: {rate:g} (this node)" if rate is not None else "calls/s: unknown (no /metrics answer)")


async def _status(
    args: argparse.Namespace, data_dir: Path, url: str, runtime: dict[str, Any]
) -> dict[str, Any]:
    import httpx

    registry = await open_hub_registry(data_dir, args.registry_url)
    try:
        token = await owner_token(registry, await hub_hostname(data_dir, registry))
    finally:
        await registry.close()
    if token is None:
        fail("the registry has no iothubowner policy to ask the hub with")
    report: dict[str, Any] = {
        "pid": runtime.get("pid"),
        "version": runtime.get("version"),
        "hostname": runtime.get("hostname"),
        "addresses": {name: runtime[name] for name in (*LISTENER_NAMES, "nats") if name in runtime},
        "workers": runtime.get("workers"),
    }
    try:
        async with hub_client(url, data_dir) as client:
            devices = await get_json(client, "/devices", token, top=str(MAX_LISTED))
            report["devices"] = len(devices)
            report["devicesOnline"] = sum(1 for d in devices if d.get("connectionState") == "Connected")
            report["callsPerSecond"] = await _calls_per_second(client)
    except httpx.HTTPError as exc:
        fail(f"the hub at {url} did not answer ({exc}); is it stopping? see its log", EXIT_UNAVAILABLE)
    return report


async def _calls_per_second(client: httpx.AsyncClient) -> float | None:
    first = await _calls_counted(client)
    progress = Progress("measuring calls/s", RATE_INTERVAL)
    try:
        for step in range(PROGRESS_STEPS):
            progress.update(step * RATE_INTERVAL / PROGRESS_STEPS)
            await asyncio.sleep(RATE_INTERVAL / PROGRESS_STEPS)
        progress.update(RATE_INTERVAL)
    finally:
        progress.close()
    second = await _calls_counted(client)
    if first is None or second is None:
        return None
    return round(max(0.0, second - first) / RATE_INTERVAL, 1)


async def _calls_counted(client: httpx.AsyncClient) -> float | None:
    """The sum of ``methodhub_calls_total`` over its labels, or None if /metrics does not say."""
    response = await client.get("/metrics")
    if response.status_code != 200:
        return None
    total, found = 0.0, False
    for line in response.text.splitlines():
        if line.startswith(f"# TYPE {CALLS_COUNTER} "):  # no sample line before the first call
            found = True
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name == CALLS_COUNTER:
            try:
                total += float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
            found = True
    return total if found else None
