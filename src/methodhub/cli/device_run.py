"""``methodhub device run``: a simulated device that echoes every method call, until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
from pathlib import Path
from typing import Any

from methodhub.cli.exits import EXIT_USAGE, fail
from methodhub.cli.options import printed_command
from methodhub.cli.registry import device_connection_string, hub_hostname, identity_label, open_hub_registry
from methodhub.cli.running_hub import running_hub_address
from methodhub.cli.tls import tls_trust
from methodhub.errors import HubError

ENV_DEVICE_CONNECTION_STRING = "METHODHUB_DEVICE_CONNECTION_STRING"


def add_device_run_parser(
    device_commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
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
        "--x509",
        nargs=2,
        type=Path,
        default=None,
        metavar=("CERT.pem", "KEY.pem"),
        help="authenticate with this X.509 certificate and key (implies --tls) instead of a SAS token",
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


def device_run(args: argparse.Namespace, data_dir: Path) -> None:
    from methodhub.sdk import CredentialError, DeviceClient, MethodRequest

    connection_string = args.connection_string or os.environ.get(ENV_DEVICE_CONNECTION_STRING)
    origin = "--connection-string" if args.connection_string else f"${ENV_DEVICE_CONNECTION_STRING}"
    x509 = getattr(args, "x509", None)
    if x509 is not None:
        for path in x509:
            if not path.is_file():
                fail(f"--x509 {path}: no such file", EXIT_USAGE)
    if connection_string is None:
        connection_string = asyncio.run(
            device_connection_string_from_registry(
                data_dir, args.registry_url, args.device_id, args.module, x509=x509 is not None
            )
        )
    use_tls = args.tls or args.cacert is not None or x509 is not None
    listener = "mqtts" if use_tls else "mqtt"
    mqtt = args.mqtt
    if mqtt is None:
        mqtt = running_hub_address(args, data_dir, (listener,), "--mqtt HOST:PORT")
    host, _, port = mqtt.rpartition(":")
    if not host or not port.isdigit():
        fail(f"--mqtt {mqtt!r}: give the hub's MQTT address as HOST:PORT", EXIT_USAGE)
    context = tls_trust(args.cacert, data_dir) if use_tls else None
    try:
        client = DeviceClient.from_connection_string(
            connection_string,
            host=host.strip("[]"),
            port=int(port),
            ssl=context,
            x509=(str(x509[0]), str(x509[1])) if x509 is not None else None,
        )
    except (OSError, ssl.SSLError) as exc:
        fail(f"--x509 {x509[0] if x509 else ''}: cannot use this certificate and key: {exc}", EXIT_USAGE)
    except ValueError as exc:
        fail(
            f"{origin} is not a device connection string: {exc}; get one with "
            f"`{printed_command(args, 'device show ID')}` (its connectionString)",
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
        fail(
            f"the hub refused the credentials of '{client.client_id}': the device was deleted or "
            f"disabled, or its key or certificate changed (see `{printed_command(args, 'device list')}`)"
        )


async def device_connection_string_from_registry(
    data_dir: Path,
    registry_url: str | None,
    device_id: str,
    module_id: str | None = None,
    *,
    x509: bool = False,
) -> str:
    registry = await open_hub_registry(data_dir, registry_url)
    try:
        identity = await registry.get_identity(device_id, module_id)
        if identity is None:
            flag = f" --module {module_id}" if module_id else ""
            fail(
                f"no identity '{identity_label(device_id, module_id)}'; "
                f"create it with `methodhub device create {device_id}{flag}`"
            )
        hostname = await hub_hostname(data_dir, registry)
        if identity.auth.is_x509 or x509:
            if not x509:
                fail(
                    f"'{identity_label(device_id, module_id)}' authenticates with an X.509 certificate "
                    f"({identity.auth.type.value}); pass --x509 CERT.pem KEY.pem"
                )
            module = f";ModuleId={module_id}" if module_id else ""
            return f"HostName={hostname};DeviceId={device_id}{module};x509=true"
        return device_connection_string(
            hostname,
            identity.device_id,
            identity.keys.primary,
            identity.module_id,
        )
    except HubError as exc:
        fail(exc.message)
    finally:
        await registry.close()
