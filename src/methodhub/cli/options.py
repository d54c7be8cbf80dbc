"""The options every command takes (``--data-dir``, ``--registry``, ``--log-level``, ``--log-format``,
``--debug``), and the commands the CLI prints for the user to run, carrying the same options."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from methodhub.process.datadir import ENV_DATA_DIR, default_data_dir

ENV_REGISTRY = "METHODHUB_REGISTRY"


def global_options() -> argparse.ArgumentParser:
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


def global_flags(args: argparse.Namespace, data_dir: Path) -> str:
    """`` --data-dir DIR`` / `` --registry URL`` when this command was given them (by option or
    environment): what a command printed for the user to run needs, to act on the same hub."""
    flags = ""
    if getattr(args, "data_dir", None) is not None or os.environ.get(ENV_DATA_DIR):
        flags += f" --data-dir {shlex.quote(str(data_dir))}"
    if args.registry_url:
        flags += f" --registry {shlex.quote(args.registry_url)}"
    return flags


def printed_command(args: argparse.Namespace, command: str) -> str:
    """``methodhub COMMAND`` with this invocation's global flags: a command that works as printed."""
    return f"methodhub {command}{args.global_flags}"
