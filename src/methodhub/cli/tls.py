"""TLS for the CLI: ``ca-cert`` prints the development CA; what a command talking to the hub over TLS
trusts."""

from __future__ import annotations

import argparse
import ssl
import sys
from pathlib import Path

from methodhub.cli.exits import EXIT_USAGE, fail
from methodhub.process.datadir import ensure_data_dir


def add_ca_cert_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    commands.add_parser(
        "ca-cert",
        parents=[common],
        help="print the development CA certificate (PEM) that clients must trust for TLS",
        description="Print the PEM of this data dir's development CA (made if missing) on stdout.",
    )


def print_ca_cert(data_dir: Path) -> None:
    """``ca-cert``: the PEM of the data dir's development CA (made if missing) on stdout."""
    from methodhub.process.tls import ensure_dev_ca

    ensure_data_dir(data_dir)
    sys.stdout.write(ensure_dev_ca(data_dir).read_text())


def tls_trust(cacert: Path | None, data_dir: Path) -> ssl.SSLContext:
    """What a TLS client of the hub trusts: ``--cacert``'s CAs, else the system's and the data
    dir's development CA (if there is one)."""
    if cacert is not None:
        if not cacert.is_file():
            fail(f"--cacert {cacert}: no such file", EXIT_USAGE)
        try:
            return ssl.create_default_context(cafile=str(cacert))
        except (ssl.SSLError, OSError, ValueError) as exc:
            fail(f"--cacert {cacert} is not a PEM file of CA certificates: {exc}", EXIT_USAGE)
    from methodhub.process.tls import ca_cert_path

    context = ssl.create_default_context()
    ca = ca_cert_path(data_dir)
    if ca.is_file():
        try:
            context.load_verify_locations(cafile=str(ca))
        except (ssl.SSLError, OSError) as exc:
            fail(f"the data dir's CA {ca} cannot be read: {exc}; pass --cacert FILE")
    return context
