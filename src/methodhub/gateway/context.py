"""What every device connection of a node shares: the context object a connection is given, in
place of a pointer back to the whole :class:`~methodhub.gateway.gateway.Gateway`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from methodhub.auth.x509 import ClientCertificate
from methodhub.calls.quotas import Quotas
from methodhub.config import DeviceLimits
from methodhub.gateway.auth import AuthContext
from methodhub.gateway.dialect import ConnectRefused, Dialect, Principal
from methodhub.gateway.session import SessionTable
from methodhub.metrics import Metrics
from methodhub.mqtt import ConnackCode, ReasonCode

if TYPE_CHECKING:
    from methodhub.mqtt import Connect


WORK_BUDGET = 256
"""Packets (MQTT) or frames (AMQP) of one connection handled per event-loop iteration before the
others get their turn."""

CLOSE_GRACE = 5.0
"""Seconds a closing connection has to flush what we wrote before it is aborted."""

MAX_WRITE_BUFFER = 4 * 1024 * 1024
"""A device that stops reading while we keep writing to it is cut off once this many bytes are
queued for it, so one stuck device cannot grow the hub's memory without bound."""


class Closable(Protocol):
    """What the gateway asks of every open device connection when the node stops."""

    def shutdown(self) -> None:
        """Close, telling the device why if its protocol can (MQTT 5: DISCONNECT 0x8B)."""
        ...

    def abort(self) -> None:
        """End now, without flushing (it did not close in time)."""
        ...


@dataclass(slots=True, eq=False)
class ConnectionContext:
    """Shared by the device connections of one node.

    Attributes:
        sessions: the node's sessions.
        auth: what dialects authenticate with.
        dialects: tried in order; the first that claims a CONNECT authenticates it.
        metrics: the hub's counters.
        limits: what one device connection may do (packet rate, subscriptions, connections).
        max_packet_size: the largest MQTT packet accepted from a device.
        connect_timeout: seconds a new connection has to send CONNECT and have it answered.
        connections: the open connections (the gateway closes them when the node stops).
        quotas: the node's rate limits (new device connections per second); None: none.
    """

    sessions: SessionTable
    auth: AuthContext
    dialects: Sequence[Dialect]
    metrics: Metrics
    limits: DeviceLimits
    max_packet_size: int
    connect_timeout: float
    connections: set[Closable] = field(default_factory=set)
    quotas: Quotas | None = None

    async def authenticate(
        self,
        connect: Connect,
        *,
        use_cache: bool = True,
        new: bool = True,
        client_certificate: ClientCertificate | None = None,
    ) -> Principal:
        """The principal of ``connect`` (with the TLS client certificate the connection presented)
        per the first dialect that claims it; raises ConnectRefused.

        A ``new`` connection (not a re-check of one already open) counts against the device connect
        rate first: past it, ConnectRefused with 3.1.1 code 3 (server unavailable) and MQTT 5 reason
        0x9F (connection rate exceeded), before any credential is looked at.
        """
        if new and self.quotas is not None:
            wait = self.quotas.connect_wait()
            if wait:
                raise ConnectRefused(
                    ConnackCode.SERVER_UNAVAILABLE,
                    f"too many new device connections per second; retry in {max(wait, 0.001):.3g} s",
                    ReasonCode.CONNECTION_RATE_EXCEEDED,
                )
        for dialect in self.dialects:
            if dialect.claims(connect):
                return await dialect.authenticate(
                    connect, self.auth, use_cache=use_cache, client_certificate=client_certificate
                )
        raise ConnectRefused(
            ConnackCode.BAD_USERNAME_OR_PASSWORD,
            "the user name is not in any supported form (Azure: '{hostname}/{deviceId}/?api-version=...'; "
            "Alibaba: '{deviceName}&{productKey}')",
        )
