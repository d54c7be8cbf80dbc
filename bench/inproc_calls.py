"""The hub's own CPU cost of one direct method call, end to end in one process, no sockets.

Everything on the hub's side is the real thing, assembled as ``methodhub serve`` assembles it: a
SQLite registry (in a temporary folder) with one device, the :class:`Gateway` with the Azure
dialect, a :class:`LocalRouter`, the :class:`CallEngine`, the Azure REST front door on a routing
table and the HTTP server's connection protocol. Only the two ends are fakes, on memory transports:

* a device: an MQTT connection from ``gateway.protocol_for("mqtt")`` that CONNECTs with a real SAS
  token and SUBSCRIBEs to ``$iothub/methods/POST/#``; each method request the hub writes to it is
  decoded with ``methodhub.mqtt``'s codec and answered (status 200, the request's payload echoed).
  With ``--transport amqp``: an AMQP connection from ``gateway.amqp_protocol_for("amqp")`` and the
  benchmark farm's AMQP device (bench/amqp_farm.py: CBS put-token, the methods links, pre-settled as
  C#'s, or ``--unsettled`` as Node's), answering 200 with ``{"ok":true}``;
* a backend: ``--connections`` keep-alive HTTP connections, each POSTing
  ``/twins/{id}/methods`` with a real service SAS token and sending its next request once its
  response has been written, until ``--calls`` calls are answered. Every response must be a 200
  carrying the echoed payload (anything else stops the run).

What one side writes reaches the other on the next loop iteration (``loop.call_soon``), as a
network hop would. The figure is ``time.process_time()`` per call over each round (after a warm-up);
it includes the two fakes' cost (a few µs, the same code on any commit: the MQTT codec and byte
comparisons), and not the kernel's socket work. The best and the median of ``--rounds`` rounds are
printed on one line ending in ``µs/call``. CPU time, not wall time, is the figure: a busy machine
moves wall time far more. On a shared VM even CPU time moves (by 2× between rounds on an idle
guest when the host is busy: the neighbour slows our vCPU without it counting as steal).

``--instructions`` gives the figure that does not move: the script runs itself under valgrind's
callgrind twice (1,000 and 3,000 calls, one round each) and prints the instructions the whole
process executed per call (the difference over 2,000 calls, so start-up cancels out); it repeats
to within ~0.3 %. It takes about a minute (valgrind must be installed).

The script runs against the code layout before and after issue 10 (``python -m bench.ab`` runs the
newer commit's copy of it on the older commit too); only the imports differ.

Example::

    python bench/inproc_calls.py
    python bench/inproc_calls.py --calls 200 --rounds 1 --warmup 50
    python bench/inproc_calls.py --instructions
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from methodhub.calls import CallEngine
from methodhub.config import DeviceLimits
from methodhub.gateway import Gateway
from methodhub.metrics import Metrics
from methodhub.mqtt import Connack, Connect, Publish, Suback, Subscribe, decode, encode
from methodhub.registry import SqliteRegistry
from methodhub.router import LocalRouter

try:  # the layout since issue 10
    from methodhub.dialects.azure.mqtt import AzureDialect
    from methodhub.dialects.azure.rest import AzureApi
    from methodhub.dialects.azure.sas import generate_sas_token
    from methodhub.dialects.azure.service_auth import ServiceAuthenticator
    from methodhub.http.routing import Routes
    from methodhub.http.server import HttpServer
except ImportError:  # e40c65b and before: api/, auth/, gateway/dialects/
    from methodhub.api.azure import AzureApi  # type: ignore[no-redef]
    from methodhub.api.http import HttpServer  # type: ignore[no-redef]
    from methodhub.api.routing import Routes  # type: ignore[no-redef]
    from methodhub.gateway.dialects.azure import AzureDialect  # type: ignore[no-redef]

    from methodhub.auth import ServiceAuthenticator, generate_sas_token  # type: ignore[no-redef]

HOST = "bench-hub.example"
DEVICE = "bench-device-1"
API_VERSION = "2021-04-12"
MQTT_LEVEL = 4  # MQTT 3.1.1, as Azure's device SDKs speak it
TOKEN_LIFETIME = 24 * 3600
GC_THRESHOLDS = (20_000, 20, 20)  # what the hub sets once it serves (process/hub.py)
METHOD_REQUESTS = "$iothub/methods/POST/"
PAYLOAD = b'{"n":1}'
BODY = b'{"methodName":"echo","payload":{"n":1},"responseTimeoutInSeconds":30}'
EXPECTED_BODY = b'{"status":200,"payload":' + PAYLOAD + b"}"
AMQP_EXPECTED_BODY = b'{"status":200,"payload":{"ok":true}}'  # the AMQP farm device's answer
STARTUP_TIMEOUT = 30.0


class BenchFailure(Exception):
    """The hub answered something other than what a working hub answers."""


class MemoryTransport(asyncio.Transport):
    """The transport both fakes hand to a hub protocol; subclasses say what a write means."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.loop = asyncio.get_running_loop()
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


