"""``methodhub calls``: the call history (``GET /calls``) for people, or ``--json``; ``--follow`` is a
live tail (polls every second, prints calls as they appear or change state, until Ctrl-C).

``--method`` and ``--since`` are sent to the hub (``methodName``, ``since``) and also applied here:
a hub that does not filter by them yet ignores unknown parameters, so the listing is still right,
only ``--limit`` then counts calls before these two filters."""

from __future__ import annotations

import argparse
import calendar
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from methodhub.cli.calls import STATES
from methodhub.cli.exits import EXIT_ERROR, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, fail
from methodhub.cli.invoke import add_client_options, duration, fail_http, service_client

if TYPE_CHECKING:
    from methodhub.sdk import ServiceClient

POLL_SECONDS = 1.0
"""How often ``--follow`` asks the hub for new calls."""
MAX_LIMIT = 1000
"""The most calls ``GET /calls`` answers in one page."""
FOLLOW_PAGE = 100
"""The page ``--follow`` reads each second after the first."""


def add_calls_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    calls = commands.add_parser(
        "calls",
        parents=[common],
        help="the call history, or a live tail of it (--follow)",
        description="Calls the hub recorded, newest first: time, device, method, state, the device's "
        "status or the error code, and the call id. --follow prints calls oldest first as they appear "
        "(or change state) until Ctrl-C (exit 130).",
    )
    calls.add_argument("--device", default=None, metavar="ID", help="only this device's calls")
    calls.add_argument("--method", default=None, metavar="NAME", help="only calls of this method")
    calls.add_argument("--state", choices=STATES, default=None, help="only calls in this state")
    calls.add_argument(
        "--since",
        type=duration,
        default=None,
        metavar="DURATION",
        help="only calls made in the last DURATION (e.g. 90s, 30m, 1h, 7d)",
    )
    calls.add_argument("--follow", "-f", action="store_true", help="keep printing new calls (Ctrl-C stops)")
    calls.add_argument("--limit", type=int, default=20, help=f"at most this many (1-{MAX_LIMIT}, default 20)")
    calls.add_argument(
        "--json", action="store_true", help="JSON for scripts: an array (with --follow, one object a line)"
    )
    add_client_options(calls)


def calls_command(args: argparse.Namespace, data_dir: Path) -> int:
    import httpx

    from methodhub.sdk import MethodHubError

    if not 1 <= args.limit <= MAX_LIMIT:
        fail(f"--limit {args.limit}: give a number from 1 to {MAX_LIMIT}", EXIT_USAGE)
    client, url = service_client(args, data_dir)
    try:
        with client:
            if args.follow:
                _follow(client, args)
            else:
                calls = _fetch(client, args, time.time())
                _print(calls, args, array=True)
                if not calls and not args.json:
                    print("no calls", file=sys.stderr)
    except MethodHubError as exc:
        print(f"methodhub: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE if exc.status == 503 else EXIT_ERROR
    except httpx.HTTPError as exc:
        fail_http(exc, url)
    return EXIT_OK


def _fetch(
    client: ServiceClient, args: argparse.Namespace, now: float, limit: int | None = None
) -> list[dict[str, Any]]:
    """The newest calls matching the options (newest first)."""
    since = now - args.since if args.since is not None else None
    calls = client.list_calls(
        device_id=args.device,
        state=args.state,
        method_name=args.method,
        since=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since)) if since is not None else None,
        limit=limit or args.limit,
    )
    return [call for call in calls if _matches(call, args.method, since)]


def _matches(call: dict[str, Any], method: str | None, since: float | None) -> bool:
    """The filters a hub may not apply itself yet (it ignores parameters it does not know)."""
    if method is not None and call.get("methodName") != method:
        return False
    if since is not None:
        created = parse_time(call.get("createdTime"))
        if created is None or created < since:
            return False
    return True


def parse_time(text: object) -> float | None:
    """Epoch seconds of an API time (``2026-12-02T07:30:01.1234567Z``), or None."""
    if not isinstance(text, str) or len(text) < 19:
        return None
    try:
        whole = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    fraction = text[19:].rstrip("Z")
    return whole + (float(fraction) if fraction.startswith(".") and fraction[1:].isdigit() else 0.0)


def _follow(client: ServiceClient, args: argparse.Namespace) -> None:
    """Print the latest ``--limit`` calls, then, every second, each call that appears or changes
    state. Every read is a page of at least :data:`FOLLOW_PAGE` (so a busy second is not cut short),
    all of it remembered from the first read on, so an older call is never printed as new."""
    page = max(args.limit, FOLLOW_PAGE)
    seen: dict[str, str] | None = None
    while True:
        calls = _fetch(client, args, time.time(), page)
        if seen is None:
            fresh = list(reversed(calls[: args.limit]))
            if not fresh and not args.json:
                print("waiting for calls (Ctrl-C stops)", file=sys.stderr)
        else:
            fresh = [c for c in reversed(calls) if seen.get(c["callId"]) != c.get("state")]
        seen = {c["callId"]: str(c.get("state")) for c in calls}  # only a listed call can change
        _print(fresh, args, array=False)
        sys.stdout.flush()
        time.sleep(POLL_SECONDS)


def _print(calls: list[dict[str, Any]], args: argparse.Namespace, *, array: bool) -> None:
    if args.json:
        if array:
            print(json.dumps(calls, indent=2))
        else:
            for call in calls:
                print(json.dumps(call))
        return
    for call in calls:
        print(call_line(call))


def call_line(call: dict[str, Any]) -> str:
    """One call for people: time, target, method, state, result, call id (tab-separated)."""
    target = call.get("deviceId", "?")
    if call.get("moduleId"):
        target += f"/{call['moduleId']}"
    created = str(call.get("createdTime") or "-")[:19].replace("T", " ")
    if "outcome" in call:
        result = f"status {call['outcome'].get('status')}"
    elif "error" in call:
        result = f"error {call['error'].get('errorCode')}"
    else:
        result = "-"
    fields = (created, target, str(call.get("methodName")), str(call.get("state")), result, call["callId"])
    return "\t".join(fields)
