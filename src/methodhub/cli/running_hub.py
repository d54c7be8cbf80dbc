"""Where the hub running on the data dir listens (its ``hub.json``), for the commands that talk to it."""

from __future__ import annotations

import argparse
from pathlib import Path

from methodhub.cli.exits import EXIT_UNAVAILABLE, fail
from methodhub.cli.options import printed_command
from methodhub.process.datadir import read_runtime, stale_runtime_pid

LISTENER_NAMES = {
    "mqtt": "MQTT",
    "http": "HTTP",
    "mqtts": "MQTT/TLS",
    "amqps": "AMQP/TLS",
    "https": "HTTPS + MQTT/AMQP over WebSocket",
}
"""The hub's listeners, by their key in ``hub.json``, as people read them."""


def running_hub_address(
    args: argparse.Namespace, data_dir: Path, listeners: tuple[str, ...], alternative: str
) -> str:
    """The address, in ``hub.json``, of the first of ``listeners`` that the hub running on the data
    dir has on; else one line that says what is wrong (none running, a stale record, the listener
    off) and what to do."""
    runtime = read_runtime(data_dir)
    if runtime is None:
        stale = stale_runtime_pid(data_dir)
        if stale is not None:
            fail(
                f"the hub recorded in {data_dir / 'hub.json'} (pid {stale}) is not running: it was "
                f"killed or crashed; start it again with `{printed_command(args, 'serve')}`, or pass "
                f"{alternative}",
                EXIT_UNAVAILABLE,
            )
        fail(
            f"no hub is running on the data dir {data_dir}; start one with "
            f"`{printed_command(args, 'serve')}`, or pass {alternative}",
            EXIT_UNAVAILABLE,
        )
    for listener in listeners:
        if listener in runtime:
            return str(runtime[listener])
    on = [name for name in LISTENER_NAMES if name in runtime]
    hint = " (it has mqtts: add --tls)" if listeners == ("mqtt",) and "mqtts" in runtime else ""
    fail(
        f"the hub running on {data_dir} (pid {runtime.get('pid')}) has no {' or '.join(listeners)} "
        f"listener{hint}; it has {', '.join(on) or 'none'}. Pass {alternative}, or restart it with "
        f"that listener on",
        EXIT_UNAVAILABLE,
    )
