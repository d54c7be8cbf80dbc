"""``methodhub policy list|create|delete|regenerate-key``: shared access policies. Custom ones with
the rights chosen, as Azure allows, next to the five built-in ones (which stay: every command and the
docs rely on them, so they cannot be deleted)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from methodhub.cli.exits import EXIT_ERROR, EXIT_USAGE, fail
from methodhub.cli.options import printed_command
from methodhub.cli.registry import add_regenerate_key_parser, hub_hostname, open_hub_registry, rotated
from methodhub.dialects.azure.connection_string import ConnectionString
from methodhub.errors import ErrorKind, HubError
from methodhub.registry.model import DEFAULT_POLICIES, AccessPolicy, Right
from methodhub.registry.policies import parse_rights

if TYPE_CHECKING:
    from methodhub.registry import Registry

RIGHT_NAMES = ",".join(r.value for r in Right)


def _rights(text: str) -> frozenset[Right]:
    """argparse type for ``--rights``: a usage error (exit 2) names the unknown rights."""
    try:
        return parse_rights(text)
    except HubError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def add_policy_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    policy = commands.add_parser("policy", parents=[common], help="manage shared access policies")
    actions = policy.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", parents=[common], help="policies and their rights")
    listing.add_argument("--json", action="store_true", help="a JSON array, for scripts")
    create = actions.add_parser(
        "create",
        parents=[common],
        help="add a policy with chosen rights and print its connection string",
        description="Add a shared access policy with the rights given (keys generated) and print its "
        "service connection string alone on stdout.",
    )
    create.add_argument("name", metavar="NAME", help="1 to 64 letters, digits, '.', '_' or '-'")
    create.add_argument(
        "--rights",
        type=_rights,
        required=True,
        metavar="RIGHTS",
        help=f"comma-separated, any of {RIGHT_NAMES}",
    )
    delete = actions.add_parser("delete", parents=[common], help="delete a custom policy")
    delete.add_argument("name", metavar="NAME")
    add_regenerate_key_parser(
        actions, common, "policy", "name", "tokens signed with the old key stop working"
    )


def manage_policies(args: argparse.Namespace, data_dir: Path) -> None:
    asyncio.run(_policy(args, data_dir))


async def _policy(args: argparse.Namespace, data_dir: Path) -> None:
    registry = await open_hub_registry(data_dir, args.registry_url)
    try:
        action = args.policy_command
        if action == "list":
            _list(await registry.list_policies(), args.json)
        elif action == "create":
            policy = await registry.create_policy(args.name, args.rights)
            print(await _connection_string(registry, data_dir, policy, policy.keys.primary))
            print(f"created policy '{policy.name}' ({', '.join(sorted(policy.rights))})", file=sys.stderr)
        elif action == "delete":
            if args.name in DEFAULT_POLICIES:
                regenerate = printed_command(args, f"policy regenerate-key {args.name}")
                fail(
                    f"'{args.name}' is a built-in policy: it stays (commands and tools rely on it); "
                    f"regenerate its keys with `{regenerate}` instead"
                )
            await registry.delete_policy(args.name)
            print(f"deleted policy '{args.name}'", file=sys.stderr)
        elif action == "regenerate-key":
            await _regenerate_key(registry, args, data_dir)
    except HubError as exc:
        if exc.kind is ErrorKind.NOT_FOUND:
            fail(f"{exc.message.rstrip('.')}; see `{printed_command(args, 'policy list')}`")
        fail(exc.message, EXIT_USAGE if exc.kind is ErrorKind.INVALID_ARGUMENT else EXIT_ERROR)
    finally:
        await registry.close()


def _list(policies: list[AccessPolicy], as_json: bool) -> None:
    rows = [
        {"name": p.name, "rights": sorted(r.value for r in p.rights), "builtIn": p.name in DEFAULT_POLICIES}
        for p in policies
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for policy in policies:
        kind = "built-in" if policy.name in DEFAULT_POLICIES else "custom"
        print(f"{policy.name}\t{','.join(sorted(policy.rights))}\t{kind}")


async def _regenerate_key(registry: Registry, args: argparse.Namespace, data_dir: Path) -> None:
    current = await registry.get_policy(args.name)
    if current is None:
        fail(f"no access policy '{args.name}'; see `{printed_command(args, 'policy list')}`")
    keys, new_key = rotated(current.keys, args.secondary)
    policy = await registry.update_policy(args.name, keys=keys)
    print(await _connection_string(registry, data_dir, policy, new_key))
    which = "secondary" if args.secondary else "primary"
    print(f"new {which} key for policy '{policy.name}'", file=sys.stderr)


async def _connection_string(registry: Registry, data_dir: Path, policy: AccessPolicy, key: str) -> str:
    return str(
        ConnectionString(
            host_name=await hub_hostname(data_dir, registry),
            shared_access_key_name=policy.name,
            shared_access_key=key,
        )
    )
