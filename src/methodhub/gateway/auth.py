"""What dialects need to authenticate a device: the registry, the hub's names, a token cache."""

from __future__ import annotations

from dataclasses import dataclass

from methodhub.auth import VerifiedTokenCache
from methodhub.registry import Registry


@dataclass(slots=True)
class AuthContext:
    """Shared by every dialect's ``authenticate``.

    Attributes:
        registry: identities, keys and policies.
        hostname: the hub's host name, the one devices put in their username and token (``sr``).
        tokens: verified credentials, keyed by the exact credential text, until they expire.
    """

    registry: Registry
    hostname: str
    tokens: VerifiedTokenCache

    def host_matches(self, host: str) -> bool:
        """Whether ``host`` (maybe with ``:port``) names this hub; case-insensitive, as DNS."""
        return host_matches(host, self.hostname)


def host_matches(host: str, hostname: str) -> bool:
    """Whether ``host`` (maybe with ``:port``) is ``hostname``; case-insensitive, as DNS."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.lower() == hostname.lower()
