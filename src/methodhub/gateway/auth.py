"""What dialects need to authenticate a device: the registry, the hub's names, a token cache."""

from __future__ import annotations

from dataclasses import dataclass

from methodhub.auth import VerifiedTokenCache
from methodhub.auth.x509 import ClientCertificate
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


def client_certificate(transport: object) -> ClientCertificate | None:
    """The TLS client certificate the peer of ``transport`` presented (asyncio's ``ssl_object``
    extra info; a WebSocket transport passes its TCP transport's on), or None: not TLS, or no
    certificate. Python 3.13+ also reports the rest of the chain the peer sent."""
    get_extra_info = getattr(transport, "get_extra_info", None)
    ssl_object = get_extra_info("ssl_object") if get_extra_info is not None else None
    if ssl_object is None:
        return None
    try:
        der = ssl_object.getpeercert(binary_form=True)
    except (ValueError, OSError):  # the handshake is not done (or the connection is gone)
        return None
    if not der:
        return None
    chain: tuple[bytes, ...] = ()
    unverified = getattr(ssl_object, "get_unverified_chain", None)
    if unverified is not None:
        try:
            chain = tuple(bytes(c) for c in (unverified() or [])[1:])
        except (ValueError, OSError, TypeError):
            chain = ()
    return ClientCertificate(bytes(der), chain)
