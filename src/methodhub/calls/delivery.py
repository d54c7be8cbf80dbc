"""Delivering queued calls (:mod:`methodhub.calls.queued`): one :class:`QueuedCalls` per node.

A call is delivered by whichever node first sees its device ready for calls (anywhere in the
cluster: the engine's carrier reaches it) and claims the call in the store; the claim is atomic, so
exactly one node sends each attempt. Triggers: a new call (at once), and a sweep every
``sweep_interval`` seconds that delivers to devices that came online, expires calls past their
``expiresTime``, and settles attempts whose node went away (their lease ran out). A device gets its
calls in creation order, one at a time.

How an attempt ends:

- the device answered → ``succeeded`` (its status and payload, whatever the status);
- ``CALL_TIMEOUT``, ``DEVICE_DISCONNECTED``, ``HUB_STOPPING`` (the request may have reached the
  device) → ``queued`` again while attempts remain and it has not expired, else ``failed``;
- ``DEVICE_OFFLINE`` (the device went away between the readiness check and the send: it never got
  it) → ``queued`` again, the attempt not counted;
- any other error (the device answered something invalid, the payload is too large for it, the
  identity was deleted) → ``failed``.

Claims and the ends of attempts go to the store in batches (:mod:`methodhub.calls.batches`): the
claims made together in one transaction, each end written behind — the stored call shows it at
most about ``settle_delay`` seconds later; waiters on this node are woken once it is written. A
job's calls are created a page at a time (:meth:`QueuedCalls.create_many`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from methodhub.calls.batches import CLAIM_DELAY, SETTLE_DELAY, Batches
from methodhub.calls.engine import CallEngine
from methodhub.calls.model import identity_key
from methodhub.calls.ports import CallCarrier, IdentityLookup
from methodhub.calls.queued import (
    DEFAULT_EXPIRES,
    MAX_ATTEMPTS,
    MAX_EXPIRES_DEFAULT,
    CallState,
    CallUpdate,
    QueuedCall,
    QueuedCallStore,
    new_call_id,
    request_hash,
)
from methodhub.errors import ErrorKind, HubError

log = logging.getLogger("methodhub.calls")

LEASE_GRACE = 10.0
"""Seconds past an attempt's response timeout before another node may settle it (its node died)."""
RETRYABLE = frozenset({ErrorKind.CALL_TIMEOUT, ErrorKind.DEVICE_DISCONNECTED, ErrorKind.HUB_STOPPING})


def _new_call(
    device_id: str,
    module_id: str | None,
    method: str,
    payload: bytes,
    response_timeout: float,
    expires: float,
    attempts: int,
    now: float,
    job_id: str | None,
    idempotency_key: str | None = None,
    caller: str | None = None,
) -> QueuedCall:
    """A new queued call for the identity, created ``now`` (with its request's hash when it has an
    idempotency key)."""
    return QueuedCall(
        call_id=new_call_id(),
        device_id=device_id,
        module_id=module_id,
        method=method,
        payload=payload,
        response_timeout=response_timeout,
        attempts=attempts,
        created_time=now,
        expires_time=now + expires,
        idempotency_key=idempotency_key,
        request_hash=(  # only what an idempotency key is checked against needs it
            request_hash(device_id, module_id, method, payload, response_timeout, expires, attempts)
            if idempotency_key is not None
            else ""
        ),
        job_id=job_id,
        front_door="job" if job_id is not None else "native",
        caller=caller,
        request_size=len(payload),
    )


