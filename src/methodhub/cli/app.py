"""``methodhub``: run a hub, manage its registry, call methods, simulate a device.

Scriptable contract (README, docs and tests rely on it): commands that print a credential print it
alone on stdout; everything for people goes to stderr; an error is one line on stderr (``--debug``
adds its traceback) and the exit code says what happened (``EXIT_*`` below). The global options
(``--data-dir``, ``--registry``, ``--log-level``, ``--log-format``, ``--debug``) go before or after
the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import ssl
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from methodhub import __version__
from methodhub.config import (
    HTTP_MAX_CONNECTIONS,
    HTTP_MAX_UNESTABLISHED,
    HTTP_REQUEST_BODY_TIMEOUT,
    HTTP_REQUEST_HEAD_TIMEOUT,
    DeviceLimits,
    HubConfig,
)
from methodhub.dialects.azure.connection_string import ConnectionString
from methodhub.errors import HubError
from methodhub.process.datadir import (
    ENV_DATA_DIR,
    DataDirError,
    DataDirInUse,
    check_data_dir_free,
    default_data_dir,
    ensure_data_dir,
    read_runtime,
    read_settings,
    stale_runtime_pid,
    write_settings,
)

if TYPE_CHECKING:
    import httpx

    from methodhub.registry import Registry

EXIT_OK = 0
EXIT_ERROR = 1
"""Any other error; the message says what to do."""
EXIT_USAGE = 2
"""Bad arguments: an unknown option, a malformed --payload, --url or connection string."""
EXIT_OFFLINE = 3
"""``invoke``: the device is not connected."""
EXIT_TIMEOUT = 4
"""``invoke``: the device (or the hub) did not answer in time."""
EXIT_UNAVAILABLE = 5
"""No hub to talk to: none running on the data dir (or only a stale ``hub.json``), nothing at
--url, its TLS certificate not trusted, or it stopped (or answered 503) before answering."""
EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT) during a command other than ``serve`` and ``device run`` (which stop cleanly)."""

ENV_CONNECTION_STRING = "METHODHUB_CONNECTION_STRING"
ENV_DEVICE_CONNECTION_STRING = "METHODHUB_DEVICE_CONNECTION_STRING"
ENV_URL = "METHODHUB_URL"
ENV_NATS = "METHODHUB_NATS"
ENV_WORKERS = "METHODHUB_WORKERS"
ENV_REGISTRY = "METHODHUB_REGISTRY"

_debug = False
"""``--debug``: errors print their traceback too."""


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """One line on stderr and exit ``code``; with ``--debug``, the exception being handled first."""
    if _debug and sys.exc_info()[1] is not None:
        traceback.print_exc()
    print(f"methodhub: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _port(text: str) -> int:
    value = int(text)
    if not -1 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is 0-65535 (0 = pick a free one, -1 = off)")
    return value


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"workers is a number of processes, 1-256 (got {text!r})")
    return value


