"""``methodhub device create|list|show|delete|enable|disable|regenerate-key``: device identities in
the registry (``device run`` is :mod:`methodhub.cli.device_run`). ``device list`` adds each device's
connection state and last activity, cluster-wide, from the running hub's API (``unknown`` without one)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from methodhub.cli.device_run import add_device_run_parser
from methodhub.cli.exits import EXIT_USAGE, fail
from methodhub.cli.hub_api import get_json, hub_client, owner_token, running_hub_url
from methodhub.cli.options import printed_command
from methodhub.cli.registry import (
    add_regenerate_key_parser,
    device_connection_string,
    hub_hostname,
    identity_label,
    open_hub_registry,
    rotated,
)
from methodhub.errors import ErrorKind, HubError

if TYPE_CHECKING:
    from methodhub.registry import DeviceAuth, Registry


def add_device_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
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
    create.add_argument(
        "--x509-thumbprint",
        default=None,
        metavar="HEX",
        help="authenticate with a self-signed X.509 certificate of this SHA-1 or SHA-256 thumbprint "
        "(`methodhub ca dev-cert ID` prints one) instead of SAS keys",
    )
    create.add_argument(
        "--x509-secondary", default=None, metavar="HEX", help="with --x509-thumbprint: a second certificate's"
    )
    create.add_argument(
        "--x509-ca",
        action="store_true",
        help="authenticate with an X.509 certificate issued by a verified CA (`methodhub ca`), CN = the id",
    )
    list_ = device_commands.add_parser(
        "list", parents=[common], help="list devices (or a device's modules with --of ID)"
    )
    list_.add_argument(
        "--of", dest="device_id", default=None, metavar="ID", help="list this device's modules"
    )
    list_.add_argument("--json", action="store_true", help="a JSON array, for scripts")
    show = device_commands.add_parser("show", parents=[common], help="show one device (JSON)")
    show.add_argument("device_id", metavar="ID")
    delete = device_commands.add_parser("delete", parents=[common], help="delete a device (and its modules)")
    delete.add_argument("device_id", metavar="ID")
    enable = device_commands.add_parser("enable", parents=[common], help="let a disabled device connect")
    enable.add_argument("device_id", metavar="ID")
    disable = device_commands.add_parser(
        "disable", parents=[common], help="refuse a device's connections (and drop it if connected)"
    )
    disable.add_argument("device_id", metavar="ID")
    disable.add_argument("--reason", default=None, help="its statusReason (up to 128 characters)")
    regenerate = add_regenerate_key_parser(
        device_commands, common, "device", "device_id", "the old key stops working"
    )
    for sub in (create, show, delete, regenerate):
        sub.add_argument("--module", default=None, metavar="MID", help="a module identity of the device")
    add_device_run_parser(device_commands, common)


def manage_devices(args: argparse.Namespace, data_dir: Path) -> None:
    """``device create|list|show|delete|enable|disable|regenerate-key``."""
    asyncio.run(_device(args, data_dir))


async def _device(args: argparse.Namespace, data_dir: Path) -> None:
    registry = await open_hub_registry(data_dir, args.registry_url, create=args.device_command == "create")
    try:
        action = args.device_command
        module_id = getattr(args, "module", None)
        if action == "create" and (args.product is not None or args.secret is not None):
            await _create_product_device(registry, args)
        elif action == "create":
            auth = _x509_auth(args)
            identity = await registry.create_identity(args.device_id, module_id, auth=auth)
            hostname = await hub_hostname(data_dir, registry)
            if auth is not None:
                print(_x509_connection_string(hostname, identity.device_id, identity.module_id))
            else:
                print(
                    device_connection_string(
                        hostname, identity.device_id, identity.keys.primary, identity.module_id
                    )
                )
        elif action == "list":
            await list_devices(registry, args, data_dir)
        elif action in ("enable", "disable"):
            status = "enabled" if action == "enable" else "disabled"
            reason = getattr(args, "reason", None)
            await registry.update_identity(args.device_id, status=status, status_reason=reason)
            print(f"device '{args.device_id}' {status}", file=sys.stderr)
        elif action == "regenerate-key":
            await _regenerate_key(registry, args, data_dir)
        elif action == "show":
            found = await registry.get_identity(args.device_id, module_id)
            if found is None:
                kind = "module" if module_id else "device"
                fail(f"no {kind} '{identity_label(args.device_id, module_id)}'")
            identity = found
            shown: dict[str, Any] = {"deviceId": identity.device_id}
            if module_id:
                shown["moduleId"] = identity.module_id
            shown |= {
                "status": identity.status,
                "statusReason": identity.status_reason,
                "etag": identity.etag,
                "generationId": identity.generation_id,
                "authenticationType": identity.auth.type.value,
            }
            hostname = await hub_hostname(data_dir, registry)
            if identity.auth.is_x509:
                shown |= {
                    "primaryThumbprint": identity.auth.primary_thumbprint,
                    "secondaryThumbprint": identity.auth.secondary_thumbprint,
                    "connectionString": _x509_connection_string(
                        hostname, identity.device_id, identity.module_id
                    ),
                }
            else:
                shown |= {
                    "primaryKey": identity.keys.primary,
                    "secondaryKey": identity.keys.secondary,
                    "connectionString": device_connection_string(
                        hostname, identity.device_id, identity.keys.primary, identity.module_id
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
            kind = "module" if module_id else "device"
            print(f"deleted {kind} '{identity_label(args.device_id, module_id)}'", file=sys.stderr)
    except HubError as exc:
        if exc.kind in (ErrorKind.DEVICE_NOT_FOUND, ErrorKind.MODULE_NOT_FOUND):
            fail(f"{exc.message} See `{printed_command(args, 'device list')}`")
        fail(exc.message)
    finally:
        await registry.close()


async def _regenerate_key(registry: Registry, args: argparse.Namespace, data_dir: Path) -> None:
    found = await registry.get_identity(args.device_id, args.module)
    if found is None:
        kind = "module" if args.module else "device"
        label = identity_label(args.device_id, args.module)
        fail(f"no {kind} '{label}'; see `{printed_command(args, 'device list')}`")
    keys, new_key = rotated(found.keys, args.secondary)
    identity = await registry.update_identity(args.device_id, args.module, etag=found.etag, keys=keys)
    which = "secondary" if args.secondary else "primary"
    print(
        device_connection_string(
            await hub_hostname(data_dir, registry), identity.device_id, new_key, identity.module_id
        )
    )
    print(f"new {which} key for '{identity_label(args.device_id, args.module)}'", file=sys.stderr)


async def list_devices(registry: Registry, args: argparse.Namespace, data_dir: Path) -> None:
    """The devices (or a device's modules) with their connection state and last activity, as the
    running hub reports them (cluster-wide), or ``unknown`` if no hub answers."""
    identities = await registry.list_identities(args.device_id, limit=100000)
    states = await _connection_states(registry, args.device_id, data_dir)
    rows = []
    for identity in identities:
        state = states.get(identity.module_id or identity.device_id) if states is not None else None
        connection, last = state if state is not None else ("unknown", None)
        rows.append(
            {
                "deviceId": identity.device_id,
                **({"moduleId": identity.module_id} if identity.module_id else {}),
                "status": identity.status,
                "connectionState": connection,
                "lastActivityTime": last,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            name = row.get("moduleId") or row["deviceId"]
            print(f"{name}\t{row['status']}\t{row['connectionState']}\t{row['lastActivityTime'] or '-'}")
    if not identities and args.device_id is None:
        print("no devices; create one with `methodhub device create ID`", file=sys.stderr)
    elif states is None and identities:
        print(
            "connection state unknown: no hub is running on this data dir (or it did not answer)",
            file=sys.stderr,
        )


async def _connection_states(
    registry: Registry, device_id: str | None, data_dir: Path
) -> dict[str, tuple[str, str | None]] | None:
    """Id (device, or module with ``device_id``) -> (Connected / Disconnected, last activity or
    None) from the running hub's ``GET /devices`` (``/devices/ID/modules``); None if no hub answers."""
    import httpx

    url = running_hub_url(data_dir)
    if url is None:
        return None
    token = await owner_token(registry, await hub_hostname(data_dir, registry))
    if token is None:
        return None
    path = f"/devices/{quote(device_id, safe='')}/modules" if device_id else "/devices"
    params = {} if device_id else {"top": "10000"}
    try:
        async with hub_client(url, data_dir) as client:
            docs = await get_json(client, path, token, **params)
    except (httpx.HTTPError, ValueError):
        return None
    states: dict[str, tuple[str, str | None]] = {}
    for doc in docs if isinstance(docs, list) else []:
        last = doc.get("lastActivityTime")
        never = not isinstance(last, str) or last.startswith("0001-")
        states[doc.get("moduleId") or doc["deviceId"]] = (
            str(doc.get("connectionState", "unknown")),
            None if never else last,
        )
    return states


async def _create_product_device(registry: Any, args: argparse.Namespace) -> None:
    if args.product is None:
        fail("--secret needs --product PK (the DeviceSecret of an Alibaba Cloud device)", EXIT_USAGE)
    if args.module is not None:
        fail("--module and --product do not go together: Alibaba devices have no modules", EXIT_USAGE)
    device = await registry.create_product_device(args.product, args.device_id, device_secret=args.secret)
    print(
        f"ProductKey={device.product_key}\nDeviceName={device.device_name}\n"
        f"DeviceSecret={device.device_secret}\nDeviceId={device.device_id}"
    )


def _x509_auth(args: argparse.Namespace) -> DeviceAuth | None:
    """The X.509 authentication ``device create`` asks for, or None for SAS keys."""
    from methodhub.registry import AuthType, DeviceAuth

    if args.x509_secondary is not None and args.x509_thumbprint is None:
        fail("--x509-secondary needs --x509-thumbprint", EXIT_USAGE)
    if args.x509_thumbprint is not None and args.x509_ca:
        fail("give --x509-thumbprint (self-signed) or --x509-ca (CA-issued), not both", EXIT_USAGE)
    if args.x509_thumbprint is not None:
        return DeviceAuth(AuthType.SELF_SIGNED, args.x509_thumbprint, args.x509_secondary)
    if args.x509_ca:
        return DeviceAuth(AuthType.CERTIFICATE_AUTHORITY)
    return None


def _x509_connection_string(hostname: str, device_id: str, module_id: str | None) -> str:
    """Azure's connection string of an X.509 identity: no key, ``x509=true`` (the certificate and
    key are given to the SDK apart)."""
    module = f";ModuleId={module_id}" if module_id else ""
    return f"HostName={hostname};DeviceId={device_id}{module};x509=true"
