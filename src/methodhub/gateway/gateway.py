"""The device gateway: MQTT and AMQP listeners, the session table, device authentication and registry
reactions."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence

from methodhub.admission import Admission, log_accept_errors
from methodhub.auth import VerifiedTokenCache
from methodhub.config import DeviceLimits
from methodhub.errors import HubError
from methodhub.gateway.amqp_connection import AmqpDeviceConnection
from methodhub.gateway.amqp_dialect import AmqpDialect
from methodhub.gateway.auth import AuthContext
from methodhub.gateway.context import ConnectionContext
from methodhub.gateway.dialect import Dialect
from methodhub.gateway.mqtt_connection import DeviceConnection
from methodhub.gateway.session import SessionTable
from methodhub.metrics import Metrics
from methodhub.registry import Registry
from methodhub.router import Presence

log = logging.getLogger("methodhub.gateway")

CLOSE_GRACE = 2.0
"""Seconds :meth:`Gateway.close` waits for device connections to finish closing (a device that does
not read cannot hold the hub's exit longer)."""


class Gateway:
    """Owns every device connection of this node.

    Args:
        registry: identities and persisted sessions.
        router: told which devices are ready here.
        metrics: the hub's counters.
        hostname: the hub's host name (in device usernames and tokens).
        dialects: tried in order; the first that claims a CONNECT authenticates it.
        max_packet_size: the largest MQTT packet accepted from a device.
        connect_packet_timeout: seconds a new connection has to send CONNECT.
        max_in_flight: calls one device may have pending at once.
        limits: what one device connection may do (packet rate, subscriptions).
        amqp_dialect: what AMQP devices' links, tokens and method messages mean (Azure's); None:
            this gateway has no AMQP listener (:meth:`listen_amqp` raises RuntimeError).
    """

    def __init__(
        self,
        *,
        registry: Registry,
        router: Presence,
        metrics: Metrics,
        hostname: str,
        dialects: Sequence[Dialect],
        max_packet_size: int,
        connect_packet_timeout: float = 10.0,
        max_in_flight: int = 64,
        limits: DeviceLimits | None = None,
        amqp_dialect: AmqpDialect | None = None,
    ) -> None:
        self.registry = registry
        self.amqp_dialect = amqp_dialect
        self.metrics = metrics
        self.limits = limits if limits is not None else DeviceLimits()
        self.auth = AuthContext(registry=registry, hostname=hostname, tokens=VerifiedTokenCache())
        self.sessions = SessionTable(router, registry, metrics, max_in_flight)
        self.context = ConnectionContext(
            sessions=self.sessions,
            auth=self.auth,
            dialects=list(dialects),
            metrics=metrics,
            limits=self.limits,
            max_packet_size=max_packet_size,
            connect_timeout=connect_packet_timeout,
        )
        """What the connections share (they get this, not the gateway)."""
        self.connections = self.context.connections
        self._servers: list[asyncio.AbstractServer] = []
        self.admissions: list[Admission] = []
        """One per MQTT listener: its connection caps (:mod:`methodhub.admission`)."""
        self._upgraded: dict[str, Admission] = {}
        """The admissions of MQTT over WebSocket, by listener name (see :meth:`protocol_for`)."""
        metrics.gauge(
            "methodhub_mqtt_connections",
            "Open MQTT connections.",
            lambda: sum(1 for c in self.connections if not isinstance(c, AmqpDeviceConnection)),
        )
        metrics.gauge(
            "methodhub_amqp_connections",
            "Open AMQP connections.",
            lambda: sum(1 for c in self.connections if isinstance(c, AmqpDeviceConnection)),
        )
        metrics.gauge("methodhub_sessions", "Device sessions on this node.", lambda: len(self.sessions))

    async def listen(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        name: str = "mqtt",
        reuse_port: bool = False,
    ) -> asyncio.AbstractServer:
        """Start an MQTT listener; returns the server (its sockets tell the port actually bound).
        ``reuse_port`` sets ``SO_REUSEPORT`` (several worker processes sharing one port)."""
        loop = asyncio.get_running_loop()
        log_accept_errors(loop)
        admission = self._new_admission(f"{name} {host}:{port}")
        # A TLS handshake happens before the connection is admitted: bound it by the CONNECT deadline.
        server = await loop.create_server(
            lambda: DeviceConnection(self.context, name, admission),
            host,
            port,
            ssl=ssl_context,
            backlog=4096,
            reuse_port=reuse_port or None,
            ssl_handshake_timeout=self.context.connect_timeout if ssl_context is not None else None,
        )
        sockname = server.sockets[0].getsockname() if server.sockets else None
        if sockname:
            admission.name = f"{name} {sockname[0]}:{sockname[1]}"
        self._servers.append(server)
        return server

    async def listen_amqp(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        name: str = "amqps",
        reuse_port: bool = False,
    ) -> asyncio.AbstractServer:
        """Start an AMQP 1.0 listener (the AMQP dialect's device protocol: Azure's; TLS on 5671 in
        production), with its own :class:`Admission`; returns the server (its sockets tell the port
        bound). Raises RuntimeError when the gateway was given no ``amqp_dialect`` (or none of its
        ``dialects`` is the MQTT dialect of that name)."""
        loop = asyncio.get_running_loop()
        self._amqp_connection(name, None)  # fail here, not per accepted connection
        log_accept_errors(loop)
        admission = self._new_admission(f"{name} {host}:{port}")
        server = await loop.create_server(
            lambda: self._amqp_connection(name, admission),
            host,
            port,
            ssl=ssl_context,
            backlog=4096,
            reuse_port=reuse_port or None,
            ssl_handshake_timeout=self.context.connect_timeout if ssl_context is not None else None,
        )
        sockname = server.sockets[0].getsockname() if server.sockets else None
        if sockname:
            admission.name = f"{name} {sockname[0]}:{sockname[1]}"
        self._servers.append(server)
        return server

    def _new_admission(self, name: str) -> Admission:
        admission = Admission(
            name,
            max_connections=self.limits.max_connections,
            max_unestablished=self.limits.max_unestablished,
            logger=log,
        )
        self.admissions.append(admission)
        return admission

    def protocol_for(self, listener: str) -> DeviceConnection:
        """A connection protocol for a transport made elsewhere (MQTT over WebSocket, ``ws`` or
        ``wss``). Such connections leave the HTTP listener's count when they upgrade, so they are
        admitted here, one :class:`Admission` per name, under the same caps as an MQTT listener."""
        admission = self._upgraded.get(listener)
        if admission is None:
            admission = self._upgraded[listener] = self._new_admission(f"mqtt over {listener}")
        return DeviceConnection(self.context, listener, admission)

    def _amqp_connection(self, listener: str, admission: Admission | None) -> AmqpDeviceConnection:
        """An AMQP connection protocol speaking the gateway's AMQP dialect (the gateway knows no cloud)."""
        dialect = self.amqp_dialect
        if dialect is None:
            raise RuntimeError(
                "this gateway has no AMQP dialect: build it with Gateway(..., amqp_dialect=...) "
                "(Azure's is methodhub.dialects.azure.amqp.AzureAmqpDialect) to serve AMQP devices"
            )
        if not any(d.name == dialect.name for d in self.context.dialects):
            raise RuntimeError(
                f"the AMQP dialect {dialect.name!r} has no MQTT dialect of that name among the gateway's "
                "dialects: its devices' sessions are that dialect's"
            )
        return AmqpDeviceConnection(self.context, dialect, listener, admission)

    def amqp_protocol_for(self, listener: str) -> AmqpDeviceConnection:
        """An AMQP connection protocol for a transport made elsewhere (AMQP over WebSocket,
        subprotocol ``AMQPWSB10``), admitted as :meth:`protocol_for` admits MQTT over WebSocket:
        one :class:`Admission` per name (``amqp over {listener}``)."""
        name = f"amqp over {listener}"
        admission = self._upgraded.get(name)
        if admission is None:
            admission = self._upgraded[name] = self._new_admission(name)
        return self._amqp_connection(listener, admission)

    def connection_state(self, target: str) -> tuple[bool, float | None]:
        return self.sessions.connection_state(target)

    async def connection_states(self, targets: list[str]) -> dict[str, tuple[bool, float | None]]:
        """Whether each target is connected to this node or (in a cluster) to another, and since when."""
        states = {target: self.sessions.connection_state(target) for target in targets}
        router = self.sessions.router
        elsewhere = [target for target, (connected, _) in states.items() if not connected]
        if elsewhere and router.spans_nodes:
            answers = await asyncio.gather(*(router.remote_connection_state(t) for t in elsewhere))
            states.update(zip(elsewhere, answers, strict=True))
        return states

    async def identity_changed(self, key: str) -> None:
        """A registry change touched ``key``: forget cached tokens, re-check live connections."""
        self.auth.tokens.invalidate(key)
        device_id = key.split("/", 1)[0]
        sessions = (
            self.sessions.sessions_of(device_id)
            if "/" not in key
            else [s for s in [self.sessions.get(key)] if s]
        )
        for session in sessions:
            self.auth.tokens.invalidate(session.key)
            channel = session.channel
            if channel is not None:
                await channel.reverify()

    async def twin_changed(self, key: str) -> None:
        """The desired properties of ``key``'s twin changed (anywhere in the cluster): if the device
        is connected here, its connection notifies it (when it asked for notifications)."""
        session = self.sessions.get(key)
        if session is None or session.channel is None:
            return
        principal = session.principal
        try:
            twin = await self.registry.get_twin(principal.device_id, principal.module_id)
        except HubError as exc:  # the registry is down: the device reads its twin when it can
            log.warning("desired properties of %s not sent: %s", key, exc.message)
            return
        channel = session.channel
        if twin is not None and channel is not None:
            channel.desired_changed(twin)

    def policy_changed(self, name: str) -> None:
        self.auth.tokens.invalidate(f"policy:{name}")

    async def authority_changed(self, name: str) -> None:
        """A registered CA changed (verified, removed): re-check every connection that
        authenticated with a client certificate (a CA removed ends its devices' connections)."""
        for key in self.sessions.connected_keys():
            session = self.sessions.get(key)
            channel = session.channel if session is not None else None
            if session is not None and channel is not None and session.principal.attributes.get("x509"):
                await channel.reverify()

    def stop_listening(self) -> None:
        """Accept no more connections (those open stay until :meth:`close`)."""
        for server in self._servers:
            server.close()

    async def close(self) -> None:
        """Stop listening, close every connection (MQTT 5: DISCONNECT 0x8B) and wait, at most
        :data:`CLOSE_GRACE` seconds, until they are closed. Their queued session writes are the
        registry's (``Registry.close`` writes them)."""
        self.stop_listening()
        for connection in list(self.connections):
            connection.shutdown()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_GRACE
        # Their DISCONNECTs are being written. Polled (once, at exit) rather than an event that
        # every connection's end would have to set.
        while self.connections and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        for connection in list(self.connections):  # not reading what we write: drop it
            connection.abort()
