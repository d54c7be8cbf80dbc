"""Alibaba Cloud's V3 request signature, ``ACS3-HMAC-SHA256``, byte for byte as the Tea SDK signs.

The current official SDKs (``alibabacloud_iot20180120`` on ``alibabacloud_tea_openapi``) sign every
call this way by default, in headers (``alibabacloud_tea_openapi/client.py`` ``do_request``,
``utils.py`` ``get_authorization``, ``get_canonical_query_string``, ``get_canonicalized_headers``)::

    x-acs-action: RRpc                 x-acs-version: 2018-01-20
    x-acs-date: 2026-12-01T15:44:44Z   x-acs-signature-nonce: <32 hex digits>
    x-acs-content-sha256: hex(SHA-256(body))
    Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<a;b;c>,Signature=<hex>

and, with ``HashedRequestPayload = hex(SHA-256(body))`` (the same value as the header)::

    CanonicalRequest = METHOD \\n CanonicalURI \\n CanonicalQueryString \\n
                       CanonicalHeaders \\n SignedHeaders \\n HashedRequestPayload
    StringToSign     = "ACS3-HMAC-SHA256" \\n hex(SHA-256(CanonicalRequest))
    Signature        = hex(HMAC-SHA256(AccessKeySecret, StringToSign))

* CanonicalURI: the path as sent (``/`` for every POP RPC call).
* CanonicalQueryString: the *query* parameters only (a form body is covered by the payload hash),
  sorted by name, ``name=value`` joined by ``&``, the value percent-encoded (RFC 3986: only
  ``A-Z a-z 0-9 - _ . ~`` stay). The Python SDK leaves names as they are; Alibaba's page encodes
  them too — the same text for every IoT parameter name (letters, digits, ``.``), so we encode.
* CanonicalHeaders: ``name:value\\n`` for each signed header, lower-case names, sorted, values
  trimmed. The SDK signs every header it sets itself (host, accept, user-agent, content-type and
  every ``x-acs-*``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from methodhub.dialects.aliyun.signing import pop_percent_encode, pop_timestamp

ACS3_ALGORITHM = "ACS3-HMAC-SHA256"
"""The one V3 algorithm methodhub verifies (the Tea SDK's default)."""
OTHER_ACS3_ALGORITHMS = frozenset({"ACS3-HMAC-SM3", "ACS3-RSA-SHA256"})
"""V3 algorithms the Tea SDK can be configured to use and methodhub does not verify."""
REQUIRED_HEADERS = ("x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256")
"""Headers every ACS3 request carries (the action and version may instead come as parameters)."""
MUST_SIGN = ("host",)
"""Headers that, besides every ``x-acs-*`` header sent, must be in ``SignedHeaders`` (Alibaba:
every common request header but Authorization, if present, must be signed)."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Acs3Authorization:
    """A parsed ``Authorization: ACS3-HMAC-SHA256 Credential=...,SignedHeaders=...,Signature=...``."""

    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str

    @classmethod
    def parse(cls, text: str) -> Acs3Authorization:
        """Parse the header's value.

        Raises:
            ValueError: another scheme (the message starts with the scheme's name), or a part
                missing, repeated or malformed (the message says which).
        """
        scheme, _, rest = text.strip().partition(" ")
        if scheme != ACS3_ALGORITHM:
            raise ValueError(scheme)
        parts: dict[str, str] = {}
        for item in rest.split(","):
            if not item.strip():
                continue
            name, eq, value = item.strip().partition("=")
            if not eq or name not in ("Credential", "SignedHeaders", "Signature"):
                raise ValueError(
                    f"'{item.strip()[:40]}' is not one of Credential=, SignedHeaders=, Signature="
                )
            if name in parts:
                raise ValueError(f"{name} is given more than once")
            parts[name] = value.strip()
        for name in ("Credential", "SignedHeaders", "Signature"):
            if not parts.get(name):
                raise ValueError(f"{name} is missing or empty")
        signature = parts["Signature"]
        if len(signature) != 64 or any(c not in "0123456789abcdefABCDEF" for c in signature):
            raise ValueError("Signature is not 64 hex digits (HMAC-SHA256)")
        names = tuple(parts["SignedHeaders"].split(";"))
        if any(not n or n != n.lower() for n in names) or list(names) != sorted(set(names)):
            raise ValueError("SignedHeaders must be distinct lower-case header names, sorted, joined by ';'")
        return cls(parts["Credential"], names, signature.lower())


def acs3_canonical_query(query: Mapping[str, str]) -> str:
    """Sorted ``name=value`` pairs of the query, percent-encoded, joined by ``&``."""
    return "&".join(f"{pop_percent_encode(k)}={pop_percent_encode(query[k])}" for k in sorted(query))


def _header_text(value: str) -> str:
    """A header value as the client signed it: the server decodes bytes as latin-1, the SDK signs
    the UTF-8 text."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def acs3_canonical_request(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    signed_headers: tuple[str, ...],
    payload_hash: str,
) -> str:
    """The canonical request (see the module docstring).

    Args:
        path: the path as sent (not percent-decoded).
        query: the query parameters, percent-decoded.
        headers: lower-case names → values; every name in ``signed_headers`` must be there.
        signed_headers: lower-case, sorted.
        payload_hash: hex SHA-256 of the body.
    """
    canonical_headers = "".join(f"{name}:{_header_text(headers[name]).strip()}\n" for name in signed_headers)
    return "\n".join(
        (
            method.upper(),
            path or "/",
            acs3_canonical_query(query),
            canonical_headers,
            ";".join(signed_headers),
            payload_hash,
        )
    )


def acs3_string_to_sign(canonical_request: str) -> str:
    return f"{ACS3_ALGORITHM}\n{sha256_hex(canonical_request.encode())}"


def acs3_signature(string_to_sign: str, access_key_secret: str) -> str:
    """``hex(HMAC-SHA256(secret, string_to_sign))``."""
    return hmac.new(access_key_secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def verify_acs3_signature(signature: str, string_to_sign: str, access_key_secret: str) -> bool:
    """Whether ``signature`` (lower-case hex) signs ``string_to_sign`` (constant time)."""
    return hmac.compare_digest(signature.encode(), acs3_signature(string_to_sign, access_key_secret).encode())


def sign_acs3_request(
    method: str,
    host: str,
    action: str | None,
    version: str | None,
    query: Mapping[str, str],
    body: bytes,
    access_key_id: str,
    access_key_secret: str,
    *,
    nonce: str | None = None,
    date: str | None = None,
    content_type: str | None = "application/x-www-form-urlencoded",
) -> dict[str, str]:
    """The client side (for tools and tests): the headers the Tea SDK would send for a request to
    ``/`` with ``query`` and ``body``, Authorization included (``x-acs-action`` / ``x-acs-version``
    left out when None: then the ``Action`` / ``Version`` parameters name them)."""
    headers = {"host": host}
    if action is not None:
        headers["x-acs-action"] = action
    if version is not None:
        headers["x-acs-version"] = version
    headers |= {
        "x-acs-date": date or pop_timestamp(),
        "x-acs-signature-nonce": nonce or secrets.token_hex(16),
        "accept": "application/json",
        "x-acs-content-sha256": sha256_hex(body),
    }
    if body and content_type:
        headers["content-type"] = content_type
    names = tuple(sorted(headers))
    canonical = acs3_canonical_request(method, "/", query, headers, names, headers["x-acs-content-sha256"])
    signature = acs3_signature(acs3_string_to_sign(canonical), access_key_secret)
    headers["authorization"] = (
        f"{ACS3_ALGORITHM} Credential={access_key_id},SignedHeaders={';'.join(names)},Signature={signature}"
    )
    return headers


def encode_query(query: Mapping[str, str]) -> str:
    """A query string for ``query`` (RFC 3986 encoding), as a client would put it in the URL."""
    return "&".join(f"{pop_percent_encode(k)}={pop_percent_encode(v)}" for k, v in query.items())
