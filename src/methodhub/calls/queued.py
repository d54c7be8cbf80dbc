"""Queued (durable) calls: a call that waits for its device, stored until it ends.

A queued call is a :class:`~methodhub.calls.model.Call` with a life of its own: it is stored when it
is made, delivered when its device is online (at once if it is), retried after a timeout or a drop
while attempts remain, and ends in exactly one terminal state. The store is the registry
(:class:`QueuedCallStore`, SQLite or PostgreSQL); :mod:`methodhub.calls.delivery` delivers.

States (what each promises):

``queued``     stored; not handed to the device (or handed, then timed out or dropped, and waiting
               for another attempt).
``sent``       handed to the device's connection (``deliveredTime``): the transport took it. Azure
               sends method requests at MQTT QoS 0, so the hub knows it was written to the device's
               connection, not that the device read it.
``succeeded``  the device answered (``outcome``: its status, whatever it is, and payload).
``failed``     attempts used up (each timed out or dropped), or the device refused the request
               (``error``).
``expired``    not delivered before ``expiresTime`` (``error``).
``cancelled``  cancelled before it was sent.

Delivery is at most once per attempt: a call is sent again only when ``attempts`` > 1 and the
previous attempt timed out or its device dropped (at least once, then, for retried calls).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeAlias

from methodhub.calls.model import Call, identity_key


class CallState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self not in (CallState.QUEUED, CallState.SENT)


MAX_ATTEMPTS = 10
DEFAULT_EXPIRES = 86_400
MAX_EXPIRES_DEFAULT = 7 * 86_400


@dataclass(frozen=True, slots=True)
class QueuedCall:
    """One queued call and where it stands. Times are epoch seconds (None: not yet)."""

    call_id: str
    device_id: str
    module_id: str | None
    method: str
    payload: bytes
    response_timeout: float
    attempts: int
    created_time: float
    expires_time: float
    state: CallState = CallState.QUEUED
    attempt: int = 0
    """Attempts made so far (sent this many times)."""
    delivered_time: float | None = None
    completed_time: float | None = None
    outcome_status: int | None = None
    outcome_payload: bytes | None = None
    error_code: str | None = None
    error_message: str | None = None
    idempotency_key: str | None = None
    request_hash: str = ""
    """What the request asked (for the idempotency check: the same key with another request is 409)."""
    job_id: str | None = None
    owner: str | None = None
    """The node delivering it (while ``sent``)."""
    lease_until: float | None = None
    """While ``sent``: when the owner's attempt is over at the latest (then another node may act)."""
    front_door: str | None = None
    """Where the call came in (the front door's name, :mod:`methodhub.calls.history`; ``native``
    and ``job`` for queued and job calls); None for a call stored before the history existed."""
    caller: str | None = None
    """Who made it: the name of the credential (shared access policy) its front door verified."""
    request_size: int | None = None
    """Bytes of the request payload (kept when the payload itself is not)."""
    response_size: int | None = None
    """Bytes of the device's answer, once it answered."""
    latency_ms: float | None = None
    """Milliseconds from delivery (a synchronous call: from its arrival) to its end."""
    tracking_id: str | None = None
    """The request id its front door answered with, if it answers with one."""

    @property
    def target(self) -> str:
        return identity_key(self.device_id, self.module_id)

    def call(self) -> Call:
        """The call to run for one attempt."""
        return Call(self.target, self.method, self.payload, self.response_timeout)

    def claimed(self, owner: str, now: float, lease: float) -> QueuedCall:
        """The call as ``owner``'s claim ``now`` makes it: ``sent``, one attempt more, its lease
        until its response timeout and ``lease`` seconds more have passed."""
        return self.moved(
            CallState.SENT,
            self.attempt + 1,
            now,
            self.completed_time,
            self.outcome_status,
            self.outcome_payload,
            self.error_code,
            self.error_message,
            owner,
            now + self.response_timeout + lease,
        )

    def unclaimed(self) -> QueuedCall:
        """The call as it was before :meth:`claimed`."""
        return self.moved(
            CallState.QUEUED,
            self.attempt - 1,
            None,
            self.completed_time,
            self.outcome_status,
            self.outcome_payload,
            self.error_code,
            self.error_message,
            None,
            None,
        )

    def requeued(self) -> QueuedCall:
        """The call waiting for another attempt (the last one counted)."""
        return self.moved(
            CallState.QUEUED,
            self.attempt,
            self.delivered_time,
            self.completed_time,
            self.outcome_status,
            self.outcome_payload,
            self.error_code,
            self.error_message,
            None,
            None,
        )

    def finished(
        self,
        state: CallState,
        now: float,
        *,
        status: int | None = None,
        payload: bytes | None = None,
        error: tuple[str, str] | None = None,
    ) -> QueuedCall:
        return self.moved(
            state,
            self.attempt,
            self.delivered_time,
            now,
            status,
            payload,
            error[0] if error else None,
            error[1] if error else None,
            None,
            None,
        )

    def moved(
        self,
        state: CallState,
        attempt: int,
        delivered_time: float | None,
        completed_time: float | None,
        outcome_status: int | None,
        outcome_payload: bytes | None,
        error_code: str | None,
        error_message: str | None,
        owner: str | None,
        lease_until: float | None,
    ) -> QueuedCall:
        """The call with new values of everything its life changes (the columns a store's update
        writes), the request kept: ``dataclasses.replace`` costs three times as much, and a job
        makes two of these per device."""
        return QueuedCall(
            self.call_id,
            self.device_id,
            self.module_id,
            self.method,
            self.payload,
            self.response_timeout,
            self.attempts,
            self.created_time,
            self.expires_time,
            state,
            attempt,
            delivered_time,
            completed_time,
            outcome_status,
            outcome_payload,
            error_code,
            error_message,
            self.idempotency_key,
            self.request_hash,
            self.job_id,
            owner,
            lease_until,
            self.front_door,
            self.caller,
            self.request_size,
            len(outcome_payload) if outcome_payload is not None else None,
            (completed_time - delivered_time) * 1000.0
            if completed_time is not None and delivered_time is not None
            else None,
            self.tracking_id,
        )


