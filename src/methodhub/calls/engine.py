"""The call engine: one place that turns a :class:`Call` into an outcome or a typed error.

Every front door (Azure REST, Alibaba POP, ...) calls :meth:`CallEngine.invoke`; the timeout,
offline and connect-wait rules live here once. The engine knows neither MQTT nor HTTP, and not
whether the device is on this node or another: its :class:`~methodhub.calls.ports.CallCarrier` does.
"""

from __future__ import annotations

import asyncio
import logging
import time

from methodhub.calls.model import Call, CallOrigin, CallOutcome
from methodhub.calls.ports import CallCarrier, CallRecorder, IdentityLookup
from methodhub.calls.quotas import Quotas, Throttled
from methodhub.errors import ErrorKind, HubError
from methodhub.metrics import Metrics

log = logging.getLogger("methodhub.calls")

REFUSED_BACKOFF = 0.05
"""Seconds before re-delivering a call a *ready* device refused as offline (it is connected but not
subscribed to that method); doubled on each refusal up to :data:`MAX_REFUSED_BACKOFF`."""
MAX_REFUSED_BACKOFF = 1.0

CONNECT_TIMEOUT_INFO = "connect_timeout"
"""``HubError.info`` key of a ``DEVICE_OFFLINE`` raised after waiting: the seconds waited (a float);
each front door reports it in its own words."""


