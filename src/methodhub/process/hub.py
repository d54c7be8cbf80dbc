"""The composition root: builds a node from a :class:`HubConfig`, runs it, stops it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import signal
import socket
import ssl
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import orjson

from methodhub import __version__
from methodhub.api.landing import landing_page
from methodhub.api.openapi import OPENAPI
from methodhub.calls import CallEngine
from methodhub.calls.delivery import QueuedCalls
from methodhub.calls.history import HistoryRecorder
from methodhub.calls.queued import CallState
from methodhub.calls.quotas import NO_QUOTAS, Quotas
from methodhub.changes import ChangeFeedWatcher
from methodhub.config import MAX_METHOD_PAYLOAD, HubConfig
from methodhub.console.events import ConsoleEvents
from methodhub.console.static import ConsoleFiles
from methodhub.dialects.aliyun.mqtt import AliyunDialect
from methodhub.dialects.aliyun.pop import AliyunApi
from methodhub.dialects.aliyun.pop_auth import PopAuthenticator
from methodhub.dialects.aliyun.pop_jobs import PopJobs
from methodhub.dialects.aliyun.pop_tsl import ThingModels
from methodhub.dialects.azure.amqp import AzureAmqpDialect
from methodhub.dialects.azure.connection_string import ConnectionString
from methodhub.dialects.azure.errors import azure_error, azure_error_of
from methodhub.dialects.azure.jobs_api import AzureJobsApi, device_job_rows
from methodhub.dialects.azure.mqtt import AzureDialect
from methodhub.dialects.azure.rest import AzureApi
from methodhub.dialects.azure.service_auth import ServiceAuthenticator
from methodhub.dialects.azure.twin import DeviceTwins
from methodhub.errors import ErrorKind, HubError
from methodhub.gateway import Gateway
from methodhub.gateway.websocket import (
    BytesOverWebSocket,
    DeviceTransport,
    HandshakeRefused,
    accept_websocket,
)
from methodhub.http.messages import HttpError, Request, Response, SwitchProtocol
from methodhub.http.routing import Routes
from methodhub.http.server import HttpServer
from methodhub.http.wire import error_response
from methodhub.job_runner import JobRunner
from methodhub.metrics import Metrics
from methodhub.mqtt import DEFAULT_MAX_PACKET_SIZE
from methodhub.native.queued_calls import QueuedCallsApi
from methodhub.process.datadir import (
    DataDirLock,
    ensure_data_dir,
    lock_data_dir,
    remove_runtime,
    write_runtime,
)
from methodhub.process.memory import MemoryTrimmer, tune_malloc
from methodhub.process.metrics_auth import MetricsGuard
from methodhub.process.tls import TlsSetupError, ensure_dev_server_cert, operator_certificate, server_context
from methodhub.registry import Registry, open_registry
from methodhub.router import LocalRouter, Router

log = logging.getLogger("methodhub.hub")

MAX_HTTP_BODY = 4 * MAX_METHOD_PAYLOAD
"""The largest HTTP request body read at all. A 128 KiB payload can take more bytes in the request
than it does re-encoded (escapes, whitespace); the payload limit itself is checked after parsing."""


def job_rate(configured: float | None, quota: float | None) -> float | None:
    """The device calls per second jobs start on this node: the lower of ``serve --job-rate`` and
    its share of the jobs device-operations quota (None: no limit)."""
    rates = [rate for rate in (configured, quota) if rate is not None]
    return min(rates) if rates else None


@dataclass(slots=True, frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Hub:
    """One methodhub node. ``await hub.start()``, then ``await hub.stop()``; or ``await hub.run()``."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.registry: Registry | None = None
        self.router: Router | None = None
        self.gateway: Gateway | None = None
        self.engine: CallEngine | None = None
        self.queued: QueuedCalls | None = None
        self.history: HistoryRecorder | None = None
        self.quotas: Quotas = NO_QUOTAS
        """This node's rate limits (its share of the hub's; ``config.quotas``)."""
        self.jobs: JobRunner | None = None
        self.node = ""
        """This node's name (the router's and the queued calls' owner name)."""
        self.http: HttpServer | None = None
        self.console_events: ConsoleEvents | None = None
        self.watcher: ChangeFeedWatcher | None = None
        self.first_start = False
        self.owner_connection_string = ""
        self.addresses: dict[str, Address] = {}
        self.ca_path: Path | None = None
        self._stopped = asyncio.Event()
        self._trimmer = MemoryTrimmer()
        self._lock: DataDirLock | None = None
        self._metrics_guard: MetricsGuard | None = None
        self._loop_watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start serving. Raises :class:`~methodhub.process.datadir.DataDirInUse` if another hub runs on the
        data dir (a hub that records ``hub.json`` locks the data dir; workers share their parent's)."""
        config = self.config
        ensure_data_dir(config.data_dir)
        if config.record_runtime:
            self._lock = lock_data_dir(config.data_dir)
        try:
            await self._start()
        except BaseException:
            self._release_lock()
            raise

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    async def _start(self) -> None:
        config = self.config
        registry = open_registry(config.registry_location)
        await registry.open()
        self.registry = registry
        registry.timed = self.metrics.registry_timed
        self.first_start = await registry.ensure_default_policies()
        owner = await registry.get_policy("iothubowner")
        if owner is not None:
            self.owner_connection_string = str(
                ConnectionString(
                    host_name=config.hostname,
                    shared_access_key_name=owner.name,
                    shared_access_key=owner.keys.primary,
                )
            )
        self.node = node_name(config)
        router = make_router(config, self.node)
        await router.start()
        self.router = router
        quotas = Quotas(config.quotas.per_node(), on_throttled=self.metrics.throttled.inc)
        if config.quotas.any:
            log.info("quotas: %s", config.quotas.describe())
        self.quotas = quotas
        self.engine = CallEngine(router, registry, self.metrics, quotas=quotas if config.quotas.any else None)
        if config.history:
            self.history = HistoryRecorder(
                registry,
                payloads=config.history_payloads,
                retention=config.history_retention,
                max_records=config.history_max,
                dropped=self.metrics.history_dropped,
            )
            self.engine.recorder = self.history
            self.history.start()
        twins = DeviceTwins(registry)
        self.gateway = Gateway(
            registry=registry,
            router=router,
            metrics=self.metrics,
            hostname=config.hostname,
            dialects=[AzureDialect(twins, config.token_policy), AliyunDialect()],
            max_packet_size=DEFAULT_MAX_PACKET_SIZE,
            connect_packet_timeout=config.connect_packet_timeout,
            max_in_flight=config.max_calls_in_flight_per_device,
            limits=config.device_limits,
            amqp_dialect=AzureAmqpDialect(twins, config.token_policy),
        )
        if quotas.device_connects is not None:
            self.gateway.context.quotas = quotas
        service_auth = ServiceAuthenticator(registry, config.hostname, config.token_policy)
        service_auth.on_failure = partial(self._auth_failed, "azure_")
        if config.metrics_auth:
            self._metrics_guard = MetricsGuard(service_auth, self.metrics, config.metrics_token)
        routes = Routes()
        azure_api = AzureApi(self.engine, registry, service_auth, self.gateway)
        azure_api.quotas = quotas
        azure_api.register(routes)
        self.queued = QueuedCalls(
            registry,
            self.engine,
            router,
            registry,
            self.node,
            sweep_interval=config.queued_call_sweep_interval,
            max_expires=config.queued_call_max_expires,
        )
        QueuedCallsApi(self.queued, service_auth, quotas).register(routes)
        self.jobs = JobRunner(
            registry,
            self.queued,
            self.node,
            interval=config.queued_call_sweep_interval,
            rate=job_rate(config.job_rate, quotas.limits.job_device_operations_per_second),
            concurrency=config.job_concurrency,
        )
        AzureJobsApi(self.jobs, service_auth).register(routes)
        azure_api.job_rows = partial(device_job_rows, self.jobs)
        pop_auth = PopAuthenticator(registry)
        pop_auth.on_failure = partial(self._auth_failed, "aliyun_")
        aliyun_api = AliyunApi(self.engine, registry, pop_auth, self.gateway)
        aliyun_api.quotas = quotas
        thing_models = ThingModels(registry, self.queued)
        aliyun_api.async_services = thing_models
        aliyun_api.add_actions(thing_models.actions())
        aliyun_api.add_actions(PopJobs(self.jobs, thing_models).actions())
        aliyun_api.register(routes, not_a_pop_call=landing_page)
        ConsoleFiles().register(routes)
        self.console_events = ConsoleEvents(service_auth, self.node, self.gateway.sessions.connected_keys)
        self.console_events.register(routes)
        self.gateway.sessions.watchers.append(self.console_events.connection_changed)
        routes.add("GET", "/openapi.json", _openapi)
        routes.add("GET", "/metrics", self._metrics)
        routes.add("GET", "/health", _health)
        routes.add("GET", WEBSOCKET_PATH, self._device_over_websocket)
        self.http = HttpServer(
            routes,
            max_body_size=MAX_HTTP_BODY,
            request_head_timeout=config.http_request_head_timeout,
            request_body_timeout=config.http_request_body_timeout,
            max_connections=config.http_max_connections,
            max_unestablished=config.http_max_unestablished,
            on_error=_on_error,
            not_found=_not_found,
            method_not_allowed=_method_not_allowed,
        )

        def identity_changed(key: str):  # type: ignore[no-untyped-def]
            assert self.gateway is not None
            return self.gateway.identity_changed(key)

        def policy_changed(name: str) -> None:
            service_auth.invalidate_policy(name)
            pop_auth.invalidate_policy(name)
            assert self.gateway is not None
            self.gateway.policy_changed(name)

        def twin_changed(key: str):  # type: ignore[no-untyped-def]
            assert self.gateway is not None
            return self.gateway.twin_changed(key)

        def authority_changed(name: str):  # type: ignore[no-untyped-def]
            assert self.gateway is not None
            return self.gateway.authority_changed(name)

        self.watcher = ChangeFeedWatcher(
            registry,
            config.change_poll_interval,
            identity_changed,
            policy_changed,
            twin_changed,
            authority_changed,
        )
        await self.watcher.start()
        await self.queued.start()
        await self.jobs.start()
        self._watch_metrics(registry)

        if config.mqtt_port >= 0:
            server = await self.gateway.listen(
                config.host, config.mqtt_port, name="mqtt", reuse_port=config.reuse_port
            )
            self._bound("mqtt", server)
        if config.amqp_port >= 0:
            server = await self.gateway.listen_amqp(
                config.host, config.amqp_port, name="amqp", reuse_port=config.reuse_port
            )
            self._bound("amqp", server)
        if config.http_port >= 0:
            server = await self.http.listen(config.host, config.http_port, reuse_port=config.reuse_port)
            self._bound("http", server)
        if config.mqtts_port >= 0 or config.https_port >= 0 or config.amqps_port >= 0:
            tls = self._tls_context()
            if config.mqtts_port >= 0:
                server = await self.gateway.listen(
                    config.host,
                    config.mqtts_port,
                    ssl_context=tls,
                    name="mqtts",
                    reuse_port=config.reuse_port,
                )
                self._bound("mqtts", server)
            if config.amqps_port >= 0:
                server = await self.gateway.listen_amqp(
                    config.host,
                    config.amqps_port,
                    ssl_context=tls,
                    name="amqps",
                    reuse_port=config.reuse_port,
                )
                self._bound("amqps", server)
            if config.https_port >= 0:
                server = await self.http.listen(
                    config.host, config.https_port, ssl=tls, reuse_port=config.reuse_port
                )
                self._bound("https", server)
        if config.record_runtime:
            write_runtime(config.data_dir, self.runtime_info())

    def _tls_context(self) -> ssl.SSLContext:
        config = self.config
        if config.tls_cert is not None or config.tls_key is not None:
            if config.tls_cert is None or config.tls_key is None:
                raise TlsSetupError("pass both --tls-cert and --tls-key (or neither, for a development CA)")
            certificate = operator_certificate(config.tls_cert, config.tls_key)
        else:
            certificate = ensure_dev_server_cert(config.data_dir, config.hostname)
        self.ca_path = certificate.ca
        return server_context(certificate)

    def _device_over_websocket(self, request: Request) -> Response | SwitchProtocol:
        """``GET /$iothub/websocket`` with ``Upgrade: websocket`` (Azure's path): MQTT over WebSocket
        (subprotocol ``mqtt``, or none), or AMQP (``AMQPWSB10``, on the HTTPS port only: AMQP here is
        always TLS, as on Azure)."""
        try:
            handshake = accept_websocket(request.method, request.headers)
        except HandshakeRefused as exc:
            return error_response(exc.status, "WebSocketHandshakeRefused", exc.message)
        assert self.gateway is not None
        tls = request.scheme == "https"
        listener = "wss" if tls else "ws"
        if handshake.transport is DeviceTransport.AMQP:
            if not tls:
                return error_response(
                    400,
                    "WebSocketHandshakeRefused",
                    "AMQP over WebSocket is served on the HTTPS port only (wss://HOST:PORT/$iothub/websocket)",
                )
            inner = self.gateway.amqp_protocol_for(listener)
            return SwitchProtocol(handshake.fields, BytesOverWebSocket(inner))
        return SwitchProtocol(handshake.fields, BytesOverWebSocket(self.gateway.protocol_for(listener)))

    def _bound(self, name: str, server: asyncio.AbstractServer) -> None:
        sockname = server.sockets[0].getsockname()  # type: ignore[attr-defined]
        address = Address(sockname[0], sockname[1])
        self.addresses[name] = address
        log.info("%s listening on %s", name, address)

    def runtime_info(self) -> dict[str, object]:
        """What ``hub.json`` records: where clients on this machine can reach the listeners."""
        info: dict[str, object] = {"hostname": self.config.hostname, "version": __version__}
        for name, address in self.addresses.items():
            host = address.host
            if host in ("0.0.0.0", "::", ""):
                host = "127.0.0.1"
            reachable = Address(host, address.port)
            info[name] = f"{_SCHEMES.get(name, '')}{reachable}"
        if self.ca_path is not None:
            info["ca"] = str(self.ca_path)
        if self.config.nats_url:
            info["nats"] = self.config.nats_url
        return info

    async def stop(self) -> None:
        """Stop serving, in this order: no new connections; every call still waiting (for its
        device's answer or for it to connect, here or relayed from another node) answered now with
        503 ``HUB_STOPPING``; those responses flushed; devices disconnected (MQTT 5: DISCONNECT
        0x8B); pending session writes flushed; the registry closed."""
        if self.gateway is not None:
            self.gateway.stop_listening()
        if self.jobs is not None:
            await self.jobs.stop()
        if self.queued is not None:
            self.queued.stop_claiming()
        if self.engine is not None:
            self.engine.stop()
        if self.router is not None:
            self.router.stop_serving(HubError(ErrorKind.HUB_STOPPING))
        if self.queued is not None:
            await self.queued.stop()
        if self.history is not None:
            await self.history.stop()
        self._trimmer.stop()
        if self.console_events is not None:
            self.console_events.close()
        if self._loop_watch is not None:
            self._loop_watch.cancel()
        if self.http is not None:
            await self.http.close()  # stops listening before the answers above are written
        if self.gateway is not None:
            await self.gateway.close()
        if self.watcher is not None:
            await self.watcher.stop()
        if self.router is not None:
            await self.router.stop()
        if self.registry is not None:
            await self.registry.close()
        if self.config.record_runtime:
            remove_runtime(self.config.data_dir)
        self._release_lock()
        self._stopped.set()

    async def run(self, on_started=None, *, second_signal_exits: bool = True) -> None:  # type: ignore[no-untyped-def]
        """Start, call ``on_started(hub)``, serve until SIGINT/SIGTERM, then stop cleanly (:meth:`stop`).

        A second signal while stopping exits the process at once with 128 + the signal's number
        (130 for SIGINT, 143 for SIGTERM), unless ``second_signal_exits`` is false (a worker of
        ``serve --workers``: its parent decides, see :mod:`methodhub.process.workers`)."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(signum: int) -> None:
            if not stop.is_set():
                stop.set()
                return
            if second_signal_exits:
                self._exit_now(signum)

        for sig in (signal.SIGINT, signal.SIGTERM):  # before start: a signal during it stops cleanly too
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, on_signal, sig)
        tune_malloc()
        await self.start()
        try:
            if on_started is not None:
                on_started(self)
            tune_garbage_collector()
            self._trimmer.start()
            await stop.wait()
        finally:
            log.info("stopping: answering calls, disconnecting devices (a second signal exits at once)")
            await self.stop()
            log.info("stopped")

    def _exit_now(self, signum: int) -> None:
        """A second signal: leave without finishing :meth:`stop` (the registry's journal keeps it whole)."""
        log.warning("%s again while stopping: exiting at once", signal.Signals(signum).name)
        if self.config.record_runtime:
            remove_runtime(self.config.data_dir)
        os._exit(128 + signum)

    def _auth_failed(self, prefix: str, reason: str) -> None:
        self.metrics.auth_failed("service", prefix + reason)

    def _watch_metrics(self, registry: Registry) -> None:
        """The metrics read at scrape time from the registry, and the event-loop lag probe."""

        async def queued_calls() -> dict[tuple[str, ...], float]:
            states = await registry.live_call_states()
            return {(state,): float(states.get(state, 0)) for state in ("queued", "sent")}

        async def job_calls() -> dict[tuple[str, ...], float]:
            totals: dict[str, int] = dict.fromkeys((state.value for state in CallState), 0)
            for job in await registry.running_jobs():
                for state, count in (await registry.job_call_states(job.job_id)).items():
                    totals[state] = totals.get(state, 0) + count
            return {(state,): float(count) for state, count in totals.items()}

        async def running_jobs() -> dict[tuple[str, ...], float]:
            return {(): float(len(await registry.running_jobs()))}

        self.metrics.stored_gauge(
            "methodhub_queued_calls",
            "Queued calls stored (cluster-wide) waiting for their device (queued) or sent and not yet "
            "answered (sent), by state; read at most every 5 s.",
            ("state",),
            queued_calls,
        )
        self.metrics.stored_gauge(
            "methodhub_jobs_running", "Jobs running (cluster-wide); read at most every 5 s.", (), running_jobs
        )
        self.metrics.stored_gauge(
            "methodhub_job_device_calls",
            "The device calls of running jobs (cluster-wide), by state; read at most every 5 s.",
            ("state",),
            job_calls,
        )
        self._loop_watch = asyncio.get_running_loop().create_task(self.metrics.watch_event_loop())

    async def _metrics(self, request: Request) -> Response:
        if self._metrics_guard is not None and (refusal := await self._metrics_guard.refusal(request)):
            return refusal
        await self.metrics.refresh()
        return Response(200, self.metrics.render().encode(), content_type="text/plain; version=0.0.4")


WEBSOCKET_PATH = "/$iothub/websocket"
_SCHEMES = {"http": "http://", "https": "https://"}
_OPENAPI_BODY = orjson.dumps(OPENAPI)


def _openapi(request: Request) -> Response:
    return Response(200, _OPENAPI_BODY)


def _health(request: Request) -> Response:
    return Response(200, b'{"status":"ok"}')


_HTTP_ERROR_KINDS = {400: ErrorKind.INVALID_ARGUMENT, 413: ErrorKind.PAYLOAD_TOO_LARGE}


def _on_error(request: Request | None, exc: BaseException) -> Response:
    if isinstance(exc, HubError):
        return azure_error(exc)
    if isinstance(exc, HttpError):  # refused by the HTTP layer (400, 408, 413, 414, 431)
        kind = _HTTP_ERROR_KINDS.get(exc.status)
        if kind is not None:
            return azure_error(HubError(kind, exc.message))
        return error_response(exc.status, exc.error, exc.message)
    log.error("unexpected error serving %s", request.path if request else "a request", exc_info=exc)
    return azure_error_of(ErrorKind.SERVER_ERROR)


def _not_found(request: Request) -> Response:
    return azure_error_of(ErrorKind.NOT_FOUND, f"No resource at {request.method} {request.path}.")


def _method_not_allowed(request: Request, allowed: list[str]) -> Response:
    response = azure_error_of(
        ErrorKind.METHOD_NOT_ALLOWED,
        f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}.",
    )
    response.headers = [*(response.headers or []), ("allow", ", ".join(allowed))]
    return response


GC_THRESHOLDS = (20_000, 20, 20)
"""The cyclic collector's thresholds once the node serves (CPython's default: 700, 10, 10).

A node holds many long-lived container objects (a session, a connection and a protocol state
machine per device) and makes a few short-lived cycles per call. With the defaults the young
generation is collected every few hundred calls and full collections walk every connection's
objects, which showed up as 1-50 ms pauses in the benchmark's tail latency (docs/performance.md).
Fewer young collections, and freezing what start-up allocated, keep those pauses rare and short."""


def tune_garbage_collector() -> None:
    """Move start-up objects out of the collector's sight and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def make_router(config: HubConfig, node: str | None = None) -> Router:
    """The in-process router, or a NATS router when the node is part of a cluster."""
    if not config.nats_url:
        return LocalRouter()
    from methodhub.router.nats import NatsRouter  # nats-py is loaded by cluster nodes only

    return NatsRouter(config.nats_url, node or node_name(config))


def node_name(config: HubConfig) -> str:
    """This node's name in the cluster (``--node-name``, or made up: host, pid, a random part)."""
    return config.node_name or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for tests and tools; prefer port 0 where possible)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
