"""How a call reaches the node holding the device's connection."""

from methodhub.router.base import CallLink, Router
from methodhub.router.local import LocalRouter

__all__ = ["CallLink", "LocalRouter", "Router"]
