"""How a call reaches the node holding the device's connection.

``LocalRouter`` (one process) is exported here; ``methodhub.router.nats.NatsRouter`` (a cluster) is
imported from its module only when a node joins a cluster, so single nodes never load nats-py.
"""

from methodhub.router.base import CallLink, ReleasableLink, Router, RouterUnavailable
from methodhub.router.local import LocalRouter

__all__ = ["CallLink", "LocalRouter", "ReleasableLink", "Router", "RouterUnavailable"]
