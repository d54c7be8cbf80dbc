"""Storing the call history's records (:mod:`methodhub.calls.history`) in pages: what every backend
shares (:class:`SqliteHistory` and :class:`PostgresHistory` add their statements).

Each batch the recorder writes is one row of ``call_history``, a *page*: its records (up to the
recorder's batch, 500) as one blob, and a header the queries select pages by — the range of the
records' ``created_time`` and call ids, the newest ``completed_time``, the count, and the targets
called. A record as a row of ``calls`` cost 65,000 instructions to store (binding 20 values,
SQLite's insert into 7 b-trees), more than a third of the whole call it records; in a page it costs
about 1,000, so the history can be on at full rate (docs/performance.md, "Call history").

The blob is a pickle (protocol 5, readable by every later Python) of a list of
:data:`~methodhub.calls.history.HistoryRow` tuples: strings, numbers, None and bytes only. It is
read with an unpickler that refuses every global (:func:`decode_rows`), so a page can only ever
give back those values, whoever wrote the database. Pickle, not JSON: a quarter of the cost to
write (0.24 µs per record against 1.7 µs: JSON's float repr), and bytes without base64.

Reading: :func:`list_records` merges a page's records with the ``calls`` table's: pages are read
newest first (by their newest ``created_time``) and only while one could still hold a record among
the ``limit`` newest; each page's records are filtered here, as the table's are in SQL
(:func:`matches`). A lookup by id reads the pages whose id range holds it. Retention deletes whole
pages: one goes when its newest record ended before the cutoff, or when the ``keep`` newest records
are all in newer pages.
"""

from __future__ import annotations

import heapq
import io
import operator
import pickle
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from methodhub.calls.history import HISTORY_FIELDS, HistoryRow, history_call
from methodhub.calls.queued import CallFilters, CallState, QueuedCall

_CREATED = HISTORY_FIELDS.index("created_time")
_COMPLETED = HISTORY_FIELDS.index("completed_time")
_ID = HISTORY_FIELDS.index("call_id")
_DEVICE = HISTORY_FIELDS.index("device_id")
_TARGET = HISTORY_FIELDS.index("target")
_STATE = HISTORY_FIELDS.index("state")
_METHOD = HISTORY_FIELDS.index("method")
_FRONT_DOOR = HISTORY_FIELDS.index("front_door")
_STATUS = HISTORY_FIELDS.index("outcome_status")

HISTORY_STATES = frozenset({CallState.SUCCEEDED, CallState.FAILED})
"""The states a record can have (a page holds ended synchronous calls only)."""

HEADER = "first_created, last_created, last_completed, first_id, last_id, records, targets"
"""A page's header columns, in :func:`page_of` order (its blob follows)."""
INSERT = f"INSERT INTO call_history ({HEADER}, rows) VALUES "
"""The start of a page's insert (each backend's placeholders follow)."""


class _DataOnly(pickle.Unpickler):
    """An unpickler that builds no object by name: only pickle's own types come out."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a history page may not name {module}.{name}")


def encode_rows(rows: Sequence[HistoryRow]) -> bytes:
    return pickle.dumps(list(rows), protocol=5)


def decode_rows(blob: bytes) -> list[HistoryRow]:
    rows = _DataOnly(io.BytesIO(blob)).load()
    if not isinstance(rows, list):
        raise pickle.UnpicklingError("a history page holds a list of records")
    return rows


_created, _completed, _id, _target = (
    operator.itemgetter(field) for field in (_CREATED, _COMPLETED, _ID, _TARGET)
)


def page_of(rows: Sequence[HistoryRow]) -> tuple[Any, ...]:
    """A page's values: its header (:data:`HEADER` order), then its blob."""
    created = list(map(_created, rows))
    ids = list(map(_id, rows))
    targets = " ".join(dict.fromkeys(map(_target, rows)))
    return (
        min(created),
        max(created),
        max(map(_completed, rows)),
        min(ids),
        max(ids),
        len(rows),
        f" {targets} ",  # ids hold no spaces: ' dev ' or ' dev/' finds a device's
        encode_rows(rows),
    )


def has_records(state: CallState | None, job_id: str | None) -> bool:
    """Whether pages can hold what a listing asks for (no job's calls; only ended states)."""
    return job_id is None and (state is None or state in HISTORY_STATES)


