"""The NATS router: carries calls between the nodes of a cluster (docs/cluster.md).

Every node connects to the same NATS server (or NATS cluster); what they say to each other is in
:mod:`~methodhub.router.nats.wire`, the nats-py client with its synchronous fast path in
:mod:`~methodhub.router.nats.client`, and which remote calls are still alive in
:mod:`~methodhub.router.nats.liveness`. This module wires them to the engine's and the gateway's
ports.

A device connected to this node is reached without NATS (the in-process fast path of
:class:`~methodhub.router.local.LocalRouter`). A node that dies cannot answer for its calls: the
calling node probes them (:mod:`~methodhub.router.nats.liveness`), so a dead or unreachable node
costs a caller about 3 s, not the response timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from functools import partial

from methodhub.calls.model import Call, CallOutcome
from methodhub.errors import ErrorKind, HubError
from methodhub.router.base import RouterUnavailable
from methodhub.router.local import LocalRouter
from methodhub.router.nats.client import BusClient, FastSub
from methodhub.router.nats.liveness import (
    PROBE_INTERVAL,
    SERVE_GRACE,
    Fail,
    Liveness,
    Probe,
    RemoteCall,
    reask_after,
)
from methodhub.router.nats.wire import (
    DEFAULT_PREFIX,
    NO_RESPONDERS,
    QUEUE_GROUP,
    decode_call,
    decode_result,
    encode_call,
    encode_error,
    encode_result,
    subject_token,
)
from methodhub.router.presence import CallLink, ReleasableLink

log = logging.getLogger("methodhub.router")

STATE_TIMEOUT = 0.5
"""Seconds a registry read waits for another node to say whether it holds a device's connection."""
SETTLE_TIMEOUT = 2
"""Seconds a connecting device's CONNACK waits at most for NATS to confirm its call subscription."""
CONNECT_TIMEOUT = 2
"""Seconds for each attempt to reach the NATS server at start-up (two attempts per server)."""


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
        self._client: BusClient | None = None
        self._seq = itertools.count(1)
        self._inbox = f"{prefix}.r.{self.node}."
        self._inbox_bytes = self._inbox.encode()
        self._liveness: Liveness[asyncio.Future[CallOutcome]] = Liveness()
        self._calls = self._liveness.calls  # filled and emptied on the call path: see Liveness
        self._serving = self._liveness.serving
        self._call_subs: dict[str, FastSub] = {}
        self._settling: asyncio.Future[None] | None = None
        self._settling_sent = False
        self._held: dict[str, ReleasableLink] = {}
        """Sessions connected here (ready or not), by target: what a takeover message releases."""
        self._ready_subs: dict[str, FastSub] = {}
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
        client = BusClient()
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
        if not client.supports_headers:  # "no responders" (offline at once) needs NATS ≥ 2.2
            await client.close()
            raise RouterUnavailable(
                f"the NATS server at {self.url} is too old (headers unsupported); use ≥ 2.2"
            )
        client.reconnect_forever()
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
        self._calls[n] = RemoteCall(reply, subject, reply.get_loop().time())

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
                delay = reask_after(deadline, loop.time())
                if delay is None:
                    return False
                await asyncio.wait((waiter,), timeout=delay)
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
        self, sub: FastSub, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
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
        self, sub: FastSub, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        """An answer to one of this node's calls or probes."""
        key = subject[len(self._inbox_bytes) :]
        no_responders = headers is not None and headers.startswith(NO_RESPONDERS)
        first = key[:1]
        if first == b"p":
            fail = self._liveness.probe_answered(int(key[1:]), held=data == b"1" and not no_responders)
            if fail is not None:
                _complete(fail)
            return
        if first == b"q":
            target = self._liveness.ready_answered(int(key[1:]))
            if target is not None and data == b"1" and not no_responders:
                self._wake(target)
            return
        remote = self._calls.pop(int(key), None)
        if remote is None or remote.reply.done():
            return
        if remote.probe:
            self._liveness.forget_probe(remote.probe)
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
        self, sub: FastSub, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        self._wake(sub.target)

    # -- helpers --------------------------------------------------------------------------------------

    def _publish(self, subject: bytes, payload: bytes, reply: bytes = b"") -> bool:
        client = self._client
        return client is not None and client.pub_nowait(subject, payload, reply)

    def _ask_ready(self, target: str, token: str) -> None:
        n = next(self._seq)
        if self._publish(f"{self.prefix}.call.{token}".encode(), b"Q", b"%bq%d" % (self._inbox_bytes, n)):
            self._liveness.ready_asked(n, target, asyncio.get_running_loop().time())

    def _wake(self, target: str) -> None:
        for waiter in self._ready_waiters.get(target, ()):
            if not waiter.done():
                waiter.set_result(None)

    def _fail_remote(self, kind: ErrorKind, message: str) -> None:
        for reply in self._liveness.drop_all():
            if not reply.done():
                reply.set_exception(HubError(kind, message))

    async def _run_ticks(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                self._check()
            except Exception:  # keep checking; one bad entry must not stop node-death detection
                log.exception("cluster: checking calls in flight failed")

    def _check(self) -> None:
        """Once per :data:`PROBE_INTERVAL`: do what the liveness bookkeeping says is due (probe
        remote calls, fail those whose node stopped answering, expire served calls)."""
        inbox = self._inbox_bytes
        for action in self._liveness.check(asyncio.get_running_loop().time()):
            if isinstance(action, Probe):
                p = next(self._seq)
                if self._publish(action.subject, b"P%b%d" % (inbox, action.call), b"%bp%d" % (inbox, p)):
                    self._liveness.probe_sent(action.call, p)
            else:
                _complete(action)
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


def _complete(fail: Fail[asyncio.Future[CallOutcome]]) -> None:
    if not fail.reply.done():
        fail.reply.set_exception(fail.error)
