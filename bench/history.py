"""Phase 8: the call history's cost, ``serve --history on`` against ``--history off``, in one run.

Phase 1's experiment (wrk → ``POST /twins/{id}/methods`` → farm devices answering at once) at 64
calls in flight, on two fresh hubs one after the other (SQLite registry in the data dir): first with
the history off, then on; ``--history-rounds`` such pairs (default 3), one after the other. The
figure is the ratio of the medians of calls/s, on / off; the target is history on within 5 % of
off (≥ 0.95). After the first "on" hub stopped (its history flushed), the records it stored are
counted in its registry and compared with the calls wrk made (warm-up included): a shortfall is
records dropped because the store fell behind (``methodhub_call_history_dropped_total``).

With ``--history-postgres`` the pair runs again on a PostgreSQL registry (a private server started
for it, one database per side and round; needs PostgreSQL's binaries, as the tests do): ``postgres`` in the
results, the same figures.

Both sides run on the same machine in the same run, so drift between them is small next to runs on
different days, but not nothing on a shared machine (one round alone moved by ±30 % while other
work ran): read the rounds' spread before the ratio.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bench.calls import CallOptions, run_hub
from bench.common import progress

CONCURRENCY = 64
ROUNDS = 3
"""Off/on pairs run one after the other (medians compared): a shared machine drifts by more than
the few per cent this phase measures."""
TARGET_RATIO = 0.95
"""History on keeps at least this share of history off's calls/s."""


@dataclass
class HistoryResult:
    concurrency: int
    devices: int
    off: dict[str, Any] = field(default_factory=dict)
    on: dict[str, Any] = field(default_factory=dict)
    calls_per_s: dict[str, float] = field(default_factory=dict)
    """``"off"`` and ``"on"``: the medians of the rounds'."""
    rounds: list[dict[str, float]] = field(default_factory=list)
    """Each round's calls/s, ``"off"`` and ``"on"`` (``off``/``on`` hold the first round's runs)."""
    ratio: float = 0.0
    """calls/s with the history on / off."""
    records: int = 0
    """Synchronous calls stored by the "on" hub (every call it answered, warm-up included)."""
    target: float = TARGET_RATIO
    postgres: dict[str, Any] | None = None
    """The same on a PostgreSQL registry (``--history-postgres``), else None."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


COUNT = (
    "SELECT (SELECT count(*) FROM calls WHERE front_door = 'azure') "
    "+ (SELECT coalesce(sum(records), 0) FROM call_history)"
)
"""Records in a registry: pages' (registry.history) and rows' (recorded before pages)."""


def _sqlite_records(options: CallOptions, system: str) -> int:
    path = options.workdir / f"hub-{system.replace(' ', '-')}" / "registry.db"
    with sqlite3.connect(path) as db:
        row = db.execute(COUNT).fetchone()
    return int(row[0])


def _postgres_records(url: str) -> int:
    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(url)
        try:
            return int(await conn.fetchval(COUNT))
        finally:
            await conn.close()

    return asyncio.run(count())


def _pair(
    options: CallOptions,
    concurrency: int,
    label: str,
    registries: list[dict[str, str]] | None,
    records: Callable[[str], int],
    rounds: int,
) -> HistoryResult:
    """History off then on, each on a fresh hub, ``rounds`` times (``registries``: each round's
    ``--registry`` URL for each side); each side's figure is the median of its rounds."""
    one = replace(options, concurrency=[concurrency], profile=None, syscalls=False)  # phases 1, 2 only
    result = HistoryResult(concurrency=concurrency, devices=options.devices)
    per_side: dict[str, list[float]] = {"off": [], "on": []}
    for n in range(rounds):
        for side in ("off", "on"):
            system = f"methodhub history {side}{label}" + (f" {n + 1}" if n else "")
            more = ["--registry", registries[n][side]] if registries else []
            ran = run_hub(one, system=system, hub_args=["--history", side, *more])
            per_side[side].append(max((r.calls_per_s for r in ran.runs), default=0.0))
            if n == 0:
                setattr(result, side, ran.to_json())
        result.rounds.append({side: figures[-1] for side, figures in per_side.items()})
    result.calls_per_s = {side: statistics.median(figures) for side, figures in per_side.items()}
    result.records = records(registries[0]["on"] if registries else f"methodhub history on{label}")
    off = result.calls_per_s["off"]
    result.ratio = result.calls_per_s["on"] / off if off else 0.0
    progress(headline(result, label))
    return result


def run(
    options: CallOptions, concurrency: int = CONCURRENCY, *, postgres: bool = False, rounds: int = ROUNDS
) -> HistoryResult:
    records = lambda system: _sqlite_records(options, system)  # noqa: E731
    result = _pair(options, concurrency, "", None, records, rounds)
    if postgres:
        from tests.servers import create_database, start_postgres

        server_url, destroy = start_postgres(options.workdir / "history-postgres")
        try:
            urls = [
                {side: create_database(server_url, f"history_{side}_{n}") for side in ("off", "on")}
                for n in range(rounds)
            ]
            result.postgres = _pair(
                options, concurrency, " postgres", urls, _postgres_records, rounds
            ).to_json()
        finally:
            destroy()
    return result


def headline(result: HistoryResult, label: str = "") -> str:
    on, off = result.calls_per_s.get("on", 0.0), result.calls_per_s.get("off", 0.0)
    each = ", ".join(f"×{r['on'] / r['off']:.3f}" for r in result.rounds if r.get("off"))
    return (
        f"call history{label} at c={result.concurrency}: on {on:,.0f} calls/s, off {off:,.0f} calls/s "
        f"(medians of {len(result.rounds)} rounds), on/off ×{result.ratio:.3f} (rounds: {each}; "
        f"target ≥ ×{result.target:g}); {result.records:,} calls recorded"
    )
