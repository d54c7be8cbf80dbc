"""Storing jobs (:mod:`methodhub.calls.jobs`): the row mapping and each backend's statements
(:class:`SqliteJobs`, :class:`PostgresJobs`, mixed into the registries)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from methodhub.calls.jobs import Job, JobStatus, JobType

COLUMNS = (
    "job_id",
    "type",
    "query_condition",
    "request",
    "created_time",
    "start_time",
    "max_execution",
    "status",
    "end_time",
    "failure_reason",
    "device_count",
    "owner",
)
SELECT = ", ".join(COLUMNS)


def values(job: Job) -> tuple[Any, ...]:
    return (
        job.job_id,
        job.type.value,
        job.query_condition,
        json.dumps(job.request),
        job.created_time,
        job.start_time,
        job.max_execution,
        job.status.value,
        job.end_time,
        job.failure_reason,
        job.device_count,
        job.owner,
    )


def from_row(row: Sequence[Any]) -> Job:
    return Job(
        job_id=row[0],
        type=JobType(row[1]),
        query_condition=row[2],
        request=json.loads(row[3]),
        created_time=float(row[4]),
        start_time=float(row[5]),
        max_execution=float(row[6]),
        status=JobStatus(row[7]),
        end_time=row[8],
        failure_reason=row[9],
        device_count=int(row[10]),
        owner=row[11],
    )


def _filters(
    mark: Callable[[int], str], type: JobType | None, status: JobStatus | None
) -> tuple[str, list[Any]]:
    clauses, args = [], []
    for column, value in (("type", type), ("status", status)):
        if value is not None:
            args.append(value.value)
            clauses.append(f"{column} = {mark(len(args))}")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


_QUEUED = JobStatus.QUEUED.value
_RUNNING = JobStatus.RUNNING.value


class SqliteJobs:
    """The SQLite statements (the registry provides ``_run``, ``_read``, ``_transaction``, ``_conn``)."""

    _run: Callable[..., Awaitable[Any]]
    _read: Callable[..., Awaitable[Any]]
    _transaction: Callable[[Callable[[sqlite3.Connection], Any]], Any]
    _conn: Callable[[], sqlite3.Connection]

    async def create_job(self, job: Job) -> bool:
        def insert(db: sqlite3.Connection) -> bool:
            marks = ", ".join("?" * len(COLUMNS))
            cursor = db.execute(f"INSERT OR IGNORE INTO jobs ({SELECT}) VALUES ({marks})", values(job))
            return cursor.rowcount == 1

        created: bool = await self._run(self._transaction, insert)
        return created

    async def get_job(self, job_id: str) -> Job | None:
        def query() -> Job | None:
            row = self._conn().execute(f"SELECT {SELECT} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            return from_row(row) if row else None

        job: Job | None = await self._read(query)
        return job

    async def list_jobs(
        self,
        *,
        type: JobType | None = None,
        status: JobStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        where, args = _filters(lambda n: "?", type, status)

        def query() -> list[Job]:
            rows = self._conn().execute(
                f"SELECT {SELECT} FROM jobs{where} ORDER BY created_time DESC, job_id LIMIT ? OFFSET ?",
                (*args, limit, offset),
            )
            return [from_row(row) for row in rows]

        jobs: list[Job] = await self._read(query)
        return jobs

    async def claim_job(self, owner: str, now: float) -> Job | None:
        def claim(db: sqlite3.Connection) -> Job | None:
            row = db.execute(
                f"SELECT {SELECT} FROM jobs WHERE status = ? AND start_time <= ? "
                "ORDER BY start_time, job_id LIMIT 1",
                (_QUEUED, now),
            ).fetchone()
            if row is None:
                return None
            job = from_row(row)
            db.execute(
                "UPDATE jobs SET status = ?, owner = ? WHERE job_id = ?", (_RUNNING, owner, job.job_id)
            )
            return replace(job, status=JobStatus.RUNNING, owner=owner)

        job: Job | None = await self._run(self._transaction, claim)
        return job

    async def update_job(self, job: Job, expect: JobStatus) -> bool:
        def update(db: sqlite3.Connection) -> bool:
            sets = ", ".join(f"{column} = ?" for column in COLUMNS[1:])
            cursor = db.execute(
                f"UPDATE jobs SET {sets} WHERE job_id = ? AND status = ?",
                (*values(job)[1:], job.job_id, expect.value),
            )
            return cursor.rowcount == 1

        updated: bool = await self._run(self._transaction, update)
        return updated

    async def running_jobs(self) -> list[Job]:
        def query() -> list[Job]:
            rows = self._conn().execute(f"SELECT {SELECT} FROM jobs WHERE status = ?", (_RUNNING,))
            return [from_row(row) for row in rows]

        jobs: list[Job] = await self._read(query)
        return jobs

    async def job_call_states(self, job_id: str) -> dict[str, int]:
        def query() -> dict[str, int]:
            rows = self._conn().execute(
                "SELECT state, COUNT(*) FROM calls WHERE job_id = ? GROUP BY state", (job_id,)
            )
            return {row[0]: int(row[1]) for row in rows}

        states: dict[str, int] = await self._read(query)
        return states


class PostgresJobs:
    """The PostgreSQL statements (the registry provides ``_read`` and ``_write``)."""

    _read: Callable[..., Awaitable[Any]]
    _write: Callable[..., Awaitable[Any]]

    async def create_job(self, job: Job) -> bool:
        marks = ", ".join(f"${n}" for n in range(1, len(COLUMNS) + 1))
        sql = f"INSERT INTO jobs ({SELECT}) VALUES ({marks}) ON CONFLICT (job_id) DO NOTHING RETURNING job_id"
        inserted = await self._write(lambda conn: conn.fetchval(sql, *values(job)))
        return inserted is not None

    async def get_job(self, job_id: str) -> Job | None:
        sql = f"SELECT {SELECT} FROM jobs WHERE job_id = $1"
        row = await self._read(lambda conn: conn.fetchrow(sql, job_id))
        return from_row(row) if row else None

    async def list_jobs(
        self,
        *,
        type: JobType | None = None,
        status: JobStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        where, args = _filters(lambda n: f"${n}", type, status)
        n = len(args)
        order = f" ORDER BY created_time DESC, job_id LIMIT ${n + 1} OFFSET ${n + 2}"
        sql = f"SELECT {SELECT} FROM jobs{where}{order}"
        rows = await self._read(lambda conn: conn.fetch(sql, *args, limit, offset))
        return [from_row(row) for row in rows]

    async def claim_job(self, owner: str, now: float) -> Job | None:
        sql = (
            f"UPDATE jobs SET status = $1, owner = $2 WHERE job_id = (SELECT job_id FROM jobs "
            "WHERE status = $3 AND start_time <= $4 ORDER BY start_time, job_id "
            "LIMIT 1 FOR UPDATE SKIP LOCKED) "
            f"RETURNING {SELECT}"
        )
        row = await self._write(lambda conn: conn.fetchrow(sql, _RUNNING, owner, _QUEUED, now))
        return from_row(row) if row else None

    async def update_job(self, job: Job, expect: JobStatus) -> bool:
        sets = ", ".join(f"{column} = ${n}" for n, column in enumerate(COLUMNS[1:], start=1))
        n = len(COLUMNS)
        sql = f"UPDATE jobs SET {sets} WHERE job_id = ${n} AND status = ${n + 1}"
        status: str = await self._write(
            lambda conn: conn.execute(sql, *values(job)[1:], job.job_id, expect.value)
        )
        return status.endswith(" 1")

    async def running_jobs(self) -> list[Job]:
        sql = f"SELECT {SELECT} FROM jobs WHERE status = $1"
        rows = await self._read(lambda conn: conn.fetch(sql, _RUNNING))
        return [from_row(row) for row in rows]

    async def job_call_states(self, job_id: str) -> dict[str, int]:
        sql = "SELECT state, COUNT(*) FROM calls WHERE job_id = $1 GROUP BY state"
        rows = await self._read(lambda conn: conn.fetch(sql, job_id))
        return {row[0]: int(row[1]) for row in rows}
