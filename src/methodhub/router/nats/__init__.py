"""The cluster router: calls between the nodes of a cluster through NATS (docs/cluster.md).

Imported only by nodes that join a cluster (``serve --nats``), so single nodes never load nats-py.
``wire`` is what nodes say to each other, ``client`` the one module that touches nats-py,
``liveness`` the I/O-free bookkeeping of calls in flight between nodes, ``router`` the wiring.
"""

from methodhub.router.nats.router import NatsRouter

__all__ = ["NatsRouter"]
