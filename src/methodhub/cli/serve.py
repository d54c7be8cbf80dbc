"""``methodhub serve``: its options (listeners, TLS, cluster, HTTP and device limits) and running the hub
(one process, or ``--workers N``), each failure to start one line that says what to do."""

from __future__ import annotations

import argparse
import asyncio
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from methodhub.cli.exits import fail
from methodhub.cli.invoke import duration
from methodhub.cli.registry import agreed_hostname
from methodhub.cli.serve_quotas import SettingsError, add_quota_options, quota_settings
from methodhub.cli.tour import tour
from methodhub.config import (
    HTTP_MAX_CONNECTIONS,
    HTTP_MAX_UNESTABLISHED,
    HTTP_REQUEST_BODY_TIMEOUT,
    HTTP_REQUEST_HEAD_TIMEOUT,
    DeviceLimits,
    HubConfig,
)
from methodhub.errors import HubError
from methodhub.process.datadir import (
    DataDirInUse,
    check_data_dir_free,
    ensure_data_dir,
    read_settings,
    write_settings,
)

ENV_NATS = "METHODHUB_NATS"
ENV_WORKERS = "METHODHUB_WORKERS"


def add_serve_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    serve = commands.add_parser(
        "serve", parents=[common], help="run a hub (MQTT and AMQP for devices, HTTP for backends)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--hostname", default=None, help="the hub's name in connection strings and tokens (default localhost)"
    )
    serve.add_argument(
        "--mqtt-port", type=_port, default=1883, help="MQTT port (default 1883; 0 = any free, -1 = off)"
    )
    serve.add_argument(
        "--http-port", type=_port, default=8080, help="HTTP port (default 8080; 0 = any free, -1 = off)"
    )
    serve.add_argument(
        "--mqtts-port", type=_port, default=8883, help="MQTT over TLS (default 8883; 0 = any free, -1 = off)"
    )
    serve.add_argument(
        "--https-port",
        type=_port,
        default=8443,
        help="HTTPS, and MQTT and AMQP over WebSocket at /$iothub/websocket (default 8443; 0 = any free, "
        "-1 = off)",
    )
    serve.add_argument(
        "--amqps-port", type=_port, default=5671, help="AMQP over TLS (default 5671; 0 = any free, -1 = off)"
    )
    serve.add_argument(
        "--max-queued-call-expiry",
        type=duration,
        default=7 * 86_400,
        metavar="DURATION",
        help="the longest a queued call may wait for its device (expiresInSeconds; e.g. 12h, 30d; "
        "default 7d)",
    )
    serve.add_argument(
        "--history",
        choices=("on", "off"),
        default="on",
        help="record every synchronous call in the call history, GET /calls (default on; its cost: "
        "docs/queued-calls.md)",
    )
    serve.add_argument(
        "--history-payloads",
        action="store_true",
        help="keep synchronous calls' payloads in the history too (off by default: payloads may carry "
        "secrets, and any ServiceConnect caller may read the history)",
    )
    serve.add_argument(
        "--history-retention",
        type=duration,
        default=7 * 86_400,
        metavar="DURATION",
        help="how long an ended call (no job's) is kept (e.g. 12h, 30d; default 7d)",
    )
    serve.add_argument(
        "--history-max",
        type=_number(int, 1, inclusive=True),
        default=1_000_000,
        metavar="N",
        help="ended calls (no job's) kept at most; the oldest beyond are pruned (default 1000000)",
    )
    serve.add_argument(
        "--job-rate",
        type=_number(float, 0, inclusive=False),
        default=None,
        metavar="N",
        help="device calls per second a job starts on this node (default: as fast as it can)",
    )
    serve.add_argument(
        "--job-concurrency",
        type=_number(int, 1, inclusive=True),
        default=1000,
        metavar="N",
        help="jobs' device calls in flight on this node at most (default 1000)",
    )
    serve.add_argument(
        "--amqp-port",
        type=_port,
        default=-1,
        help="AMQP without TLS, for a hub behind a TLS-terminating load balancer (default -1 = off; "
        "Azure's SDKs dial AMQP over TLS only)",
    )
    serve.add_argument(
        "--tls-cert",
        type=Path,
        default=None,
        help="server certificate chain, PEM (default: a development CA and certificate in DIR/tls)",
    )
    serve.add_argument("--tls-key", type=Path, default=None, help="the certificate's private key, PEM")
    serve.add_argument(
        "--nats",
        default=os.environ.get(ENV_NATS) or None,
        metavar="URL",
        help=f"run as a cluster node: the NATS server(s) that carry calls between nodes, e.g. "
        f"nats://10.0.0.5:4222 (or ${ENV_NATS}); see docs/cluster.md",
    )
    serve.add_argument(
        "--metrics-auth",
        action="store_true",
        help="GET /metrics needs credentials: a service SAS token of a policy with RegistryRead, or the "
        "bearer token of --metrics-token-file (default: open; see docs/metrics.md)",
    )
    serve.add_argument(
        "--metrics-token-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="with --metrics-auth: a static token (one word) scrapers may send as a Bearer token",
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        default=_workers(os.environ.get(ENV_WORKERS) or "1"),
        metavar="N",
        help=f"node processes on this machine sharing the ports (SO_REUSEPORT; default 1, or "
        f"${ENV_WORKERS}); N > 1 needs NATS: --nats, or a nats-server binary, which is then started",
    )
    limits = serve.add_argument_group("HTTP limits, per listener (docs/operations.md, 'Limits')")
    limits.add_argument(
        "--http-head-timeout",
        type=_positive_float,
        default=HTTP_REQUEST_HEAD_TIMEOUT,
        metavar="S",
        help=f"seconds a request head may take, a first one from the connect (408; default "
        f"{HTTP_REQUEST_HEAD_TIMEOUT:g})",
    )
    limits.add_argument(
        "--http-body-timeout",
        type=_positive_float,
        default=HTTP_REQUEST_BODY_TIMEOUT,
        metavar="S",
        help=f"seconds a request body may take after its head (408; default {HTTP_REQUEST_BODY_TIMEOUT:g})",
    )
    limits.add_argument(
        "--http-max-connections",
        type=_positive_int,
        default=HTTP_MAX_CONNECTIONS,
        metavar="N",
        help=f"connections held; beyond, the oldest idle or never-completed one is closed (default "
        f"{HTTP_MAX_CONNECTIONS})",
    )
    limits.add_argument(
        "--http-max-unestablished",
        type=_positive_int,
        default=HTTP_MAX_UNESTABLISHED,
        metavar="N",
        help=f"connections that have not completed a request; beyond, the oldest is closed (default "
        f"{HTTP_MAX_UNESTABLISHED})",
    )

    _add_device_limit_options(serve)
    add_quota_options(serve)