def page_filters(
    placeholder: Callable[[int], str],
    find: str,
    device_id: str | None,
    before: tuple[float, str] | None,
    filters: CallFilters | None,
) -> tuple[str, list[Any]]:
    """The WHERE of the pages that may hold records a listing asks for (by their headers);
    ``find``: the SQL function giving a text's place in another (``instr``, ``strpos``)."""
    clauses: list[str] = []
    args: list[Any] = []

    def add(clause: str, *values: Any) -> None:
        clauses.append(clause.format(*(placeholder(len(args) + n + 1) for n in range(len(values)))))
        args.extend(values)

    if device_id is not None:
        add(f"({find}(targets, {{}}) > 0 OR {find}(targets, {{}}) > 0)", f" {device_id} ", f" {device_id}/")
    if before is not None:
        add("first_created <= {}", before[0])
    if filters is not None and filters.since is not None:
        add("last_created >= {}", filters.since)
    if filters is not None and filters.until is not None:
        add("first_created < {}", filters.until)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def matches(
    device_id: str | None,
    state: CallState | None,
    before: tuple[float, str] | None,
    filters: CallFilters | None,
) -> Callable[[HistoryRow], bool]:
    """A record's test for a listing: what ``registry.calls._filters`` asks of a row in SQL."""
    tests: list[Callable[[HistoryRow], bool]] = []
    if device_id is not None:
        tests.append(lambda row: row[_DEVICE] == device_id)
    if state is not None:
        tests.append(lambda row: row[_STATE] == state.value)
    if filters is not None:
        method, door, since, until, status = (
            filters.method,
            filters.front_door,
            filters.since,
            filters.until,
            filters.status,
        )
        if method is not None:
            tests.append(lambda row: row[_METHOD] == method)
        if door is not None:
            tests.append(lambda row: row[_FRONT_DOOR] == door)
        if since is not None:
            tests.append(lambda row: row[_CREATED] >= since)
        if until is not None:
            tests.append(lambda row: row[_CREATED] < until)
        if status is not None:
            tests.append(lambda row: row[_STATUS] == status)
    if before is not None:
        at, call_id = before
        tests.append(lambda row: (row[_CREATED], row[_ID]) < (at, call_id))
    return lambda row: all(test(row) for test in tests)


class Listing:
    """Merges the records of pages, read newest first, with the table's calls of a listing."""

    def __init__(self, table: list[QueuedCall], limit: int, accept: Callable[[HistoryRow], bool]) -> None:
        self.limit = limit
        self._accept = accept
        self._newest: list[tuple[float, str, QueuedCall | HistoryRow]] = []
        """A min-heap of the newest ``limit`` so far (table calls and records), by (created, id)."""
        for call in table:
            self._keep((call.created_time, call.call_id, call))

    def wants(self, last_created: float) -> bool:
        """Whether a page whose newest record was created at ``last_created`` may hold one of the
        ``limit`` newest (pages come newest ``last_created`` first: once False, for all the rest)."""
        return len(self._newest) < self.limit or last_created >= self._newest[0][0]

    def add(self, rows: Iterable[HistoryRow]) -> None:
        for row in rows:
            if self._accept(row):
                self._keep((row[_CREATED], row[_ID], row))

    def _keep(self, item: tuple[float, str, QueuedCall | HistoryRow]) -> None:
        heap = self._newest
        if len(heap) < self.limit:
            heapq.heappush(heap, item)
        elif item[:2] > heap[0][:2]:
            heapq.heapreplace(heap, item)

    def result(self) -> list[QueuedCall]:
        found = sorted(self._newest, key=lambda item: item[:2], reverse=True)
        return [held if isinstance(held, QueuedCall) else history_call(held) for _, _, held in found]


def find_record(blobs: Iterable[bytes], call_id: str) -> QueuedCall | None:
    """The record with ``call_id`` in these pages, if one holds it."""
    for blob in blobs:
        for row in decode_rows(blob):
            if row[_ID] == call_id:
                return history_call(row)
    return None


PRUNE_HEADERS = "SELECT page_id, records, last_completed FROM call_history ORDER BY last_created DESC"
"""What :func:`doomed_pages` reads: every page's id, count and newest end, newest first."""


def doomed_pages(
    pages: Iterable[Sequence[Any]], before: float, keep: int, limit: int
) -> tuple[list[int], int]:
    """Of the pages (:data:`PRUNE_HEADERS`' rows), at most ``limit`` that retention deletes —
    those whose newest record ended before ``before``, and those holding none of the ``keep``
    newest records — and how many records they hold."""
    seen = 0
    doomed: list[int] = []
    records = 0
    for page_id, count, last_completed in pages:
        if (seen >= keep or last_completed < before) and len(doomed) < limit:
            doomed.append(page_id)
            records += count
        seen += count
    return doomed, records
