"""Phase 8: the call history's cost, ``serve --history on`` against ``--history off``, in one run.

Phase 1's experiment (wrk → ``POST /twins/{id}/methods`` → farm devices answering at once) at 64
calls in flight, on two fresh hubs one after the other (SQLite registry in the data dir): first with
the history off, then on (its default). The figure is the ratio of calls/s, on / off; the target is
history on within 5 % of off (≥ 0.95). After the "on" hub stopped (its history flushed), the records
it stored are counted in its registry and compared with the calls wrk made (warm-up included):
a shortfall is records dropped because the store fell behind (``methodhub_call_history_dropped_total``).

With ``--history-postgres`` the pair runs again on a PostgreSQL registry (a private server started
for it, one database per side; needs PostgreSQL's binaries, as the tests do): ``postgres`` in the
results, the same figures.

Both sides run on the same machine in the same run, so drift between them is small next to runs on
different days, but not nothing on a shared machine: read a ratio within a few per cent as "no cost".
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bench.calls import CallOptions, SystemResult, run_hub
from bench.common import progress

CONCURRENCY = 64
TARGET_RATIO = 0.95
"""History on keeps at least this share of history off's calls/s."""


@dataclass
class HistoryResult:
    concurrency: int
    devices: int
    off: dict[str, Any] = field(default_factory=dict)
    on: dict[str, Any] = field(default_factory=dict)
    calls_per_s: dict[str, float] = field(default_factory=dict)
    """``"off"`` and ``"on"``."""
    ratio: float = 0.0
    """calls/s with the history on / off."""
    records: int = 0
    """Synchronous calls stored by the "on" hub (every call it answered, warm-up included)."""
    target: float = TARGET_RATIO
    postgres: dict[str, Any] | None = None
    """The same on a PostgreSQL registry (``--history-postgres``), else None."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


COUNT = "SELECT count(*) FROM calls WHERE front_door = 'azure'"


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
    registries: dict[str, str] | None,
    records: Callable[[str], int],
) -> HistoryResult:
    """History off then on, each on a fresh hub (``registries``: each side's ``--registry`` URL)."""
    one = replace(options, concurrency=[concurrency], profile=None)
    result = HistoryResult(concurrency=concurrency, devices=options.devices)
    sides: dict[str, SystemResult] = {}
    for side in ("off", "on"):
        system = f"methodhub history {side}{label}"
        more = ["--registry", registries[side]] if registries else []
        sides[side] = run_hub(one, system=system, hub_args=["--history", side, *more])
        result.calls_per_s[side] = max((r.calls_per_s for r in sides[side].runs), default=0.0)
    result.off, result.on = sides["off"].to_json(), sides["on"].to_json()
    result.records = records(registries["on"] if registries else f"methodhub history on{label}")
    off = result.calls_per_s["off"]
    result.ratio = result.calls_per_s["on"] / off if off else 0.0
    progress(headline(result, label))
    return result


def run(options: CallOptions, concurrency: int = CONCURRENCY, *, postgres: bool = False) -> HistoryResult:
    result = _pair(options, concurrency, "", None, lambda system: _sqlite_records(options, system))
    if postgres:
        from tests.servers import create_database, start_postgres

        server_url, destroy = start_postgres(options.workdir / "history-postgres")
        try:
            urls = {side: create_database(server_url, f"history_{side}") for side in ("off", "on")}
            result.postgres = _pair(options, concurrency, " postgres", urls, _postgres_records).to_json()
        finally:
            destroy()
    return result


def headline(result: HistoryResult, label: str = "") -> str:
    on, off = result.calls_per_s.get("on", 0.0), result.calls_per_s.get("off", 0.0)
    return (
        f"call history{label} at c={result.concurrency}: on {on:,.0f} calls/s, off {off:,.0f} calls/s, "
        f"on/off ×{result.ratio:.3f} (target ≥ ×{result.target:g}); {result.records:,} calls recorded"
    )
