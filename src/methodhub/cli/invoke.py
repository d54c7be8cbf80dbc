"""``methodhub invoke``: call a method on a device through the hub's HTTP API; the exit code says how it
went (answered, offline, timed out, no hub to talk to)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

from methodhub.cli.exits import (
    EXIT_ERROR,
    EXIT_OFFLINE,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    fail,
)
from methodhub.cli.options import printed_command
from methodhub.cli.registry import service_connection_string
from methodhub.cli.running_hub import running_hub_address
from methodhub.cli.tls import tls_trust

if TYPE_CHECKING:
    import httpx

    from methodhub.sdk import ServiceClient

ENV_CONNECTION_STRING = "METHODHUB_CONNECTION_STRING"
ENV_URL = "METHODHUB_URL"


def add_invoke_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    invoke = commands.add_parser(
        "invoke",
        parents=[common],
        help="call a method on a device",
        description='Call METHOD on DEVICE through the hub\'s HTTP API and print {"status", "payload"}. '
        "Exit codes: 0 the device answered, 3 offline, 4 timed out, 5 no hub to talk to (not "
        "running, unreachable, TLS certificate not trusted, or stopping), 1 any other error, 2 usage.",
    )
    invoke.add_argument("device", metavar="DEVICE")
    invoke.add_argument("method", metavar="METHOD")
    invoke.add_argument("--payload", default="null", help="JSON payload (default null)")
    invoke.add_argument(
        "--timeout", type=int, default=30, help="seconds the device has to answer (5-300, default 30)"
    )
    invoke.add_argument(
        "--connect-timeout", type=int, default=0, help="seconds to wait for the device to connect (0-300)"
    )
    invoke.add_argument("--module", default=None, help="call a module of the device")
    invoke.add_argument(
        "--queue",
        action="store_true",
        help="queue the call instead: it waits for the device (up to --expires), survives hub "
        "restarts, and prints the call id (see `methodhub call show ID`)",
    )
    invoke.add_argument(
        "--expires",
        type=duration,
        default=86_400,
        metavar="DURATION",
        help="with --queue: how long the call may wait for the device (e.g. 90s, 30m, 1h, 7d; default 1d)",
    )
    invoke.add_argument(
        "--attempts", type=int, default=1, help="with --queue: tries after a timeout or a drop (1-10)"
    )
    invoke.add_argument(
        "--idempotency-key", default=None, help="with --queue: the same key makes no second call"
    )
    add_client_options(invoke)


def add_client_options(command: argparse.ArgumentParser) -> None:
    """The options saying which hub to talk to, as whom (``invoke`` and ``call``)."""
    invoke = command
    invoke.add_argument(
        "--connection-string", default=None, help=f"service connection string (or ${ENV_CONNECTION_STRING})"
    )
    invoke.add_argument(
        "--url",
        default=None,
        help=f"the hub's HTTP(S) base URL (or ${ENV_URL}); default: the hub running on the data dir",
    )
    invoke.add_argument(
        "--cacert",
        type=Path,
        default=None,
        metavar="FILE",
        help="for an https:// URL: trust the CA certificates in this PEM file (default: the system's "
        "and the data dir's development CA)",
    )


def duration(text: str) -> int:
    """Seconds of ``90``, ``90s``, ``30m``, ``1h`` or ``7d`` (argparse type)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = int(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 30m, 1h or 7d") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration must be positive")
    return seconds


