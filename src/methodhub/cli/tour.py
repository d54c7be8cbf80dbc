"""The banner ``serve`` prints on a hub's first start: where it listens, its owner key, and next steps
that work as printed."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from methodhub.cli.options import printed_command
from methodhub.cli.running_hub import LISTENER_NAMES

TOUR_COLUMN = 60
"""The banner's comments line up after its commands if they all fit in this many columns."""


def tour(args: argparse.Namespace, info: dict[str, Any], owner_connection_string: str, data_dir: Path) -> str:
    """The first start's banner: where the hub listens, its owner key, and next steps that work as
    printed (with this invocation's --data-dir and --registry; only for the listeners that are on)."""
    registry_url = args.registry_url
    if registry_url:
        from methodhub.registry import redact_url

        where = f"Data dir: {data_dir}. Registry: {redact_url(registry_url)}"
    else:
        where = f"Data dir: {data_dir}"
    on = [f"{label} {info[name]}" for name, label in LISTENER_NAMES.items() if name in info]
    off = [label for name, label in LISTENER_NAMES.items() if name not in info]
    listening = "Listening: " + (", ".join(on) or "nothing") + (f" ({', '.join(off)} off)" if off else "")

    steps: list[tuple[str, str]] = [
        (printed_command(args, "device create pump-17"), "register a device, prints its connection string")
    ]
    if "mqtt" in info or "mqtts" in info:
        tls = "" if "mqtt" in info else " --tls"
        steps.append(
            (printed_command(args, f"device run pump-17{tls}"), "a simulated device that echoes calls")
        )
    if "http" in info or "https" in info:
        steps.append(
            (printed_command(args, "invoke pump-17 reboot --payload '{\"delay\": 5}'"), "call a method")
        )
        console = info.get("http") or info.get("https")
        steps.append((f"{console}/console", "the web console (a browser): sign in with the string above"))
        if "http" in info:
            steps.append((f"curl {info['http']}/openapi.json", "the HTTP API"))
        elif "ca" in info:
            steps.append(
                (f"curl --cacert {shlex.quote(str(info['ca']))} {info['https']}/openapi.json", "the HTTP API")
            )
    if "ca" in info:
        ports = ", ".join(
            f"{label} {str(info[name]).rpartition(':')[2]}"
            for name, label in (("mqtts", "MQTT/TLS"), ("amqps", "AMQP/TLS"), ("https", "HTTPS"))
            if name in info
        )
        steps.append((printed_command(args, "ca-cert") + " > ca.pem", f"the CA TLS clients trust ({ports})"))
    width = max(len(command) for command, _ in steps) + 2
    if width <= TOUR_COLUMN:
        lines = "\n".join(f"  {command.ljust(width)}# {comment}" for command, comment in steps)
    else:  # long commands (a long --data-dir): each comment on the line above its command
        lines = "\n".join(f"  # {comment}\n  {command}" for command, comment in steps)
    return f"""methodhub is running. {where}
{listening}

Service connection string (policy iothubowner; keep it secret):
  {owner_connection_string}

Next steps (in another terminal):
{lines}
See README.md for the same with curl, over TLS, and with the Python and Azure SDKs.
"""
