"""``methodhub``: run a hub, manage its registry, call methods, simulate a device.

Scriptable contract (README, docs and tests rely on it): commands that print a credential print it
alone on stdout; everything for people goes to stderr; exit codes of ``invoke`` say what happened.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from methodhub import __version__
from methodhub.auth import ConnectionString
from methodhub.config import (
    HTTP_MAX_CONNECTIONS,
    HTTP_MAX_UNESTABLISHED,
    HTTP_REQUEST_BODY_TIMEOUT,
    HTTP_REQUEST_HEAD_TIMEOUT,
    HubConfig,
)
from methodhub.datadir import default_data_dir, ensure_data_dir, read_runtime, read_settings, write_settings
from methodhub.errors import HubError

if TYPE_CHECKING:
    from methodhub.registry import Registry

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_OFFLINE = 3
EXIT_TIMEOUT = 4

ENV_CONNECTION_STRING = "METHODHUB_CONNECTION_STRING"
ENV_URL = "METHODHUB_URL"
ENV_NATS = "METHODHUB_NATS"
ENV_WORKERS = "METHODHUB_WORKERS"
ENV_REGISTRY = "METHODHUB_REGISTRY"


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
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


def _positive(cast: type[int] | type[float]) -> Any:
    """An argparse type: a finite number above 0 of type ``cast``."""

    def parse(text: str) -> int | float:
        try:
            value = cast(text)
        except ValueError:
            value = 0
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be a number above 0, not {text!r}")
        return value

    return parse


def _add_registry_option(parser: argparse.ArgumentParser) -> None:
    """``--registry URL``, accepted before the command and after it (SUPPRESS: the later one wins)."""
    parser.add_argument(
        "--registry",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="the registry: postgresql://user:password@host:port/db, shared by a cluster "
        f"(or ${ENV_REGISTRY}); default: the SQLite file DIR/registry.db",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="methodhub",
        description="Self-hosted IoT hub for synchronous cloud-to-device calls (Azure direct methods).",
    )
    parser.add_argument("--version", action="version", version=f"methodhub {__version__}")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="the SQLite registry, TLS files and hub.json "
        f"(default: ${'METHODHUB_DATA_DIR'} or {default_data_dir()})",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    _add_registry_option(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run a hub (MQTT for devices, HTTP for backends)")
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
        type=_positive(float),
        default=HTTP_REQUEST_HEAD_TIMEOUT,
        metavar="S",
        help=f"seconds a request head may take, a first one from the connect (408; default "
        f"{HTTP_REQUEST_HEAD_TIMEOUT:g})",
    )
    limits.add_argument(
        "--http-body-timeout",
        type=_positive(float),
        default=HTTP_REQUEST_BODY_TIMEOUT,
        metavar="S",
        help=f"seconds a request body may take after its head (408; default {HTTP_REQUEST_BODY_TIMEOUT:g})",
    )
    limits.add_argument(
        "--http-max-connections",
        type=_positive(int),
        default=HTTP_MAX_CONNECTIONS,
        metavar="N",
        help=f"connections held; beyond, the oldest idle or never-completed one is closed (default "
        f"{HTTP_MAX_CONNECTIONS})",
    )
    limits.add_argument(
        "--http-max-unestablished",
        type=_positive(int),
        default=HTTP_MAX_UNESTABLISHED,
        metavar="N",
        help=f"connections that have not completed a request; beyond, the oldest is closed (default "
        f"{HTTP_MAX_UNESTABLISHED})",
    )

    commands.add_parser(
        "ca-cert",
        help="print the development CA certificate (PEM) that clients must trust for TLS",
        description="Print the PEM of this data dir's development CA (made if missing) on stdout.",
    )

    cs = commands.add_parser("connection-string", help="print a service connection string")
    cs.add_argument("--policy", default="iothubowner", help="access policy (default iothubowner)")

    device = commands.add_parser("device", help="manage device identities")
    device_commands = device.add_subparsers(dest="device_command", metavar="ACTION", required=True)
    create = device_commands.add_parser("create", help="register a device and print its connection string")
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
    list_ = device_commands.add_parser("list", help="list devices (or a device's modules with --of ID)")
    list_.add_argument(
        "--of", dest="device_id", default=None, metavar="ID", help="list this device's modules"
    )
    show = device_commands.add_parser("show", help="show one device (JSON)")
    show.add_argument("device_id", metavar="ID")
    delete = device_commands.add_parser("delete", help="delete a device (and its modules)")
    delete.add_argument("device_id", metavar="ID")
    for sub in (create, show, delete):
        sub.add_argument("--module", default=None, metavar="MID", help="a module identity of the device")
    run = device_commands.add_parser(
        "run", help="connect as a simulated device that echoes every method call"
    )
    run.add_argument("device_id", metavar="ID")
    run.add_argument("--module", default=None, metavar="MID", help="run as this module of the device")
    run.add_argument(
        "--tls", action="store_true", help="connect over MQTT/TLS, trusting the data dir's development CA"
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
        help="call a method on a device",
        description='Call METHOD on DEVICE through the hub\'s HTTP API and print {"status", "payload"}. '
        "Exit codes: 0 the device answered, 3 offline, 4 timed out, 1 any other error, 2 usage.",
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
    invoke.add_argument("--url", default=None, help=f"the hub's HTTP(S) base URL (or ${ENV_URL})")
    for uses_registry in (serve, cs, create, list_, show, delete, run, invoke):
        _add_registry_option(uses_registry)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    data_dir: Path = args.data_dir or default_data_dir()
    args.registry_url = getattr(args, "registry", None) or os.environ.get(ENV_REGISTRY) or None
    from methodhub.logs import setup_logging

    setup_logging(args.log_level, args.log_format)
    if args.command == "serve":
        _serve(args, data_dir)
    elif args.command == "ca-cert":
        from methodhub.tls import ensure_dev_ca

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


# -- serve ---------------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace, data_dir: Path) -> None:
    from methodhub.hub import Hub
    from methodhub.registry import SchemaTooNew
    from methodhub.router import RouterUnavailable
    from methodhub.tls import TlsSetupError

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
        http_request_head_timeout=args.http_head_timeout,
        http_request_body_timeout=args.http_body_timeout,
        http_max_connections=args.http_max_connections,
        http_max_unestablished=args.http_max_unestablished,
    )
    ensure_data_dir(data_dir)
    if settings.get("hostname") != hostname:
        write_settings(data_dir, {**settings, "hostname": hostname})

    def started(hub: Any) -> None:  # a Hub, or the WorkerPool of --workers N
        if hub.first_start:
            _print_tour(hub, data_dir)

    _install_uvloop()
    try:
        if args.workers > 1:
            from methodhub.workers import WorkerPool, WorkersError

            try:
                raise SystemExit(WorkerPool(config, args.workers).run(started))
            except WorkersError as exc:
                _fail(f"cannot start: {exc}")
        asyncio.run(Hub(config).run(started))
    except (TlsSetupError, RouterUnavailable, SchemaTooNew) as exc:
        _fail(f"cannot start: {exc}")
    except HubError as exc:  # the registry became unreachable after the check above
        _fail(f"cannot start: {exc.message}")
    except OSError as exc:
        _fail(
            f"cannot start: {exc}. Is another hub running? "
            "Pick other ports with --mqtt-port/--http-port/--mqtts-port/--https-port (-1 turns one off)."
        )


def _print_tour(hub: Any, data_dir: Path) -> None:
    policy_cs = hub.owner_connection_string
    http = hub.runtime_info().get("http", "http://127.0.0.1:8080")
    registry_url = hub.config.registry_url
    if registry_url:
        from methodhub.registry import redact_url

        where = f"Data dir: {data_dir}. Registry: {redact_url(registry_url)} (pass --registry to the CLI)"
    else:
        where = f"Data dir: {data_dir}"
    print(
        f"""methodhub is running. {where}