class FakeDevice(MemoryTransport):
    """The device end of one MQTT connection: answers every method request with 200 and its payload."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__(protocol)
        self.buffer = b""
        self.control: list[Any] = []
        self.changed = asyncio.Event()
        self.answered = 0

    def write(self, data: Any) -> None:
        buffer = self.buffer + bytes(data) if self.buffer else bytes(data)
        while True:
            # fixed header: a type byte, then the remaining length as a varint
            size = len(buffer)
            if size < 2:
                break
            length = multiplier = 0
            pos = 1
            while True:
                if pos >= size:
                    length = -1
                    break
                byte = buffer[pos]
                length += (byte & 0x7F) << multiplier
                multiplier += 7
                pos += 1
                if not byte & 0x80:
                    break
            if length < 0 or pos + length > size:
                break
            packet = decode(buffer[0], buffer[pos : pos + length], MQTT_LEVEL)
            buffer = buffer[pos + length :]
            if isinstance(packet, Publish) and packet.topic.startswith(METHOD_REQUESTS):
                rid = packet.topic.rpartition("$rid=")[2]
                answer = Publish(topic=f"$iothub/methods/res/200/?$rid={rid}", payload=packet.payload)
                self.answered += 1
                self.loop.call_soon(self.protocol.data_received, encode(answer, MQTT_LEVEL))
            else:
                self.control.append(packet)
                self.changed.set()
        self.buffer = buffer

    async def next_control(self) -> Any:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while not self.control:
                if self.closed:
                    raise BenchFailure("the hub closed the device's connection")
                self.changed.clear()
                await self.changed.wait()
        return self.control.pop(0)


class Round:
    """How many calls one round sends and has answered; ``finished`` resolves at the last answer."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self.sent = 0
        self.answered = 0
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class FakeBackend(MemoryTransport):
    """One keep-alive HTTP connection of a backend: a call, its answer, the next call."""

    def __init__(self, protocol: asyncio.Protocol, request: bytes, expected: bytes = EXPECTED_BODY) -> None:
        super().__init__(protocol)
        self.request = request
        self.expected = expected
        self.round: Round | None = None

    def start(self, round_: Round) -> None:
        self.round = round_
        if round_.sent < round_.calls:
            round_.sent += 1
            self.loop.call_soon(self.protocol.data_received, self.request)

    def write(self, data: Any) -> None:
        round_ = self.round
        if round_ is None:
            return
        # the server writes each response in one write: head and body together. A failure is
        # reported through the round, not raised into the hub's code that called write().
        if not (data.startswith(b"HTTP/1.1 200 ") and data.endswith(self.expected)):
            if not round_.finished.done():
                round_.finished.set_exception(BenchFailure(f"unexpected response: {bytes(data)[:600]!r}"))
            return
        round_.answered += 1
        if round_.sent < round_.calls:
            round_.sent += 1
            self.loop.call_soon(self.protocol.data_received, self.request)
        elif round_.answered == round_.calls and not round_.finished.done():
            round_.finished.set_result(None)

    def close(self) -> None:
        if not self.closed and self.round is not None and not self.round.finished.done():
            self.round.finished.set_exception(BenchFailure("the hub closed a backend connection"))
        super().close()


