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
from collections.abc import Sequence
from dataclasses import dataclass, replace
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

    @property
    def target(self) -> str:
        return identity_key(self.device_id, self.module_id)

    def call(self) -> Call:
        """The call to run for one attempt."""
        return Call(self.target, self.method, self.payload, self.response_timeout)

    def finished(
        self,
        state: CallState,
        now: float,
        *,
        status: int | None = None,
        payload: bytes | None = None,
        error: tuple[str, str] | None = None,
    ) -> QueuedCall:
        return replace(
            self,
            state=state,
            completed_time=now,
            outcome_status=status,
            outcome_payload=payload,
            error_code=error[0] if error else None,
            error_message=error[1] if error else None,
            owner=None,
            lease_until=None,
        )


def new_call_id() -> str:
    return secrets.token_hex(12)


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
        identity is still registered; returns those stored (a job's page of devices)."""
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
    ) -> list[QueuedCall]:
        """Newest first; ``before``: ``(created_time, call_id)`` of the last one of the previous page."""
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
