"""Authenticating backends that call the Alibaba-style POP API.

The hub's shared access policies are the credentials: AccessKeyId = the policy's name,
AccessKeySecret = its primary (or secondary) key, as text. So one credential works for the Azure
REST API (a SAS token signed with the key) and for the POP API (requests signed with it).

Two signatures, checked alike: V2 (``Signature`` and its common parameters in the query,
:mod:`methodhub.dialects.aliyun.signing`; :meth:`PopAuthenticator.authenticate`) and V3
(``Authorization: ACS3-HMAC-SHA256 ...`` and ``x-acs-*`` headers,
:mod:`methodhub.dialects.aliyun.acs3`; :meth:`PopAuthenticator.check_acs3` then
:meth:`PopAuthenticator.authenticate_acs3`). A request is accepted when it names a policy, is
signed with one of its keys, its ``Timestamp`` / ``x-acs-date`` is within :data:`TIMESTAMP_WINDOW`
of the hub's clock, its ``SignatureNonce`` / ``x-acs-signature-nonce`` was not used before in that
window (one nonce memory for both schemes), and the policy holds the right the action needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from methodhub.auth.nonces import NonceStore
from methodhub.dialects.aliyun.acs3 import (
    ACS3_ALGORITHM,
    MUST_SIGN,
    REQUIRED_HEADERS,
    Acs3Authorization,
    acs3_canonical_request,
    acs3_string_to_sign,
    sha256_hex,
    verify_acs3_signature,
)
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


ACS3_MISMATCH_PREFIX = "Specified signature does not match our calculation."
"""Alibaba's message for a V3 signature mismatch (then ``server StringToSign is [...]``)."""
NOT_STANDARD = "The request signature does not conform to Aliyun standards"
"""Alibaba's ``IncompleteSignature`` message, which methodhub follows with what is wrong."""


@dataclass(frozen=True, slots=True)
class Acs3Check:
    """What :meth:`PopAuthenticator.check_acs3` found in a request's headers (no key needed yet)."""

    authorization: Acs3Authorization
    timestamp: float
    nonce: str
    payload_hash: str


