"""The device channel: what a transport's connection does for the session it carries.

A :class:`~methodhub.gateway.session.DeviceSession` is transport-neutral. The connection carrying
it (MQTT today, :class:`~methodhub.gateway.mqtt_connection.DeviceConnection`; AMQP next) implements
:class:`DeviceChannel` to put a call on the wire, to say whether the device can take calls, and
to end itself when another connection takes the session over. It reports back to the session:
answers (``session.complete``), readiness changes (``session.readiness_changed``) and its end
(``session.detach``).
"""

from __future__ import annotations

from typing import Protocol

from methodhub.calls.model import Call


class DeviceChannel(Protocol):
    """One live connection of a device, as its session sees it."""

    def deliver(self, call: Call, seq: int) -> str:
        """Send ``call`` to the device now; returns the request id its answer will carry. ``seq``
        is unique on this node. Raises :class:`~methodhub.errors.HubError` when this device cannot
        take this call (the session fails the call with it)."""
        ...

    def ready_for_calls(self) -> bool:
        """Whether the device can receive calls on this connection now (e.g. it subscribed to
        method requests)."""
        ...

    def close_taken_over(self) -> None:
        """Another connection took the session over (here or on another node): end this one."""
        ...

    async def reverify(self) -> None:
        """The registry changed this identity: check the connection's credentials again and end
        the connection if they no longer hold."""
        ...
