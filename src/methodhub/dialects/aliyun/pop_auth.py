"""Authenticating backends that call the Alibaba-style POP API.

The hub's shared access policies are the credentials: AccessKeyId = the policy's name,
AccessKeySecret = its primary (or secondary) key, as text. So one credential works for the Azure
REST API (a SAS token signed with the key) and for the POP API (requests signed with it).

A request is accepted when it names a policy, is signed with one of its keys
(:mod:`methodhub.dialects.aliyun.signing`), its ``Timestamp`` is within :data:`TIMESTAMP_WINDOW` of the hub's
clock, its ``SignatureNonce`` was not used before in that window, and the policy holds the right
the action needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from methodhub.auth.nonces import NonceStore
from methodhub.dialects.aliyun.signing import (
    POP_SIGNATURE_METHOD,
    POP_SIGNATURE_VERSION,
    parse_pop_timestamp,
    pop_string_to_sign,
    verify_pop_signature,
)
from methodhub.errors import ErrorKind, HubError
from methodhub.registry import AccessPolicy, Registry, Right

TIMESTAMP_WINDOW = 15 * 60.0
"""Seconds a request's ``Timestamp`` may be away from the hub's clock, either way (Alibaba: 15 min)."""
MAX_NONCE_LENGTH = 128
"""``aliyunsdkcore`` sends 32 hex digits; longer nonces only cost memory."""
REQUIRED = ("AccessKeyId", "Signature", "SignatureMethod", "SignatureNonce", "SignatureVersion", "Timestamp")
"""The common parameters every signed request carries."""

SIGNATURE_MISMATCH_PREFIX = (
    "Specified signature is not matched with our calculation. server string to sign is:"
)
"""Alibaba's message, followed by the server's string to sign. ``aliyunsdkcore`` compares the text
after the ``:`` with its own string to sign and, if they are equal (so only the secret can be
wrong), reports ``InvalidAccessKeySecret`` to the user instead."""


def missing(name: str) -> HubError:
    return HubError(
        ErrorKind.MISSING_ARGUMENT,
        f'The input parameter "{name}" that is mandatory for processing this request is not supplied.',
    )


class PopAuthenticator:
    """Verifies signed POP requests against the registry's access policies.

    Args:
        registry: where the policies are.
        nonces: the replay memory (one per node).
        window: see :data:`TIMESTAMP_WINDOW`.
        clock: epoch seconds now (tests move it).
    """

    def __init__(
        self,
        registry: Registry,
        nonces: NonceStore | None = None,
        *,
        window: float = TIMESTAMP_WINDOW,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._nonces = nonces or NonceStore()
        self._window = window
        self._clock = clock
        self._policies: dict[str, AccessPolicy] = {}

    def cached_policy(self, params: Mapping[str, str]) -> AccessPolicy | None:
        """The policy the request names, if it is cached (then :meth:`verify` can run at once)."""
        name = params.get("AccessKeyId")
        return self._policies.get(name) if name else None

    async def authenticate(self, http_method: str, params: Mapping[str, str], right: Right) -> str:
        """Verify a request (see the module docstring); returns the policy name.

        Args:
            http_method: the request's method (part of the string to sign).
            params: every parameter of the request, query and form body, percent-decoded.
            right: what the action needs (ServiceConnect for calls, RegistryRead/Write for devices).

        Raises:
            HubError: ``MISSING_ARGUMENT``, ``MALFORMED_REQUEST``, ``REQUEST_EXPIRED``,
                ``UNAUTHORIZED`` (no such AccessKeyId), ``SIGNATURE_MISMATCH``, ``REQUEST_REPLAYED``,
                ``ACCESS_DENIED``, or ``SERVICE_UNAVAILABLE`` (registry unreachable).
        """
        timestamp = self._check_form(params)
        policy = self.cached_policy(params)
        if policy is None:
            name = params["AccessKeyId"]
            try:
                policy = await self._registry.get_policy(name)
            except HubError:
                raise
            except Exception as exc:
                raise _registry_unreachable() from exc
            if policy is None:
                raise HubError(ErrorKind.UNAUTHORIZED, f"Specified access key is not found: '{name}'.")
            self._policies[name] = policy
        name = self._verify(http_method, params, right, policy, timestamp)
        await self._use_shared_nonce(policy, params, timestamp)
        return name

    async def verify(
        self, http_method: str, params: Mapping[str, str], right: Right, policy: AccessPolicy
    ) -> str:
        """:meth:`authenticate` once the policy is known (:meth:`cached_policy`)."""
        timestamp = self._check_form(params)
        name = self._verify(http_method, params, right, policy, timestamp)
        await self._use_shared_nonce(policy, params, timestamp)
        return name

    async def _use_shared_nonce(
        self, policy: AccessPolicy, params: Mapping[str, str], timestamp: float
    ) -> None:
        """The registry's nonce record, shared by every worker and node: a request replayed to
        another process is refused too (the in-memory store only sees this process's requests)."""
        nonce = params["SignatureNonce"]
        try:
            fresh = await self._registry.use_nonce(
                f"{policy.name}\n{nonce}", timestamp + self._window, self._clock()
            )
        except HubError:
            raise
        except Exception as exc:
            raise _registry_unreachable() from exc
        if not fresh:
            raise HubError(
                ErrorKind.REQUEST_REPLAYED,
                f"Specified signature nonce was used already: '{nonce}'. "
                "Sign every request with a new SignatureNonce.",
            )

    def _verify(
        self,
        http_method: str,
        params: Mapping[str, str],
        right: Right,
        policy: AccessPolicy,
        timestamp: float,
    ) -> str:
        string_to_sign = pop_string_to_sign(http_method, params)
        signature = params["Signature"]
        if not (
            verify_pop_signature(signature, string_to_sign, policy.keys.primary)
            or verify_pop_signature(signature, string_to_sign, policy.keys.secondary)
        ):
            raise HubError(ErrorKind.SIGNATURE_MISMATCH, SIGNATURE_MISMATCH_PREFIX + string_to_sign)
        now = self._clock()
        if not self._nonces.use(f"{policy.name}\n{params['SignatureNonce']}", timestamp + self._window, now):
            raise HubError(
                ErrorKind.REQUEST_REPLAYED,
                f"Specified signature nonce was used already: '{params['SignatureNonce']}'. "
                "Sign every request with a new SignatureNonce.",
            )
        if right not in policy.rights:
            raise HubError(
                ErrorKind.ACCESS_DENIED,
                f"Policy '{policy.name}' lacks the {right} permission this action needs.",
            )
        return policy.name

    def _check_form(self, params: Mapping[str, str]) -> float:
        """The checks that need no key; returns the request's timestamp (epoch seconds)."""
        for name in REQUIRED:
            if not params.get(name):
                raise missing(name)
        if params["SignatureMethod"] != POP_SIGNATURE_METHOD:
            raise HubError(
                ErrorKind.MALFORMED_REQUEST,
                f"SignatureMethod '{params['SignatureMethod']}' is not supported; "
                f"use {POP_SIGNATURE_METHOD}.",
            )
        if params["SignatureVersion"] != POP_SIGNATURE_VERSION:
            raise HubError(
                ErrorKind.MALFORMED_REQUEST,
                f"SignatureVersion '{params['SignatureVersion']}' is not supported; use "
                f"{POP_SIGNATURE_VERSION}.",
            )
        if len(params["SignatureNonce"]) > MAX_NONCE_LENGTH:
            raise HubError(
                ErrorKind.MALFORMED_REQUEST, f"SignatureNonce is longer than {MAX_NONCE_LENGTH} characters."
            )
        try:
            timestamp = parse_pop_timestamp(params["Timestamp"])
        except ValueError:
            raise HubError(
                ErrorKind.MALFORMED_REQUEST,
                f"Timestamp '{params['Timestamp']}' is not in the format YYYY-MM-DDThh:mm:ssZ (UTC).",
            ) from None
        skew = timestamp - self._clock()
        if abs(skew) > self._window:
            raise HubError(
                ErrorKind.REQUEST_EXPIRED,
                f"Specified time stamp or date value is expired: Timestamp '{params['Timestamp']}' is "
                f"{abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the hub's clock; the limit is "
                f"{self._window:.0f} s.",
            )
        return timestamp

    def invalidate_policy(self, name: str) -> None:
        """Forget the cached policy ``name`` (its keys or rights changed)."""
        self._policies.pop(name, None)


def _registry_unreachable() -> HubError:
    return HubError(ErrorKind.SERVICE_UNAVAILABLE, "The registry is unreachable; retry later.")
