"""Authenticating backends: Azure service SAS tokens signed with a shared access policy's key."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import unquote

from methodhub.auth.cache import VerifiedTokenCache
from methodhub.config import TokenPolicy
from methodhub.dialects.azure.sas import DEFAULT_TOKEN_POLICY, SasToken, SasTokenError
from methodhub.errors import ErrorKind, HubError
from methodhub.registry import Registry, Right


class _Refused(HubError):
    """An ``UNAUTHORIZED`` with why, for ``methodhub_auth_failures_total{side="service"}``."""

    __slots__ = ("reason",)

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(ErrorKind.UNAUTHORIZED, message)
        self.reason = reason


def _unauthorized(message: str, reason: str) -> HubError:
    return _Refused(message, reason)


def _ignore(reason: str) -> None:
    pass


class ServiceAuthenticator:
    """Checks ``Authorization: SharedAccessSignature sr=..&sig=..&se=..&skn=..`` headers.

    The token must name a policy (``skn``) holding the right asked for, be signed with its primary
    or secondary key, be unexpired, and have ``sr`` = the hub's hostname (with or without the port
    the client used). Verified headers are cached until their expiry.
    """

    def __init__(
        self, registry: Registry, hostname: str, token_policy: TokenPolicy = DEFAULT_TOKEN_POLICY
    ) -> None:
        self.token_policy = token_policy
        """Token lifetime and clock skew the hub accepts."""
        self._registry = registry
        self._hostname = hostname.lower()
        self._cache = VerifiedTokenCache()
        self.on_failure: Callable[[str], None] = _ignore
        """Told the reason of each refusal (``missing``, ``malformed``, ``no_policy_name``, ``audience``,
        ``expired``, ``lifetime``, ``unknown_policy``, ``bad_signature``, ``missing_right``): the hub
        counts them."""

    def cached(self, header: str, right: Right) -> str | None:
        """The policy name if ``header`` was verified before and grants ``right``; else None."""
        entry = self._cache.get(header, time.time())
        if entry is None:
            return None
        name, rights = entry
        return name if right in rights else None

    async def authenticate(self, header: str | None, host_header: str | None, right: Right) -> str:
        """Verify ``header`` for ``right``; returns the policy name.

        Raises:
            HubError: ``UNAUTHORIZED`` with what is wrong.
        """
        try:
            return await self._authenticate(header, host_header, right)
        except _Refused as refused:
            self.on_failure(refused.reason)
            raise

    async def _authenticate(self, header: str | None, host_header: str | None, right: Right) -> str:
        if not header:
            raise _unauthorized(
                "No Authorization header; send 'SharedAccessSignature sr=...&sig=...&se=...&skn=...' "
                "(see `methodhub connection-string`).",
                "missing",
            )
        now = time.time()
        entry = self._cache.get(header, now)
        if entry is None:
            try:
                token = SasToken.parse(header.strip())
            except SasTokenError as exc:
                raise _unauthorized(
                    f"The Authorization header is not a valid SAS token: {exc}.", "malformed"
                ) from None
            if not token.key_name:
                raise _unauthorized(
                    "The SAS token has no skn (policy name); service calls need a policy token.",
                    "no_policy_name",
                )
            self._check_audience(token, host_header)
            refusal = token.lifetime_refusal(now, self.token_policy)
            if refusal is not None:
                expired = token.is_expired(now, self.token_policy.clock_skew)
                reason = "expired" if expired else "lifetime"
                raise _unauthorized(f"{refusal[:1].upper()}{refusal[1:]}; sign a new one.", reason)
            policy = await self._registry.get_policy(token.key_name)
            if policy is None:
                raise _unauthorized(f"No shared access policy named '{token.key_name}'.", "unknown_policy")
            if not (token.verify(policy.keys.primary) or token.verify(policy.keys.secondary)):
                raise _unauthorized(
                    f"The SAS token's signature does not match policy '{policy.name}'.", "bad_signature"
                )
            entry = (policy.name, policy.rights)
            expires = token.expiry + self.token_policy.clock_skew
            self._cache.put(header, entry, expires, f"policy:{policy.name}")
        name, rights = entry
        if right not in rights:
            raise _unauthorized(
                f"Policy '{name}' lacks the {right} permission this request needs.", "missing_right"
            )
        return name

    def _check_audience(self, token: SasToken, host_header: str | None) -> None:
        audience = unquote(token.resource_decoded).lower()
        allowed = {self._hostname}
        if host_header:
            host = host_header.strip().lower()
            if ":" in host and host.rsplit(":", 1)[0] == self._hostname:
                allowed.add(host)
            elif host == self._hostname:
                # HTTP clients leave the default port out of Host, but azure-iot-hub signs the
                # HostName it was given: "hub:443" over https (or "hub:80") arrives as Host "hub".
                allowed |= {f"{self._hostname}:443", f"{self._hostname}:80"}
        if audience not in allowed:
            raise _unauthorized(
                f"The SAS token is for '{token.resource_decoded}', but this hub is '{self._hostname}'.",
                "audience",
            )

    def invalidate_policy(self, name: str) -> None:
        """Forget verified tokens of policy ``name`` (its keys or rights changed)."""
        self._cache.invalidate(f"policy:{name}")
