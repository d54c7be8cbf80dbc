"""``methodhub token``: print a SAS token (what ``az iot hub generate-sas-token`` does), signed with an
access policy's key or a device's (or module's), from the registry or a ``--connection-string``."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from methodhub.cli.exits import EXIT_USAGE, fail
from methodhub.cli.invoke import duration
from methodhub.cli.options import printed_command
from methodhub.cli.registry import hub_hostname, identity_label, open_hub_registry
from methodhub.dialects.azure.connection_string import ConnectionString
from methodhub.dialects.azure.sas import generate_sas_token
from methodhub.errors import HubError

DEFAULT_POLICY = "iothubowner"


def add_token_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    token = commands.add_parser(
        "token",
        parents=[common],
        help="print a SAS token (for curl, or any HTTP client)",
        description="Print a SharedAccessSignature token alone on stdout (its expiry on stderr): an "
        "access policy's (default iothubowner), for the service API, or a device's (--device), for "
        "the device side. Keys come from the registry, or from --connection-string.",
    )
    whose = token.add_mutually_exclusive_group()
    whose.add_argument("--policy", default=None, metavar="NAME", help="sign with this access policy's key")
    whose.add_argument("--device", default=None, metavar="ID", help="sign with this device's key")
    token.add_argument("--module", default=None, metavar="M", help="with --device: this module's key")
    token.add_argument(
        "--ttl",
        type=duration,
        default=3600,
        metavar="DURATION",
        help="how long the token is valid (e.g. 90s, 30m, 1h, 7d; default 1h)",
    )
    token.add_argument(
        "--connection-string",
        default=None,
        metavar="CS",
        help="sign with this connection string's key instead of the registry's (a service connection "
        "string gives a policy token, a device's a device token)",
    )


def print_token(args: argparse.Namespace, data_dir: Path) -> None:
    if args.module is not None and args.device is None:
        fail("--module needs --device ID (the device the module belongs to)", EXIT_USAGE)
    expiry = int(time.time()) + args.ttl
    if args.connection_string is not None:
        resource, key, key_name = _from_connection_string(args)
    else:
        resource, key, key_name = asyncio.run(_from_registry(args, data_dir))
    print(generate_sas_token(resource, key, expiry, key_name))
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiry))
    print(f"valid until {until} (for {resource})", file=sys.stderr)


def device_resource(hostname: str, device_id: str, module_id: str | None) -> str:
    """The ``sr`` of a device's (or module's) token, as Azure's SDKs sign it."""
    resource = f"{hostname}/devices/{device_id}"
    return resource + (f"/modules/{module_id}" if module_id else "")


def _from_connection_string(args: argparse.Namespace) -> tuple[str, str, str | None]:
    try:
        cs = ConnectionString.parse(args.connection_string)
    except ValueError as exc:
        fail(f"--connection-string is not a connection string: {exc}", EXIT_USAGE)
    if not cs.shared_access_key:
        fail("--connection-string has no SharedAccessKey to sign with", EXIT_USAGE)
    if cs.device_id is not None:
        if args.policy is not None:
            fail("--policy needs a service connection string; this one is a device's", EXIT_USAGE)
        if (args.device is not None and args.device != cs.device_id) or (
            args.module is not None and args.module != cs.module_id
        ):
            fail(
                f"--device/--module name another identity than the connection string's "
                f"({identity_label(cs.device_id, cs.module_id)}); drop them",
                EXIT_USAGE,
            )
        return device_resource(cs.host_name, cs.device_id, cs.module_id), cs.shared_access_key, None
    if args.device is not None:
        fail(
            "a service connection string signs policy tokens; for a device token pass the device's "
            "connection string, or drop --connection-string to use the key in the registry",
            EXIT_USAGE,
        )
    if args.policy is not None and args.policy != cs.shared_access_key_name:
        fail(
            f"--policy {args.policy} but the connection string is policy {cs.shared_access_key_name}'s; "
            "drop one of them",
            EXIT_USAGE,
        )
    return cs.host_name, cs.shared_access_key, cs.shared_access_key_name


async def _from_registry(args: argparse.Namespace, data_dir: Path) -> tuple[str, str, str | None]:
    registry = await open_hub_registry(data_dir, args.registry_url)
    try:
        hostname = await hub_hostname(data_dir, registry)
        if args.device is not None:
            identity = await registry.get_identity(args.device, args.module)
            if identity is None:
                label = identity_label(args.device, args.module)
                kind = "module" if args.module else "device"
                fail(f"no {kind} '{label}'; see `{printed_command(args, 'device list')}`")
            return device_resource(hostname, args.device, args.module), identity.keys.primary, None
        name = args.policy or DEFAULT_POLICY
        policy = await registry.get_policy(name)
        if policy is None:
            names = ", ".join(p.name for p in await registry.list_policies())
            fail(f"no access policy '{name}'; policies: {names}")
        return hostname, policy.keys.primary, policy.name
    except HubError as exc:
        fail(exc.message)
    finally:
        await registry.close()