def service_client(args: argparse.Namespace, data_dir: Path) -> tuple[ServiceClient, str]:
    """The SDK client for the hub the options name (default: the one running on the data dir),
    and its URL; exits with a usage error for a bad connection string or URL."""
    from methodhub.sdk import ServiceClient

    connection_string = args.connection_string or os.environ.get(ENV_CONNECTION_STRING)
    origin = "--connection-string" if args.connection_string else f"${ENV_CONNECTION_STRING}"
    if connection_string is None:
        connection_string = asyncio.run(service_connection_string(data_dir, "iothubowner", args.registry_url))
    url = args.url or os.environ.get(ENV_URL)
    if url is None:
        url = running_hub_address(args, data_dir, ("http", "https"), "--url URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        fail(f"--url {url!r}: give the hub's base URL, as http://HOST:PORT or https://HOST:PORT", EXIT_USAGE)
    verify: ssl.SSLContext | bool = tls_trust(args.cacert, data_dir) if parts.scheme == "https" else True
    try:
        client = ServiceClient.from_connection_string(connection_string, url=url, verify=verify)
    except ValueError as exc:
        fail(
            f"{origin} is not a service connection string: {exc}; get one with "
            f"`{printed_command(args, 'connection-string')}`",
            EXIT_USAGE,
        )
    return client, url


def invoke(args: argparse.Namespace, data_dir: Path) -> int:
    import httpx

    from methodhub.sdk import CallTimeoutError, DeviceOfflineError, MethodHubError

    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        fail(f"--payload is not JSON: {exc}", EXIT_USAGE)
    client, url = service_client(args, data_dir)
    if args.queue:
        return _queue(client, url, args, payload)
    try:
        with client:
            result = client.invoke(
                args.device,
                args.method,
                payload,
                module_id=args.module,
                timeout=args.timeout,
                connect_timeout=args.connect_timeout,
            )
    except DeviceOfflineError as exc:
        print(f"methodhub: {exc}", file=sys.stderr)
        return EXIT_OFFLINE
    except CallTimeoutError as exc:
        print(f"methodhub: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    except MethodHubError as exc:
        print(f"methodhub: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE if exc.status == 503 else EXIT_ERROR
    except httpx.HTTPError as exc:
        fail_http(exc, url)
    print(json.dumps({"status": result.status, "payload": result.payload}))
    return EXIT_OK


def _queue(client: ServiceClient, url: str, args: argparse.Namespace, payload: object) -> int:
    import httpx

    from methodhub.sdk import MethodHubError

    try:
        with client:
            call = client.queue_call(
                args.device,
                args.method,
                payload,
                module_id=args.module,
                timeout=args.timeout,
                expires=args.expires,
                attempts=args.attempts,
                idempotency_key=args.idempotency_key,
            )
    except MethodHubError as exc:
        print(f"methodhub: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE if exc.status == 503 else EXIT_ERROR
    except httpx.HTTPError as exc:
        fail_http(exc, url)
    print(call["callId"])
    return EXIT_OK


def fail_http(exc: httpx.HTTPError, url: str) -> NoReturn:
    """One line for a request that got no answer from the hub at ``url``."""
    import httpx

    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        tls = _ssl_error(exc)
        if isinstance(tls, ssl.SSLCertVerificationError):
            fail(
                f"the hub at {url} is not trusted: {tls.verify_message or tls}; pass --cacert FILE with "
                "the CA that signed its certificate (methodhub's development CA: `methodhub ca-cert > "
                "ca.pem` on the hub's machine)",
                EXIT_UNAVAILABLE,
            )
        if tls is not None:
            fail(
                f"TLS with {url} failed: {tls}; is that an HTTPS port (or should it be http://)?",
                EXIT_UNAVAILABLE,
            )
        fail(
            f"cannot reach the hub at {url}: {exc}; is it running (`methodhub serve`), and is --url right?",
            EXIT_UNAVAILABLE,
        )
    if isinstance(exc, httpx.TimeoutException):
        fail(f"no answer from the hub at {url} in time ({exc or 'timed out'})", EXIT_TIMEOUT)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.NetworkError):
        fail(
            f"the hub at {url} closed the connection before answering ({exc}): it may be stopping, or "
            "that port is not its HTTP(S) API (an HTTPS port needs https://); the device may have had "
            "the call",
            EXIT_UNAVAILABLE,
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        fail(f"--url {url!r}: {exc}", EXIT_USAGE)
    fail(f"the request to {url} failed: {type(exc).__name__}: {exc}", EXIT_UNAVAILABLE)


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error under an httpx error, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
