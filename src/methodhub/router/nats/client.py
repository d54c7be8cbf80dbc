"""nats-py's client with a synchronous fast path: the one module of methodhub that imports nats-py.

nats-py's public ``publish``/``subscribe``/``unsubscribe`` are coroutines: each awaits a queue put
that wakes its flusher task, and each subscription's messages go through a queue and a task of
their own. A call crossing nodes would pay for several task switches, and a node holds one call
subscription per connected device (a task each). nats-py (checked up to 2.16.0) has no public
synchronous publish or callback-in-the-reader subscription, so :class:`BusClient` adds them on its
internals; every touch of one is marked ``nats-py internal`` below with why, and ``pyproject.toml``
bounds the version (``<3``). tests/cluster exercise every one of them against a real nats-server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from nats.aio.client import Client as _NatsClient
from nats.protocol import command as _command  # nats-py internal: its SUB/UNSUB line encoders

log = logging.getLogger("methodhub.router")

RETIRED_GRACE = 5.0
"""Seconds an unsubscribed subscription's messages are still handled: NATS may have routed some to
this node before it processed the UNSUB (another node's call right after a device left, e.g. once
it was deleted). Handled, a call is answered "not ready here" and its caller's engine decides
(registry: not found, or wait for the device); dropped, it would be a call lost in flight."""

Handler = Callable[["FastSub", bytes, bytes, bytes, "bytes | None"], None]
"""Called in the client's reader with (subscription, subject, reply, data, headers)."""


class FastSub:
    """A subscription whose messages go straight to ``handler`` from the client's reader.

    It stands in for nats-py's ``Subscription`` in the client's subscription table (so nats-py
    replays it after a reconnect and forgets it on close) without its per-subscription queue and
    task.
    """

    __slots__ = ("_id", "_queue", "_subject", "handler", "retired", "target")
    # nats-py internal: the attributes nats-py reads from the entries of ``Client._subs`` when it
    # reconnects (_id, _subject, _queue, _max_msgs, _received: to send SUB again) and when it closes
    # (_wait_for_msgs_task, _message_iterator, _pending_next_msgs_calls: to stop a subscription's
    # task); _jsi is read for JetStream subscriptions. Checked against nats-py 2.16.0. ``drain()``
    # would call ``_drain()``, which this class lacks: the router never drains.
    _max_msgs = 0
    _received = 0
    _wait_for_msgs_task = None
    _message_iterator = None
    _pending_next_msgs_calls = None
    _jsi = None

    def __init__(self, sid: int, subject: str, queue: str, handler: Handler, target: str) -> None:
        self._id = sid
        self._subject = subject
        self._queue = queue
        self.handler = handler
        self.target = target
        """The device this subscription is about ("" for the node's inbox)."""
        self.retired = False
        """Unsubscribed: only messages NATS routed before the UNSUB still arrive (RETIRED_GRACE)."""


