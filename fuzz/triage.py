"""After the run: replay findings one at a time on the quiet hub, confirm them, and shrink them.

A traceback names no connection, so its candidates (the inputs sent just before it) are replayed
alone, nearest first, until one logs the same signature again. A hang is replayed as it was. A
confirmed input is then shrunk: packets (or requests) are removed while the finding still occurs,
the writes are merged into one (or CONNECT, wait for CONNACK, the rest; for AMQP, the dialogue's
stages) and, for TLS and WebSocket, the same packets (frames) are tried on plain MQTT (AMQP).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable

from fuzz.hub import LogWatch
from fuzz.inputs import AMQP_TARGETS, FRAMED_TARGETS, FuzzInput, render, wire_kind
from fuzz.mqttgen import Unit
from fuzz.run import Finding
from fuzz.wire import Endpoint, Limits, send

SHRINK_TRIES = 40
"""Replays one shrink may use (a hang costs up to two seconds each)."""


@dataclasses.dataclass
class Triaged:
    confirmed: bool = False
    input: FuzzInput | None = None
    minimal: FuzzInput | None = None
    note: str = ""
    replays: int = 0


class Triage:
    def __init__(self, endpoints: dict[str, Endpoint], log: LogWatch, limits: Limits, budget: float) -> None:
        self.endpoints = endpoints
        self.log = log
        self.limits = limits
        self.deadline = time.monotonic() + budget
        self.finding_deadline = self.deadline
        self.replays = 0

    def left(self) -> float:
        return min(self.deadline, self.finding_deadline) - time.monotonic()

    def share(self, findings_left: int) -> None:
        """Give the next finding an equal share of the time left (at least 5 s)."""
        total = self.deadline - time.monotonic()
        self.finding_deadline = time.monotonic() + max(5.0, total / max(1, findings_left))

    async def _replay(self, inp: FuzzInput, end: str, close_timeout: float) -> tuple[str, set[str]]:
        """(hang text, traceback signatures logged meanwhile) of one replay of ``inp``."""
        hangs, sigs = await self._replay_many([inp], end, close_timeout)
        return hangs[0], sigs

    async def _replay_many(
        self, inputs: list[FuzzInput], end: str, close_timeout: float
    ) -> tuple[list[str], set[str]]:
        """Replay ``inputs`` at once: their hang texts, and the traceback signatures logged meanwhile."""
        self.replays += len(inputs)
        self.log.flush()
        limits = dataclasses.replace(self.limits, close_timeout=close_timeout)

        async def one(inp: FuzzInput) -> str:
            bound = self.limits.stall_bound if inp.target == "http" else self.limits.connect_bound
            outcome = await send(
                self.endpoints[inp.endpoint],
                wire_kind(inp.target),
                render(inp),
                end,
                bound,
                limits,
                sasl_plain=inp.sasl_plain,
            )
            return outcome.hang

        hangs = await asyncio.gather(*(one(inp) for inp in inputs))
        await asyncio.sleep(0.3)
        return list(hangs), {r.signature() for r in self.log.flush()}

    # -- tracebacks --

    async def traceback(self, finding: Finding) -> Triaged:
        """Find the candidate that logs the same traceback alone: batches of 8 first, then one by one."""
        result = Triaged()
        pending = list(finding.candidates)
        while pending and not result.confirmed:
            if self.left() <= 0:
                result.note = "triage time ran out before a candidate reproduced it"
                break
            batch, pending = pending[:8], pending[8:]
            _, sigs = await self._replay_many(batch, "fin", 0.5)
            if finding.signature not in sigs:
                continue
            for candidate in batch:
                if finding.signature in (await self._replay(candidate, "fin", 0.5))[1]:
                    result.confirmed, result.input = True, candidate
                    break
        if result.input is not None:
            candidate = result.input

            async def still(inp: FuzzInput) -> bool:
                return finding.signature in (await self._replay(inp, "fin", 0.5))[1]

            result.minimal = await self._shrink(candidate, still)
        elif not result.note:
            result.note = "no candidate reproduced it alone (it may need load or timing)"
        result.replays = self.replays
        return result

    # -- hangs --

    async def hang(self, finding: Finding) -> Triaged:
        result = Triaged()
        inp, what = finding.examples[0]
        silent = "no FIN sent" in what
        if silent and "closed after the FIN" in what:
            # closed late, not never: confirming costs the whole bound, shrinking would cost it per try
            bound = self.limits.stall_bound if inp.target == "http" else self.limits.connect_bound
            if self.deadline - time.monotonic() > bound + 5:
                hang, _ = await self._replay(inp, "silent", 2.0)
                result.confirmed, result.input = bool(hang), inp
                result.note = "replayed once (silent); not shrunk"
            else:
                result.note = f"not replayed: confirming it takes the whole {bound:g} s bound"
            return result
        close_timeout = min(self.limits.close_timeout, 1.0)  # on a quiet hub a close takes milliseconds
        hang, _ = await self._replay(inp, "fin", close_timeout)
        if not hang:
            result.note = "did not hang when replayed alone"
            return result
        result.confirmed, result.input = True, inp

        async def still(candidate: FuzzInput) -> bool:
            return bool((await self._replay(candidate, "fin", close_timeout))[0])

        result.minimal = await self._shrink(inp, still)
        return result

    # -- shrinking --

    async def _shrink(self, inp: FuzzInput, test: Callable[[FuzzInput], Awaitable[bool]]) -> FuzzInput:
        tries = [0]

        async def still(candidate: FuzzInput) -> bool:
            tries[0] += 1
            return tries[0] <= SHRINK_TRIES and await test(candidate)

        best = inp
        # simpler writes first: one write, or CONNECT / wait for CONNACK / the rest (AMQP: its stages)
        plans = ("one-write", "stages") if inp.target in AMQP_TARGETS else ("one-write", "connack-first")
        for plan in plans:
            if best.plan != plan and self.left() > 0:
                candidate = dataclasses.replace(best, plan=plan)
                if await still(candidate):
                    best = candidate
                    break
        units = list(best.units)
        chunks = 2
        while len(units) >= 2 and self.left() > 0 and tries[0] < SHRINK_TRIES:
            size = -(-len(units) // chunks)
            for start in range(0, len(units), size):
                candidate_units = units[:start] + units[start + size :]
                if candidate_units and await still(dataclasses.replace(best, units=candidate_units)):
                    units = candidate_units
                    chunks = max(chunks - 1, 2)
                    break
                if self.left() <= 0:
                    break
            else:
                if chunks >= len(units):
                    break
                chunks = min(len(units), chunks * 2)
        best = dataclasses.replace(best, units=units)
        if best.target in FRAMED_TARGETS and best.frame_defects:
            candidate = dataclasses.replace(best, frame_defects=0.0)
            if self.left() > 0 and await still(candidate):
                best = candidate
        plain = "amqp" if best.target in AMQP_TARGETS else "mqtt"
        if (
            best.target in ("mqtts", "ws", "amqps", "amqpws")
            and not best.no_tls
            and plain in self.endpoints
            and self.left() > 0
        ):
            candidate = dataclasses.replace(best, target=plain, prelude=b"", frame_defects=0.0)
            if await still(candidate):
                best = candidate
        return best


def unit_hex(units: list[Unit]) -> str:
    return " ".join(u.data.hex() for u in units)
