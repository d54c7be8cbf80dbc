"""How a call reaches the node holding the device's connection.

``LocalRouter`` (one process) is exported here; ``methodhub.router.nats.NatsRouter`` (a cluster) is
imported from its package only when a node joins a cluster, so single nodes never load nats-py.
The engine's port is :class:`~methodhub.calls.ports.CallCarrier`; the gateway's is
:class:`Presence`, to which it hands sessions as :class:`CallLink` / :class:`ReleasableLink`.
"""

from methodhub.router.base import Router, RouterUnavailable
from methodhub.router.local import LocalRouter
from methodhub.router.presence import CallLink, Presence, ReleasableLink

__all__ = ["CallLink", "LocalRouter", "Presence", "ReleasableLink", "Router", "RouterUnavailable"]