def serve(args: argparse.Namespace, data_dir: Path) -> None:
    from methodhub.process.hub import Hub
    from methodhub.process.tls import TlsSetupError
    from methodhub.registry import SchemaTooNew
    from methodhub.router import RouterUnavailable

    ensure_data_dir(data_dir)
    try:  # before the registry is touched: a second hub must change nothing of the first's
        check_data_dir_free(data_dir)
    except DataDirInUse as exc:
        fail(f"cannot start: {exc}")
    settings = read_settings(data_dir)
    metrics_token = _metrics_token(args)
    try:
        quotas, token_policy, in_flight = quota_settings(args, data_dir)
    except SettingsError as exc:
        fail(f"cannot start: {exc}")
    if args.workers > 1:  # each worker is a node: it enforces its share of the hub-wide rates
        quotas = replace(quotas, nodes=quotas.nodes * args.workers)
    hostname = asyncio.run(agreed_hostname(data_dir, args.registry_url, args.hostname))
    config = HubConfig(
        data_dir=data_dir,
        host=args.host,
        hostname=hostname,
        mqtt_port=args.mqtt_port,
        http_port=args.http_port,
        mqtts_port=args.mqtts_port,
        https_port=args.https_port,
        amqps_port=args.amqps_port,
        amqp_port=args.amqp_port,
        queued_call_max_expires=args.max_queued_call_expiry,
        history=args.history == "on",
        history_payloads=args.history_payloads,
        history_retention=args.history_retention,
        history_max=args.history_max,
        job_rate=args.job_rate,
        job_concurrency=args.job_concurrency,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        nats_url=args.nats,
        registry_url=args.registry_url,
        connect_packet_timeout=args.mqtt_connect_timeout,
        device_limits=_device_limits(args),
        http_request_head_timeout=args.http_head_timeout,
        http_request_body_timeout=args.http_body_timeout,
        http_max_connections=args.http_max_connections,
        http_max_unestablished=args.http_max_unestablished,
        metrics_auth=args.metrics_auth,
        metrics_token=metrics_token,
        quotas=quotas,
        token_policy=token_policy,
        max_calls_in_flight_per_device=in_flight,
    )
    if settings.get("hostname") != hostname:
        write_settings(data_dir, {**settings, "hostname": hostname})

    def started(hub: Any) -> None:  # a Hub, or the WorkerPool of --workers N
        if hub.first_start:
            print(tour(args, hub.runtime_info(), hub.owner_connection_string, data_dir), flush=True)

    _install_uvloop()
    try:
        if args.workers > 1:
            from methodhub.process.workers import WorkerPool, WorkersError

            try:
                raise SystemExit(WorkerPool(config, args.workers).run(started))
            except WorkersError as exc:
                fail(f"cannot start: {exc}")
        asyncio.run(Hub(config).run(started))
    except (TlsSetupError, RouterUnavailable, SchemaTooNew, DataDirInUse) as exc:
        fail(f"cannot start: {exc}")
    except HubError as exc:  # the registry became unreachable after the check above
        fail(f"cannot start: {exc.message}")
    except OSError as exc:
        fail(
            f"cannot start: {exc}. Is another hub running? "
            "Pick other ports with --mqtt-port/--http-port/--mqtts-port/--https-port/--amqps-port "
            "(-1 turns one off)."
        )


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _add_device_limit_options(serve: argparse.ArgumentParser) -> None:
    """What one device connection may do (docs/operations.md, "Limits")."""
    defaults = DeviceLimits()
    group = serve.add_argument_group("device limits (docs/operations.md)")
    group.add_argument(
        "--mqtt-connect-timeout",
        type=_positive_float,
        default=HubConfig.__dataclass_fields__["connect_packet_timeout"].default,
        metavar="SECONDS",
        help="a new MQTT connection must have sent its CONNECT and been answered by then (default 10)",
    )
    group.add_argument(
        "--max-packets-per-second",
        type=_non_negative_float,
        default=defaults.max_packets_per_second,
        metavar="N",
        help=f"inbound MQTT packets per second per connection, on average (default "
        f"{defaults.max_packets_per_second:g}; 0 = no limit); above it the device is disconnected",
    )
    group.add_argument(
        "--packet-burst",
        type=_positive_int,
        default=defaults.packet_burst,
        metavar="N",
        help=f"packets a connection may send at once above that rate (default {defaults.packet_burst})",
    )
    group.add_argument(
        "--mqtt-max-connections",
        type=_positive_int,
        default=defaults.max_connections,
        metavar="N",
        help=f"connections per MQTT listener (default {defaults.max_connections}); past it the oldest "
        "unauthenticated one is closed; an authenticated device never is",
    )
    group.add_argument(
        "--mqtt-max-unestablished",
        type=_positive_int,
        default=defaults.max_unestablished,
        metavar="N",
        help=f"connections per MQTT listener whose CONNECT is not accepted yet (default "
        f"{defaults.max_unestablished}); past it the oldest of them is closed",
    )
    group.add_argument(
        "--max-subscriptions",
        type=_positive_int,
        default=defaults.max_subscriptions,
        metavar="N",
        help=f"topic filters per device session (default {defaults.max_subscriptions})",
    )
    group.add_argument(
        "--max-topic-filter-length",
        type=_positive_int,
        default=defaults.max_topic_filter_length,
        metavar="BYTES",
        help=f"longest topic filter a device may subscribe to (default {defaults.max_topic_filter_length})",
    )


