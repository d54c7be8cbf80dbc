"""The NATS router: carries calls between the nodes of a cluster (docs/cluster.md).

Every node connects to the same NATS server (or NATS cluster). Subjects (``P`` is the prefix,
``mh`` by default; a *token* is the target key made safe for a subject, see :func:`subject_token`):

``P.call.{token}``
    The device's *call subject*. The node a device is connected to subscribes to it (queue group
    ``node``, so one node gets each message even while two briefly overlap) when the connection
    carries the device's session, and unsubscribes when the connection ends. Messages, by first byte:

    * ``C`` a call (``C`` + JSON of the call's fields + ``\\n`` + the payload bytes), with a reply
      subject in the caller's inbox; answered with ``O{status}\\n{payload}`` (the device's answer) or
      ``E`` + JSON ``[kind, message, info]`` (a :class:`~methodhub.errors.HubError`; ``DEVICE_OFFLINE``
      when connected but not yet subscribed to method requests, or just let go: a call NATS routed
      here before it processed this node's UNSUB is answered so, never dropped). With nobody
      subscribed, NATS itself answers "no responders" (status 503) at once: the device is offline.
    * ``P`` + a call's reply subject: "do you still hold this call?" — ``1`` or ``0``.
    * ``Q``: "is the device ready?" — ``1`` or ``0``.
    * ``S``: "is the device connected here, since when?" — ``1{epoch seconds}`` or ``0`` (for the
      registry's ``connectionState``).
    * ``T`` + node id: "the device connected to that node": the node holding the older connection
      closes it (MQTT session takeover, across nodes). Sent *before* the new holder subscribes, so it
      never reaches the new holder itself.

``P.ready.{token}``
    Published (empty) when a session becomes ready; subscribed only while a call waits for that
    device to connect (``connectTimeoutInSeconds``), by the node where the call waits.

``P.r.{node}.*``
    A node's inbox: answers to its calls (``{n}``) and to its probes (``p{n}``, ``q{n}``).

A device connected to this node is reached without NATS (the in-process fast path of
:class:`~methodhub.router.local.LocalRouter`). A node that dies cannot answer for its calls: the
calling node asks the device's call subject about every remote call older than
:data:`PROBE_INTERVAL` once per interval, and fails the call with ``DEVICE_DISCONNECTED`` when the
answer is "no" or no answer came by the next tick, so a dead or unreachable node costs a caller at
most about ``3 × PROBE_INTERVAL`` (3 s), not the response timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections.abc import Callable
from functools import partial

import orjson
from nats.aio.client import Client as _NatsClient
from nats.protocol import command as _command

from methodhub.calls.model import Call, CallKind, CallOutcome
from methodhub.errors import ErrorKind, HubError
from methodhub.router.base import RouterUnavailable
from methodhub.router.local import LocalRouter
from methodhub.router.presence import CallLink, ReleasableLink

log = logging.getLogger("methodhub.router")

DEFAULT_PREFIX = "mh"
QUEUE_GROUP = "node"
PROBE_INTERVAL = 1.0
STATE_TIMEOUT = 0.5
"""Seconds a registry read waits for another node to say whether it holds a device's connection."""
SETTLE_TIMEOUT = 2
"""Seconds a connecting device's CONNACK waits at most for NATS to confirm its call subscription."""
"""Seconds between checks of remote calls in flight (and of calls this node serves for others)."""
READY_REPROBE = 1.0
"""While a call waits for its device to connect, ask again this often (a missed readiness message,
e.g. while NATS servers of a cluster propagate interest, costs at most this long)."""
SERVE_GRACE = 2.0
"""A call this node serves for another node is forgotten this long after its response timeout (the
caller has answered it with a timeout by then)."""
CONNECT_TIMEOUT = 2
"""Seconds for each attempt to reach the NATS server at start-up (two attempts per server)."""
RETIRED_GRACE = 5.0
"""Seconds an unsubscribed subscription's messages are still handled: NATS may have routed some to
this node before it processed the UNSUB (another node's call right after a device left, e.g. once
it was deleted). Handled, a call is answered "not ready here" and its caller's engine decides
(registry: not found, or wait for the device); dropped, it would be a call lost in flight."""

_SAFE = re.compile(r"[A-Za-z0-9_-]+")
_SAFE_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_NO_RESPONDERS = b"NATS/1.0 503"