class CallEngine:
    """Runs calls: dispatch through the router, response timer, offline and connect-wait rules.

    Args:
        router: carries calls to the node holding the device.
        identities: tells "unknown device" from "offline device" (asked only when offline).
        metrics: counts outcomes (``methodhub_calls_total{outcome=...}``).
        recorder: told each call made with an origin once it ended (the call history); None: none.
        quotas: the rate limits on calls made with an origin (a front door's); None: none.
    """

    def __init__(
        self,
        router: CallCarrier,
        identities: IdentityLookup,
        metrics: Metrics | None = None,
        recorder: CallRecorder | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self.recorder = recorder
        self.quotas = quotas
        self._router = router
        self._identities = identities
        self._metrics = metrics or Metrics()
        self._background: set[asyncio.Task[None]] = set()
        self._runs: set[_CallRun] = set()
        """Calls not yet answered: what :meth:`stop` answers at once."""
        self._stopping: HubError | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop the engine runs on, kept from its first call: ``asyncio.get_running_loop()``
        costs a ``getpid`` system call on Python 3.11, once per call on the hot path (issue 16)."""

    def invoke(
        self, call: Call, front_door: str = "azure", origin: CallOrigin | None = None
    ) -> asyncio.Future[CallOutcome]:
        """Start ``call``, come in through ``front_door`` (``azure``, ``aliyun``, ``native``, ``job``:
        a label of ``methodhub_call_duration_seconds``); the returned future ends with the device's
        outcome or a ``HubError``:

        * ``DEVICE_NOT_FOUND`` / ``MODULE_NOT_FOUND``: no such identity;
        * ``DEVICE_OFFLINE``: not ready now, nor within ``call.connect_timeout``;
        * ``CALL_TIMEOUT``: delivered, but no answer within ``call.response_timeout``;
        * ``DEVICE_DISCONNECTED``: the device went away before answering (reported at once);
        * ``SERVICE_UNAVAILABLE``: the registry could not be asked;
        * ``HUB_STOPPING``: the hub is stopping (:meth:`stop`);
        * ``THROTTLED`` (a :class:`~methodhub.calls.quotas.Throttled`): a call with an ``origin``
          over the hub's or its caller's call rate (the engine's ``quotas``).

        Cancelling the returned future abandons the call (the device's late answer is dropped).
        With an ``origin`` (a front door's call; a queued call's attempts have none, their store
        records them) and a recorder, the call is told to the recorder once it ended.
        """
        loop = self._loop
        if loop is None or loop.is_closed():  # (a closed one: a test that ran the engine on another)
            loop = self._loop = asyncio.get_running_loop()
        result: asyncio.Future[CallOutcome] = loop.create_future()
        started = self._metrics.call_started(front_door)
        recorder = self.recorder if origin is not None else None
        refusal: HubError | None = self._stopping
        if refusal is None and self.quotas is not None and origin is not None:
            try:
                self.quotas.check_call(origin.caller)
            except Throttled as throttled:
                refusal = throttled
        if refusal is not None:  # refused at once: stopping, or over a quota
            result.set_exception(refusal)
            self._count(
                "throttled" if isinstance(refusal, Throttled) else ErrorKind.HUB_STOPPING.name.lower()
            )
            self._metrics.call_ended(front_door, started, result)
            if recorder is not None and origin is not None:  # a refused call is in the history too
                recorder.record(call, origin, time.time(), None, refusal)
            return result
        run = _CallRun(self, call, result, loop.time() + call.connect_timeout, front_door, started)
        if recorder is not None:  # told when the call ended (_CallRun._on_result_done)
            run.recorder, run.origin, run.started = recorder, origin, time.time()
        self._runs.add(run)
        run.attempt()
        return run.result

    def stop(self) -> None:
        """The hub is stopping: answer every call not yet answered with ``HUB_STOPPING`` now (those
        delivered and waiting for the device, and those waiting for it to connect), abandon their
        deliveries, and refuse new calls the same way. Idempotent."""
        if self._stopping is None:
            self._stopping = HubError(ErrorKind.HUB_STOPPING)
        for task in list(self._background):
            task.cancel()
        runs, self._runs = self._runs, set()
        for run in runs:
            run.stop(self._stopping)

    def _count(self, outcome: str) -> None:
        self._metrics.calls.inc(outcome)

    def _offline(self, run: _CallRun) -> None:
        if self._stopping is not None:  # a delivery refused during stop: do not start waiting
            run.fail(self._stopping)
            return
        task = asyncio.get_running_loop().create_task(self._wait_for_device(run))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _wait_for_device(self, run: _CallRun) -> None:
        """Slow path: the device was not ready. Unknown → not found; else wait up to the deadline."""
        call = run.call
        try:
            if not run.identity_checked:
                device_id, _, module_id = call.target.partition("/")
                try:
                    identity = await self._identities.get_identity(device_id, module_id or None)
                except HubError:
                    raise
                except Exception as exc:
                    log.warning("registry lookup failed for %s: %s", call.target, exc)
                    raise HubError(
                        ErrorKind.SERVICE_UNAVAILABLE, "The device registry is unreachable; retry later."
                    ) from exc
                if identity is None:
                    kind = ErrorKind.MODULE_NOT_FOUND if module_id else ErrorKind.DEVICE_NOT_FOUND
                    what = (
                        f"module '{module_id}' on device '{device_id}'"
                        if module_id
                        else f"device '{device_id}'"
                    )
                    raise HubError(kind, f"No {what} is registered.")
                run.identity_checked = True
            loop = asyncio.get_running_loop()
            while (remaining := run.connect_deadline - loop.time()) > 0:
                if run.result.done():
                    return
                if await self._router.wait_ready(call.target, remaining):
                    if run.refused_while_ready:
                        # The device is ready but refused this call (e.g. not subscribed to this
                        # method): wait_ready answers at once, so back off instead of spinning
                        # until it subscribes or the connect deadline passes.
                        pause = min(REFUSED_BACKOFF * 2 ** (run.refused_while_ready - 1), MAX_REFUSED_BACKOFF)
                        if pause >= run.connect_deadline - loop.time() and run.refusal is not None:
                            raise run.refusal  # connected all along: its own reason (e.g. not subscribed)
                        await asyncio.sleep(pause)
                        if run.result.done():
                            return
                    if not run.result.done():
                        run.refused_while_ready += 1
                        run.attempt()
                    return
            raise HubError(
                ErrorKind.DEVICE_OFFLINE,
                f"Device '{call.target}' is not online"
                + (
                    f" and did not connect within {call.connect_timeout:g} s."
                    if call.connect_timeout
                    else "."
                ),
                {CONNECT_TIMEOUT_INFO: call.connect_timeout},
            )
        except HubError as exc:
            run.fail(exc)


class _CallRun:
    """The state of one call: its result future, the current delivery attempt and its timer."""

    __slots__ = (
        "call",
        "connect_deadline",
        "engine",
        "front_door",
        "identity_checked",
        "origin",
        "recorder",
        "refusal",
        "refused_while_ready",
        "reply",
        "result",
        "started",
        "timed_from",
        "timer",
    )

    def __init__(
        self,
        engine: CallEngine,
        call: Call,
        result: asyncio.Future[CallOutcome],
        connect_deadline: float,
        front_door: str,
        timed_from: float,
    ) -> None:
        self.engine = engine
        self.front_door = front_door
        self.timed_from = timed_from
        """When the call started (``perf_counter()``), for its latency metric."""
        self.call = call
        self.result = result
        self.connect_deadline = connect_deadline
        self.identity_checked = False
        self.refused_while_ready = 0
        self.refusal: HubError | None = None
        """The latest DEVICE_OFFLINE of a delivery attempt."""
        """Attempts made after the carrier said the device is ready (each refused: offline)."""
        self.reply: asyncio.Future[CallOutcome] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.recorder: CallRecorder | None = None
        """Told the call once it ended, with its ``origin`` and ``started`` (epoch seconds)."""
        self.origin: CallOrigin | None = None
        self.started = 0.0
        result.add_done_callback(self._on_result_done)

    def attempt(self) -> None:
        """Deliver once: arm the response timer, dispatch, and react when the reply completes."""
        loop = self.result.get_loop()
        reply: asyncio.Future[CallOutcome] = loop.create_future()
        self.reply = reply
        self.timer = loop.call_later(self.call.response_timeout, self._expire, reply)
        reply.add_done_callback(self._on_reply)
        self.engine._router.dispatch(self.call, reply)

    def _expire(self, reply: asyncio.Future[CallOutcome]) -> None:
        if not reply.done():
            reply.set_exception(
                HubError(
                    ErrorKind.CALL_TIMEOUT,
                    f"Timed out waiting for the response from device '{self.call.target}' "
                    f"({self.call.response_timeout:g} s).",
                )
            )

    def _on_reply(self, reply: asyncio.Future[CallOutcome]) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        # Retrieve the exception first, even when the call was answered meanwhile (e.g. stop() in
        # the iteration this callback waited for): unretrieved, asyncio logs it with a traceback.
        exc = None if reply.cancelled() else reply.exception()
        if self.result.done():
            return
        if reply.cancelled():
            self.result.cancel()
            return
        if exc is None:
            self.result.set_result(reply.result())
            self.engine._count("success")
        elif isinstance(exc, HubError) and exc.kind is ErrorKind.DEVICE_OFFLINE:
            self.refusal = exc
            self.engine._offline(self)
        else:
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        if self.result.done():
            return
        self.result.set_exception(exc)
        self.engine._count(exc.kind.name.lower() if isinstance(exc, HubError) else "error")

    def stop(self, exc: HubError) -> None:
        """Answer now with ``exc`` and abandon the delivery (the device's late answer is dropped)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.fail(exc)
        if self.reply is not None and not self.reply.done():
            self.reply.cancel()

    def _on_result_done(self, result: asyncio.Future[CallOutcome]) -> None:
        self.engine._runs.discard(self)
        self.engine._metrics.call_ended(self.front_door, self.timed_from, result)
        # The caller gave up (e.g. the HTTP client went away): abandon the delivery attempt so the
        # session forgets the request id and a late answer is dropped.
        if result.cancelled():
            self.engine._count("abandoned")
            if self.reply is not None and not self.reply.done():
                self.reply.cancel()
            if self.recorder is not None and self.origin is not None:
                self.recorder.record(self.call, self.origin, self.started, None, None)
        elif self.recorder is not None and self.origin is not None:
            exc = result.exception()
            outcome = result.result() if exc is None else None
            self.recorder.record(self.call, self.origin, self.started, outcome, exc)