def incomplete(detail: str) -> HubError:
    return HubError(ErrorKind.INCOMPLETE_SIGNATURE, f"{NOT_STANDARD}: {detail}.")


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
        self.on_failure: Callable[[str], None] | None = None
        """Told each refusal's reason (its error kind, e.g. ``signature_mismatch``): the hub counts them."""

    def refused(self, error: HubError) -> None:
        """:meth:`authenticate` (or :meth:`authenticate_acs3`) failed with ``error``: tell
        :attr:`on_failure`, unless the registry could not be asked (not the credential's fault)."""
        if self.on_failure is not None and error.kind is not ErrorKind.SERVICE_UNAVAILABLE:
            self.on_failure(error.kind.name.lower())

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
        policy = await self._policy(params["AccessKeyId"])
        name = self._verify(http_method, params, right, policy, timestamp)
        await self._use_shared_nonce(policy, params["SignatureNonce"], timestamp)
        return name

    def check_acs3(self, headers: Mapping[str, str], body: bytes) -> Acs3Check:
        """The V3 checks that need no key: the Authorization header's form, the required headers,
        what must be signed, ``x-acs-date``'s window, the nonce's length, and that
        ``x-acs-content-sha256`` is the SHA-256 of ``body``.

        Args:
            headers: lower-case names (as :class:`~methodhub.http.messages.Request` has them).

        Raises:
            HubError: ``INCOMPLETE_SIGNATURE`` (no Authorization, another scheme, a part missing or
                garbled, a header sent but not signed or signed but not sent), ``MISSING_ARGUMENT``
                (a required header), ``MALFORMED_REQUEST``, ``REQUEST_EXPIRED``,
                ``SIGNATURE_MISMATCH`` (the body is not the one whose hash was signed).
        """
        text = headers.get("authorization")
        if text is None and "x-acs-bearer-token" in headers:
            raise incomplete(
                "the request is authenticated with a bearer token (x-acs-bearer-token), which methodhub "
                f"does not verify; sign with {ACS3_ALGORITHM} and a policy's AccessKey"
            )
        if text is None:
            raise incomplete(
                f"the request carries x-acs-* headers but no Authorization header; sign it with "
                f"{ACS3_ALGORITHM} (the Tea SDK's default) or with the V2 signature parameters"
            )
        if not text.strip():
            raise incomplete("the Authorization header is empty")
        try:
            authorization = Acs3Authorization.parse(text)
        except ValueError as exc:
            detail = str(exc)
            if text.strip().split(" ", 1)[0] != ACS3_ALGORITHM:
                raise incomplete(
                    f"the Authorization header uses the scheme {detail[:60]!r}, which methodhub does not "
                    f"verify; sign with {ACS3_ALGORITHM} (the Tea SDK's default) or with the V2 signature "
                    "(SignatureMethod=HMAC-SHA1 and Signature in the query)"
                ) from None
            raise incomplete(
                f"the Authorization header is not '{ACS3_ALGORITHM} Credential=<AccessKeyId>,"
                f"SignedHeaders=<names>,Signature=<hex>': {detail}"
            ) from None
        for name in REQUIRED_HEADERS:
            if not headers.get(name):
                raise HubError(
                    ErrorKind.MISSING_ARGUMENT,
                    f'The header "{name}" that is mandatory for a request signed with {ACS3_ALGORITHM} '
                    "is not supplied.",
                )
        signed = set(authorization.signed_headers)
        for name in authorization.signed_headers:
            if name not in headers:
                raise incomplete(f"SignedHeaders lists {name!r}, which the request does not carry")
        for name in headers:
            if (name in MUST_SIGN or name.startswith("x-acs-")) and name not in signed:
                raise incomplete(
                    f"the header {name!r} is sent but not in SignedHeaders; host and every x-acs-* header "
                    "must be signed"
                )
        nonce = headers["x-acs-signature-nonce"]
        self._check_nonce(nonce, "x-acs-signature-nonce")
        timestamp = self._check_timestamp(headers["x-acs-date"], "x-acs-date")
        claimed = headers["x-acs-content-sha256"]
        actual = sha256_hex(body)
        if claimed.lower() != actual:
            raise HubError(
                ErrorKind.SIGNATURE_MISMATCH,
                f"{ACS3_MISMATCH_PREFIX} x-acs-content-sha256 is {claimed[:70]!r}, but the SHA-256 of the "
                f"{len(body)}-byte body the hub received is {actual!r}: sign the body you send.",
            )
        return Acs3Check(authorization, timestamp, nonce, actual)

    async def authenticate_acs3(
        self,
        check: Acs3Check,
        http_method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        right: Right,
    ) -> str:
        """Verify a V3-signed request once :meth:`check_acs3` passed; returns the policy name.

        Args:
            path: the request's path as sent.
            query: the query parameters only, percent-decoded (a form body is in the payload hash).
            headers: lower-case names.

        Raises:
            HubError: ``UNAUTHORIZED``, ``SIGNATURE_MISMATCH``, ``REQUEST_REPLAYED``,
                ``ACCESS_DENIED`` or ``SERVICE_UNAVAILABLE``, as :meth:`authenticate`.
        """
        authorization = check.authorization
        canonical = acs3_canonical_request(
            http_method, path, query, headers, authorization.signed_headers, check.payload_hash
        )
        string_to_sign = acs3_string_to_sign(canonical)
        policy = await self._policy(authorization.access_key_id)
        if not (
            verify_acs3_signature(authorization.signature, string_to_sign, policy.keys.primary)
            or verify_acs3_signature(authorization.signature, string_to_sign, policy.keys.secondary)
        ):
            raise HubError(
                ErrorKind.SIGNATURE_MISMATCH,
                f"{ACS3_MISMATCH_PREFIX} server StringToSign is [{string_to_sign}], server "
                f"CanonicalRequest is [{canonical}]. If yours are the same, the AccessKeySecret is wrong.",
            )
        self._admit(policy, check.nonce, check.timestamp, right)
        await self._use_shared_nonce(policy, check.nonce, check.timestamp)
        return policy.name

    async def _policy(self, name: str) -> AccessPolicy:
        """The policy ``name`` (cached), or ``UNAUTHORIZED``."""
        policy = self._policies.get(name)
        if policy is not None:
            return policy
        try:
            policy = await self._registry.get_policy(name)
        except HubError:
            raise
        except Exception as exc:
            raise _registry_unreachable() from exc
        if policy is None:
            raise HubError(ErrorKind.UNAUTHORIZED, f"Specified access key is not found: '{name}'.")
        self._policies[name] = policy
        return policy

    async def verify(
        self, http_method: str, params: Mapping[str, str], right: Right, policy: AccessPolicy
    ) -> str:
        """:meth:`authenticate` once the policy is known (:meth:`cached_policy`)."""
        timestamp = self._check_form(params)
        name = self._verify(http_method, params, right, policy, timestamp)
        await self._use_shared_nonce(policy, params["SignatureNonce"], timestamp)
        return name

    async def _use_shared_nonce(self, policy: AccessPolicy, nonce: str, timestamp: float) -> None:
        """The registry's nonce record, shared by every worker and node: a request replayed to
        another process is refused too (the in-memory store only sees this process's requests)."""
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
        self._admit(policy, params["SignatureNonce"], timestamp, right)
        return policy.name

    def _admit(self, policy: AccessPolicy, nonce: str, timestamp: float, right: Right) -> None:
        """After the signature verified: the nonce in this process's memory, then the right."""
        if not self._nonces.use(f"{policy.name}\n{nonce}", timestamp + self._window, self._clock()):
            raise HubError(
                ErrorKind.REQUEST_REPLAYED,
                f"Specified signature nonce was used already: '{nonce}'. "
                "Sign every request with a new SignatureNonce.",
            )
        if right not in policy.rights:
            raise HubError(
                ErrorKind.ACCESS_DENIED,
                f"Policy '{policy.name}' lacks the {right} permission this action needs.",
            )

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
        self._check_nonce(params["SignatureNonce"], "SignatureNonce")
        return self._check_timestamp(params["Timestamp"], "Timestamp")

    @staticmethod
    def _check_nonce(nonce: str, name: str) -> None:
        if len(nonce) > MAX_NONCE_LENGTH:
            raise HubError(
                ErrorKind.MALFORMED_REQUEST, f"{name} is longer than {MAX_NONCE_LENGTH} characters."
            )

    def _check_timestamp(self, text: str, name: str) -> float:
        """Epoch seconds of ``Timestamp`` / ``x-acs-date`` (``name``), within the window."""
        try:
            timestamp = parse_pop_timestamp(text)
        except ValueError:
            raise HubError(
                ErrorKind.MALFORMED_REQUEST,
                f"{name} {text[:40]!r} is not in the format YYYY-MM-DDThh:mm:ssZ (UTC).",
            ) from None
        skew = timestamp - self._clock()
        if abs(skew) > self._window:
            raise HubError(
                ErrorKind.REQUEST_EXPIRED,
                f"Specified time stamp or date value is expired: {name} '{text}' is "
                f"{abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the hub's clock; the limit is "
                f"{self._window:.0f} s.",
            )
        return timestamp

    def invalidate_policy(self, name: str) -> None:
        """Forget the cached policy ``name`` (its keys or rights changed)."""
        self._policies.pop(name, None)


def _registry_unreachable() -> HubError:
    return HubError(ErrorKind.SERVICE_UNAVAILABLE, "The registry is unreachable; retry later.")