def subject_token(target: str) -> str:
    """``target`` as one NATS subject token: ``[A-Za-z0-9_-]`` stay, every other UTF-8 byte
    becomes ``~XX`` (hex). Reversible, and never contains ``.``, ``*``, ``>`` or white space."""
    if _SAFE.fullmatch(target):
        return target
    return "".join(chr(b) if b in _SAFE_CHARS else f"~{b:02X}" for b in target.encode())


def target_of(token: str) -> str:
    """The inverse of :func:`subject_token`."""
    if "~" not in token:
        return token
    out = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "~":
            out.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(token[i]))
            i += 1
    return out.decode()


# -- wire format -------------------------------------------------------------------------------------


def encode_call(call: Call) -> bytes:
    meta = orjson.dumps(
        (
            call.target,
            call.method,
            call.kind.value,
            call.response_timeout,
            call.connect_timeout,
            call.dialect_data,
        )
    )
    return b"C" + meta + b"\n" + call.payload


def decode_call(data: bytes) -> Call:
    end = data.index(b"\n")
    target, method, kind, response_timeout, connect_timeout, dialect_data = orjson.loads(data[1:end])
    return Call(
        target,
        method,
        data[end + 1 :],
        response_timeout,
        connect_timeout,
        CallKind(kind),
        dialect_data,
    )


def encode_result(future: asyncio.Future[CallOutcome]) -> bytes:
    exc = future.exception()
    if exc is None:
        outcome = future.result()
        return b"O%d\n%b" % (outcome.status, outcome.payload)
    if isinstance(exc, HubError):
        return encode_error(exc)
    return b"E" + orjson.dumps((ErrorKind.SERVER_ERROR.name, f"The serving node failed: {exc}", {}))


def encode_error(error: HubError) -> bytes:
    return b"E" + orjson.dumps((error.kind.name, error.message, error.info))


def decode_result(data: bytes) -> CallOutcome | HubError:
    if data[:1] == b"O":
        end = data.index(b"\n")
        return CallOutcome(int(data[1:end]), data[end + 1 :])
    try:
        name, message, info = orjson.loads(data[1:])
        return HubError(ErrorKind[name], message, info)
    except (ValueError, KeyError, TypeError):
        return HubError(ErrorKind.SERVER_ERROR, "Another node sent an answer this node cannot read.")


# -- a nats-py client with a synchronous fast path -----------------------------------------------------

Handler = Callable[["_FastSub", bytes, bytes, bytes, "bytes | None"], None]


class _FastSub:
    """A subscription whose messages go straight to ``handler`` from the client's reader.

    It stands in for nats-py's ``Subscription`` in ``Client._subs`` (so nats-py replays it after a
    reconnect and cleans it up on close) without its per-subscription queue and task: a node holds
    one call subscription per connected device.
    """

    __slots__ = ("_id", "_queue", "_subject", "handler", "retired", "target")
    # What nats-py reads from entries of Client._subs when it reconnects or closes.
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
        self.retired = False
        """Unsubscribed: only messages NATS routed before the UNSUB still arrive (RETIRED_GRACE)."""