class QueuedCalls:
    """Queued calls on one node: create, read, cancel, wait for, and deliver them.

    Args:
        store: where they live (the registry).
        engine: runs each attempt (``connect_timeout`` 0: the sweep waits for the device instead).
        carrier: asked whether a device is ready anywhere (``wait_ready(target, 0)``).
        identities: a call to an unknown identity is refused when it is made.
        node: this node's name (a claim's owner).
        max_expires: the longest ``expiresInSeconds`` accepted.
        settle_delay: how long the end of an attempt waits to be written with others.
    """

    def __init__(
        self,
        store: QueuedCallStore,
        engine: CallEngine,
        carrier: CallCarrier,
        identities: IdentityLookup,
        node: str,
        *,
        sweep_interval: float = 1.0,
        max_expires: float = MAX_EXPIRES_DEFAULT,
        settle_delay: float = SETTLE_DELAY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.engine = engine
        self.carrier = carrier
        self.identities = identities
        self.node = node
        self.sweep_interval = sweep_interval
        self.max_expires = max_expires
        self.clock = clock
        self._delivering: dict[str, asyncio.Task[None]] = {}
        """The delivery task of each target delivering now (kicks find it busy)."""
        self._tasks: set[asyncio.Task[None]] = set()
        """Every delivery task running (a target's previous one may be ending beside its new one)."""
        self._again: set[str] = set()
        """Targets kicked while delivering: their task claims again before it ends."""
        self._job_attempts = 0
        self._job_attempt_ended = asyncio.Event()
        self._changed: dict[str, asyncio.Event] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = False
        self.on_ended: Callable[[QueuedCall], None] | None = None
        """Told of each call that ended on this node, once stored (the job runner)."""
        self._claims: Batches[str, QueuedCall | None] = Batches(
            self._claim_batch, delay=CLAIM_DELAY, name="queued-calls claim", keep_cancelled=False
        )
        self._settles: Batches[CallUpdate, bool] = Batches(
            store.update_calls, delay=settle_delay, name="queued-calls settle"
        )

    # -- the API ------------------------------------------------------------------------------------

    async def create(
        self,
        device_id: str,
        module_id: str | None,
        method: str,
        payload: bytes,
        *,
        response_timeout: float = 30,
        expires: float = DEFAULT_EXPIRES,
        attempts: int = 1,
        idempotency_key: str | None = None,
        job_id: str | None = None,
        caller: str | None = None,
    ) -> tuple[QueuedCall, bool]:
        """Store a new call (validated by the caller's front door: method name, payload JSON) and
        start delivering it; returns ``(call, created)``: False when ``idempotency_key`` named an
        earlier call with the same request. Raises ``HubError``: ``INVALID_ARGUMENT`` (bounds),
        ``DEVICE_NOT_FOUND``/``MODULE_NOT_FOUND``, ``CONFLICT`` (the key names another request)."""
        self._check_bounds(expires, attempts)
        if await self.identities.get_identity(device_id, module_id) is None:
            kind = ErrorKind.MODULE_NOT_FOUND if module_id else ErrorKind.DEVICE_NOT_FOUND
            raise HubError(kind, f"'{identity_key(device_id, module_id)}' is not registered.")
        call = _new_call(
            device_id,
            module_id,
            method,
            payload,
            response_timeout,
            expires,
            attempts,
            self.clock(),
            job_id,
            idempotency_key,
            caller,
        )
        stored, created = await self.store.create_call(call)
        if not created and stored.request_hash != call.request_hash:
            raise HubError(
                ErrorKind.CONFLICT,
                f"The idempotency key '{idempotency_key}' was used for another request "
                f"(call {stored.call_id}).",
            )
        if created:
            self.kick(stored.target)
        return stored, created

    async def create_many(
        self,
        targets: Sequence[tuple[str, str | None]],
        method: str,
        payload: bytes,
        *,
        response_timeout: float = 30,
        expires: float = DEFAULT_EXPIRES,
        attempts: int = 1,
        job_id: str | None = None,
    ) -> list[QueuedCall]:
        """One call per ``(device_id, module_id)`` of ``targets``, stored in one transaction and
        delivered at once where the device is ready (a job's page of devices: no idempotency keys).
        An identity not registered (deleted since it was selected) gets no call; returns the calls
        stored. Raises ``HubError`` ``INVALID_ARGUMENT`` (bounds).

        The call of a device ready here is claimed as it is stored (stored ``sent`` when the device
        has no other call open), and its attempt starts once the transaction is done: no claim of
        its own."""
        self._check_bounds(expires, attempts)
        now = self.clock()
        calls = []
        for device_id, module_id in targets:
            call = _new_call(
                device_id, module_id, method, payload, response_timeout, expires, attempts, now, job_id
            )
            if not self._stopping and await self.carrier.wait_ready(call.target, 0):
                call = call.claimed(self.node, now, LEASE_GRACE)
            calls.append(call)
        stored = await self.store.create_calls(calls) if calls else []
        for call in stored:
            if call.state is CallState.SENT:
                self._start(call.target, call)
            else:
                self.kick(call.target)
        return stored

    def _check_bounds(self, expires: float, attempts: int) -> None:
        if not 1 <= attempts <= MAX_ATTEMPTS:
            raise HubError(
                ErrorKind.INVALID_ARGUMENT, f"attempts must be 1 to {MAX_ATTEMPTS}, not {attempts}."
            )
        if not 1 <= expires <= self.max_expires:
            raise HubError(
                ErrorKind.INVALID_ARGUMENT,
                f"expiresInSeconds must be 1 to {self.max_expires:g} (the hub's maximum), not {expires:g}.",
            )

    async def get(self, call_id: str) -> QueuedCall:
        call = await self.store.get_call(call_id)
        if call is None:
            raise HubError(ErrorKind.CALL_NOT_FOUND, f"No queued call '{call_id}'.")
        return call

    async def wait(self, call_id: str, seconds: float) -> QueuedCall:
        """The call once it is terminal, or as it is after ``seconds`` (a long poll). Completions on
        this node wake it once they are written (within about ``settle_delay``); those of other
        nodes are seen within a quarter second more."""
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            call = await self.get(call_id)
            left = deadline - asyncio.get_running_loop().time()
            if call.state.terminal or left <= 0:
                return call
            event = self._changed.setdefault(call_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(left, 0.25))
            if event.is_set():
                self._changed.pop(call_id, None)

    async def cancel(self, call_id: str) -> QueuedCall:
        """Cancel a call not yet sent; ``CONFLICT`` when it was sent or has ended."""
        call = await self.get(call_id)
        if call.state is CallState.QUEUED:
            cancelled = call.finished(
                CallState.CANCELLED, self.clock(), error=("Cancelled", "The call was cancelled.")
            )
            if await self.store.update_call(cancelled, CallState.QUEUED):
                self._notify(cancelled)
                return cancelled
            call = await self.get(call_id)
        raise HubError(
            ErrorKind.CONFLICT,
            f"Call '{call_id}' is {call.state.value}; only a queued call can be cancelled.",
        )

    @property
    def unwritten(self) -> int:
        """Ends of attempts on this node not handed to the store yet (written behind)."""
        return self._settles.queued

    # -- delivering ---------------------------------------------------------------------------------

    def kick(self, target: str) -> None:
        """Deliver ``target``'s queued calls now if its device is ready (one task per target; a
        target delivering already claims again after its attempt)."""
        if self._stopping:
            return
        if target in self._delivering:
            self._again.add(target)
            return
        self._start(target, None)

    def _start(self, target: str, claimed: QueuedCall | None) -> None:
        """A delivery task for ``target``, first attempting ``claimed`` (claimed as it was created)
        if given. It becomes the target's task: one whose claim found ``claimed`` sent is ending."""
        if claimed is not None:
            self._attempting(claimed)
        task = asyncio.get_running_loop().create_task(
            self._deliver(target, claimed), name=f"queued-calls {target}"
        )
        self._delivering[target] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, target: str, claimed: QueuedCall | None = None) -> None:
        """Attempt ``claimed``, then claim and attempt the target's calls one by one while its
        device is ready. After a call claimed as it was made (its target had no other call open
        then), only a kick since (a call made here meanwhile) makes it claim: the calls made on
        other nodes meanwhile are the sweep's, as for an idle device."""
        try:
            if claimed is not None and (not await self._attempt(claimed) or target not in self._again):
                return
            while not self._stopping and await self.carrier.wait_ready(target, 0):
                self._again.discard(target)
                call = await self._claims.submit(target)
                if call is None:
                    if target in self._again:
                        continue  # a call made while the claim ran may have missed it
                    return
                if not await self._attempt(self._attempting(call)):
                    return  # the device could not take it: the sweep tries again, not this loop
        except HubError as exc:  # the store is unreachable: the sweep tries again
            log.warning("queued calls of %s not delivered now: %s", target, exc.message)
        except Exception:
            log.exception("delivering the queued calls of %s failed", target)
        finally:  # in the step that decided to end: no kick comes between
            if self._delivering.get(target) is asyncio.current_task():
                del self._delivering[target]
                self._again.discard(target)

    def _claim_batch(self, targets: Sequence[str]) -> Awaitable[list[QueuedCall | None]]:
        return self.store.claim_calls(targets, self.node, self.clock(), LEASE_GRACE)

    @property
    def job_attempts(self) -> int:
        """Attempts of jobs' calls in flight on this node (sent, not yet ended)."""
        return self._job_attempts

    async def job_attempts_at_most(self, count: int) -> None:
        """Return once at most ``count`` attempts of jobs' calls are in flight on this node."""
        while self._job_attempts > count:
            self._job_attempt_ended.clear()
            await self._job_attempt_ended.wait()

    def _attempting(self, call: QueuedCall) -> QueuedCall:
        """``call`` about to be attempted: counted as in flight (a job's) from now on, until its
        attempt ends (a task cancelled before it ran keeps its count: only a stopping node cancels
        them, after its job runner stopped)."""
        if call.job_id is not None:
            self._job_attempts += 1
        return call

    async def _attempt(self, call: QueuedCall) -> bool:
        """One attempt of ``call`` (counted by :meth:`_attempting`) to its end, stored. False when
        it never reached the device although the device looked ready (``DEVICE_OFFLINE``: gone
        meanwhile, or connected but not able to take this call, e.g. not subscribed to its topic):
        trying again at once would spin, so its next try is the sweep's."""
        job = call.job_id is not None
        try:
            try:
                outcome = await self.engine.invoke(call.call(), "job" if job else "native")
            except HubError as exc:
                await self._attempt_failed(call, exc)
                return exc.kind is not ErrorKind.DEVICE_OFFLINE
            done = call.finished(
                CallState.SUCCEEDED, self.clock(), status=outcome.status, payload=outcome.payload
            )
            await self._settle(call, done)
            return True
        finally:
            if job:
                self._job_attempts -= 1
                self._job_attempt_ended.set()

    async def _attempt_failed(self, call: QueuedCall, exc: HubError) -> None:
        now = self.clock()
        if exc.kind is ErrorKind.DEVICE_OFFLINE:  # it never reached the device
            await self._settle(call, call.unclaimed())
            return
        await self._settle(
            call, self._after_attempt(call, exc.kind.spec.azure_name, exc.message, now, exc.kind)
        )

    def _after_attempt(
        self, call: QueuedCall, code: str, message: str, now: float, kind: ErrorKind | None
    ) -> QueuedCall:
        if (kind is None or kind in RETRYABLE) and call.attempt < call.attempts and now < call.expires_time:
            return call.requeued()
        return call.finished(CallState.FAILED, now, error=(code, message))

    async def _settle(self, claimed: QueuedCall, new: QueuedCall) -> None:
        if await self._settles.submit((new, CallState.SENT, self.node)):
            self._notify(new)
        else:
            log.info("queued call %s was settled elsewhere meanwhile", claimed.call_id)

    def _notify(self, call: QueuedCall) -> None:
        """``call`` (as just stored) changed: wake its waiters; tell the listener if it ended."""
        event = self._changed.pop(call.call_id, None)
        if event is not None:
            event.set()
        if call.state.terminal and self.on_ended is not None:
            self.on_ended(call)

    # -- the sweep ----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(
            self._sweep_forever(), name="queued-calls sweep"
        )

    def stop_claiming(self) -> None:
        """Claim no more calls (first, before the engine stops: a call claimed then would fail)."""
        self._stopping = True

    async def stop(self, grace: float = 2.0) -> None:
        """Stop delivering: no more claims; attempts in flight (answered ``HUB_STOPPING`` by the
        engine's stop) are settled within ``grace`` seconds, then the rest is cancelled (a call
        left ``sent`` is settled by the next sweep once its lease ends, here or on another node).
        The ends of attempts not written yet are written before it returns."""
        self._stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        # A batch that cannot be written: its calls' leases end and the sweep settles them.
        await self._settles.flush()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except HubError as exc:
                log.warning("queued calls: sweep skipped: %s", exc.message)
            except Exception:
                log.exception("queued calls: sweep failed")

    async def sweep(self) -> None:
        """Expire, settle abandoned attempts, and deliver to devices that are ready."""
        now = self.clock()
        for call in await self.store.due_calls(now):
            if call.state is CallState.QUEUED:
                expired = call.finished(
                    CallState.EXPIRED,
                    now,
                    error=("Expired", "The device was not online (ready for calls) before the call expired."),
                )
                if await self.store.update_call(expired, CallState.QUEUED):
                    self._notify(expired)
            else:  # sent, and its node never settled it: that node is gone
                new = self._after_attempt(
                    call, "NodeLost", "The hub node delivering the call stopped before it ended.", now, None
                )
                if await self.store.update_call(new, CallState.SENT, owner=call.owner):
                    self._notify(new)
        for target in await self.store.queued_targets():
            self.kick(target)