Service connection string (policy iothubowner; keep it secret):
  {policy_cs}

Next steps (in another terminal):
  methodhub device create pump-17                 # register a device, prints its connection string
  methodhub device run pump-17                    # a simulated device that echoes calls
  methodhub invoke pump-17 reboot --payload '{{"delay": 5}}'
  curl {http}/openapi.json                       # the HTTP API
  methodhub ca-cert > ca.pem                      # the CA that TLS clients (MQTT 8883, HTTPS 8443) trust
See README.md for the same with curl, over TLS, and with the Python and Azure SDKs.
""",
        flush=True,
    )


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
            identity = await registry.get_identity(args.device_id, module_id)
            if identity is None:
                _fail(f"no {'module' if module_id else 'device'} '{_label(args.device_id, module_id)}'")
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
    from methodhub.sdk import DeviceClient, MethodRequest

    connection_string = args.connection_string or os.environ.get("METHODHUB_DEVICE_CONNECTION_STRING")
    if connection_string is None:
        connection_string = asyncio.run(
            _device_connection_string_from_registry(data_dir, args.registry_url, args.device_id, args.module)
        )
    listener = "mqtts" if args.tls else "mqtt"
    mqtt = args.mqtt
    if mqtt is None:
        runtime = read_runtime(data_dir)
        if runtime is None or listener not in runtime:
            _fail(
                f"no running hub with an {listener} listener found in {data_dir}; "
                "start one with `methodhub serve` or pass --mqtt HOST:PORT"
            )
        mqtt = str(runtime[listener])
    host, _, port = mqtt.rpartition(":")
    context = None
    if args.tls:
        import ssl

        from methodhub.tls import ca_cert_path

        ca = ca_cert_path(data_dir)
        context = ssl.create_default_context(cafile=str(ca) if ca.exists() else None)
    client = DeviceClient.from_connection_string(
        connection_string, host=host.strip("[]"), port=int(port), ssl=context
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
        client.run_forever()
    except KeyboardInterrupt:
        pass


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
    if connection_string is None:
        connection_string = asyncio.run(
            _service_connection_string(data_dir, "iothubowner", args.registry_url)
        )
    url = args.url or os.environ.get(ENV_URL)
    if url is None:
        runtime = read_runtime(data_dir)
        if runtime is None or "http" not in runtime:
            _fail(f"no running hub found in {data_dir}; start one with `methodhub serve`, or pass --url")
        url = str(runtime["http"])
    try:
        with ServiceClient.from_connection_string(connection_string, url=url) as client:
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
        return EXIT_ERROR
    print(json.dumps({"status": result.status, "payload": result.payload}))
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    main()
