"""Storing queued calls (:mod:`methodhub.calls.queued`): the columns and the row mapping every
backend shares, and each backend's statements (:class:`SqliteCalls`, :class:`PostgresCalls`, mixed
into the registries)."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from methodhub.calls.history import HistoryRow
from methodhub.calls.queued import CallFilters, CallState, CallUpdate, QueuedCall
from methodhub.registry import history

T = TypeVar("T")

COLUMNS = (
    "call_id",
    "device_id",
    "module_id",
    "method",
    "payload",
    "response_timeout",
    "attempts",
    "created_time",
    "expires_time",
    "state",
    "attempt",
    "delivered_time",
    "completed_time",
    "outcome_status",
    "outcome_payload",
    "error_code",
    "error_message",
    "idempotency_key",
    "request_hash",
    "job_id",
    "owner",
    "lease_until",
    "front_door",
    "caller",
    "request_size",
    "response_size",
    "latency_ms",
    "tracking_id",
)
SELECT = ", ".join(COLUMNS)
SQLITE_NEXT_QUEUED = (
    f"SELECT {SELECT} FROM calls INDEXED BY calls_target WHERE target = ?1 AND state = 'queued' "
    "AND expires_time > ?2 AND NOT EXISTS "
    "(SELECT 1 FROM calls INDEXED BY calls_target WHERE target = ?1 AND state = 'sent') "
    "ORDER BY created_time, call_id LIMIT 1"
)
"""A target's oldest queued call that has not expired, unless one of its calls is sent
(``claim_call``). ``INDEXED BY``: without statistics SQLite's planner takes ``calls_due`` (state,
expires_time) for it, which walks every queued call of every target and sorts them on each claim —
quadratic when a job or a burst of connects leaves thousands queued."""
SQLITE_INSERT = f"INSERT INTO calls ({SELECT}, target) VALUES ({', '.join('?' * (len(COLUMNS) + 1))})"


MUTABLE = (
    "state",
    "attempt",
    "delivered_time",
    "completed_time",
    "outcome_status",
    "outcome_payload",
    "error_code",
    "error_message",
    "owner",
    "lease_until",
    "response_size",
    "latency_ms",
)
"""The columns an update stores: what a call's life changes. The others (the request, its times
and keys) are fixed when it is created, and an update leaves them (and their indexes) alone."""
_UPDATES: dict[tuple[str, bool], str] = {}


def update_statement(
    call: QueuedCall, expect: CallState, owner: str | None, placeholder: Callable[[int], str]
) -> tuple[str, tuple[Any, ...]]:
    """``update_call``'s statement and parameters: store the :data:`MUTABLE` columns of ``call``
    where the stored one is still ``expect`` (and owned by ``owner`` when given)."""
    key = (placeholder(1), owner is not None)
    sql = _UPDATES.get(key)
    if sql is None:
        sets = ", ".join(f"{column} = {placeholder(n)}" for n, column in enumerate(MUTABLE, start=1))
        n = len(MUTABLE) + 1
        where = f"call_id = {placeholder(n)} AND state = {placeholder(n + 1)}" + (
            f" AND owner = {placeholder(n + 2)}" if owner is not None else ""
        )
        sql = _UPDATES[key] = f"UPDATE calls SET {sets} WHERE {where}"
    args = (
        call.state.value,
        call.attempt,
        call.delivered_time,
        call.completed_time,
        call.outcome_status,
        call.outcome_payload,
        call.error_code,
        call.error_message,
        call.owner,
        call.lease_until,
        call.response_size,
        call.latency_ms,
        call.call_id,
        expect.value,
    )
    return sql, (*args, owner) if owner is not None else args


def values(call: QueuedCall) -> tuple[Any, ...]:
    """The row of ``call`` in :data:`COLUMNS` order, plus its target (the last column stored)."""
    return (
        call.call_id,
        call.device_id,
        call.module_id or "",
        call.method,
        call.payload,
        call.response_timeout,
        call.attempts,
        call.created_time,
        call.expires_time,
        call.state.value,
        call.attempt,
        call.delivered_time,
        call.completed_time,
        call.outcome_status,
        call.outcome_payload,
        call.error_code,
        call.error_message,
        call.idempotency_key,
        call.request_hash,
        call.job_id,
        call.owner,
        call.lease_until,
        call.front_door,
        call.caller,
        call.request_size,
        call.response_size,
        call.latency_ms,
        call.tracking_id,
        call.target,
    )


def from_row(row: Sequence[Any], claimed: tuple[str, float, float] | None = None) -> QueuedCall:
    """The call of a stored row; with ``claimed`` (owner, now, lease end), as the claim of that
    row (``queued``) makes it: ``sent`` by the owner, one attempt more, delivered now."""
    if claimed is None:
        state, attempt, delivered, owner, lease_until = (
            CallState(row[9]),
            int(row[10]),
            row[11],
            row[20],
            row[21],
        )
    else:
        owner, delivered, lease_until = claimed
        state, attempt = CallState.SENT, int(row[10]) + 1
    return QueuedCall(
        call_id=row[0],
        device_id=row[1],
        module_id=row[2] or None,
        method=row[3],
        payload=bytes(row[4]),
        response_timeout=float(row[5]),
        attempts=int(row[6]),
        created_time=float(row[7]),
        expires_time=float(row[8]),
        state=state,
        attempt=attempt,
        delivered_time=delivered,
        completed_time=row[12],
        outcome_status=row[13],
        outcome_payload=bytes(row[14]) if row[14] is not None else None,
        error_code=row[15],
        error_message=row[16],
        idempotency_key=row[17],
        request_hash=row[18],
        job_id=row[19],
        owner=owner,
        lease_until=lease_until,
        front_door=row[22],
        caller=row[23],
        request_size=row[24],
        response_size=row[25],
        latency_ms=row[26],
        tracking_id=row[27],
    )


def _filters(
    placeholder: Callable[[int], str],
    device_id: str | None,
    state: CallState | None,
    job_id: str | None,
    before: tuple[float, str] | None,
    filters: CallFilters | None = None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []

    def add(clause: str, *values: Any) -> None:
        marks = [placeholder(len(args) + n + 1) for n in range(len(values))]
        clauses.append(clause.format(*marks))
        args.extend(values)

    if device_id is not None:
        add("device_id = {}", device_id)
    if state is not None:
        add("state = {}", state.value)
    if job_id is not None:
        add("job_id = {}", job_id)
    if filters is not None:
        if filters.method is not None:
            add("method = {}", filters.method)
        if filters.front_door is not None:
            add("front_door = {}", filters.front_door)
        if filters.since is not None:
            add("created_time >= {}", filters.since)
        if filters.until is not None:
            add("created_time < {}", filters.until)
        if filters.status is not None:
            add("outcome_status = {}", filters.status)
    if before is not None:
        add("(created_time < {} OR (created_time = {} AND call_id < {}))", before[0], before[0], before[1])
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


_SENT = CallState.SENT.value
_QUEUED = CallState.QUEUED.value

ENDED = "job_id IS NULL AND completed_time IS NOT NULL AND state NOT IN ('queued', 'sent')"
"""What pruning may delete: ended calls that are no job's (a job's results go with the job)."""
COUNT_CUTOFF = f"SELECT completed_time FROM calls WHERE {ENDED} ORDER BY completed_time DESC LIMIT 1 OFFSET "
"""The end time of the newest ended call beyond the ``keep`` newest (the offset follows)."""


def prune_before(before: float, beyond_keep: float | None) -> float:
    """Delete what ended before this: ``before``, or later when the ``keep`` newest end later."""
    return before if beyond_keep is None else max(before, math.nextafter(float(beyond_keep), math.inf))


def _claims_kept(calls: Sequence[QueuedCall], busy: set[str]) -> list[QueuedCall]:
    """``calls`` (in creation order) with each one given ``sent`` kept so only where no call of its
    target is open (``busy``: stored queued or sent) or comes before it; the others unclaimed."""
    seen = set(busy)
    kept = []
    for call in calls:
        if call.state is CallState.SENT and call.target in seen:
            call = call.unclaimed()
        seen.add(call.target)
        kept.append(call)
    return kept


def _sqlite_claim(
    db: sqlite3.Connection, target: str, owner: str, now: float, lease: float
) -> QueuedCall | None:
    row = db.execute(SQLITE_NEXT_QUEUED, (target, now)).fetchone()
    if row is None:
        return None
    until = now + float(row[5]) + lease
    db.execute(
        "UPDATE calls SET state = 'sent', attempt = attempt + 1, owner = ?, lease_until = ?, "
        "delivered_time = ? WHERE call_id = ?",
        (owner, until, now, row[0]),
    )
    return from_row(row, claimed=(owner, now, until))


async def _postgres_claim(conn: Any, target: str, owner: str, now: float, lease: float) -> QueuedCall | None:
    # One claimer per target at a time: the advisory lock serializes them across nodes.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "call:" + target)
    if await conn.fetchval("SELECT 1 FROM calls WHERE target = $1 AND state = $2", target, _SENT):
        return None
    row = await conn.fetchrow(
        f"SELECT {SELECT} FROM calls WHERE target = $1 AND state = $2 AND expires_time > $3 "
        "ORDER BY created_time, call_id LIMIT 1 FOR UPDATE",
        target,
        _QUEUED,
        now,
    )
    if row is None:
        return None
    until = now + float(row[5]) + lease
    await conn.execute(
        "UPDATE calls SET state = $1, attempt = attempt + 1, owner = $2, lease_until = $3, "
        "delivered_time = $5 WHERE call_id = $4",
        _SENT,
        owner,
        until,
        row[0],
        now,
    )
    return from_row(row, claimed=(owner, now, until))


class SqliteCalls:
    """The SQLite statements (the registry provides ``_run``, ``_read`` and ``_transaction``)."""

    _run: Callable[..., Awaitable[Any]]
    _read: Callable[..., Awaitable[Any]]
    _transaction: Callable[[Callable[[sqlite3.Connection], Any]], Any]
    _conn: Callable[[], sqlite3.Connection]

    async def create_call(self, call: QueuedCall) -> tuple[QueuedCall, bool]:
        def insert(db: sqlite3.Connection) -> tuple[QueuedCall, bool]:
            if call.idempotency_key is not None:
                row = db.execute(
                    f"SELECT {SELECT} FROM calls WHERE idempotency_key = ?", (call.idempotency_key,)
                ).fetchone()
                if row is not None:
                    return from_row(row), False
            marks = ", ".join("?" * (len(COLUMNS) + 1))
            db.execute(f"INSERT INTO calls ({SELECT}, target) VALUES ({marks})", values(call))
            return call, True

        result: tuple[QueuedCall, bool] = await self._run(self._transaction, insert)
        return result

    async def create_calls(self, calls: Sequence[QueuedCall]) -> list[QueuedCall]:
        devices = sorted({call.device_id for call in calls})

        def insert(db: sqlite3.Connection) -> list[QueuedCall]:
            registered: set[tuple[str, str]] = set()
            for at in range(0, len(devices), 500):  # within SQLite's limit of parameters
                some = devices[at : at + 500]
                rows = db.execute(
                    "SELECT device_id, module_id FROM identities WHERE device_id IN "
                    f"({', '.join('?' * len(some))})",
                    some,
                )
                registered.update((row[0], row[1]) for row in rows)
            stored = [call for call in calls if (call.device_id, call.module_id or "") in registered]
            claims = sorted({call.target for call in stored if call.state is CallState.SENT})
            busy: set[str] = set()
            for at in range(0, len(claims), 500):
                some = claims[at : at + 500]
                rows = db.execute(
                    "SELECT DISTINCT target FROM calls INDEXED BY calls_target WHERE target IN "
                    f"({', '.join('?' * len(some))}) AND state IN ('queued', 'sent')",
                    some,
                )
                busy.update(row[0] for row in rows)
            stored = _claims_kept(stored, busy)
            db.executemany(SQLITE_INSERT, [values(call) for call in stored])
            return stored

        result: list[QueuedCall] = await self._run(self._transaction, insert)
        return result

    async def get_call(self, call_id: str) -> QueuedCall | None:
        def query() -> QueuedCall | None:
            db = self._conn()
            row = db.execute(f"SELECT {SELECT} FROM calls WHERE call_id = ?", (call_id,)).fetchone()
            if row:
                return from_row(row)
            pages = db.execute(
                "SELECT rows FROM call_history WHERE first_id <= ?1 AND last_id >= ?1", (call_id,)
            )
            return history.find_record((page[0] for page in pages), call_id)

        result: QueuedCall | None = await self._read(query)
        return result

    async def list_calls(
        self,
        *,
        device_id: str | None = None,
        state: CallState | None = None,
        job_id: str | None = None,
        limit: int = 100,
        before: tuple[float, str] | None = None,
        filters: CallFilters | None = None,
    ) -> list[QueuedCall]:
        where, args = _filters(lambda n: "?", device_id, state, job_id, before, filters)
        pages_where, page_args = history.page_filters(lambda n: "?", "instr", device_id, before, filters)

        def query() -> list[QueuedCall]:
            db = self._conn()
            rows = db.execute(
                f"SELECT {SELECT} FROM calls{where} ORDER BY created_time DESC, call_id DESC LIMIT ?",
                (*args, limit),
            )
            table = [from_row(row) for row in rows]
            if not history.has_records(state, job_id):
                return table
            listing = history.Listing(table, limit, history.matches(device_id, state, before, filters))
            pages = db.execute(
                f"SELECT page_id, last_created FROM call_history{pages_where} ORDER BY last_created DESC",
                page_args,
            ).fetchall()
            for page_id, last_created in pages:
                if not listing.wants(last_created):
                    break
                (blob,) = db.execute("SELECT rows FROM call_history WHERE page_id = ?", (page_id,)).fetchone()
                listing.add(history.decode_rows(blob))
            return listing.result()

        result: list[QueuedCall] = await self._read(query)
        return result

    async def record_history(self, rows: Sequence[HistoryRow]) -> None:
        if not rows:
            return
        page = history.page_of(rows)

        def insert(db: sqlite3.Connection) -> None:
            db.execute(history.INSERT + "(?, ?, ?, ?, ?, ?, ?, ?)", page)

        await self._run(self._transaction, insert)

    async def prune_calls(self, before: float, keep: int, limit: int = 1000) -> int:
        def prune(db: sqlite3.Connection) -> int:
            row = db.execute(COUNT_CUTOFF + "?", (keep,)).fetchone()
            cutoff = prune_before(before, row[0] if row else None)
            cursor = db.execute(
                "DELETE FROM calls WHERE call_id IN (SELECT call_id FROM calls WHERE "
                f"{ENDED} AND completed_time < ? ORDER BY completed_time LIMIT ?)",
                (cutoff, limit),
            )
            gone = int(cursor.rowcount)
            doomed, records = history.doomed_pages(db.execute(history.PRUNE_HEADERS), before, keep, limit)
            db.executemany("DELETE FROM call_history WHERE page_id = ?", [(page,) for page in doomed])
            return gone + records

        result: int = await self._run(self._transaction, prune)
        return result

    async def claim_call(self, target: str, owner: str, now: float, lease: float) -> QueuedCall | None:
        def claim(db: sqlite3.Connection) -> QueuedCall | None:
            return _sqlite_claim(db, target, owner, now, lease)

        result: QueuedCall | None = await self._run(self._transaction, claim)
        return result

    async def claim_calls(
        self, targets: Sequence[str], owner: str, now: float, lease: float
    ) -> list[QueuedCall | None]:
        def claim(db: sqlite3.Connection) -> list[QueuedCall | None]:
            return [_sqlite_claim(db, target, owner, now, lease) for target in targets]

        result: list[QueuedCall | None] = await self._run(self._transaction, claim)
        return result

    async def update_call(self, call: QueuedCall, expect: CallState, owner: str | None = None) -> bool:
        sql, args = update_statement(call, expect, owner, lambda n: "?")

        def update(db: sqlite3.Connection) -> bool:
            return bool(db.execute(sql, args).rowcount == 1)

        result: bool = await self._run(self._transaction, update)
        return result

    async def update_calls(self, updates: Sequence[CallUpdate]) -> list[bool]:
        statements = [update_statement(call, expect, owner, lambda n: "?") for call, expect, owner in updates]

        def update(db: sqlite3.Connection) -> list[bool]:
            return [db.execute(sql, args).rowcount == 1 for sql, args in statements]

        result: list[bool] = await self._run(self._transaction, update)
        return result

    async def due_calls(self, now: float, limit: int = 500) -> list[QueuedCall]:
        def query() -> list[QueuedCall]:
            rows = self._conn().execute(
                f"SELECT {SELECT} FROM calls WHERE (state = ? AND expires_time <= ?) "
                "OR (state = ? AND lease_until <= ?) LIMIT ?",
                (_QUEUED, now, _SENT, now, limit),
            )
            return [from_row(row) for row in rows]

        result: list[QueuedCall] = await self._read(query)
        return result

    async def queued_targets(self, limit: int = 1000) -> list[str]:
        def query() -> list[str]:
            rows = self._conn().execute(
                "SELECT DISTINCT target FROM calls WHERE state = ? LIMIT ?", (_QUEUED, limit)
            )
            return [row[0] for row in rows]

        result: list[str] = await self._read(query)
        return result


class PostgresCalls:
    """The PostgreSQL statements (the registry provides ``_read`` and ``_write``)."""

    _read: Callable[..., Awaitable[Any]]
    _write: Callable[..., Awaitable[Any]]

    async def create_call(self, call: QueuedCall) -> tuple[QueuedCall, bool]:
        async def insert(conn: Any) -> tuple[QueuedCall, bool]:
            marks = ", ".join(f"${n}" for n in range(1, len(COLUMNS) + 2))
            inserted = await conn.fetchval(
                f"INSERT INTO calls ({SELECT}, target) VALUES ({marks}) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING call_id",
                *values(call),
            )
            if inserted is not None:
                return call, True
            row = await conn.fetchrow(
                f"SELECT {SELECT} FROM calls WHERE idempotency_key = $1", call.idempotency_key
            )
            return from_row(row), False

        result: tuple[QueuedCall, bool] = await self._write(insert)
        return result

    async def create_calls(self, calls: Sequence[QueuedCall]) -> list[QueuedCall]:
        if not calls:
            return []
        marks = ", ".join(f"${n}" for n in range(1, len(COLUMNS) + 2))
        devices = sorted({call.device_id for call in calls})

        async def insert(conn: Any) -> list[QueuedCall]:
            # FOR SHARE: an identity deleted meanwhile waits for this transaction (or is gone already).
            rows = await conn.fetch(
                "SELECT device_id, module_id FROM identities WHERE device_id = ANY($1::text[]) FOR SHARE",
                devices,
            )
            registered = {(row[0], row[1]) for row in rows}
            stored = [call for call in calls if (call.device_id, call.module_id or "") in registered]
            busy: set[str] = set()
            for target in sorted({call.target for call in stored if call.state is CallState.SENT}):
                # claim_call's lock and check, in target order as claim_calls takes them
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "call:" + target)
                if await conn.fetchval(
                    "SELECT 1 FROM calls WHERE target = $1 AND state IN ('queued', 'sent') LIMIT 1", target
                ):
                    busy.add(target)
            stored = _claims_kept(stored, busy)
            if stored:
                await conn.executemany(
                    f"INSERT INTO calls ({SELECT}, target) VALUES ({marks})", [values(c) for c in stored]
                )
            return stored

        result: list[QueuedCall] = await self._write(insert)
        return result

    async def get_call(self, call_id: str) -> QueuedCall | None:
        async def query(conn: Any) -> QueuedCall | None:
            row = await conn.fetchrow(f"SELECT {SELECT} FROM calls WHERE call_id = $1", call_id)
            if row:
                return from_row(row)
            pages = await conn.fetch(
                "SELECT rows FROM call_history WHERE first_id <= $1 AND last_id >= $1", call_id
            )
            return history.find_record((page[0] for page in pages), call_id)

        result: QueuedCall | None = await self._read(query)
        return result

    async def list_calls(
        self,
        *,
        device_id: str | None = None,
        state: CallState | None = None,
        job_id: str | None = None,
        limit: int = 100,
        before: tuple[float, str] | None = None,
        filters: CallFilters | None = None,
    ) -> list[QueuedCall]:
        where, args = _filters(lambda n: f"${n}", device_id, state, job_id, before, filters)
        sql = (
            f"SELECT {SELECT} FROM calls{where} ORDER BY created_time DESC, call_id DESC "
            f"LIMIT ${len(args) + 1}"
        )
        pages_where, page_args = history.page_filters(lambda n: f"${n}", "strpos", device_id, before, filters)

        async def query(conn: Any) -> list[QueuedCall]:
            table = [from_row(row) for row in await conn.fetch(sql, *args, limit)]
            if not history.has_records(state, job_id):
                return table
            listing = history.Listing(table, limit, history.matches(device_id, state, before, filters))
            pages = await conn.fetch(
                f"SELECT page_id, last_created FROM call_history{pages_where} ORDER BY last_created DESC",
                *page_args,
            )
            for page_id, last_created in pages:
                if not listing.wants(last_created):
                    break
                blob = await conn.fetchval("SELECT rows FROM call_history WHERE page_id = $1", page_id)
                listing.add(history.decode_rows(blob))
            return listing.result()

        result: list[QueuedCall] = await self._read(query)
        return result

    async def record_history(self, rows: Sequence[HistoryRow]) -> None:
        if not rows:
            return
        page = history.page_of(rows)

        async def insert(conn: Any) -> None:
            await conn.execute(history.INSERT + "($1, $2, $3, $4, $5, $6, $7, $8)", *page)

        await self._write(insert)

    async def prune_calls(self, before: float, keep: int, limit: int = 1000) -> int:
        async def prune(conn: Any) -> int:
            beyond = await conn.fetchval(COUNT_CUTOFF + "$1", keep)
            status: str = await conn.execute(
                "DELETE FROM calls WHERE call_id IN (SELECT call_id FROM calls WHERE "
                f"{ENDED} AND completed_time < $1 ORDER BY completed_time LIMIT $2)",
                prune_before(before, beyond),
                limit,
            )
            pages = await conn.fetch(history.PRUNE_HEADERS)
            doomed, records = history.doomed_pages(pages, before, keep, limit)
            await conn.execute("DELETE FROM call_history WHERE page_id = ANY($1::bigint[])", doomed)
            return int(status.rsplit(" ", 1)[-1]) + records

        result: int = await self._write(prune)
        return result

    async def claim_call(self, target: str, owner: str, now: float, lease: float) -> QueuedCall | None:
        async def claim(conn: Any) -> QueuedCall | None:
            return await _postgres_claim(conn, target, owner, now, lease)

        result: QueuedCall | None = await self._write(claim)
        return result

    async def claim_calls(
        self, targets: Sequence[str], owner: str, now: float, lease: float
    ) -> list[QueuedCall | None]:
        async def claim(conn: Any) -> list[QueuedCall | None]:
            # In target order: two nodes' batches take their advisory locks in the same order.
            claimed = {}
            for target in sorted(set(targets)):
                claimed[target] = await _postgres_claim(conn, target, owner, now, lease)
            seen: set[str] = set()
            results: list[QueuedCall | None] = []
            for target in targets:  # a target named twice: its second claim finds the first sent
                results.append(None if target in seen else claimed[target])
                seen.add(target)
            return results

        result: list[QueuedCall | None] = await self._write(claim)
        return result

    async def update_call(self, call: QueuedCall, expect: CallState, owner: str | None = None) -> bool:
        sql, args = update_statement(call, expect, owner, lambda n: f"${n}")

        async def update(conn: Any) -> bool:
            status: str = await conn.execute(sql, *args)
            return status.endswith(" 1")

        result: bool = await self._write(update)
        return result

    async def update_calls(self, updates: Sequence[CallUpdate]) -> list[bool]:
        statements = [
            update_statement(call, expect, owner, lambda n: f"${n}") for call, expect, owner in updates
        ]

        order = sorted(range(len(updates)), key=lambda n: updates[n][0].call_id)  # rows locked in one order

        async def update(conn: Any) -> list[bool]:
            results = [False] * len(statements)
            for n in order:
                sql, args = statements[n]
                results[n] = (await conn.execute(sql, *args)).endswith(" 1")
            return results

        result: list[bool] = await self._write(update)
        return result

    async def due_calls(self, now: float, limit: int = 500) -> list[QueuedCall]:
        rows = await self._read(
            lambda conn: conn.fetch(
                f"SELECT {SELECT} FROM calls WHERE (state = $1 AND expires_time <= $2) "
                "OR (state = $3 AND lease_until <= $2) LIMIT $4",
                _QUEUED,
                now,
                _SENT,
                limit,
            )
        )
        return [from_row(row) for row in rows]

    async def queued_targets(self, limit: int = 1000) -> list[str]:
        rows = await self._read(
            lambda conn: conn.fetch(
                "SELECT DISTINCT target FROM calls WHERE state = $1 LIMIT $2", _QUEUED, limit
            )
        )
        return [row[0] for row in rows]
