"""Fuzz inputs: what one connection sends, derived from the seed and the input's index alone.

Input ``i`` of seed ``s`` is made from ``random.Random(f"{s}:{i}")``, so the same seed gives the same
inputs in the same order on every run and machine (the SAS tokens too: the harness registers its
devices with keys derived from the seed and signs them with a fixed expiry; the AMQP dialogues'
"expired" tokens are signed with a fixed past expiry).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from fuzz.amqpframes import AMQP_HEADER, TLS_HEADER
from fuzz.amqpframes import WELL_FORMED as AMQP_WELL_FORMED
from fuzz.amqpgen import AmqpGenerator
from fuzz.httpgen import http_input
from fuzz.mqttgen import COPIES, MqttGenerator, Unit
from fuzz.wire import Step
from fuzz.wsgen import AMQP_SUBPROTOCOL, WEBSOCKET_PATH, bad_websocket, frame_stream, handshake

TARGETS = ("mqtt", "mqtts", "ws", "http", "websocket", "amqp", "amqps", "amqpws")
TARGET_WEIGHTS = {
    "mqtt": 45,
    "mqtts": 8,
    "ws": 20,
    "http": 17,
    "websocket": 10,
    "amqp": 25,
    "amqps": 5,
    "amqpws": 5,
}
MQTT_TARGETS = frozenset(("mqtt", "mqtts", "ws"))
AMQP_TARGETS = frozenset(("amqp", "amqps", "amqpws"))
FRAMED_TARGETS = frozenset(("ws", "amqpws"))
"""Targets whose bytes travel in WebSocket frames (after an opening handshake)."""
TLS_TARGETS = frozenset(("mqtts", "amqps", "amqpws"))
WIRE_KIND = {
    "mqtt": "mqtt",
    "mqtts": "mqtt",
    "ws": "ws",
    "http": "http",
    "websocket": "ws",
    "amqp": "amqp",
    "amqps": "amqp",
    "amqpws": "amqpws",
}
WELL_FORMED = frozenset(("", "value", *COPIES))
PLANS = ("one-write", "connack-first", "split", "packet-per-write", "byte-at-a-time")
AMQP_PLANS = ("stages", "split", "frame-per-write", "one-write", "byte-at-a-time", "dribble")
"""How an AMQP dialogue is written: stage by stage, waiting for the hub's answer where a device
would (``Unit.wait_after``); the same with each stage cut at random points; one frame per write
(waiting between stages); all at once; the first stage a byte at a time; or trickled (``dribble``:
empty frames or single bytes a second apart, until the hub's authorization deadline must have
closed it)."""
DRIBBLE_SECONDS = 14
"""A dribbling input trickles for this long at most (the hub's deadline is 10 s after connecting)."""


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
    malformed: int = 0
    """AMQP: frames that may be malformed (``mutations`` counts value-fuzzed ones too, as MQTT's)."""
    intact_prefix: int = 0
    """MQTT packets before the first that may be malformed (value-fuzzed packets and copies of good
    ones are well-formed: the hub must serve them all)."""
    authenticated: bool = False
    silent_ok: bool = False
    """Whether staying silent is a case the hub must time out (else ``silent`` becomes ``fin``)."""
    frame_defects: float = 0.0
    """``ws``: the share of frames that get a frame-level defect."""
    no_tls: bool = False
    """``mqtts``/``amqps``: a plain TCP connection to the TLS port (no handshake, or a broken one)."""
    sasl_plain: bool = False
    """AMQP: the dialogue's SASL layer is PLAIN (an ``ok`` outcome then authorizes it)."""
    expects_cbs_answer: bool = False
    """AMQP: the hub must answer the dialogue's put-token (see ``AmqpDialogue.put_token_answered``;
    written stage by stage)."""

    @property
    def endpoint(self) -> str:
        """The key of the endpoint it is sent to."""
        return f"{self.target}-no-tls" if self.no_tls else self.target

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
            "sasl_plain": self.sasl_plain,
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
    target = f"{doc['target']}-no-tls" if doc.get("no_tls") else doc["target"]
    steps: list[Step] = []
    for step in doc["steps"]:
        ((op, arg),) = step.items()
        steps.append((op, bytes.fromhex(arg)) if op == "write" else (op, float(arg)))
    return target, doc["end"], steps


class InputFactory:
    """Makes input ``i`` for a seed."""

    def __init__(
        self,
        seed: int,
        targets: list[str],
        mqtt: MqttGenerator,
        http_host: str,
        owner_token: str,
        amqp: AmqpGenerator | None = None,
        https_host: str = "",
    ) -> None:
        self.seed = seed
        self.targets = targets
        self.weights = [TARGET_WEIGHTS[t] for t in targets]
        self.mqtt = mqtt
        self.amqp = amqp
        self.http_host = http_host
        self.https_host = https_host or http_host
        self.owner_token = owner_token
        if amqp is None and AMQP_TARGETS & set(targets):
            raise ValueError("AMQP targets need an AmqpGenerator")

    def make(self, index: int) -> FuzzInput:
        rng = random.Random(f"{self.seed}:{index}")
        target = rng.choices(self.targets, self.weights)[0]
        render_seed = rng.randrange(1 << 62)
        if target in AMQP_TARGETS:
            return self._amqp(index, target, render_seed, rng)
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

    def _amqp(self, index: int, target: str, render_seed: int, rng: random.Random) -> FuzzInput:
        if target == "amqps" and rng.random() < 0.04:
            data, label = rng.choice(
                (
                    (b"", "nothing"),
                    (AMQP_HEADER, "the AMQP header in clear"),
                    (TLS_HEADER, "the AMQP TLS header in clear (in-band TLS)"),
                    (rng.randbytes(64), "random bytes"),
                )
            )
            end = rng.choices(("silent", "fin"), (70, 30))[0]
            units = [Unit(data, f"TLS port, no TLS: {label}")] if data else []
            return FuzzInput(index, target, units, "one-write", end, render_seed, silent_ok=True, no_tls=True)
        assert self.amqp is not None
        dialogue = self.amqp.dialogue(rng)
        plan = rng.choices(AMQP_PLANS, (50, 12, 12, 14, 8, 2))[0]
        end = rng.choices(("fin", "silent", "abort"), (70, 20, 10))[0]
        inp = FuzzInput(
            index,
            target,
            dialogue.units,
            plan,
            end,
            render_seed,
            packets=dialogue.frames,
            mutations=dialogue.mutations,
            malformed=dialogue.malformed,
            intact_prefix=next(
                (i for i, u in enumerate(dialogue.units) if u.mutated not in AMQP_WELL_FORMED),
                len(dialogue.units),
            ),
            authenticated=dialogue.authenticated,
            silent_ok=True,
            sasl_plain=dialogue.sasl_plain,
            expects_cbs_answer=dialogue.put_token_answered and plan not in ("one-write", "dribble"),
        )
        if target == "amqpws":
            inp.prelude = handshake(self.https_host, key=rng.randbytes(16), protocol=AMQP_SUBPROTOCOL)
            inp.frame_defects = 0.0 if rng.random() < 0.8 else rng.choice((0.1, 0.5))
        return inp


def _mqtt_writes(plan: str, datas: list[bytes], rng: random.Random) -> list[Step]:
    chunks: list[bytes]
    waits_after_first = False
    if plan == "one-write":
        chunks = [b"".join(datas)]
    elif plan == "connack-first":
        chunks = [datas[0], b"".join(datas[1:])]
        waits_after_first = True
    elif plan == "packet-per-write":
        chunks = datas
    elif plan == "split":
        chunks = _split(rng, b"".join(datas))
    else:  # byte-at-a-time: the first 300 bytes one by one, then the rest
        chunks = _bytes_then_rest(b"".join(datas))
    chunks = [c for c in chunks if c]
    steps: list[Step] = []
    pause = 0.001 if plan == "byte-at-a-time" else 0.0
    for i, chunk in enumerate(chunks):
        steps.append(("write", chunk))
        if i == 0 and waits_after_first:
            steps.append(("wait", 2.0))
        elif i + 1 < len(chunks) and plan != "one-write":
            steps.append(("pause", pause))
    return steps


def _split(rng: random.Random, blob: bytes) -> list[bytes]:
    cuts = (
        sorted(rng.sample(range(1, len(blob)), min(len(blob) - 1, rng.randint(1, 9))))
        if len(blob) > 1
        else []
    )
    return [blob[a:b] for a, b in zip([0, *cuts], [*cuts, len(blob)], strict=True)]


def _bytes_then_rest(blob: bytes) -> list[bytes]:
    head = blob[:300]
    return [head[i : i + 1] for i in range(len(head))] + ([blob[300:]] if len(blob) > 300 else [])


def _stages(units: list[Unit]) -> list[tuple[list[bytes], str, int]]:
    """The units' bytes grouped into stages, each with what a device waits for at its end and how
    many attaches it sends."""
    stages: list[tuple[list[bytes], str, int]] = [([], "", 0)]
    for unit in units:
        data, _, attached = stages[-1]
        data.append(unit.data)
        attached += unit.label.startswith("attach") and unit.mutated in AMQP_WELL_FORMED
        stages[-1] = (data, unit.wait_after, attached)
        if unit.wait_after:
            stages.append(([], "", 0))
    return [stage for stage in stages if stage[0]]


def _amqp_writes(plan: str, units: list[Unit], rng: random.Random, patience: float = 2.0) -> list[Step]:
    """``patience``: how long to wait for a put-token's answer."""
    steps: list[Step] = []
    if plan == "one-write":
        return [("write", b"".join(u.data for u in units))]
    if plan == "dribble":
        return _dribble(units, rng)
    attaches = 0
    for n, (stage, waits_for, attached) in enumerate(_stages(units)):
        attaches += attached
        if plan == "frame-per-write":
            chunks = stage
        elif plan == "split":
            chunks = _split(rng, b"".join(stage))
        elif plan == "byte-at-a-time" and n == 0:
            chunks = _bytes_then_rest(b"".join(stage))
        else:
            chunks = [b"".join(stage)]
        pause = 0.001 if plan == "byte-at-a-time" else 0.0
        chunks = [c for c in chunks if c]
        for i, chunk in enumerate(chunks):
            steps.append(("write", chunk))
            if i + 1 < len(chunks):
                steps.append(("pause", pause))
        if waits_for == "put-token":  # its answer follows a registry lookup, after the disposition
            steps.append(("wait-put-token", patience))
        elif attached:  # the links' credit comes with the hub's attaches
            steps.append(("wait-attach", float(attaches)))
        else:
            steps.append(("wait", 2.0))
    if steps and steps[-1][0] == "wait":
        steps.pop()
    return steps


def _dribble(units: list[Unit], rng: random.Random) -> list[Step]:
    """A slowloris: what comes before the first link (header, SASL, open, begin) at once, then an
    empty frame (a heartbeat) every second; or the first bytes one a second. Either way it
    authorizes nothing, so the hub must close it at its deadline, 10 s after the connection began."""
    steps: list[Step] = []
    blob = b"".join(u.data for u in units)
    head: list[bytes] = []
    for unit in units:
        if unit.label.startswith(("attach", "transfer")):
            break
        head.append(unit.data)
    plain = any("PLAIN" in unit.label for unit in units)  # its SASL init may authorize: bytes only
    if head and not plain and rng.random() < 0.6:
        steps += [("write", b"".join(head)), ("release", 0.0)]
        drips = [b"\x00\x00\x00\x08\x02\x00\x00\x00"] * DRIBBLE_SECONDS
    else:
        steps.append(("release", 0.0))
        drips = [blob[i : i + 1] for i in range(min(len(blob), DRIBBLE_SECONDS))]
    for i, drip in enumerate(drips):
        steps.append(("write", drip))
        if i + 1 < len(drips):
            steps.append(("pause", 1.0))
    steps.append(("deadline", 0.0))
    return steps


def render(inp: FuzzInput, units: list[Unit] | None = None) -> list[Step]:
    """The writes (and waits) of ``inp`` — of ``units`` instead of its own, when shrinking it."""
    rng = random.Random(inp.render_seed)
    units = inp.units if units is None else units
    steps: list[Step] = []
    if inp.prelude:
        steps += [("write", inp.prelude), ("wait", 2.0)]
    if not units:
        return steps
    if inp.target in AMQP_TARGETS and not inp.no_tls:
        # a put-token the hub must answer gets 5 s (a registry lookup on a busy hub); others 2 s
        writes = _amqp_writes(inp.plan, units, rng, 5.0 if inp.expects_cbs_answer else 2.0)
    else:
        writes = _mqtt_writes(inp.plan, [u.data for u in units], rng)
    if inp.target in FRAMED_TARGETS:
        framed: list[Step] = []
        for op, arg in writes:
            if op == "write":
                data, _ = frame_stream(rng, arg, rng.random() < inp.frame_defects)  # type: ignore[arg-type]
                framed.append(("write", data))
            else:
                framed.append((op, arg))
        only_writes = all(op in ("write", "pause") for op, _ in framed)
        if inp.plan == "byte-at-a-time" and only_writes and rng.random() < 0.5:
            blob = b"".join(arg for op, arg in framed if op == "write")  # type: ignore[misc]
            # bytes of the frames one by one instead
            pieces = [blob[i : i + 1] for i in range(min(300, len(blob)))] + (
                [blob[300:]] if len(blob) > 300 else []
            )
            framed = []
            for i, piece in enumerate(pieces):
                framed.append(("write", piece))
                if i + 1 < len(pieces):
                    framed.append(("pause", 0.001))
        writes = framed
    return steps + writes


def wire_kind(target: str) -> str:
    return WIRE_KIND[target]


__all__ = [
    "AMQP_TARGETS",
    "TARGETS",
    "WEBSOCKET_PATH",
    "FuzzInput",
    "InputFactory",
    "load_steps",
    "render",
    "wire_kind",
]