class BusClient(_NatsClient):
    """nats-py's client plus synchronous subscribe, unsubscribe and publish for the call path.

    These append protocol lines to the same pending buffer nats-py's flusher writes (and writes
    again after a reconnect), and messages of :class:`FastSub` subscriptions are handed to their
    handler inside the reader. Everything else (connect, reconnect, PING/PONG, ``request``,
    ``flush``, ``close``) is nats-py's own.

    The attributes and methods this class adds (``_retired``, ``_write_scheduled``,
    ``_queue_line``, ``_write_pending``) do not exist in nats-py 2.16.0's client.
    """

    # nats-py internal: the client's write buffer and its size, written by its flusher task and,
    # after a reconnect, by the reconnect logic; declared here for the type checker.
    _pending: list[bytes]
    _pending_data_size: int

    def __init__(self) -> None:
        super().__init__()
        self._retired: dict[int, tuple[FastSub, float]] = {}
        """Subscriptions unsubscribed less than RETIRED_GRACE ago, oldest first, with when."""

    # nats-py internal: the coroutine nats-py's protocol parser awaits for every MSG/HMSG, with
    # (sid, subject, reply, data, headers). Overridden so that FastSub messages skip building a
    # ``Msg`` and queueing it to a subscription task. Checked against nats-py 2.16.0.
    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        # nats-py internal: its subscription table, sid → subscription (a FastSub of ours, or its own)
        sub: object = self._subs.get(sid)
        if sub is None and (retired := self._retired.get(sid)) is not None:
            sub = retired[0]
        if type(sub) is FastSub:
            try:
                sub.handler(sub, subject, reply, data, headers)
            except Exception:
                log.exception("cluster message on %s could not be handled", subject.decode(errors="replace"))
            return
        await super()._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]

    def sub_nowait(self, subject: str, queue: str, handler: Handler, target: str = "") -> FastSub:
        """Subscribe now (the SUB goes out with this loop iteration's writes)."""
        # nats-py internal: the client's subscription id counter (``_sid``) and table (``_subs``),
        # shared with its own ``subscribe`` so ids never collide; an entry in ``_subs`` is what
        # nats-py sends SUB for again after reconnecting. Checked against nats-py 2.16.0.
        self._sid += 1
        sub = FastSub(self._sid, subject, queue, handler, target)
        self._subs[sub._id] = sub  # type: ignore[assignment]
        if self.is_connected:  # else nats-py sends it when it reconnects
            self._queue_line(_command.sub_cmd(subject, queue, sub._id))
        return sub

    def unsub_nowait(self, sub: FastSub) -> None:
        """Unsubscribe now; messages NATS routed before it processed the UNSUB are still handled
        (``sub.retired`` is then True) for :data:`RETIRED_GRACE` seconds."""
        # nats-py internal: removing the entry from ``_subs`` keeps nats-py from re-subscribing.
        if self._subs.pop(sub._id, None) is None:
            return
        sub.retired = True
        self._retired[sub._id] = (sub, time.monotonic())
        if self.is_connected:
            self._queue_line(_command.unsub_cmd(sub._id, 0))

    def forget_retired(self) -> None:
        """Forget subscriptions unsubscribed more than RETIRED_GRACE ago."""
        retired = self._retired
        oldest = time.monotonic() - RETIRED_GRACE
        for sid, (_, at) in list(retired.items()):
            if at > oldest:
                break
            del retired[sid]

    def pub_nowait(self, subject: bytes, payload: bytes, reply: bytes = b"") -> bool:
        """Queue a PUB; False (nothing sent) while disconnected or when the payload is too large."""
        # nats-py internal: ``_max_payload`` is what the public ``max_payload`` property returns,
        # read directly on the per-call path (no property call). Checked against nats-py 2.16.0.
        if not self.is_connected or len(payload) > self._max_payload:
            return False
        self._queue_line(b"PUB %b %b %d\r\n%b\r\n" % (subject, reply, len(payload), payload))
        return True

    @property
    def supports_headers(self) -> bool:
        """Whether the server speaks headers (NATS ≥ 2.2): needed for "no responders"."""
        # nats-py internal: the server's INFO, which nats-py keeps but does not expose (the public
        # ``connected_server_version`` says the version, not whether headers are enabled).
        return bool(self._server_info.get("headers"))

    def reconnect_forever(self) -> None:
        """From now on, reconnect for ever (``connect`` was given a bounded number of attempts so
        that a node that cannot reach NATS at start-up says so)."""
        # nats-py internal: ``options`` is a public attribute, but that nats-py reads this entry
        # afresh at each reconnect (rather than once in connect) is its implementation. Checked
        # against nats-py 2.16.0.
        self.options["max_reconnect_attempts"] = -1

    _write_scheduled = False

    def _queue_line(self, line: bytes) -> None:
        self._pending.append(line)  # nats-py internal: its write buffer (see the class)
        self._pending_data_size += len(line)
        if not self._write_scheduled:
            # One write per loop iteration for everything queued meanwhile: a callback, cheaper
            # than waking nats-py's flusher task for every call.
            self._write_scheduled = True
            asyncio.get_running_loop().call_soon(self._write_pending)

    def _write_pending(self) -> None:
        self._write_scheduled = False
        # nats-py internal: ``_transport`` is the connection nats-py's flusher writes to (its
        # transport wrapper, with ``writelines``); replaced on reconnect. Checked against 2.16.0.
        transport = self._transport
        if not self._pending or not self.is_connected or transport is None:
            return  # nats-py writes what is pending once it has reconnected
        pending, self._pending = self._pending, []
        self._pending_data_size = 0
        try:
            transport.writelines(pending)
        except Exception as exc:  # the connection broke: nats-py's reader notices and reconnects
            log.debug("cluster: write to NATS failed: %s", exc)
