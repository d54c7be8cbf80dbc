"""``methodhub serve --workers N``: N cluster nodes on one machine, sharing its listening ports.

One Python process runs one asyncio loop on one core. To use every core, a *parent* process forks N
worker processes; each is a complete node (:class:`~methodhub.process.hub.Hub`) listening on the same ports
with ``SO_REUSEPORT``, so the kernel spreads new connections (devices and backends) over them. A
device connected to worker 1 must be callable from worker 2, so workers are cluster nodes joined by
NATS: ``--nats URL``, or — when none is given and a ``nats-server`` binary is installed — a private
``nats-server`` the parent starts on a free 127.0.0.1 port and stops at the end.

The parent locks the data dir (``hub.lock``: a second hub on it refuses to start; the workers it
forks share the lock and take none), prepares what workers would otherwise race for (the registry's
default policies, the development TLS certificate, ports given as 0), writes ``hub.json`` once (its
own pid, the ports, the workers' pids), restarts a worker that dies, and on SIGTERM/SIGINT stops
them all.

Stopping: the parent's first SIGTERM/SIGINT is forwarded to every worker as SIGTERM, and each
stops as a single hub does (503 ``HUB_STOPPING`` to every waiting call, MQTT 5 DISCONNECT 0x8B).
A worker stops once, whatever else it receives meanwhile (a Ctrl-C reaches the parent and the
workers; a service manager may signal the whole group). A second signal to the *parent* kills
the workers and exits at once with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from methodhub.config import HubConfig
from methodhub.process.datadir import ensure_data_dir, lock_data_dir, remove_runtime, write_runtime

log = logging.getLogger("methodhub.workers")

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
RESTART_DELAY = 1.0
MAX_RESTARTS_PER_MINUTE = 5
ENV_NATS_SERVER = "METHODHUB_NATS_SERVER"
NATS_SERVER_PATHS = ("/usr/sbin/nats-server", "/usr/local/sbin/nats-server", "/usr/bin/nats-server")


class WorkersError(RuntimeError):
    """The workers could not be started; the message says why and what to do."""


def find_nats_server() -> str | None:
    """``$METHODHUB_NATS_SERVER`` (if executable), else ``nats-server`` on PATH or in Debian's
    /usr/sbin; None if there is none."""
    if (chosen := os.environ.get(ENV_NATS_SERVER)) is not None:
        return chosen if os.access(chosen, os.X_OK) else None
    found = shutil.which("nats-server")
    if found:
        return found
    return next((path for path in NATS_SERVER_PATHS if os.access(path, os.X_OK)), None)


class EmbeddedNats:
    """A private ``nats-server`` on 127.0.0.1 for the workers of one machine.

    It runs with ``GOMAXPROCS`` = workers / 4 (at least 1) unless the environment sets it: relaying
    the workers' calls takes a fraction of a core, and Go's idle scheduler threads spinning on the
    workers' cores cost more than they bring (measured: ~25 % less nats-server CPU per call with 1).
    """

    def __init__(self, binary: str, workers: int = 1) -> None:
        self.binary = binary
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = dict(os.environ)
        env.setdefault("GOMAXPROCS", str(max(1, self.workers // 4)))
        self.proc = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the parent, which stops it last
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                error = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise WorkersError(f"the embedded nats-server exited at start: {error.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise WorkersError(f"the embedded nats-server did not listen on port {self.port} in {timeout:g} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _reserve(host: str, port: int) -> socket.socket:
    """Bind (not listen) ``host:port`` with ``SO_REUSEPORT``: resolves port 0 to one port that every
    worker then binds too, and holds it until they listen."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


async def _prepare(config: HubConfig) -> tuple[bool, str]:
    """Once, before the workers: the registry's default policies (and the owner's connection string)."""
    from methodhub.dialects.azure.connection_string import ConnectionString
    from methodhub.registry import open_registry

    registry = open_registry(config.registry_location)
    await registry.open()
    try:
        first_start = await registry.ensure_default_policies()
        owner = await registry.get_policy("iothubowner")
        owner_cs = (
            str(
                ConnectionString(
                    host_name=config.hostname,
                    shared_access_key_name=owner.name,
                    shared_access_key=owner.keys.primary,
                )
            )
            if owner is not None
            else ""
        )
    finally:
        await registry.close()
    return first_start, owner_cs


