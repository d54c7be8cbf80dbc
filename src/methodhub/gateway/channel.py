"""The device channel: what a transport's connection does for the session it carries.

A :class:`~methodhub.gateway.session.DeviceSession` is transport-neutral. The connection carrying
it (MQTT's :class:`~methodhub.gateway.mqtt_connection.DeviceConnection`, AMQP's
:class:`~methodhub.gateway.amqp_channel.AmqpMethodsChannel`) implements :class:`DeviceChannel` to
put a call on the wire, to say whether the device can take calls, to end itself when another
connection takes the session over, and to pass on a change of the device's desired properties.
It reports back to the session: answers (``session.complete``), readiness changes
(``session.readiness_changed``) and its end (``session.detach``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from methodhub.calls.model import Call

if TYPE_CHECKING:
    from methodhub.registry.twins import Twin


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

    def desired_changed(self, twin: Twin) -> None:
        """The identity's desired properties changed (``twin`` is the twin now): notify the
        device if it asked for such notifications on this connection."""
        ...
