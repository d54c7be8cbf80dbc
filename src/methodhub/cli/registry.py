"""The registry as the commands use it: opened from ``--registry`` (or $METHODHUB_REGISTRY) or the data
dir, one line if it cannot open; the hub's hostname that every node and CLI agree on; the connection
strings the commands print."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from methodhub.cli.exits import EXIT_USAGE, fail
from methodhub.cli.options import ENV_REGISTRY
from methodhub.dialects.azure.connection_string import ConnectionString
from methodhub.errors import HubError
from methodhub.process.datadir import ensure_data_dir, read_runtime, read_settings
from methodhub.registry.model import SymmetricKeys

if TYPE_CHECKING:
    from methodhub.registry import Registry

HOSTNAME_SETTING = "hostname"
"""The registry setting holding the hub's hostname, so every node and CLI of a cluster agrees."""


async def hub_hostname(data_dir: Path, registry: Registry) -> str:
    """The hub's hostname for printed connection strings: the running hub's on this data dir, else
    the one ``serve`` recorded in the registry, else in the data dir (hubs before the registry kept
    it), else localhost."""
    runtime = read_runtime(data_dir)
    if runtime and runtime.get("hostname"):
        return str(runtime["hostname"])
    stored = await registry.get_setting(HOSTNAME_SETTING)
    return stored or str(read_settings(data_dir).get("hostname") or "localhost")


async def agreed_hostname(data_dir: Path, registry_url: str | None, wanted: str | None) -> str:
    """``serve``'s hostname: ``--hostname`` (recorded in the registry for every node and CLI), else
    the recorded one, else localhost. Also checks, before anything starts, that the registry opens."""
    registry = await open_hub_registry(data_dir, registry_url, create=True, default_policies=False)
    try:
        stored = await registry.get_setting(HOSTNAME_SETTING)
        hostname = wanted or stored or str(read_settings(data_dir).get("hostname") or "localhost")
        if stored != hostname:
            await registry.set_setting(HOSTNAME_SETTING, hostname)
        return hostname
    except HubError as exc:
        fail(f"cannot start: {exc.message}")
    finally:
        await registry.close()


async def open_hub_registry(
    data_dir: Path, registry_url: str | None, *, create: bool = False, default_policies: bool = True
) -> Registry:
    """The open registry: at ``registry_url`` (``--registry`` / $METHODHUB_REGISTRY), else the data
    dir's SQLite file (which must exist unless ``create``). Fails with one line if it cannot open."""
    from methodhub.registry import SchemaTooNew, open_registry

    if registry_url is not None:
        try:
            registry = open_registry(registry_url)
        except ValueError as exc:
            fail(f"--registry / ${ENV_REGISTRY}: {exc}", EXIT_USAGE)
    else:
        path = data_dir / "registry.db"
        if not path.exists() and not create:
            fail(
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
        fail(exc.message if isinstance(exc, HubError) else str(exc))
    return registry


async def service_connection_string(data_dir: Path, policy_name: str, registry_url: str | None) -> str:
    registry = await open_hub_registry(data_dir, registry_url, create=True)
    try:
        policy = await registry.get_policy(policy_name)
        if policy is None:
            names = ", ".join(p.name for p in await registry.list_policies())
            fail(f"no access policy '{policy_name}'; policies: {names}")
        return str(
            ConnectionString(
                host_name=await hub_hostname(data_dir, registry),
                shared_access_key_name=policy.name,
                shared_access_key=policy.keys.primary,
            )
        )
    except HubError as exc:
        fail(exc.message)
    finally:
        await registry.close()


def device_connection_string(hostname: str, device_id: str, key: str, module_id: str | None = None) -> str:
    return str(
        ConnectionString(host_name=hostname, device_id=device_id, module_id=module_id, shared_access_key=key)
    )


def identity_label(device_id: str, module_id: str | None) -> str:
    return f"{device_id}/{module_id}" if module_id else device_id


def add_regenerate_key_parser(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    whose: str,
    dest: str,
    stops: str,
) -> argparse.ArgumentParser:
    """``regenerate-key NAME [--primary|--secondary]`` of a device or a policy (``whose``)."""
    regenerate = actions.add_parser(
        "regenerate-key",
        parents=[common],
        help=f"replace a {whose}'s key and print its new connection string",
        description=f"Replace the {whose}'s primary key (or --secondary) with a new random one; {stops} "
        "at once. Prints the connection string with the new key.",
    )
    regenerate.add_argument(dest, metavar="ID" if whose == "device" else "NAME")
    which = regenerate.add_mutually_exclusive_group()
    which.add_argument("--primary", action="store_true", help="the primary key (the default)")
    which.add_argument("--secondary", action="store_true", help="the secondary key")
    return regenerate


def rotated(keys: SymmetricKeys, secondary: bool) -> tuple[SymmetricKeys, str]:
    """``keys`` with a new random primary (or secondary) key, and that key."""
    new_key = SymmetricKeys.generate().primary
    return (
        SymmetricKeys(keys.primary, new_key) if secondary else SymmetricKeys(new_key, keys.secondary)
    ), new_key