def _worker_main(config: HubConfig, index: int, ready: Connection) -> None:
    """A worker process: one node, until SIGTERM/SIGINT."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from methodhub.process.hub import Hub

    def started(hub: Hub) -> None:
        log.info("worker %d (pid %d) serving", index, os.getpid())
        ready.send({"index": index, "pid": os.getpid(), "addresses": hub.runtime_info()})
        ready.close()

    try:
        asyncio.run(Hub(config).run(started, second_signal_exits=False))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # the parent reports the exit; say why here, once
        log.error("worker %d cannot run: %s", index, exc)
        sys.exit(1)


class WorkerPool:
    """The parent: starts, watches and stops the workers. See the module docstring."""

    def __init__(self, config: HubConfig, workers: int) -> None:
        self.config = config
        self.workers = workers
        self.first_start = False
        self.owner_connection_string = ""
        self.nats: EmbeddedNats | None = None
        self.procs: list[BaseProcess | None] = [None] * workers
        self.info: dict[str, object] = {}
        self._context = multiprocessing.get_context("fork")
        self._restarts: list[float] = []
        self._stop = False
        self._signalled = False

    def runtime_info(self) -> dict[str, object]:
        return dict(self.info)

    def run(self, on_started: Callable[[WorkerPool], None] | None = None) -> int:
        """Start the workers, call ``on_started(pool)``, serve until SIGTERM/SIGINT; the exit code."""
        config = self.config
        ensure_data_dir(config.data_dir)
        lock = lock_data_dir(config.data_dir)
        try:
            return self._run(config, on_started)
        finally:
            lock.release()

    def _run(self, config: HubConfig, on_started: Callable[[WorkerPool], None] | None) -> int:
        self.first_start, self.owner_connection_string = asyncio.run(_prepare(config))
        uses_tls = config.mqtts_port >= 0 or config.https_port >= 0 or config.amqps_port >= 0
        if uses_tls and config.tls_cert is None and config.tls_key is None:
            from methodhub.process.tls import ensure_dev_server_cert

            ensure_dev_server_cert(config.data_dir, config.hostname)
        nats_url = config.nats_url
        if not nats_url:
            binary = find_nats_server()
            if binary is None:
                raise WorkersError(
                    f"--workers {self.workers} needs NATS to carry calls between the workers: pass "
                    "--nats nats://HOST:PORT (or set $METHODHUB_NATS), or install nats-server "
                    "(Debian: apt-get install nats-server) and methodhub starts a private one"
                )
            self.nats = EmbeddedNats(binary, self.workers)
            self.nats.start()
            nats_url = self.nats.url
            log.info("started a private nats-server for the workers at %s (pid %s)", nats_url, self.nats.pid)
        placeholders: list[socket.socket] = []
        try:
            ports: dict[str, int] = {}
            for name in ("mqtt", "http", "mqtts", "https", "amqps", "amqp"):
                port = getattr(config, f"{name}_port")
                if port < 0:
                    continue
                try:
                    sock = _reserve(config.host, port)
                except OSError as exc:
                    raise OSError(
                        exc.errno, f"cannot bind {name} port {config.host}:{port}: {exc.strerror}"
                    ) from exc
                placeholders.append(sock)
                ports[name] = sock.getsockname()[1]
            self.config = replace(
                config,
                nats_url=nats_url,
                reuse_port=True,
                record_runtime=False,
                mqtt_port=ports.get("mqtt", config.mqtt_port),
                http_port=ports.get("http", config.http_port),
                mqtts_port=ports.get("mqtts", config.mqtts_port),
                https_port=ports.get("https", config.https_port),
                amqps_port=ports.get("amqps", config.amqps_port),
                amqp_port=ports.get("amqp", config.amqp_port),
            )
            self._start_all()
        except BaseException:
            self._shutdown()
            raise
        finally:
            for sock in placeholders:
                sock.close()
        self.info["nats"] = nats_url
        pids = [proc.pid for proc in self.procs if proc is not None]
        self.info["workers"] = pids
        write_runtime(config.data_dir, self.info)
        log.info("serving with %d workers (pids %s)", self.workers, ", ".join(map(str, pids)))
        if on_started is not None:
            on_started(self)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._watch()
            log.info("stopping %d workers (a second signal exits at once)", self.workers)
            self._shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._shutdown()  # after an error: stop whatever runs (nothing is left otherwise)
            remove_runtime(config.data_dir)
        return 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self._signalled:
            self._signalled = self._stop = True
            self._signal_workers(signal.SIGTERM)  # now, not when the watch loop wakes up
            return
        log.warning("%s again while stopping: exiting at once", signal.Signals(signum).name)
        self._signal_workers(signal.SIGKILL)
        if self.nats is not None and self.nats.proc is not None:
            self.nats.proc.kill()
        remove_runtime(self.config.data_dir)
        os._exit(128 + signum)

    def _signal_workers(self, signum: int) -> None:
        for proc in self.procs:
            if proc is not None and proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signum)

    def _spawn(self, index: int) -> tuple[BaseProcess, Connection]:
        reader, writer = self._context.Pipe(duplex=False)
        proc = self._context.Process(
            target=_worker_main, args=(self.config, index, writer), name=f"methodhub-worker-{index}"
        )
        proc.start()
        writer.close()
        self.procs[index] = proc
        return proc, reader

    def _start_all(self) -> None:
        pending: dict[Any, tuple[int, BaseProcess, Connection]] = {}
        for index in range(self.workers):
            proc, reader = self._spawn(index)
            pending[reader] = (index, proc, reader)
            pending[proc.sentinel] = (index, proc, reader)
        deadline = time.monotonic() + START_TIMEOUT
        ready = 0
        while ready < self.workers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkersError(f"the workers did not start within {START_TIMEOUT:g} s")
            for handle in wait(list(pending), timeout=remaining):
                index, proc, reader = pending[handle]
                try:
                    info = reader.recv()
                except (EOFError, OSError):
                    proc.join(STOP_TIMEOUT)
                    raise WorkersError(
                        f"worker {index} exited during start-up (code {proc.exitcode}); see its error above"
                    ) from None
                ready += 1
                pending.pop(reader, None)
                pending.pop(proc.sentinel, None)
                reader.close()
                if not self.info:
                    self.info = dict(info["addresses"])

    def _watch(self) -> None:
        while not self._stop:
            sentinels: dict[Any, int] = {
                proc.sentinel: index for index, proc in enumerate(self.procs) if proc is not None
            }
            for sentinel in wait(list(sentinels), timeout=0.5):
                if self._stop:
                    break
                index = sentinels[sentinel]
                proc = self.procs[index]
                assert proc is not None
                proc.join()
                now = time.monotonic()
                self._restarts = [t for t in self._restarts if now - t < 60] + [now]
                if len(self._restarts) > MAX_RESTARTS_PER_MINUTE:
                    log.error("workers keep dying (%d restarts in a minute); stopping", len(self._restarts))
                    self._stop = True
                    break
                log.warning(
                    "worker %d (pid %d) exited with code %s; starting it again",
                    index,
                    proc.pid,
                    proc.exitcode,
                )
                time.sleep(RESTART_DELAY)
                _, reader = self._spawn(index)
                reader.close()
                self.info["workers"] = [p.pid for p in self.procs if p is not None]
                write_runtime(self.config.data_dir, self.info)

    def _shutdown(self) -> None:
        procs = [proc for proc in self.procs if proc is not None]
        self._signal_workers(signal.SIGTERM)  # a worker stops once, however often it is told
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        if self.nats is not None:
            self.nats.stop()
