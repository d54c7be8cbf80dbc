"""Fuzz inputs: what one connection sends, derived from the seed and the input's index alone.

Input ``i`` of seed ``s`` is made from ``random.Random(f"{s}:{i}")``, so the same seed gives the same
inputs in the same order on every run and machine (the SAS tokens too: the harness registers its
devices with keys derived from the seed and signs them with a fixed expiry).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from fuzz.httpgen import http_input
from fuzz.mqttgen import COPIES, MqttGenerator, Unit
from fuzz.wire import Step
from fuzz.wsgen import WEBSOCKET_PATH, bad_websocket, frame_stream, handshake

TARGETS = ("mqtt", "mqtts", "ws", "http", "websocket")
TARGET_WEIGHTS = {"mqtt": 45, "mqtts": 8, "ws": 20, "http": 17, "websocket": 10}
MQTT_TARGETS = frozenset(("mqtt", "mqtts", "ws"))
WIRE_KIND = {"mqtt": "mqtt", "mqtts": "mqtt", "ws": "ws", "http": "http", "websocket": "ws"}
WELL_FORMED = frozenset(("", "value", *COPIES))
PLANS = ("one-write", "connack-first", "split", "packet-per-write", "byte-at-a-time")


@dataclass(slots=True)
class FuzzInput:
    """One connection's input.

    Attributes:
        units: packets / requests / frames, in order (for ``ws``, MQTT packets before framing; the
            handshake, when there is one, is ``prelude``).
        plan: how the units become writes (:data:`PLANS`).
        end: ``fin``, ``silent`` or ``abort`` (see :mod:`fuzz.wire`).
        render_seed: the randomness of rendering (split points, WebSocket framing).
    """

    index: int
    target: str
    units: list[Unit]
    plan: str
    end: str
    render_seed: int
    prelude: bytes = b""
    packets: int = 0
    mutations: int = 0
    intact_prefix: int = 0
    """MQTT packets before the first that may be malformed (value-fuzzed packets and copies of good
    ones are well-formed: the hub must serve them all)."""
    authenticated: bool = False
    silent_ok: bool = False
    """Whether staying silent is a case the hub must time out (else ``silent`` becomes ``fin``)."""
    frame_defects: float = 0.0
    """``ws``: the share of frames that get a frame-level defect."""
    no_tls: bool = False
    """``mqtts``: a plain TCP connection to the TLS port (no handshake, or a broken one)."""

    @property
    def endpoint(self) -> str:
        """The key of the endpoint it is sent to."""
        return "mqtts-no-tls" if self.no_tls else self.target

    def describe(self) -> list[str]:
        return [u.describe() for u in self.units]

    def to_json(self, steps: list[Step]) -> dict[str, object]:
        return {
            "index": self.index,
            "target": self.target,
            "plan": self.plan,
            "end": self.end,
            "authenticated": self.authenticated,
            "no_tls": self.no_tls,
            "prelude_hex": self.prelude.hex(),
            "units": [{"label": u.describe(), "hex": u.data.hex()} for u in self.units],
            "steps": [
                {"write": arg.hex()} if op == "write" else {op: arg}  # type: ignore[union-attr]
                for op, arg in steps
            ],
        }


def load_steps(path: Path) -> tuple[str, str, list[Step]]:
    """(endpoint, end, steps) of a reproducer file written by :meth:`FuzzInput.to_json`."""
    doc = json.loads(path.read_text())
    target = "mqtts-no-tls" if doc.get("no_tls") else doc["target"]
    steps: list[Step] = []
    for step in doc["steps"]:
        ((op, arg),) = step.items()
        steps.append((op, bytes.fromhex(arg)) if op == "write" else (op, float(arg)))
    return target, doc["end"], steps


class InputFactory:
    """Makes input ``i`` for a seed."""

    def __init__(
        self, seed: int, targets: list[str], mqtt: MqttGenerator, http_host: str, owner_token: str
    ) -> None:
        self.seed = seed
        self.targets = targets
        self.weights = [TARGET_WEIGHTS[t] for t in targets]
        self.mqtt = mqtt
        self.http_host = http_host
        self.owner_token = owner_token

    def make(self, index: int) -> FuzzInput:
        rng = random.Random(f"{self.seed}:{index}")
        target = rng.choices(self.targets, self.weights)[0]
        render_seed = rng.randrange(1 << 62)
        if target == "mqtts" and rng.random() < 0.04:
            data, label = rng.choice(
                (
                    (b"", "nothing"),
                    (bytes.fromhex("16030100a5010000a10303"), "the start of a ClientHello"),
                    (b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00", "a CONNECT in clear"),
                    (rng.randbytes(64), "random bytes"),
                )
            )
            end = rng.choices(("silent", "fin"), (70, 30))[0]
            units = [Unit(data, f"TLS port, no TLS: {label}")] if data else []
            return FuzzInput(index, target, units, "one-write", end, render_seed, silent_ok=True, no_tls=True)
        if target in MQTT_TARGETS:
            seq = self.mqtt.sequence(rng)
            plan = rng.choices(PLANS, (35, 30, 15, 12, 8))[0]
            end = rng.choices(("fin", "silent", "abort"), (70, 20, 10))[0]
            inp = FuzzInput(
                index,
                target,
                seq.units,
                plan,
                end,
                render_seed,
                packets=len(seq.units),
                mutations=seq.mutations,
                intact_prefix=next(
                    (i for i, u in enumerate(seq.units) if u.mutated not in WELL_FORMED), len(seq.units)
                ),
                authenticated=seq.authenticated,
                silent_ok=True,
            )
            if target == "ws":
                inp.prelude = handshake(self.http_host, key=rng.randbytes(16))
                inp.frame_defects = 0.0 if rng.random() < 0.7 else rng.choice((0.1, 0.5))
            return inp
        if target == "http":
            made = http_input(rng, self.http_host, self.owner_token)
            plan = rng.choices(
                ("one-write", "split", "packet-per-write", "byte-at-a-time"), (55, 20, 15, 10)
            )[0]
            if made.partial:
                end = rng.choices(("silent", "fin", "abort"), (60, 30, 10))[0]
            else:
                end = rng.choices(("fin", "abort"), (90, 10))[0]
            return FuzzInput(index, target, made.units, plan, end, render_seed, silent_ok=made.partial)
        units, upgraded = bad_websocket(rng, self.http_host)
        plan = rng.choices(("one-write", "packet-per-write", "byte-at-a-time"), (60, 30, 10))[0]
        end = rng.choices(("fin", "silent", "abort"), (60, 30, 10))[0] if upgraded else "fin"
        inp = FuzzInput(
            index, target, units[1:] if upgraded else units, plan, end, render_seed, silent_ok=upgraded
        )
        if upgraded:
            inp.prelude = units[0].data
        return inp


def render(inp: FuzzInput, units: list[Unit] | None = None) -> list[Step]:
    """The writes (and waits) of ``inp`` — of ``units`` instead of its own, when shrinking it."""
    rng = random.Random(inp.render_seed)
    units = inp.units if units is None else units
    steps: list[Step] = []
    if inp.prelude:
        steps += [("write", inp.prelude), ("wait", 2.0)]
    chunks: list[bytes]
    waits_after_first = False
    datas = [u.data for u in units]
    if not datas:
        return steps
    plan = inp.plan
    if plan == "one-write":
        chunks = [b"".join(datas)]
    elif plan == "connack-first":
        chunks = [datas[0], b"".join(datas[1:])]
        waits_after_first = True
    elif plan == "packet-per-write":
        chunks = datas
    elif plan == "split":
        blob = b"".join(datas)
        cuts = (
            sorted(rng.sample(range(1, len(blob)), min(len(blob) - 1, rng.randint(1, 9))))
            if len(blob) > 1
            else []
        )
        chunks = [blob[a:b] for a, b in zip([0, *cuts], [*cuts, len(blob)], strict=True)]
    else:  # byte-at-a-time: the first 300 bytes one by one, then the rest
        blob = b"".join(datas)
        head = blob[:300]
        chunks = [head[i : i + 1] for i in range(len(head))] + ([blob[300:]] if len(blob) > 300 else [])
    chunks = [c for c in chunks if c]
    if inp.target == "ws":
        framed = []
        for chunk in chunks:
            data, _ = frame_stream(rng, chunk, rng.random() < inp.frame_defects)
            framed.append(data)
        if plan == "byte-at-a-time" and rng.random() < 0.5:  # bytes of the frames one by one instead
            blob = b"".join(framed)
            framed = [blob[i : i + 1] for i in range(min(300, len(blob)))] + (
                [blob[300:]] if len(blob) > 300 else []
            )
        chunks = framed
    pause = 0.001 if plan == "byte-at-a-time" else 0.0
    for i, chunk in enumerate(chunks):
        steps.append(("write", chunk))
        if i == 0 and waits_after_first:
            steps.append(("wait", 2.0))
        elif i + 1 < len(chunks) and plan != "one-write":
            steps.append(("pause", pause))
    return steps


def wire_kind(target: str) -> str:
    return WIRE_KIND[target]


__all__ = ["TARGETS", "WEBSOCKET_PATH", "FuzzInput", "InputFactory", "load_steps", "render", "wire_kind"]
