"""``methodhub device create|list|show|delete``: device identities in the registry (``device run`` is
:mod:`methodhub.cli.device_run`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from methodhub.cli.device_run import add_device_run_parser
from methodhub.cli.exits import EXIT_USAGE, fail
from methodhub.cli.registry import device_connection_string, hub_hostname, identity_label, open_hub_registry
from methodhub.errors import HubError


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
    add_device_run_parser(device_commands, common)


def manage_devices(args: argparse.Namespace, data_dir: Path) -> None:
    """``device create|list|show|delete``."""
    asyncio.run(_device(args, data_dir))


async def _device(args: argparse.Namespace, data_dir: Path) -> None:
    registry = await open_hub_registry(data_dir, args.registry_url, create=args.device_command == "create")
    try:
        action = args.device_command
        module_id = getattr(args, "module", None)
        if action == "create" and (args.product is not None or args.secret is not None):
            await _create_product_device(registry, args)
        elif action == "create":
            identity = await registry.create_identity(args.device_id, module_id)
            print(
                device_connection_string(
                    await hub_hostname(data_dir, registry),
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
                "primaryKey": identity.keys.primary,
                "secondaryKey": identity.keys.secondary,
                "connectionString": device_connection_string(
                    await hub_hostname(data_dir, registry),
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
            kind = "module" if module_id else "device"
            print(f"deleted {kind} '{identity_label(args.device_id, module_id)}'", file=sys.stderr)
    except HubError as exc:
        fail(exc.message)
    finally:
        await registry.close()


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