def http_request(token: str) -> bytes:
    return (
        f"POST /twins/{DEVICE}/methods?api-version={API_VERSION} HTTP/1.1\r\n"
        f"Host: {HOST}\r\n"
        f"Authorization: {token}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        "User-Agent: bench-inproc/1.0\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY


async def connect_device(gateway: Gateway, key: str, device_id: str = DEVICE) -> FakeDevice:
    protocol = gateway.protocol_for("mqtt")
    device = FakeDevice(protocol)
    protocol.connection_made(device)
    token = generate_sas_token(f"{HOST}/devices/{device_id}", key, int(time.time()) + TOKEN_LIFETIME)
    connect = Connect(
        client_id=device_id,
        clean_session=True,
        keepalive=300,
        username=f"{HOST}/{device_id}/?api-version={API_VERSION}",
        password=token.encode(),
        protocol_level=MQTT_LEVEL,
    )
    protocol.data_received(encode(connect, MQTT_LEVEL))
    connack = await device.next_control()
    if not isinstance(connack, Connack) or connack.reason_code != 0:
        raise BenchFailure(f"the device's CONNECT was refused: {connack!r}")
    subscribe = Subscribe(packet_id=1, subscriptions=[("$iothub/methods/POST/#", 0)])
    protocol.data_received(encode(subscribe, MQTT_LEVEL))
    suback = await device.next_control()
    if not isinstance(suback, Suback) or any(code >= 0x80 for code in suback.reason_codes):
        raise BenchFailure(f"the device's SUBSCRIBE was refused: {suback!r}")
    return device


class AmqpWire(MemoryTransport):
    """One end of an AMQP connection in memory: what its owner writes reaches ``peer`` on the next
    loop iteration."""

    def __init__(self, owner: asyncio.Protocol, peer: asyncio.Protocol) -> None:
        super().__init__(owner)
        self.peer = peer

    def write(self, data: Any) -> None:
        self.loop.call_soon(self.peer.data_received, bytes(data))


class AmqpFarmDevice:
    """The benchmark farm's AMQP device (bench/amqp_farm.py) on a memory connection to the hub."""

    def __init__(self, gateway: Gateway, key: str, presettled: bool, device_id: str = DEVICE) -> None:
        from types import SimpleNamespace

        root = str(Path(__file__).resolve().parents[1])
        if (
            root not in sys.path
        ):  # run as a script (python bench/inproc_calls.py): bench/ is not a package then
            sys.path.insert(0, root)
        from bench.amqp_farm import AmqpDevice

        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[bool] = loop.create_future()
        config = SimpleNamespace(presettled=presettled, hostname=HOST, key=key)
        self.farm = SimpleNamespace(
            config=config,
            expiry=int(time.time()) + TOKEN_LIFETIME,
            answered=0,
            errors={},
            lost=0,
            queued=0,
            queued_s=0.0,
            queued_max_s=0.0,
        )
        self.protocol = gateway.amqp_protocol_for("amqp")
        self.device = AmqpDevice(self.farm, device_id, self.ready)  # type: ignore[arg-type]
        self.protocol.connection_made(AmqpWire(self.protocol, self.device))
        self.device.connection_made(AmqpWire(self.device, self.protocol))

    @property
    def answered(self) -> int:
        return int(self.farm.answered)

    async def online(self) -> None:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            if not await self.ready:
                raise BenchFailure(f"the AMQP device could not connect: {self.device.refused}")


async def run_round(backends: list[FakeBackend], calls: int) -> None:
    round_ = Round(calls)
    for backend in backends:
        backend.start(round_)
    await round_.finished


async def measure(args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """(CPU µs/call, wall µs/call) of each round."""
    with tempfile.TemporaryDirectory(prefix="methodhub-inproc-calls-") as tmp:
        registry = SqliteRegistry(Path(tmp) / "registry.db")
        await registry.open()
        try:
            return await _measure(args, registry)
        finally:
            await registry.close()


async def _measure(args: argparse.Namespace, registry: SqliteRegistry) -> tuple[list[float], list[float]]:
    await registry.ensure_default_policies()
    identity = await registry.create_identity(DEVICE)
    policy = await registry.get_policy("service")
    assert policy is not None
    metrics = Metrics()
    router = LocalRouter()
    engine = CallEngine(router, registry, metrics)
    history = None
    if args.history:  # imported here: commits before the call history have no such module
        from methodhub.calls.history import HistoryRecorder

        history = HistoryRecorder(registry)
        engine.recorder = history
    if getattr(args, "quotas", False):  # limits on, raised out of reach: their checks are measured
        from methodhub.calls.quotas import QuotaLimits, Quotas

        engine.quotas = Quotas(
            QuotaLimits(method_calls_per_second=1e12, method_calls_per_policy_per_second=1e12)
        )
    amqp = args.transport == "amqp"
    amqp_dialect = None
    if amqp:
        from methodhub.dialects.azure.amqp import AzureAmqpDialect

        amqp_dialect = AzureAmqpDialect()
    gateway = Gateway(
        registry=registry,
        router=router,
        metrics=metrics,
        hostname=HOST,
        dialects=[AzureDialect()],
        max_packet_size=300_000,
        max_in_flight=args.connections,
        # one device answers every call: its packet rate is far above a real device's, so the
        # limit is raised out of reach (not switched off: its check stays on the measured path)
        limits=DeviceLimits(max_packets_per_second=1e12),
        **({"amqp_dialect": amqp_dialect} if amqp else {}),  # type: ignore[arg-type]
    )
    routes = Routes()
    AzureApi(engine, registry, ServiceAuthenticator(registry, HOST), gateway).register(routes)
    server = HttpServer(routes)
    try:
        device: FakeDevice | AmqpFarmDevice
        if amqp:
            device = AmqpFarmDevice(gateway, identity.keys.primary, not args.unsettled)
            await device.online()
        else:
            device = await connect_device(gateway, identity.keys.primary)
        if not await router.wait_ready(DEVICE, STARTUP_TIMEOUT):
            raise BenchFailure("the device's session never became ready for calls")
        token = generate_sas_token(HOST, policy.keys.primary, int(time.time()) + TOKEN_LIFETIME, "service")
        request = http_request(token)
        backends = []
        for _ in range(args.connections):
            protocol = server.protocol_factory()
            backend = FakeBackend(protocol, request, AMQP_EXPECTED_BODY if amqp else EXPECTED_BODY)
            protocol.connection_made(backend)
            backends.append(backend)
        await run_round(backends, max(args.warmup, 1))  # the first call verifies the token
        if history is not None:
            await history.flush()
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        cpu: list[float] = []
        wall: list[float] = []
        for _ in range(args.rounds):
            answered = device.answered
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            await run_round(backends, args.calls)
            if history is not None:  # this round's records are stored before its time ends
                await history.flush()
            cpu_end, wall_end = time.process_time(), time.perf_counter()
            if device.answered - answered != args.calls:
                raise BenchFailure(f"the device answered {device.answered - answered} of {args.calls} calls")
            cpu.append((cpu_end - cpu_start) / args.calls * 1e6)
            wall.append((wall_end - wall_start) / args.calls * 1e6)
        for backend in backends:
            backend.round = None
            backend.protocol.connection_lost(None)
        device.protocol.connection_lost(None)
        return cpu, wall
    finally:
        engine.stop()
        await gateway.close()
        await server.close()


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


INSTRUCTION_RUNS = (1_000, 3_000)
"""Calls in the two callgrind runs of ``--instructions``; their difference is what is counted."""


def count_instructions(args: argparse.Namespace) -> float:
    """Instructions per call: this script under callgrind at two call counts, the difference divided."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise BenchFailure("--instructions needs valgrind (Debian: apt-get install valgrind)")
    counts = []
    for calls in INSTRUCTION_RUNS:
        command = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__]
        command += ["--calls", str(calls), "--rounds", "1", "--warmup", str(args.warmup)]
        command += ["--connections", str(args.connections), "--loop", args.loop]
        command += ["--transport", args.transport] + (["--unsettled"] if args.unsettled else [])
        command += ["--history"] if args.history else []
        command += ["--quotas"] if getattr(args, "quotas", False) else []
        # the same hash seed in both runs: set and dict layouts, hence the work, do not vary
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        match = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
        if done.returncode != 0 or match is None:
            raise BenchFailure(f"the callgrind run failed:\n{done.stdout}{done.stderr[-2000:]}")
        counts.append(int(match.group(1).replace(",", "")))
    return (counts[1] - counts[0]) / (INSTRUCTION_RUNS[1] - INSTRUCTION_RUNS[0])


def _what(args: argparse.Namespace) -> str:
    what = "mqtt" if args.transport == "mqtt" else "amqp-unsettled" if args.unsettled else "amqp"
    return what + (" history" if args.history else "") + (" quotas" if getattr(args, "quotas", False) else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/inproc_calls.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round (default 20,000)")
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds (default 7)")
    parser.add_argument("--warmup", type=int, default=500, help="calls before the first round (default 500)")
    parser.add_argument(
        "--connections", type=int, default=64, help="backend keep-alive connections, one call each in flight"
    )
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument(
        "--transport", choices=["mqtt", "amqp"], default="mqtt", help="the device's transport (default mqtt)"
    )
    parser.add_argument(
        "--unsettled",
        action="store_true",
        help="amqp: Node's unsettled transfers (default: C#'s pre-settled)",
    )
    parser.add_argument(
        "--history",
        action="store_true",
        help="record every call in the call history (serve --history on), each round's records stored in it",
    )
    parser.add_argument(
        "--quotas",
        action="store_true",
        help="the hub-wide and per-policy call rates on, out of reach (bench/quotas.py compares)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per call under callgrind instead of timing (deterministic; ~1 min)",
    )
    args = parser.parse_args(argv)
    if args.calls < 1 or args.rounds < 1 or args.connections < 1:
        parser.error("--calls, --rounds and --connections must be at least 1")
    if args.loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            parser.error("uvloop is not installed; use --loop asyncio")
    if args.instructions:
        try:
            per_call = count_instructions(args)
        except (BenchFailure, subprocess.TimeoutExpired) as error:
            print(f"inproc calls: FAILED: {error}", file=sys.stderr)
            return 1
        low, high = INSTRUCTION_RUNS
        print(
            f"inproc calls {_what(args)} loop={args.loop} connections={args.connections}: "
            f"{per_call:,.0f} instructions/call (callgrind, whole process, {high:,} − {low:,} calls)"
        )
        return 0
    try:
        with asyncio.Runner(loop_factory=lambda: new_loop(args.loop)) as runner:
            cpu, wall = runner.run(measure(args))
    except (BenchFailure, TimeoutError) as error:
        print(f"inproc calls: FAILED: {error or 'timed out'}", file=sys.stderr)
        return 1
    print(
        f"inproc calls {_what(args)} loop={args.loop} connections={args.connections}: "
        f"CPU best {min(cpu):.2f} median {statistics.median(cpu):.2f} µs/call; "
        f"wall best {min(wall):.2f} median {statistics.median(wall):.2f} µs/call "
        f"({args.rounds} rounds × {args.calls:,} calls; CPU per round: {', '.join(f'{v:.2f}' for v in cpu)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
