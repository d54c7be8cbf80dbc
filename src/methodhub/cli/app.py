"""``methodhub``: run a hub, manage its registry, call methods, simulate a device.

Scriptable contract (README, docs and tests rely on it): commands that print a credential print it
alone on stdout; listings (``device list``, ``policy list``, ``calls``, ``call list``, ``status``) print
on stdout, for people by default and as JSON with ``--json``; other messages for people go to stderr
(progress bars too, and only on a terminal); an error is one line on stderr (``--debug``
adds its traceback) and the exit code says what happened (``EXIT_*`` in :mod:`methodhub.cli.exits`).
The global options (``--data-dir``, ``--registry``, ``--log-level``, ``--log-format``, ``--debug``)
go before or after the command.

This module assembles the parser from the commands' modules (one per command: ``serve``, ``ca-cert``
in ``tls``, ``ca`` in ``authorities``, ``connection-string``, ``device`` in ``devices`` and
``device_run``, ``product`` in ``products``, ``invoke``, ``call`` in ``calls``, ``calls`` in
``call_history``, ``token``, ``policy`` in ``policies``, ``status``), runs the one given, and turns
what escapes it into an exit code and one line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from methodhub import __version__
from methodhub.cli.authorities import add_ca_parser, manage_authorities
from methodhub.cli.call_history import add_calls_parser, calls_command
from methodhub.cli.calls import add_call_parser, call_command
from methodhub.cli.connection_string import add_connection_string_parser, print_connection_string
from methodhub.cli.device_run import device_run
from methodhub.cli.devices import add_device_parser, manage_devices
from methodhub.cli.exits import EXIT_INTERRUPTED, debugging, fail, set_debug
from methodhub.cli.invoke import add_invoke_parser, invoke
from methodhub.cli.options import ENV_REGISTRY, global_flags, global_options
from methodhub.cli.policies import add_policy_parser, manage_policies
from methodhub.cli.products import add_product_parser, manage_products
from methodhub.cli.serve import add_serve_parser, serve
from methodhub.cli.status import add_status_parser, print_status
from methodhub.cli.tls import add_ca_cert_parser, print_ca_cert
from methodhub.cli.token import add_token_parser, print_token
from methodhub.process.datadir import DataDirError, default_data_dir


def build_parser() -> argparse.ArgumentParser:
    common = global_options()
    parser = argparse.ArgumentParser(
        prog="methodhub",
        description="Self-hosted IoT hub for synchronous cloud-to-device calls (Azure direct methods).",
        epilog="Exit codes: 0 done, 1 error, 2 usage, 3 device offline, 4 timed out, "
        "5 no hub to talk to (not running, unreachable, not trusted, or stopping), 130 interrupted.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"methodhub {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_serve_parser(commands, common)
    add_ca_cert_parser(commands, common)
    add_ca_parser(commands, common)
    add_connection_string_parser(commands, common)
    add_device_parser(commands, common)
    add_product_parser(commands, common)
    add_invoke_parser(commands, common)
    add_call_parser(commands, common)
    add_calls_parser(commands, common)
    add_policy_parser(commands, common)
    add_token_parser(commands, common)
    add_status_parser(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    set_debug(bool(getattr(args, "debug", False)))
    data_dir: Path = getattr(args, "data_dir", None) or default_data_dir()
    args.registry_url = getattr(args, "registry", None) or os.environ.get(ENV_REGISTRY) or None
    args.global_flags = global_flags(args, data_dir)
    from methodhub.process.logs import setup_logging

    setup_logging(getattr(args, "log_level", "info"), getattr(args, "log_format", "text"))
    try:
        _run_command(args, data_dir)
    except KeyboardInterrupt:
        print("methodhub: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except DataDirError as exc:
        fail(str(exc))
    except BrokenPipeError:  # the reader went away (`methodhub call list | head`): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail too
        raise SystemExit(0) from None
    except Exception as exc:  # a bug: still one line, unless --debug asks for the traceback
        if debugging():
            raise
        fail(
            f"unexpected {type(exc).__name__}: {exc}. This is a bug in methodhub; please report it "
            "with the output of the same command run with --debug"
        )


def _run_command(args: argparse.Namespace, data_dir: Path) -> None:
    if args.command == "serve":
        serve(args, data_dir)
    elif args.command == "ca":
        manage_authorities(args, data_dir)
    elif args.command == "ca-cert":
        print_ca_cert(data_dir)
    elif args.command == "connection-string":
        print_connection_string(args, data_dir)
    elif args.command == "device":
        if args.device_command == "run":
            device_run(args, data_dir)
        else:
            manage_devices(args, data_dir)
    elif args.command == "product":
        manage_products(args, data_dir)
    elif args.command == "invoke":
        raise SystemExit(invoke(args, data_dir))
    elif args.command == "call":
        raise SystemExit(call_command(args, data_dir))
    elif args.command == "calls":
        raise SystemExit(calls_command(args, data_dir))
    elif args.command == "policy":
        manage_policies(args, data_dir)
    elif args.command == "status":
        print_status(args, data_dir)
    elif args.command == "token":
        print_token(args, data_dir)


if __name__ == "__main__":  # pragma: no cover
    main()
