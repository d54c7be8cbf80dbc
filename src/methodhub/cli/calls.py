"""``methodhub call show|list|cancel``: the queued calls made with ``methodhub invoke --queue`` (or the
``/calls`` API), as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from methodhub.cli.exits import EXIT_ERROR, EXIT_OK, EXIT_UNAVAILABLE
from methodhub.cli.invoke import add_client_options, fail_http, service_client

STATES = ("queued", "sent", "succeeded", "failed", "expired", "cancelled")


def add_call_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    call = commands.add_parser(
        "call",
        parents=[common],
        help="show, list or cancel queued calls",
        description="Queued calls (`methodhub invoke --queue`): their state, outcome or error, as JSON.",
    )
    actions = call.add_subparsers(dest="call_action", metavar="ACTION", required=True)
    show = actions.add_parser("show", parents=[common], help="one call's record")
    show.add_argument("call_id", metavar="CALL_ID")
    show.add_argument(
        "--wait", type=float, default=None, metavar="S", help="wait up to S seconds (≤ 300) for it to end"
    )
    add_client_options(show)
    listing = actions.add_parser("list", parents=[common], help="calls, newest first")
    listing.add_argument("--device", default=None, help="only this device's")
    listing.add_argument("--state", choices=STATES, default=None, help="only calls in this state")
    listing.add_argument("--job", default=None, help="only this job's")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (1-1000, default 100)")
    listing.add_argument(
        "--json",
        action="store_true",
        help="JSON (the default here, kept for scripts; `methodhub calls` is the listing for people)",
    )
    add_client_options(listing)
    cancel = actions.add_parser("cancel", parents=[common], help="cancel a call not sent yet")
    cancel.add_argument("call_id", metavar="CALL_ID")
    add_client_options(cancel)


def call_command(args: argparse.Namespace, data_dir: Path) -> int:
    import httpx

    from methodhub.sdk import MethodHubError

    client, url = service_client(args, data_dir)
    try:
        with client:
            if args.call_action == "show":
                result: object = client.get_call(args.call_id, wait=args.wait)
            elif args.call_action == "list":
                result = client.list_calls(
                    device_id=args.device, state=args.state, job_id=args.job, limit=args.limit
                )
            else:
                result = client.cancel_call(args.call_id)
    except MethodHubError as exc:
        print(f"methodhub: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE if exc.status == 503 else EXIT_ERROR
    except httpx.HTTPError as exc:
        fail_http(exc, url)
    print(json.dumps(result, indent=2))
    return EXIT_OK
