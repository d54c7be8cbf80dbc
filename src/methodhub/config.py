"""Everything an operator can set on a hub, with defaults that work on a laptop."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from methodhub.calls.quotas import QuotaLimits

# Azure's documented limits (azure-direct-methods-wire.md §3), applied by every front door.
MAX_METHOD_PAYLOAD = 128 * 1024
"""Largest method request payload (the JSON of ``payload``), as Azure IoT Hub: 128 KiB."""
RESPONSE_TIMEOUT_DEFAULT = 30
RESPONSE_TIMEOUT_RANGE = (5, 300)
CONNECT_TIMEOUT_DEFAULT = 0
CONNECT_TIMEOUT_RANGE = (0, 300)
MAX_KEEPALIVE = 1767
"""Azure IoT Hub caps MQTT keep-alive at 1767 s; a client asking for 0 (none) or more gets this."""

# HTTP listener limits (docs/operations.md, "Limits"); the reasoning is in methodhub.http.server.
HTTP_REQUEST_HEAD_TIMEOUT = 10.0
"""Seconds a request head may take from its first byte (a connection's first: from the connect)."""
HTTP_REQUEST_BODY_TIMEOUT = 30.0
"""Seconds a request body may take after its head."""
HTTP_MAX_CONNECTIONS = 10_000
"""Connections per HTTP listener; beyond, the oldest never-completed or idle one makes room."""
HTTP_MAX_UNESTABLISHED = 1_000
"""Connections per HTTP listener that have not completed a request yet; beyond, the oldest goes."""


@dataclass(slots=True, frozen=True)
class DeviceLimits:
    """What one device connection may ask of the hub (docs/operations.md, "Limits")."""

    max_packets_per_second: float = 2000.0
    """Inbound MQTT packets per second a connection may send on average (0 = no limit); above it,
    past the burst, the connection is closed (MQTT 5: DISCONNECT 0x96, message rate too high)."""
    packet_burst: int = 10_000
    """Packets a connection may send at once above that rate (the token bucket's depth)."""
    max_subscriptions: int = 50
    """Topic filters one session may hold (AWS IoT Core's per-connection limit; an Azure device uses
    4, an Alibaba device its system topics and a few of its own). More are refused in the SUBACK."""
    max_connections: int = 200_000
    """MQTT connections each MQTT listener holds at most (the fd limit usually binds first)."""
    max_unestablished: int = 5_000
    """Of those, connections whose CONNECT has not been accepted yet. Past either cap the oldest
    unauthenticated connection is closed to make room; an authenticated device never is."""
    max_topic_filter_length: int = 1024
    """Longest topic filter accepted, in UTF-8 bytes (Azure's longest, a module's inputs filter, is
    under 300)."""


@dataclass(slots=True, frozen=True)
class TokenPolicy:
    """What a SAS token must be to be accepted (docs/operations.md, "Token policy").

    A token is expired once ``se + clock_skew <= now``, and a connection authenticated with it ends
    then (MQTT: disconnected; AMQP: its links detached unless a put-token renewed it); a token
    whose ``se`` lies more than ``max_lifetime + clock_skew`` ahead is refused as too long-lived.
    """

    max_lifetime: float | None = None
    """Seconds ahead of now a token's expiry may lie at most (None: any; ``--max-token-lifetime``)."""
    clock_skew: float = 0.0
    """Seconds a token is still accepted after its expiry, for callers whose clocks run late
    (``--token-clock-skew``; 0 = refused from its ``se`` on, as before this setting existed)."""


@dataclass(slots=True)
class HubConfig:
    """How one hub node runs.

    Ports: a number binds that port, 0 picks a free one, -1 turns the listener off.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    hostname: str = "localhost"
    mqtt_port: int = 1883
    http_port: int = 8080
    mqtts_port: int = 8883
    """MQTT over TLS (Azure's device SDK dials 8883)."""
    https_port: int = 8443
    """HTTPS for the REST API, and MQTT and AMQP over WebSocket at ``/$iothub/websocket`` (443 in
    production; the subprotocol picks the transport)."""
    amqps_port: int = 5671
    """AMQP 1.0 over TLS for Azure devices (the SDKs dial 5671)."""
    amqp_port: int = -1
    """AMQP 1.0 without TLS: off by default (Azure serves AMQP on TLS only and its SDKs never dial
    plain AMQP). For a hub behind a TLS-terminating load balancer, and for the benchmark and fuzzer."""
    tls_cert: Path | None = None
    """The operator's certificate chain (PEM); None = a development CA under ``DIR/tls``."""
    tls_key: Path | None = None
    registry_url: str | None = None
    """Where the registry lives; ``None`` = SQLite file ``registry.db`` in the data dir."""
    change_poll_interval: float = 0.5
    queued_call_sweep_interval: float = 1.0
    """Seconds between sweeps of the queued calls: delivering to devices that came online,
    expiring, settling attempts of nodes that are gone (the bound on delivery latency after a device
    connects when its calls were made elsewhere or earlier)."""
    job_rate: float | None = None
    """Device calls per second a job starts on each node (``serve --job-rate``; None: unlimited)."""
    job_concurrency: int = 1000
    """Jobs' device calls in flight (sent, not yet answered) on each node at most
    (``serve --job-concurrency``)."""
    queued_call_max_expires: float = 7 * 86400
    """The longest ``expiresInSeconds`` a queued call may ask for (``serve --max-queued-call-expiry``)."""
    history: bool = True
    """Record synchronous calls in the call history (``serve --history on|off``, on by default)."""
    history_payloads: bool = False
    """Keep synchronous calls' payloads in the history (``serve --history-payloads``)."""
    history_retention: float = 7 * 86400
    """Seconds an ended call is kept (``serve --history-retention``, default 7 days)."""
    history_max: int = 1_000_000
    """Ended calls (no job's) kept at most (``serve --history-max``)."""
    """How often the node reads the registry change feed (seconds): the bound on how long a
    deletion, key rotation or disable made by another process takes to reach live connections."""
    connect_packet_timeout: float = 10.0
    """Seconds a new MQTT connection has to send CONNECT before it is closed."""
    max_calls_in_flight_per_device: int = 64
    """Calls one device may have pending at once (``--max-calls-in-flight``); past it a call is
    refused with 403 ``DeviceMaximumInflightMethodExceeded`` (Azure's own limit is not documented)."""
    quotas: QuotaLimits = field(default_factory=QuotaLimits)
    """Rate limits on calls, device connects, registry operations and jobs (``--quota-*``,
    ``methodhub.toml`` ``[quotas]``); none by default."""
    token_policy: TokenPolicy = field(default_factory=TokenPolicy)
    """Token lifetime and clock skew (``--max-token-lifetime``, ``--token-clock-skew``)."""
    device_limits: DeviceLimits = field(default_factory=lambda: DeviceLimits())
    """What one device connection may do (packet rate, subscriptions)."""
    http_request_head_timeout: float = HTTP_REQUEST_HEAD_TIMEOUT
    """Seconds an HTTP request head may take (→ 408 and close)."""
    http_request_body_timeout: float = HTTP_REQUEST_BODY_TIMEOUT
    """Seconds an HTTP request body may take after its head (→ 408 and close)."""
    http_max_connections: int = HTTP_MAX_CONNECTIONS
    """Connections each HTTP(S) listener holds at most."""
    http_max_unestablished: int = HTTP_MAX_UNESTABLISHED
    """Connections each HTTP(S) listener holds that have not completed a request yet."""
    nats_url: str | None = None
    """A cluster node: the NATS server(s) that carry calls between nodes (docs/cluster.md); ``None``
    = a single node with the in-process router."""
    node_name: str | None = None
    """This node's name in the cluster (default: host name, process id and a random suffix)."""
    metrics_auth: bool = False
    """``GET /metrics`` needs credentials (``serve --metrics-auth``; see ``process.metrics_auth``)."""
    metrics_token: str | None = None
    """With :attr:`metrics_auth`: a static bearer token also accepted (``--metrics-token-file``)."""
    reuse_port: bool = False
    """Listen with ``SO_REUSEPORT`` (``serve --workers N``: N processes share each port)."""
    record_runtime: bool = True
    """Own the data dir: lock it (``hub.lock``) and write ``hub.json`` in it (off for workers: their
    parent does both, once)."""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def registry_location(self) -> str:
        return self.registry_url or str(self.data_dir / "registry.db")