def _global_options() -> argparse.ArgumentParser:
    """The options every command takes, before or after it: a parent of the top-level parser and of
    every command's. SUPPRESS defaults: an option given only before the command is not overwritten
    by the command's parser, and one given in both places takes the later value."""
    common = argparse.ArgumentParser(add_help=False)
    options = common.add_argument_group("global options (before or after the command)")
    options.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="the SQLite registry, TLS files and hub.json "
        f"(default: ${ENV_DATA_DIR} or {default_data_dir()})",
    )
    options.add_argument(
        "--registry",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="the registry: postgresql://user:password@host:port/db, shared by a cluster "
        f"(or ${ENV_REGISTRY}); default: the SQLite file DIR/registry.db",
    )
    options.add_argument(
        "--log-level", default=argparse.SUPPRESS, choices=["debug", "info", "warning", "error"]
    )
    options.add_argument("--log-format", default=argparse.SUPPRESS, choices=["text", "json"])
    options.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the traceback of an error too (for bug reports)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _global_options()
    parser = argparse.ArgumentParser(
        prog="methodhub",
        description="Self-hosted IoT hub for synchronous cloud-to-device calls (Azure direct methods).",
        epilog="Exit codes: 0 done, 1 error, 2 usage, 3 device offline, 4 timed out, "
        "5 no hub to talk to (not running, unreachable, not trusted, or stopping), 130 interrupted.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"methodhub {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve", parents=[common], help="run a hub (MQTT for devices, HTTP for backends)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--hostname", default=None, help="the hub's name in connection strings and tokens (default localhost)"
    )
    serve.add_argument(
        "--mqtt-port", type=_port, default=1883, help="MQTT port (default 1883; 0 = any free, -1 = off)"
    )
    serve.add_argument(
        "--http-port", type=_port, default=8080, help="HTTP port (default 8080; 0 = any free, -1 = off)"
    )
    serve.add_argument(
        "--mqtts-port", type=_port, default=8883, help="MQTT over TLS (default 8883; 0 = any free, -1 = off)"
    )
    serve.add_argument(
        "--https-port",
        type=_port,
        default=8443,
        help="HTTPS and MQTT over WebSocket at /$iothub/websocket (default 8443; 0 = any free, -1 = off)",
    )
    serve.add_argument(
        "--tls-cert",
        type=Path,
        default=None,
        help="server certificate chain, PEM (default: a development CA and certificate in DIR/tls)",
    )
    serve.add_argument("--tls-key", type=Path, default=None, help="the certificate's private key, PEM")
    serve.add_argument(
        "--nats",
        default=os.environ.get(ENV_NATS) or None,
        metavar="URL",
        help=f"run as a cluster node: the NATS server(s) that carry calls between nodes, e.g. "
        f"nats://10.0.0.5:4222 (or ${ENV_NATS}); see docs/cluster.md",
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        default=_workers(os.environ.get(ENV_WORKERS) or "1"),
        metavar="N",
        help=f"node processes on this machine sharing the ports (SO_REUSEPORT; default 1, or "
        f"${ENV_WORKERS}); N > 1 needs NATS: --nats, or a nats-server binary, which is then started",
    )
    limits = serve.add_argument_group("HTTP limits, per listener (docs/operations.md, 'Limits')")
    limits.add_argument(
        "--http-head-timeout",
        type=_positive_float,
        default=HTTP_REQUEST_HEAD_TIMEOUT,
        metavar="S",
        help=f"seconds a request head may take, a first one from the connect (408; default "
        f"{HTTP_REQUEST_HEAD_TIMEOUT:g})",
    )
    limits.add_argument(
        "--http-body-timeout",
        type=_positive_float,
        default=HTTP_REQUEST_BODY_TIMEOUT,
        metavar="S",
        help=f"seconds a request body may take after its head (408; default {HTTP_REQUEST_BODY_TIMEOUT:g})",
    )
    limits.add_argument(
        "--http-max-connections",
        type=_positive_int,
        default=HTTP_MAX_CONNECTIONS,
        metavar="N",
        help=f"connections held; beyond, the oldest idle or never-completed one is closed (default "
        f"{HTTP_MAX_CONNECTIONS})",
    )
    limits.add_argument(
        "--http-max-unestablished",
        type=_positive_int,
        default=HTTP_MAX_UNESTABLISHED,
        metavar="N",
        help=f"connections that have not completed a request; beyond, the oldest is closed (default "
        f"{HTTP_MAX_UNESTABLISHED})",
    )

    _add_device_limit_options(serve)

    commands.add_parser(
        "ca-cert",
        parents=[common],
        help="print the development CA certificate (PEM) that clients must trust for TLS",
        description="Print the PEM of this data dir's development CA (made if missing) on stdout.",
    )

    cs = commands.add_parser("connection-string", parents=[common], help="print a service connection string")
    cs.add_argument("--policy", default="iothubowner", help="access policy (default iothubowner)")

    device = commands.add_parser("device", parents=[common], help="manage device identities")
    device_commands = device.add_subparsers(dest="device_command", metavar="ACTION", required=True)
    create = device_commands.add_parser(
        "create", parents=[common], help="register a device and print its connection string"
    )
    create.add_argument("device_id", metavar="ID")
    create.add_argument(
        "--product",
        default=None,
        metavar="PK",
        help="register an Alibaba Cloud device: ID is its DeviceName in product PK; prints "
        "ProductKey=, DeviceName=, DeviceSecret= and DeviceId= (its methodhub id), one per line",
    )
    create.add_argument(
        "--secret", default=None, help="with --product: import this DeviceSecret instead of generating one"
    )
    list_ = device_commands.add_parser(
        "list", parents=[common], help="list devices (or a device's modules with --of ID)"
    )
    list_.add_argument(
        "--of", dest="device_id", default=None, metavar="ID", help="list this device's modules"
    )
    show = device_commands.add_parser("show", parents=[common], help="show one device (JSON)")
    show.add_argument("device_id", metavar="ID")
    delete = device_commands.add_parser("delete", parents=[common], help="delete a device (and its modules)")
    delete.add_argument("device_id", metavar="ID")
    for sub in (create, show, delete):
        sub.add_argument("--module", default=None, metavar="MID", help="a module identity of the device")
    run = device_commands.add_parser(
        "run",
        parents=[common],
        help="connect as a simulated device that echoes every method call",
        description="Connect as a simulated device that echoes every method call, until Ctrl-C. "
        "Exits 1 if the hub refuses its credentials (the device was deleted or disabled, or its key "
        "changed), 5 if no hub runs on the data dir (without --mqtt).",
    )
    run.add_argument("device_id", metavar="ID")
    run.add_argument("--module", default=None, metavar="MID", help="run as this module of the device")
    run.add_argument(
        "--tls", action="store_true", help="connect over MQTT/TLS, trusting the data dir's development CA"
    )
    run.add_argument(
        "--cacert",
        type=Path,
        default=None,
        metavar="FILE",
        help="with TLS (implies --tls): trust the CA certificates in this PEM file instead",
    )
    run.add_argument(
        "--connection-string", default=None, help="device connection string (default: from the data dir)"
    )
    run.add_argument(
        "--mqtt",
        default=None,
        metavar="HOST:PORT",
        help="the hub's MQTT address (default: the running hub's)",
    )

    invoke = commands.add_parser(
        "invoke",
        parents=[common],
        help="call a method on a device",
        description='Call METHOD on DEVICE through the hub\'s HTTP API and print {"status", "payload"}. '
        "Exit codes: 0 the device answered, 3 offline, 4 timed out, 5 no hub to talk to (not "
        "running, unreachable, TLS certificate not trusted, or stopping), 1 any other error, 2 usage.",
    )
    invoke.add_argument("device", metavar="DEVICE")
    invoke.add_argument("method", metavar="METHOD")
    invoke.add_argument("--payload", default="null", help="JSON payload (default null)")
    invoke.add_argument(
        "--timeout", type=int, default=30, help="seconds the device has to answer (5-300, default 30)"
    )
    invoke.add_argument(
        "--connect-timeout", type=int, default=0, help="seconds to wait for the device to connect (0-300)"
    )
    invoke.add_argument("--module", default=None, help="call a module of the device")
    invoke.add_argument(
        "--connection-string", default=None, help=f"service connection string (or ${ENV_CONNECTION_STRING})"
    )
    invoke.add_argument(
        "--url",
        default=None,
        help=f"the hub's HTTP(S) base URL (or ${ENV_URL}); default: the hub running on the data dir",
    )
    invoke.add_argument(
        "--cacert",
        type=Path,
        default=None,
        metavar="FILE",
        help="for an https:// URL: trust the CA certificates in this PEM file (default: the system's "
        "and the data dir's development CA)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    global _debug
    args = build_parser().parse_args(argv)
    _debug = bool(getattr(args, "debug", False))
    data_dir: Path = getattr(args, "data_dir", None) or default_data_dir()
    args.registry_url = getattr(args, "registry", None) or os.environ.get(ENV_REGISTRY) or None
    args.global_flags = _global_flags(args, data_dir)
    from methodhub.process.logs import setup_logging

    setup_logging(getattr(args, "log_level", "info"), getattr(args, "log_format", "text"))
    try:
        _run_command(args, data_dir)
    except KeyboardInterrupt:
        print("methodhub: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except DataDirError as exc:
        _fail(str(exc))
    except Exception as exc:  # a bug: still one line, unless --debug asks for the traceback
        if _debug:
            raise
        _fail(
            f"unexpected {type(exc).__name__}: {exc}. This is a bug in methodhub; please report it "
            "with the output of the same command run with --debug"
        )


def _run_command(args: argparse.Namespace, data_dir: Path) -> None:
    if args.command == "serve":
        _serve(args, data_dir)
    elif args.command == "ca-cert":
        from methodhub.process.tls import ensure_dev_ca

        ensure_data_dir(data_dir)
        sys.stdout.write(ensure_dev_ca(data_dir).read_text())
    elif args.command == "connection-string":
        print(asyncio.run(_service_connection_string(data_dir, args.policy, args.registry_url)))
    elif args.command == "device":
        if args.device_command == "run":
            _device_run(args, data_dir)
        else:
            asyncio.run(_device(args, data_dir))
    elif args.command == "invoke":
        raise SystemExit(_invoke(args, data_dir))


def _global_flags(args: argparse.Namespace, data_dir: Path) -> str:
    """`` --data-dir DIR`` / `` --registry URL`` when this command was given them (by option or
    environment): what a command printed for the user to run needs, to act on the same hub."""
    flags = ""
    if getattr(args, "data_dir", None) is not None or os.environ.get(ENV_DATA_DIR):
        flags += f" --data-dir {shlex.quote(str(data_dir))}"
    if args.registry_url:
        flags += f" --registry {shlex.quote(args.registry_url)}"
    return flags


def _command(args: argparse.Namespace, command: str) -> str:
    """``methodhub COMMAND`` with this invocation's global flags: a command that works as printed."""
    return f"methodhub {command}{args.global_flags}"


# -- serve ---------------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace, data_dir: Path) -> None:
    from methodhub.process.hub import Hub
    from methodhub.process.tls import TlsSetupError
    from methodhub.registry import SchemaTooNew
    from methodhub.router import RouterUnavailable

    ensure_data_dir(data_dir)
    try:  # before the registry is touched: a second hub must change nothing of the first's
        check_data_dir_free(data_dir)
    except DataDirInUse as exc:
        _fail(f"cannot start: {exc}")
    settings = read_settings(data_dir)
    hostname = asyncio.run(_agreed_hostname(data_dir, args.registry_url, args.hostname))
    config = HubConfig(
        data_dir=data_dir,
        host=args.host,
        hostname=hostname,
        mqtt_port=args.mqtt_port,
        http_port=args.http_port,
        mqtts_port=args.mqtts_port,
        https_port=args.https_port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        nats_url=args.nats,
        registry_url=args.registry_url,
        connect_packet_timeout=args.mqtt_connect_timeout,
        device_limits=_device_limits(args),
        http_request_head_timeout=args.http_head_timeout,
        http_request_body_timeout=args.http_body_timeout,
        http_max_connections=args.http_max_connections,
        http_max_unestablished=args.http_max_unestablished,
    )
    if settings.get("hostname") != hostname:
        write_settings(data_dir, {**settings, "hostname": hostname})

    def started(hub: Any) -> None:  # a Hub, or the WorkerPool of --workers N
        if hub.first_start:
            print(tour(args, hub.runtime_info(), hub.owner_connection_string, data_dir), flush=True)

    _install_uvloop()
    try:
        if args.workers > 1:
            from methodhub.process.workers import WorkerPool, WorkersError

            try:
                raise SystemExit(WorkerPool(config, args.workers).run(started))
            except WorkersError as exc:
                _fail(f"cannot start: {exc}")
        asyncio.run(Hub(config).run(started))
    except (TlsSetupError, RouterUnavailable, SchemaTooNew, DataDirInUse) as exc:
        _fail(f"cannot start: {exc}")
    except HubError as exc:  # the registry became unreachable after the check above
        _fail(f"cannot start: {exc.message}")
    except OSError as exc:
        _fail(
            f"cannot start: {exc}. Is another hub running? "
            "Pick other ports with --mqtt-port/--http-port/--mqtts-port/--https-port (-1 turns one off)."
        )


TOUR_COLUMN = 60
"""The banner's comments line up after its commands if they all fit in this many columns."""
_LISTENER_NAMES = {"mqtt": "MQTT", "http": "HTTP", "mqtts": "MQTT/TLS", "https": "HTTPS + MQTT/WebSocket"}


def tour(args: argparse.Namespace, info: dict[str, Any], owner_connection_string: str, data_dir: Path) -> str:
    """The first start's banner: where the hub listens, its owner key, and next steps that work as
    printed (with this invocation's --data-dir and --registry; only for the listeners that are on)."""
    registry_url = args.registry_url
    if registry_url:
        from methodhub.registry import redact_url

        where = f"Data dir: {data_dir}. Registry: {redact_url(registry_url)}"
    else:
        where = f"Data dir: {data_dir}"
    on = [f"{label} {info[name]}" for name, label in _LISTENER_NAMES.items() if name in info]
    off = [label for name, label in _LISTENER_NAMES.items() if name not in info]
    listening = "Listening: " + (", ".join(on) or "nothing") + (f" ({', '.join(off)} off)" if off else "")

    steps: list[tuple[str, str]] = [
        (_command(args, "device create pump-17"), "register a device, prints its connection string")
    ]
    if "mqtt" in info or "mqtts" in info:
        tls = "" if "mqtt" in info else " --tls"
        steps.append((_command(args, f"device run pump-17{tls}"), "a simulated device that echoes calls"))
    if "http" in info or "https" in info:
        steps.append((_command(args, "invoke pump-17 reboot --payload '{\"delay\": 5}'"), "call a method"))
        if "http" in info:
            steps.append((f"curl {info['http']}/openapi.json", "the HTTP API"))
        elif "ca" in info:
            steps.append(
                (f"curl --cacert {shlex.quote(str(info['ca']))} {info['https']}/openapi.json", "the HTTP API")
            )
    if "ca" in info:
        ports = ", ".join(
            f"{label} {str(info[name]).rpartition(':')[2]}"
            for name, label in (("mqtts", "MQTT/TLS"), ("https", "HTTPS"))
            if name in info
        )
        steps.append((_command(args, "ca-cert") + " > ca.pem", f"the CA TLS clients trust ({ports})"))
    width = max(len(command) for command, _ in steps) + 2
    if width <= TOUR_COLUMN:
        lines = "\n".join(f"  {command.ljust(width)}# {comment}" for command, comment in steps)
    else:  # long commands (a long --data-dir): each comment on the line above its command
        lines = "\n".join(f"  # {comment}\n  {command}" for command, comment in steps)
    return f"""methodhub is running. {where}
{listening}

Service connection string (policy iothubowner; keep it secret):
  {owner_connection_string}

Next steps (in another terminal):
{lines}
See README.md for the same with curl, over TLS, and with the Python and Azure SDKs.
"""


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# -- registry commands ---------------------------------------------------------------------------------


HOSTNAME_SETTING = "hostname"
"""The registry setting holding the hub's hostname, so every node and CLI of a cluster agrees."""


async def _hostname(data_dir: Path, registry: Registry) -> str:
    """The hub's hostname for printed connection strings: the running hub's on this data dir, else
    the one ``serve`` recorded in the registry, else in the data dir (hubs before the registry kept
    it), else localhost."""
    runtime = read_runtime(data_dir)
    if runtime and runtime.get("hostname"):
        return str(runtime["hostname"])
    stored = await registry.get_setting(HOSTNAME_SETTING)
    return stored or str(read_settings(data_dir).get("hostname") or "localhost")


async def _agreed_hostname(data_dir: Path, registry_url: str | None, wanted: str | None) -> str:
    """``serve``'s hostname: ``--hostname`` (recorded in the registry for every node and CLI), else
    the recorded one, else localhost. Also checks, before anything starts, that the registry opens."""
    registry = await _open_registry(data_dir, registry_url, create=True, default_policies=False)
    try:
        stored = await registry.get_setting(HOSTNAME_SETTING)
        hostname = wanted or stored or str(read_settings(data_dir).get("hostname") or "localhost")
        if stored != hostname:
            await registry.set_setting(HOSTNAME_SETTING, hostname)
        return hostname
    except HubError as exc:
        _fail(f"cannot start: {exc.message}")
    finally:
        await registry.close()


async def _open_registry(
    data_dir: Path, registry_url: str | None, *, create: bool = False, default_policies: bool = True
) -> Registry:
    """The open registry: at ``registry_url`` (``--registry`` / $METHODHUB_REGISTRY), else the data
    dir's SQLite file (which must exist unless ``create``). Fails with one line if it cannot open."""
    from methodhub.registry import SchemaTooNew, open_registry

    if registry_url is not None:
        try:
            registry = open_registry(registry_url)
        except ValueError as exc:
            _fail(f"--registry / ${ENV_REGISTRY}: {exc}", EXIT_USAGE)
    else:
        path = data_dir / "registry.db"
        if not path.exists() and not create:
            _fail(
                f"no hub data in {data_dir}; start one with `methodhub serve` "
                "(or pass --data-dir, or --registry URL for a hub on PostgreSQL)"
            )
        ensure_data_dir(data_dir)
        registry = open_registry(str(path))
    try:
        await registry.open()
        if default_policies:
            await registry.ensure_default_policies()
    except (HubError, SchemaTooNew) as exc:
        await registry.close()
        _fail(exc.message if isinstance(exc, HubError) else str(exc))
    return registry


async def _service_connection_string(data_dir: Path, policy_name: str, registry_url: str | None) -> str:
    registry = await _open_registry(data_dir, registry_url, create=True)
    try:
        policy = await registry.get_policy(policy_name)
        if policy is None:
            names = ", ".join(p.name for p in await registry.list_policies())
            _fail(f"no access policy '{policy_name}'; policies: {names}")
        return str(
            ConnectionString(
                host_name=await _hostname(data_dir, registry),
                shared_access_key_name=policy.name,
                shared_access_key=policy.keys.primary,
            )
        )
    except HubError as exc:
        _fail(exc.message)
    finally:
        await registry.close()


def device_connection_string(hostname: str, device_id: str, key: str, module_id: str | None = None) -> str:
    return str(
        ConnectionString(host_name=hostname, device_id=device_id, module_id=module_id, shared_access_key=key)
    )


async def _device(args: argparse.Namespace, data_dir: Path) -> None:
    registry = await _open_registry(data_dir, args.registry_url, create=args.device_command == "create")
    try:
        action = args.device_command
        module_id = getattr(args, "module", None)
        if action == "create" and (args.product is not None or args.secret is not None):
            await _create_product_device(registry, args)
        elif action == "create":
            identity = await registry.create_identity(args.device_id, module_id)
            print(
                device_connection_string(
                    await _hostname(data_dir, registry),
                    identity.device_id,
                    identity.keys.primary,
                    identity.module_id,
                )
            )
        elif action == "list":
            identities = await registry.list_identities(args.device_id, limit=100000)
            for identity in identities:
                print(f"{identity.module_id or identity.device_id}\t{identity.status}")
            if not identities and args.device_id is None:
                print("no devices; create one with `methodhub device create ID`", file=sys.stderr)
        elif action == "show":
            found = await registry.get_identity(args.device_id, module_id)
            if found is None:
                _fail(f"no {'module' if module_id else 'device'} '{_label(args.device_id, module_id)}'")
            identity = found
            shown: dict[str, Any] = {"deviceId": identity.device_id}
            if module_id:
                shown["moduleId"] = identity.module_id
            shown |= {
                "status": identity.status,
                "statusReason": identity.status_reason,
                "etag": identity.etag,
                "generationId": identity.generation_id,
                "primaryKey": identity.keys.primary,
                "secondaryKey": identity.keys.secondary,
                "connectionString": device_connection_string(
                    await _hostname(data_dir, registry),
                    identity.device_id,
                    identity.keys.primary,
                    identity.module_id,
                ),
            }
            if not module_id:
                shown["modules"] = [m.module_id for m in await registry.list_identities(identity.device_id)]
                product_device = await registry.find_product_device(identity.device_id)
                if product_device is not None:  # an Alibaba Cloud device: its names and secret too
                    shown["productKey"] = product_device.product_key
                    shown["deviceName"] = product_device.device_name
                    shown["deviceSecret"] = product_device.device_secret
            print(json.dumps(shown, indent=2))
        elif action == "delete":
            await registry.delete_identity(args.device_id, module_id)
            print(
                f"deleted {'module' if module_id else 'device'} '{_label(args.device_id, module_id)}'",
                file=sys.stderr,
            )
    except HubError as exc:
        _fail(exc.message)
    finally:
        await registry.close()


async def _create_product_device(registry: Any, args: argparse.Namespace) -> None:
    if args.product is None:
        _fail("--secret needs --product PK (the DeviceSecret of an Alibaba Cloud device)", EXIT_USAGE)
    if args.module is not None:
        _fail("--module and --product do not go together: Alibaba devices have no modules", EXIT_USAGE)
    device = await registry.create_product_device(args.product, args.device_id, device_secret=args.secret)
    print(
        f"ProductKey={device.product_key}\nDeviceName={device.device_name}\n"
        f"DeviceSecret={device.device_secret}\nDeviceId={device.device_id}"
    )


def _label(device_id: str, module_id: str | None) -> str:
    return f"{device_id}/{module_id}" if module_id else device_id


# -- device run ----------------------------------------------------------------------------------------


def _device_run(args: argparse.Namespace, data_dir: Path) -> None:
    from methodhub.sdk import CredentialError, DeviceClient, MethodRequest

    connection_string = args.connection_string or os.environ.get(ENV_DEVICE_CONNECTION_STRING)
    origin = "--connection-string" if args.connection_string else f"${ENV_DEVICE_CONNECTION_STRING}"
    if connection_string is None:
        connection_string = asyncio.run(
            _device_connection_string_from_registry(data_dir, args.registry_url, args.device_id, args.module)
        )
    use_tls = args.tls or args.cacert is not None
    listener = "mqtts" if use_tls else "mqtt"
    mqtt = args.mqtt
    if mqtt is None:
        mqtt = _running_hub_address(args, data_dir, (listener,), "--mqtt HOST:PORT")
    host, _, port = mqtt.rpartition(":")
    if not host or not port.isdigit():
        _fail(f"--mqtt {mqtt!r}: give the hub's MQTT address as HOST:PORT", EXIT_USAGE)
    context = _tls_trust(args.cacert, data_dir) if use_tls else None
    try:
        client = DeviceClient.from_connection_string(
            connection_string, host=host.strip("[]"), port=int(port), ssl=context
        )
    except ValueError as exc:
        _fail(
            f"{origin} is not a device connection string: {exc}; get one with "
            f"`{_command(args, 'device show ID')}` (its connectionString)",
            EXIT_USAGE,
        )

    @client.method()
    async def echo(request: MethodRequest) -> tuple[int, Any]:
        print(json.dumps({"method": request.name, "payload": request.payload}), flush=True)
        return 200, {"method": request.name, "payload": request.payload}

    print(
        f"device '{client.device_id}' connecting to {mqtt}; "
        "answering every method with an echo (Ctrl-C to stop)",
        file=sys.stderr,
    )
    try:
        client.run_forever()  # returns on Ctrl-C
    except CredentialError:
        _fail(
            f"the hub refused the credentials of '{client.client_id}': the device was deleted or "
            f"disabled, or its key changed (see `{_command(args, 'device list')}`)"
        )


def _running_hub_address(
    args: argparse.Namespace, data_dir: Path, listeners: tuple[str, ...], alternative: str
) -> str:
    """The address, in ``hub.json``, of the first of ``listeners`` that the hub running on the data
    dir has on; else one line that says what is wrong (none running, a stale record, the listener
    off) and what to do."""
    runtime = read_runtime(data_dir)
    if runtime is None:
        stale = stale_runtime_pid(data_dir)
        if stale is not None:
            _fail(
                f"the hub recorded in {data_dir / 'hub.json'} (pid {stale}) is not running: it was "
                f"killed or crashed; start it again with `{_command(args, 'serve')}`, or pass {alternative}",
                EXIT_UNAVAILABLE,
            )
        _fail(
            f"no hub is running on the data dir {data_dir}; start one with "
            f"`{_command(args, 'serve')}`, or pass {alternative}",
            EXIT_UNAVAILABLE,
        )
    for listener in listeners:
        if listener in runtime:
            return str(runtime[listener])
    on = [name for name in _LISTENER_NAMES if name in runtime]
    hint = " (it has mqtts: add --tls)" if listeners == ("mqtt",) and "mqtts" in runtime else ""
    _fail(
        f"the hub running on {data_dir} (pid {runtime.get('pid')}) has no {' or '.join(listeners)} "
        f"listener{hint}; it has {', '.join(on) or 'none'}. Pass {alternative}, or restart it with "
        f"that listener on",
        EXIT_UNAVAILABLE,
    )


def _tls_trust(cacert: Path | None, data_dir: Path) -> ssl.SSLContext:
    """What a TLS client of the hub trusts: ``--cacert``'s CAs, else the system's and the data
    dir's development CA (if there is one)."""
    if cacert is not None:
        if not cacert.is_file():
            _fail(f"--cacert {cacert}: no such file", EXIT_USAGE)
        try:
            return ssl.create_default_context(cafile=str(cacert))
        except (ssl.SSLError, OSError, ValueError) as exc:
            _fail(f"--cacert {cacert} is not a PEM file of CA certificates: {exc}", EXIT_USAGE)
    from methodhub.process.tls import ca_cert_path

    context = ssl.create_default_context()
    ca = ca_cert_path(data_dir)
    if ca.is_file():
        try:
            context.load_verify_locations(cafile=str(ca))
        except (ssl.SSLError, OSError) as exc:
            _fail(f"the data dir's CA {ca} cannot be read: {exc}; pass --cacert FILE")
    return context


async def _device_connection_string_from_registry(
    data_dir: Path, registry_url: str | None, device_id: str, module_id: str | None = None
) -> str:
    registry = await _open_registry(data_dir, registry_url)
    try:
        identity = await registry.get_identity(device_id, module_id)
        if identity is None:
            flag = f" --module {module_id}" if module_id else ""
            _fail(
                f"no identity '{_label(device_id, module_id)}'; "
                f"create it with `methodhub device create {device_id}{flag}`"
            )
        return device_connection_string(
            await _hostname(data_dir, registry), identity.device_id, identity.keys.primary, identity.module_id
        )
    except HubError as exc:
        _fail(exc.message)
    finally:
        await registry.close()


# -- invoke --------------------------------------------------------------------------------------------


def _invoke(args: argparse.Namespace, data_dir: Path) -> int:
    import httpx

    from methodhub.sdk import (
        CallTimeoutError,
        DeviceOfflineError,
        MethodHubError,
        ServiceClient,
    )

    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        _fail(f"--payload is not JSON: {exc}", EXIT_USAGE)
    connection_string = args.connection_string or os.environ.get(ENV_CONNECTION_STRING)
    origin = "--connection-string" if args.connection_string else f"${ENV_CONNECTION_STRING}"
    if connection_string is None:
        connection_string = asyncio.run(
            _service_connection_string(data_dir, "iothubowner", args.registry_url)
        )
    url = args.url or os.environ.get(ENV_URL)
    if url is None:
        url = _running_hub_address(args, data_dir, ("http", "https"), "--url URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        _fail(f"--url {url!r}: give the hub's base URL, as http://HOST:PORT or https://HOST:PORT", EXIT_USAGE)
    verify: ssl.SSLContext | bool = _tls_trust(args.cacert, data_dir) if parts.scheme == "https" else True
    try:
        client = ServiceClient.from_connection_string(connection_string, url=url, verify=verify)
    except ValueError as exc:
        _fail(
            f"{origin} is not a service connection string: {exc}; get one with "
            f"`{_command(args, 'connection-string')}`",
            EXIT_USAGE,
        )
    try:
        with client:
            result = client.invoke(
                args.device,
                args.method,
                payload,
                module_id=args.module,
                timeout=args.timeout,
                connect_timeout=args.connect_timeout,
            )
    except DeviceOfflineError as exc:
        print(f"methodhub: {exc}", file=sys.stderr)
        return EXIT_OFFLINE
    except CallTimeoutError as exc:
        print(f"methodhub: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    except MethodHubError as exc:
        print(f"methodhub: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE if exc.status == 503 else EXIT_ERROR
    except httpx.HTTPError as exc:
        _fail_http(exc, url)
    print(json.dumps({"status": result.status, "payload": result.payload}))
    return EXIT_OK


def _fail_http(exc: httpx.HTTPError, url: str) -> NoReturn:
    """One line for a request that got no answer from the hub at ``url``."""
    import httpx

    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        tls = _ssl_error(exc)
        if isinstance(tls, ssl.SSLCertVerificationError):
            _fail(
                f"the hub at {url} is not trusted: {tls.verify_message or tls}; pass --cacert FILE with "
                "the CA that signed its certificate (methodhub's development CA: `methodhub ca-cert > "
                "ca.pem` on the hub's machine)",
                EXIT_UNAVAILABLE,
            )
        if tls is not None:
            _fail(
                f"TLS with {url} failed: {tls}; is that an HTTPS port (or should it be http://)?",
                EXIT_UNAVAILABLE,
            )
        _fail(
            f"cannot reach the hub at {url}: {exc}; is it running (`methodhub serve`), and is --url right?",
            EXIT_UNAVAILABLE,
        )
    if isinstance(exc, httpx.TimeoutException):
        _fail(f"no answer from the hub at {url} in time ({exc or 'timed out'})", EXIT_TIMEOUT)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.NetworkError):
        _fail(
            f"the hub at {url} closed the connection before answering ({exc}): it may be stopping, or "
            "that port is not its HTTP(S) API (an HTTPS port needs https://); the device may have had "
            "the call",
            EXIT_UNAVAILABLE,
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        _fail(f"--url {url!r}: {exc}", EXIT_USAGE)
    _fail(f"the request to {url} failed: {type(exc).__name__}: {exc}", EXIT_UNAVAILABLE)


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error under an httpx error, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


if __name__ == "__main__":  # pragma: no cover
    main()


def _add_device_limit_options(serve: argparse.ArgumentParser) -> None:
    """What one device connection may do (docs/operations.md, "Limits")."""
    defaults = DeviceLimits()
    group = serve.add_argument_group("device limits (docs/operations.md)")
    group.add_argument(
        "--mqtt-connect-timeout",
        type=_positive_float,
        default=HubConfig.__dataclass_fields__["connect_packet_timeout"].default,
        metavar="SECONDS",
        help="a new MQTT connection must have sent its CONNECT and been answered by then (default 10)",
    )
    group.add_argument(
        "--max-packets-per-second",
        type=_non_negative_float,
        default=defaults.max_packets_per_second,
        metavar="N",
        help=f"inbound MQTT packets per second per connection, on average (default "
        f"{defaults.max_packets_per_second:g}; 0 = no limit); above it the device is disconnected",
    )
    group.add_argument(
        "--packet-burst",
        type=_positive_int,
        default=defaults.packet_burst,
        metavar="N",
        help=f"packets a connection may send at once above that rate (default {defaults.packet_burst})",
    )
    group.add_argument(
        "--mqtt-max-connections",
        type=_positive_int,
        default=defaults.max_connections,
        metavar="N",
        help=f"connections per MQTT listener (default {defaults.max_connections}); past it the oldest "
        "unauthenticated one is closed; an authenticated device never is",
    )
    group.add_argument(
        "--mqtt-max-unestablished",
        type=_positive_int,
        default=defaults.max_unestablished,
        metavar="N",
        help=f"connections per MQTT listener whose CONNECT is not accepted yet (default "
        f"{defaults.max_unestablished}); past it the oldest of them is closed",
    )
    group.add_argument(
        "--max-subscriptions",
        type=_positive_int,
        default=defaults.max_subscriptions,
        metavar="N",
        help=f"topic filters per device session (default {defaults.max_subscriptions})",
    )
    group.add_argument(
        "--max-topic-filter-length",
        type=_positive_int,
        default=defaults.max_topic_filter_length,
        metavar="BYTES",
        help=f"longest topic filter a device may subscribe to (default {defaults.max_topic_filter_length})",
    )


def _device_limits(args: argparse.Namespace) -> DeviceLimits:
    return DeviceLimits(
        max_packets_per_second=args.max_packets_per_second,
        packet_burst=args.packet_burst,
        max_connections=args.mqtt_max_connections,
        max_unestablished=args.mqtt_max_unestablished,
        max_subscriptions=args.max_subscriptions,
        max_topic_filter_length=args.max_topic_filter_length,
    )


def _number(kind: type[float] | type[int], minimum: float, inclusive: bool) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < minimum or (value == minimum and not inclusive):
            bound = f"at least {minimum:g}" if inclusive else f"more than {minimum:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


_positive_float = _number(float, 0, inclusive=False)
_non_negative_float = _number(float, 0, inclusive=True)
_positive_int = _number(int, 1, inclusive=True)
