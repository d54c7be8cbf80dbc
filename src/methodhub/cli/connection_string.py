"""``methodhub connection-string``: print a service connection string (an access policy's)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from methodhub.cli.registry import service_connection_string


def add_connection_string_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    cs = commands.add_parser("connection-string", parents=[common], help="print a service connection string")
    cs.add_argument("--policy", default="iothubowner", help="access policy (default iothubowner)")


def print_connection_string(args: argparse.Namespace, data_dir: Path) -> None:
    print(asyncio.run(service_connection_string(data_dir, args.policy, args.registry_url)))
