"""Memory under bursts of large payloads: does the hub's RSS come back down, or ratchet up?

    python bench/memory.py [--bursts 5] [--devices 10] [--per-device 50] [--kib 120]

Runs the same workload twice in one run, on two fresh hubs: with methodhub's malloc tuning (the
default: a fixed mmap threshold, see ``methodhub.process.memory``) and without it
(``METHODHUB_MALLOC_TUNING=off``), the reference. Each burst makes devices × per-device
concurrent calls whose request and response payloads are ``--kib`` KiB each (paho devices echo
them). Prints the hub's RSS after start and after each burst, and the growth ratio of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import HubProcess, PahoDevice


def rss_mib(hub: HubProcess) -> float:
    assert hub.proc is not None
    with open(f"/proc/{hub.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def burst(hub: HubProcess, token: str, devices: list[str], per_device: int, kib: int) -> int:
    payload = "x" * (kib * 1024)
    limits = httpx.Limits(max_connections=len(devices) * per_device)
    async with httpx.AsyncClient(base_url=hub.http_url, timeout=60, limits=limits) as client:

        async def call(device_id: str) -> int:
            response = await client.post(
                f"/twins/{device_id}/methods?api-version=2021-04-12",
                json={"methodName": "echo", "payload": payload, "responseTimeoutInSeconds": 30},
                headers={"Authorization": token},
            )
            return response.status_code

        codes = await asyncio.gather(*(call(d) for d in devices for _ in range(per_device)))
    return sum(code == 200 for code in codes)


def run(tuning: bool, args: argparse.Namespace) -> list[float]:
    os.environ["METHODHUB_MALLOC_TUNING"] = "on" if tuning else "off"
    with tempfile.TemporaryDirectory() as tmp:
        hub = HubProcess(Path(tmp) / "data").start()
        ids = [f"mem-{i}" for i in range(args.devices)]
        devices = [PahoDevice(hub, d, hub.create_device(d)).online() for d in ids]
        for device in devices:
            device.serve(lambda name, payload: (200, payload))
        token = hub.service_token()
        samples = [rss_mib(hub)]
        try:
            for index in range(args.bursts):
                ok = asyncio.run(burst(hub, token, ids, args.per_device, args.kib))
                samples.append(rss_mib(hub))
                print(
                    f"  {'tuned' if tuning else 'untuned'} burst {index + 1}/{args.bursts}: "
                    f"{ok}/{len(ids) * args.per_device} ok, RSS {samples[-1]:.0f} MiB",
                    file=sys.stderr,
                )
        finally:
            for device in devices:
                device.close()
            hub.stop()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--per-device", type=int, default=50)
    parser.add_argument("--kib", type=int, default=120)
    args = parser.parse_args()
    tuned = run(True, args)
    untuned = run(False, args)
    concurrent = args.devices * args.per_device
    print(f"hub RSS (MiB) with {concurrent} concurrent calls of {args.kib} KiB each way, per burst")
    print(f"{'':<10}{'start':>8}" + "".join(f"{'#' + str(i + 1):>8}" for i in range(args.bursts)))
    for name, samples in (("tuned", tuned), ("untuned", untuned)):
        print(f"{name:<10}" + "".join(f"{value:8.0f}" for value in samples))
    growth_tuned = tuned[-1] - tuned[1]
    growth_untuned = untuned[-1] - untuned[1]
    print(
        f"growth after the first burst: tuned {growth_tuned:+.0f} MiB, untuned (reference) "
        f"{growth_untuned:+.0f} MiB; last-burst RSS ratio tuned/untuned {tuned[-1] / untuned[-1]:.2f}"
    )


if __name__ == "__main__":
    main()