_sequence = secrets.randbits(48)
"""The low half of this process's next call id (a random start: two processes' ids made in the
same millisecond do not meet unless 2⁴⁸ apart ids come within one millisecond)."""


def new_call_id() -> str:
    """A call id: 24 hex digits, the time in milliseconds then a per-process sequence, so the
    calls made one after another sort (and are stored, in every index on the id) one after another:
    a job's calls created together fill a few index pages, not one random page each. Not a secret
    (a caller who may read calls may list them all)."""
    global _sequence
    _sequence = (_sequence + 1) & 0xFFFF_FFFF_FFFF
    return "%012x%012x" % (time.time_ns() // 1_000_000, _sequence)  # noqa: UP031 (a quarter faster)


def request_hash(
    device_id: str,
    module_id: str | None,
    method: str,
    payload: bytes,
    response_timeout: float,
    expires: float,
    attempts: int,
) -> str:
    """A digest of what a create asked, to tell a repeat (same idempotency key, same request: the
    same call) from a conflict (same key, another request)."""
    text = json.dumps(
        [
            device_id,
            module_id,
            method,
            payload.decode("utf-8", "replace"),
            response_timeout,
            expires,
            attempts,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class CallFilters:
    """``list_calls``' history filters (None: any)."""

    method: str | None = None
    front_door: str | None = None
    since: float | None = None
    """Created at or after (epoch seconds)."""
    until: float | None = None
    """Created before (epoch seconds)."""
    status: int | None = None
    """The device's status code."""


CallUpdate: TypeAlias = tuple[QueuedCall, CallState, str | None]
"""One conditional update (``update_call``'s arguments): the new record, the state the stored one
must still be in, and the owner it must still have (None: any)."""


class QueuedCallStore(Protocol):
    """Where queued calls live (the registry implements it; contract-tested on every backend)."""

    async def create_call(self, call: QueuedCall) -> tuple[QueuedCall, bool]:
        """Store ``call``; returns ``(stored, created)``. With an ``idempotency_key`` already used,
        returns the existing call and False (the caller compares ``request_hash``)."""
        ...

    async def create_calls(self, calls: Sequence[QueuedCall]) -> list[QueuedCall]:
        """Store many new calls (without idempotency keys) in one transaction, each only if its
        identity is still registered; returns those stored, as stored (a job's page of devices).

        A call given ``sent`` (:meth:`QueuedCall.claimed`: its creator claims it as it makes it,
        its device being ready) is stored so only if no other call of its target is queued or sent
        (stored before, or before it in ``calls``): the claim ``claim_call`` would have made. Else
        it is stored ``queued`` (:meth:`QueuedCall.unclaimed`), and returned so."""
        ...

    async def get_call(self, call_id: str) -> QueuedCall | None: ...

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
        """Newest first; ``before``: ``(created_time, call_id)`` of the last one of the previous page;
        ``filters``: the history's other filters (all given must hold)."""
        ...

    async def prune_calls(self, before: float, keep: int, limit: int = 1000) -> int:
        """Delete at most ``limit`` ended calls that are not a job's, oldest first: those ended
        before ``before`` and those beyond the newest ``keep``; returns how many went."""
        ...

    async def claim_call(self, target: str, owner: str, now: float, lease: float) -> QueuedCall | None:
        """Atomically move ``target``'s oldest ``queued`` call that has not expired to ``sent``
        (attempt + 1, ``owner``, lease until ``now + its response timeout + lease``) and return it;
        None when there is none, or another of its calls is ``sent`` (one at a time per device)."""
        ...

    async def claim_calls(
        self, targets: Sequence[str], owner: str, now: float, lease: float
    ) -> list[QueuedCall | None]:
        """``claim_call`` for each of ``targets``, all in one transaction; each result as
        ``claim_call``'s (a target named twice gets None the second time: its call is ``sent``)."""
        ...

    async def update_call(self, call: QueuedCall, expect: CallState, owner: str | None = None) -> bool:
        """Store ``call`` if the stored one is still in state ``expect`` (and owned by ``owner``
        when given); False when it is not (someone else moved it: leave it)."""
        ...

    async def update_calls(self, updates: Sequence[CallUpdate]) -> list[bool]:
        """``update_call`` for each of ``updates``, all in one transaction; each result as
        ``update_call``'s."""
        ...

    async def due_calls(self, now: float, limit: int = 500) -> list[QueuedCall]:
        """Queued calls past their expiry and sent calls past their lease (their owner is gone)."""
        ...

    async def queued_targets(self, limit: int = 1000) -> list[str]:
        """Targets that have queued calls."""
        ...
