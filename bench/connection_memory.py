"""Python memory per idle device connection, by allocation site: MQTT against AMQP, in one process.

    python bench/connection_memory.py                 # both transports, 1,000 connections each
    python bench/connection_memory.py --transport amqp --connections 2000 --group filename

The hub's side is the real one (bench/inproc_calls.py's assembly: SQLite registry, Gateway with the
Azure MQTT and AMQP dialects, LocalRouter); the devices are inproc_calls.py's fakes on memory
transports (MQTT: CONNECT with a SAS token + SUBSCRIBE; AMQP: the benchmark farm's device, CBS
put-token + the methods links). After a warm-up of 50 devices, ``tracemalloc`` compares the heap
before and after ``--connections`` more are connected and ready for calls, and prints the bytes per
connection with the top allocation sites (``--group lineno``, the default, or ``filename``).

The figure counts Python objects only, the fakes' included (their lines are under ``bench/``), and
not the kernel's socket buffers or the event loop's C transports: ``python -m bench``'s RSS per
connection is that plus what a real socket costs in the process (~1–2 KiB).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: the repository root, for `bench.*`
    sys.path.insert(0, str(REPO))

from bench.inproc_calls import HOST, STARTUP_TIMEOUT, AmqpFarmDevice, connect_device  # noqa: E402
from methodhub.dialects.azure.amqp import AzureAmqpDialect  # noqa: E402
from methodhub.dialects.azure.mqtt import AzureDialect  # noqa: E402
from methodhub.gateway import Gateway  # noqa: E402
from methodhub.metrics import Metrics  # noqa: E402
from methodhub.registry import SqliteRegistry  # noqa: E402
from methodhub.router import LocalRouter  # noqa: E402

WARMUP = 50


async def per_connection(transport: str, count: int, group: str, top: int) -> None:
    with tempfile.TemporaryDirectory(prefix="methodhub-connection-memory-") as tmp:
        registry = SqliteRegistry(Path(tmp) / "registry.db")
        await registry.open()
        try:
            await registry.ensure_default_policies()
            ids = [f"mem-{i:06d}" for i in range(WARMUP + count)]
            keys = {d: (await registry.create_identity(d)).keys.primary for d in ids}
            router = LocalRouter()
            gateway = Gateway(
                registry=registry,
                router=router,
                metrics=Metrics(),
                hostname=HOST,
                dialects=[AzureDialect()],
                max_packet_size=300_000,
                max_in_flight=64,
                amqp_dialect=AzureAmqpDialect(),
            )
            keep: list[object] = []

            async def connect(device_id: str) -> None:
                if transport == "amqp":
                    device = AmqpFarmDevice(gateway, keys[device_id], True, device_id)
                    await device.online()
                    keep.append(device)
                else:
                    keep.append(await connect_device(gateway, keys[device_id], device_id))

            async def connect_all(batch: list[str]) -> None:
                for device_id in batch:
                    await connect(device_id)
                for device_id in batch:
                    if not await router.wait_ready(device_id, STARTUP_TIMEOUT):
                        raise RuntimeError(f"{device_id} never became ready for calls")
                await asyncio.sleep(0.5)  # session writes and registry reads settle
                gc.collect()

            await connect_all(ids[:WARMUP])
            tracemalloc.start(1)
            before = tracemalloc.take_snapshot()
            await connect_all(ids[WARMUP:])
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            stats = after.compare_to(before, group)
            total = sum(stat.size_diff for stat in stats)
            per = total / count
            print(f"{transport}: {per:,.0f} bytes of Python objects per connection ({count:,} connections)")
            for stat in stats[:top]:
                frame = stat.traceback[0]
                where = frame.filename
                for marker in (f"{REPO}/", "/src/", "/site-packages/", "/lib/python3"):
                    if marker in where:
                        where = where.split(marker, 1)[1]
                        if marker == "/lib/python3":  # .11/asyncio/locks.py
                            where = where.partition("/")[2]
                        break
                line = f":{frame.lineno}" if group == "lineno" else ""
                size, blocks = stat.size_diff / count, stat.count_diff / count
                print(f"  {size:7,.0f} B  {blocks:5.1f} blocks  {where}{line}")
            await gateway.close()
        finally:
            await registry.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/connection_memory.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--transport", choices=["mqtt", "amqp", "both"], default="both")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--group", choices=["lineno", "filename"], default="lineno")
    parser.add_argument("--top", type=int, default=20, help="allocation sites shown (default 20)")
    args = parser.parse_args(argv)
    if args.connections < 1:
        parser.error("--connections must be at least 1")
    for transport in ("mqtt", "amqp") if args.transport == "both" else (args.transport,):
        asyncio.run(per_connection(transport, args.connections, args.group, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
