"""Real servers the tests start themselves: PostgreSQL (from the Debian ``postgresql`` package) and
NATS (Debian's ``nats-server``, see :func:`start_nats` at the end).

``scripts/ensure-tools`` installs the package; these helpers find its binaries, make a throw-away
cluster in a temporary directory and run it on a free 127.0.0.1 port::

    url, stop = start_postgres(tmp_dir)      # postgresql://postgres@127.0.0.1:PORT/postgres
    hub_url = create_database(url, "hub1")   # a database of one's own on it
    ...
    stop()

or, to stop and start the same cluster again (a database outage), :class:`PostgresServer`.

PostgreSQL refuses to run as root. When the tests run as root (CI does), the cluster belongs to the
``postgres`` system user (the package creates it) and its commands run through ``runuser``; its
directory is then a new one under the system temp dir, because pytest's own temp dirs are private
to root. Otherwise the cluster lives in ``tmp_dir``, owned by the current user.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

POSTGRES_BIN_ENV = "METHODHUB_POSTGRES_BIN"
"""Set to the directory holding ``initdb`` and ``pg_ctl`` to use another PostgreSQL build."""
POSTGRES_SYSTEM_USER = "postgres"

# Durability is worthless for a throw-away test cluster; these make writes (and initdb) fast.
_SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server binaries are not installed (or cannot run here)."""


def postgres_bin_dir() -> Path:
    """The directory of ``initdb``/``pg_ctl``: $METHODHUB_POSTGRES_BIN, PATH, or Debian's layout."""
    if env := os.environ.get(POSTGRES_BIN_ENV):
        return Path(env)
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent  # a symlink's target: its siblings (psql) are there
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if debian:
        return Path(debian[-1]).parent
    raise PostgresUnavailable(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found; run scripts/ensure-tools "
        f"(it installs Debian's postgresql package) or set ${POSTGRES_BIN_ENV}"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster for tests. ``start()`` (initdb on first use), ``stop()``, ``url``.

    ``stop()`` then ``start()`` restarts the same cluster on the same port (an outage, as clients
    see it); ``destroy()`` stops it and removes its files.
    """

    tmp_dir: Path
    port: int = field(default_factory=_free_port)
    bin_dir: Path = field(default_factory=postgres_bin_dir)
    data_dir: Path | None = None
    _as_user: list[str] = field(default_factory=list)
    _owned_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{POSTGRES_SYSTEM_USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            log = self._log_tail()
            raise PostgresUnavailable(
                f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr.strip()}\n{log}"
            )

    def _log_tail(self) -> str:
        if self.data_dir is None:
            return ""
        try:
            return "\n".join((self.data_dir.parent / "postgres.log").read_text().splitlines()[-20:])
        except OSError:
            return ""

    def _init(self) -> None:
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam(POSTGRES_SYSTEM_USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root needs the '{POSTGRES_SYSTEM_USER}' system user (Debian's "
                    "postgresql package creates it; run scripts/ensure-tools)"
                ) from None
            base = Path(tempfile.mkdtemp(prefix="methodhub-pg-"))
            os.chown(base, user.pw_uid, user.pw_gid)
            self._owned_dir = base
            self._as_user = ["runuser", "-u", POSTGRES_SYSTEM_USER, "--"]
        else:
            base = Path(tempfile.mkdtemp(prefix="pg-", dir=self.tmp_dir))
        self.data_dir = base / "data"
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            POSTGRES_SYSTEM_USER,
            "--auth=trust",
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C",
        )

    def start(self) -> PostgresServer:
        if self.data_dir is None:
            self._init()
            atexit.register(self.destroy)
        assert self.data_dir is not None
        # pg_ctl hands -o to a shell: '' is an empty value (no Unix socket, TCP only)
        options = " ".join(f"-c {name}={value or repr('')}" for name, value in _SERVER_SETTINGS.items())
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir.parent / "postgres.log"),
            "-w",
            "-t",
            "30",
            "-o",
            f"-p {self.port} {options}",
        )
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown: clients are disconnected at once)."""
        if self.data_dir is None or not (self.data_dir / "postmaster.pid").exists():
            return
        self._run(str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w")

    def destroy(self) -> None:
        with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired, OSError):
            self.stop()
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None


def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` (letters, digits, ``_``) on the server at ``server_url``; its URL."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain database name: {name!r}")
    parts = urlsplit(server_url)
    subprocess.run(
        [
            str(postgres_bin_dir() / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            parts.hostname or "127.0.0.1",
            "-p",
            str(parts.port or 5432),
            "-U",
            parts.username or POSTGRES_SYSTEM_USER,
            "-d",
            parts.path.lstrip("/") or "postgres",
            "-c",
            f"CREATE DATABASE {name}",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return urlunsplit(parts._replace(path=f"/{name}"))


def start_postgres(tmp_dir: Path) -> tuple[str, Callable[[], None]]:
    """A running throw-away PostgreSQL: its URL (user ``postgres``, trust auth) and a stop function
    that also removes its files."""
    server = PostgresServer(tmp_dir).start()
    return server.url, server.destroy


# -- NATS ----------------------------------------------------------------------------------------------

NATS_SERVER_ENV = "METHODHUB_NATS_SERVER"
"""Set to a ``nats-server`` binary to use instead of the one on PATH (Debian: /usr/sbin)."""


class NatsUnavailable(RuntimeError):
    """The ``nats-server`` binary is not installed (scripts/ensure-tools installs Debian's)."""


def nats_server_binary() -> str:
    """``$METHODHUB_NATS_SERVER``, ``nats-server`` on PATH, or Debian's /usr/sbin/nats-server."""
    if env := os.environ.get(NATS_SERVER_ENV):
        return env
    found = shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/local/bin/nats-server") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise NatsUnavailable(
            "nats-server was not found; run scripts/ensure-tools (it installs Debian's nats-server) "
            f"or set ${NATS_SERVER_ENV}"
        )
    return found


@dataclass
class NatsServer:
    """A private ``nats-server`` on 127.0.0.1 for tests: ``start()``, ``stop()``, ``kill()``,
    ``restart()`` (same port, so clients that reconnect find it again), ``url``."""

    port: int = field(default_factory=_free_port)
    binary: str = field(default_factory=nats_server_binary)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10) -> NatsServer:
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="methodhub-nats-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
            atexit.register(self.destroy)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-a", "127.0.0.1", "-p", str(self.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NatsUnavailable(f"nats-server exited at start:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise NatsUnavailable(
            f"nats-server did not listen on {self.port} within {timeout} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Stop the server (SIGTERM); clients see the connection close."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> NatsServer:
        self.stop()
        return self.start()

    def destroy(self) -> None:
        self.stop()
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:]) if self.log_path else ""
        except OSError:
            return ""


def start_nats(port: int | None = None) -> NatsServer:
    """A running private nats-server (on ``port``, else a free one); ``stop()`` it when done."""
    return (NatsServer(port) if port is not None else NatsServer()).start()