def _device_limits(args: argparse.Namespace) -> DeviceLimits:
    return DeviceLimits(
        max_packets_per_second=args.max_packets_per_second,
        packet_burst=args.packet_burst,
        max_connections=args.mqtt_max_connections,
        max_unestablished=args.mqtt_max_unestablished,
        max_subscriptions=args.max_subscriptions,
        max_topic_filter_length=args.max_topic_filter_length,
    )


def _number(kind: type[float] | type[int], minimum: float, inclusive: bool) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < minimum or (value == minimum and not inclusive):
            bound = f"at least {minimum:g}" if inclusive else f"more than {minimum:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


_positive_float = _number(float, 0, inclusive=False)
_non_negative_float = _number(float, 0, inclusive=True)
_positive_int = _number(int, 1, inclusive=True)


def _port(text: str) -> int:
    value = int(text)
    if not -1 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is 0-65535 (0 = pick a free one, -1 = off)")
    return value


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"workers is a number of processes, 1-256 (got {text!r})")
    return value


def _metrics_token(args: argparse.Namespace) -> str | None:
    """The token of ``--metrics-token-file`` (which needs ``--metrics-auth``), or None."""
    from methodhub.process.metrics_auth import MetricsTokenError, read_metrics_token

    if args.metrics_token_file is None:
        return None
    if not args.metrics_auth:
        fail("--metrics-token-file needs --metrics-auth (without it, GET /metrics asks for no token)")
    try:
        return read_metrics_token(args.metrics_token_file)
    except MetricsTokenError as exc:
        fail(str(exc))