class _BusClient(_NatsClient):
    """nats-py's client plus synchronous subscribe, unsubscribe and publish for the call path.

    nats-py's own ``publish``/``subscribe`` are coroutines and deliver each subscription's messages
    through a queue and a task; a call crossing nodes would pay for several task switches. These
    methods append protocol lines to the same pending buffer nats-py's flusher writes, and messages
    of :class:`_FastSub` subscriptions are handed to their handler inside the reader. They rely on
    nats-py internals (``_pending``, ``_flush_queue``, ``_subs``, ``_process_msg``), which is why
    ``pyproject.toml`` bounds the nats-py version; tests/cluster exercise every one of them.
    """

    _pending: list[bytes]  # nats-py's write buffer (its own attributes, declared for the type checker)
    _pending_data_size: int

    def __init__(self) -> None:
        super().__init__()
        self._retired: dict[int, tuple[_FastSub, float]] = {}
        """Subscriptions unsubscribed less than RETIRED_GRACE ago, oldest first, with when."""

    async def _process_msg(  # type: ignore[override]
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        sub = self._subs.get(sid)
        if sub is None and (retired := self._retired.get(sid)) is not None:
            sub = retired[0]  # type: ignore[assignment]
        if type(sub) is _FastSub:
            try:
                sub.handler(sub, subject, reply, data, headers)
            except Exception:
                log.exception("cluster message on %s could not be handled", subject.decode(errors="replace"))
            return
        await super()._process_msg(sid, subject, reply, data, headers)  # type: ignore[arg-type]

    def sub_nowait(self, subject: str, queue: str, handler: Handler, target: str = "") -> _FastSub:
        self._sid += 1
        sub = _FastSub(self._sid, subject, queue, handler, target)
        self._subs[sub._id] = sub  # type: ignore[assignment]
        if self.is_connected:  # else nats-py sends it when it reconnects
            self._queue_line(_command.sub_cmd(subject, queue, sub._id))
        return sub

    def unsub_nowait(self, sub: _FastSub) -> None:
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
        if not self.is_connected or len(payload) > self._max_payload:
            return False
        self._queue_line(b"PUB %b %b %d\r\n%b\r\n" % (subject, reply, len(payload), payload))
        return True

    _write_scheduled = False

    def _queue_line(self, line: bytes) -> None:
        self._pending.append(line)
        self._pending_data_size += len(line)
        if not self._write_scheduled:
            # One write per loop iteration for everything queued meanwhile: a callback, cheaper
            # than waking nats-py's flusher task for every call.
            self._write_scheduled = True
            asyncio.get_running_loop().call_soon(self._write_pending)

    def _write_pending(self) -> None:
        self._write_scheduled = False
        transport = self._transport
        if not self._pending or not self.is_connected or transport is None:
            return  # nats-py writes what is pending once it has reconnected
        pending, self._pending = self._pending, []
        self._pending_data_size = 0
        try:
            transport.writelines(pending)
        except Exception as exc:  # the connection broke: nats-py's reader notices and reconnects
            log.debug("cluster: write to NATS failed: %s", exc)


# -- the router ---------------------------------------------------------------------------------------


class _Remote:
    """A call this node sent to another node, until it is answered."""

    __slots__ = ("probe", "reply", "started", "subject")

    def __init__(self, reply: asyncio.Future[CallOutcome], subject: bytes, started: float) -> None:
        self.reply = reply
        self.subject = subject
        self.started = started
        self.probe = 0
        """The sequence number of an unanswered probe about this call (0: none)."""


class NatsRouter(LocalRouter):
    """Routes calls to this node's sessions directly and to other nodes' through NATS.

    Args:
        url: the NATS server(s), e.g. ``nats://10.0.0.5:4222`` (comma-separated for several).
        node: this node's name (unique in the cluster; used in its inbox subject).
        prefix: the first token of every subject, so several hubs can share one NATS.
    """

    spans_nodes = True

    def __init__(self, url: str, node: str, prefix: str = DEFAULT_PREFIX) -> None:
        super().__init__()
        self.url = url
        self.node = subject_token(node)
        self.prefix = prefix
        self._client: _BusClient | None = None
        self._seq = itertools.count(1)
        self._inbox = f"{prefix}.r.{self.node}."
        self._inbox_bytes = self._inbox.encode()
        self._calls: dict[int, _Remote] = {}
        self._probes: dict[int, int] = {}
        self._ready_probes: dict[int, tuple[str, float]] = {}
        self._serving: dict[bytes, tuple[asyncio.Future[CallOutcome], float]] = {}
        self._call_subs: dict[str, _FastSub] = {}
        self._settling: asyncio.Future[None] | None = None
        self._settling_sent = False
        self._held: dict[str, ReleasableLink] = {}
        """Sessions connected here (ready or not), by target: what a takeover message releases."""
        self._ready_subs: dict[str, _FastSub] = {}
        self._ready_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._tick: asyncio.Task[None] | None = None
        self._takeover = b"T" + self.node.encode()
        self._outage_logged = False
        self._stopping = False
        self._refusal: bytes | None = None
        """While the node stops (:meth:`stop_serving`): the answer to calls from other nodes."""
        self._started = False
        self._start_error: Exception | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        client = _BusClient()
        try:
            await client.connect(
                [server.strip() for server in self.url.split(",") if server.strip()],
                name=f"methodhub {self.node}",
                connect_timeout=CONNECT_TIMEOUT,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.5,  # type: ignore[arg-type]  # nats-py annotates int, sleeps a float
                ping_interval=5,
                max_outstanding_pings=2,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except Exception as exc:
            with contextlib.suppress(Exception):
                await client.close()
            why = self._start_error or exc
            raise RouterUnavailable(
                f"cannot reach NATS at {self.url} ({why or type(why).__name__}); a cluster node needs a "
                "running NATS server (e.g. `nats-server -a 127.0.0.1 -p 4222`; Debian: apt-get install "
                "nats-server), or drop --nats to run a single node"
            ) from exc
        if not client._server_info.get("headers"):  # "no responders" (offline at once) needs NATS ≥ 2.2
            await client.close()
            raise RouterUnavailable(
                f"the NATS server at {self.url} is too old (headers unsupported); use ≥ 2.2"
            )
        client.options["max_reconnect_attempts"] = -1  # from now on, reconnect for ever
        self._client = client
        client.sub_nowait(f"{self._inbox}*", "", self._on_inbox)
        await client.flush()
        self._started = True
        self._tick = asyncio.get_running_loop().create_task(self._run_ticks(), name="methodhub-cluster")
        log.info("cluster: node %s connected to NATS at %s", self.node, self.url)

    async def stop(self) -> None:
        self._stopping = True
        if self._tick is not None:
            self._tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick
            self._tick = None
        self._fail_remote(ErrorKind.HUB_STOPPING, ErrorKind.HUB_STOPPING.spec.default_message)
        for waiters in self._ready_waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        self._call_subs.clear()
        self._held.clear()
        self._ready_subs.clear()
        await super().stop()

    def stop_serving(self, error: HubError) -> None:
        self._refusal = encode_error(error)
        for future, _ in list(self._serving.values()):
            if not future.done():
                future.set_exception(error)  # _answer sends it to the calling node

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    # -- engine side ----------------------------------------------------------------------------------

    def dispatch(self, call: Call, reply: asyncio.Future[CallOutcome]) -> None:
        link = self._links.get(call.target)
        if link is not None:
            link.submit(call, reply)
            return
        if reply.done():
            return
        client = self._client
        subject = f"{self.prefix}.call.{subject_token(call.target)}".encode()
        n = next(self._seq)
        if client is None or not client.pub_nowait(
            subject, encode_call(call), self._inbox_bytes + str(n).encode()
        ):
            reply.set_exception(
                HubError(
                    ErrorKind.SERVICE_UNAVAILABLE,
                    f"Device '{call.target}' is not connected to this hub node, and this node cannot "
                    "reach the other nodes right now (NATS is unreachable); retry later.",
                )
            )
            return
        self._calls[n] = _Remote(reply, subject, reply.get_loop().time())

    async def wait_ready(self, target: str, timeout: float) -> bool:
        if target in self._links:
            return True
        if timeout <= 0:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiter: asyncio.Future[None] = loop.create_future()
        waiters = self._ready_waiters.setdefault(target, [])
        waiters.append(waiter)
        token = subject_token(target)
        client = self._client
        if client is not None and target not in self._ready_subs:
            self._ready_subs[target] = client.sub_nowait(
                f"{self.prefix}.ready.{token}", "", self._on_ready, target
            )
        try:
            while True:
                # Subscribed to readiness first, then asked: a device that becomes ready after the
                # question is seen by the subscription, one that was ready before answers "1".
                self._ask_ready(target, token)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                await asyncio.wait((waiter,), timeout=min(remaining, READY_REPROBE))
                if waiter.done():
                    return not waiter.cancelled()
                if target in self._links:
                    return True
        finally:
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._ready_waiters.pop(target, None)
                sub = self._ready_subs.pop(target, None)
                if sub is not None and self._client is not None:
                    self._client.unsub_nowait(sub)

    # -- gateway side ---------------------------------------------------------------------------------

    def session_opened(self, target: str, link: ReleasableLink) -> None:
        self._held[target] = link
        self._subscribe_calls(target)

    def _subscribe_calls(self, target: str) -> bool:
        """Subscribe to ``target``'s call subject (after telling other nodes to let go of it);
        False if there was nothing to do (already subscribed: a takeover on this node; or no NATS)."""
        client = self._client
        if client is None or target in self._call_subs:
            return False
        subject = f"{self.prefix}.call.{subject_token(target)}"
        client.pub_nowait(subject.encode(), self._takeover)  # before subscribing: never reaches us
        self._call_subs[target] = client.sub_nowait(subject, QUEUE_GROUP, self._on_device_message, target)
        return True

    def reachable(self, target: str) -> asyncio.Future[None] | None:
        if not self._subscribe_calls(target):
            return None
        return self._settled()

    def _settled(self) -> asyncio.Future[None]:
        """A future done once NATS has processed everything queued so far (one PING/PONG shared by
        the connects of a loop iteration; a new one once the previous PING has gone out)."""
        future = self._settling
        if future is None or future.done() or self._settling_sent:
            self._settling_sent = False
            future = self._settling = asyncio.ensure_future(self._settle())
        return future

    async def _settle(self) -> None:
        self._settling_sent = True
        client = self._client
        if client is None or not client.is_connected:
            return
        try:
            await client.flush(timeout=SETTLE_TIMEOUT)
        except Exception as exc:  # slow or broken NATS: the device connects anyway
            log.debug("cluster: subscriptions not confirmed by NATS: %s", exc)

    async def remote_connection_state(self, target: str) -> tuple[bool, float | None]:
        client = self._client
        if client is None or not client.is_connected:
            return False, None
        subject = f"{self.prefix}.call.{subject_token(target)}"
        try:
            message = await client.request(subject, b"S", timeout=STATE_TIMEOUT)
        except Exception:  # no responders (nobody holds it), timeout, NATS gone: not connected
            return False, None
        data = message.data
        if data[:1] != b"1":
            return False, None
        try:
            return True, float(data[1:]) if len(data) > 1 else None
        except ValueError:
            return True, None

    def abandon(self, target: str) -> None:
        if target in self._held:
            return
        sub = self._call_subs.pop(target, None)
        if sub is not None and self._client is not None:
            self._client.unsub_nowait(sub)

    def session_closed(self, target: str, link: ReleasableLink) -> None:
        if self._held.get(target) is not link:
            return
        del self._held[target]
        sub = self._call_subs.pop(target, None)
        if sub is not None and self._client is not None:
            self._client.unsub_nowait(sub)

    def announce(self, target: str, link: CallLink) -> None:
        super().announce(target, link)
        self._wake(target)
        if target in self._call_subs:  # published after the subscription: see wait_ready
            self._publish(f"{self.prefix}.ready.{subject_token(target)}".encode(), b"")

    # -- messages -------------------------------------------------------------------------------------

    def _on_device_message(
        self, sub: _FastSub, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        """A message on the call subject of a device whose session this node holds, or held until
        a moment ago (a retired subscription: a call is then answered ``DEVICE_OFFLINE``)."""
        kind = data[:1]
        if kind == b"C":
            if not reply:
                return
            if self._refusal is not None:
                self._publish(reply, self._refusal)
                return
            call = decode_call(data)
            loop = asyncio.get_running_loop()
            future: asyncio.Future[CallOutcome] = loop.create_future()
            self._serving[reply] = (future, loop.time() + call.response_timeout + SERVE_GRACE)
            future.add_done_callback(partial(self._answer, reply))
            super().dispatch(call, future)
        elif kind == b"P":
            if reply:
                self._publish(reply, b"1" if data[1:] in self._serving else b"0")
        elif kind == b"Q":
            if reply:
                self._publish(reply, b"1" if sub.target in self._links else b"0")
        elif kind == b"S":
            if reply:
                link = self._held.get(sub.target)
                if link is None:
                    self._publish(reply, b"0")
                else:
                    since = link.connected_since
                    self._publish(reply, b"1" if since is None else b"1%r" % since)
        elif kind == b"T" and not sub.retired:  # a retired subscription's target may be held anew
            link = self._held.get(sub.target)
            if link is not None:
                log.debug("cluster: %s is now held by node %s", sub.target, data[1:].decode(errors="replace"))
                link.release("the device connected to another hub node")

    def _answer(self, reply: bytes, future: asyncio.Future[CallOutcome]) -> None:
        if not future.cancelled():
            future.exception()  # retrieved even if the entry is gone (swept, or the node stopping)
        if self._serving.pop(reply, None) is None or future.cancelled():
            return
        self._publish(reply, encode_result(future))

    def _on_inbox(
        self, sub: _FastSub, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        """An answer to one of this node's calls or probes."""
        key = subject[len(self._inbox_bytes) :]
        no_responders = headers is not None and headers.startswith(_NO_RESPONDERS)
        first = key[:1]
        if first == b"p":
            n = self._probes.pop(int(key[1:]), 0)
            remote = self._calls.get(n)
            if remote is None:
                return
            if data == b"1" and not no_responders:
                remote.probe = 0
            else:
                self._fail(n, remote, ErrorKind.DEVICE_DISCONNECTED, "the node it was connected to let it go")
            return
        if first == b"q":
            asked = self._ready_probes.pop(int(key[1:]), None)
            if asked is not None and data == b"1" and not no_responders:
                self._wake(asked[0])
            return
        remote = self._calls.pop(int(key), None)
        if remote is None or remote.reply.done():
            return
        if remote.probe:
            self._probes.pop(remote.probe, None)
        if no_responders:
            remote.reply.set_exception(HubError(ErrorKind.DEVICE_OFFLINE))
            return
        if headers is not None and not data:
            return  # another status message; the answer (or the probe) decides
        result = decode_result(data)
        if isinstance(result, HubError):
            remote.reply.set_exception(result)
        else:
            remote.reply.set_result(result)

    def _on_ready(
        self, sub: _FastSub, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        self._wake(sub.target)

    # -- helpers --------------------------------------------------------------------------------------

    def _publish(self, subject: bytes, payload: bytes, reply: bytes = b"") -> bool:
        client = self._client
        return client is not None and client.pub_nowait(subject, payload, reply)

    def _ask_ready(self, target: str, token: str) -> None:
        n = next(self._seq)
        if self._publish(f"{self.prefix}.call.{token}".encode(), b"Q", b"%bq%d" % (self._inbox_bytes, n)):
            self._ready_probes[n] = (target, asyncio.get_running_loop().time())

    def _wake(self, target: str) -> None:
        for waiter in self._ready_waiters.get(target, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, n: int, remote: _Remote, kind: ErrorKind, why: str) -> None:
        self._calls.pop(n, None)
        if remote.probe:
            self._probes.pop(remote.probe, None)
        if not remote.reply.done():
            target = target_of(remote.subject.decode().rsplit(".", 1)[1])
            remote.reply.set_exception(
                HubError(kind, f"Device '{target}' disconnected before it answered ({why}).")
            )

    def _fail_remote(self, kind: ErrorKind, message: str) -> None:
        calls, self._calls = self._calls, {}
        self._probes.clear()
        for remote in calls.values():
            if not remote.reply.done():
                remote.reply.set_exception(HubError(kind, message))

    async def _run_ticks(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                self._check()
            except Exception:  # keep checking; one bad entry must not stop node-death detection
                log.exception("cluster: checking calls in flight failed")

    def _check(self) -> None:
        """Once per :data:`PROBE_INTERVAL`: probe remote calls older than that, fail those whose
        previous probe went unanswered, and forget served calls long past their timeout."""
        now = asyncio.get_running_loop().time()
        oldest = now - PROBE_INTERVAL
        for n, remote in list(self._calls.items()):
            if remote.reply.done():
                self._calls.pop(n, None)
                if remote.probe:
                    self._probes.pop(remote.probe, None)
                continue
            if remote.started > oldest:
                break  # insertion order is start order: the rest are younger
            if remote.probe:
                self._fail(n, remote, ErrorKind.DEVICE_DISCONNECTED, "its hub node stopped answering")
                continue
            p = next(self._seq)
            inbox = self._inbox_bytes
            if self._publish(remote.subject, b"P%b%d" % (inbox, n), b"%bp%d" % (inbox, p)):
                remote.probe = p
                self._probes[p] = n
        for reply, (future, deadline) in list(self._serving.items()):
            if deadline <= now:
                del self._serving[reply]
                if not future.done():
                    future.set_exception(HubError(ErrorKind.CALL_TIMEOUT))
        for n, (_target, asked) in list(self._ready_probes.items()):
            if asked > oldest:
                break
            del self._ready_probes[n]  # answered by nobody (a node was letting the device go)
        if self._client is not None:
            self._client.forget_retired()

    # -- NATS connection events -----------------------------------------------------------------------

    async def _on_error(self, exc: Exception) -> None:
        if not self._started:
            self._start_error = exc  # start() reports it
            return
        if not self._outage_logged and not self._stopping:
            log.warning("cluster: NATS connection problem: %s", exc or type(exc).__name__)
            self._outage_logged = True

    async def _on_disconnected(self) -> None:
        if self._stopping or not self._started:
            return
        log.warning(
            "cluster: lost the connection to NATS; reconnecting (calls to other nodes fail meanwhile)"
        )
        self._outage_logged = True
        self._fail_remote(
            ErrorKind.SERVICE_UNAVAILABLE,
            "This hub node lost its connection to the other nodes (NATS) while the call was in flight; "
            "its outcome is unknown. Retry later.",
        )

    async def _on_reconnected(self) -> None:
        self._outage_logged = False
        url = self._client.connected_url if self._client else None
        log.info("cluster: reconnected to NATS at %s", url.netloc if url is not None else "?")
