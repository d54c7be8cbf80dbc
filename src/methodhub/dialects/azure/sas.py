"""Azure Shared Access Signature tokens: sign, parse, verify (azure-direct-methods-wire.md §1.4, §2.3).

A token is ``SharedAccessSignature sr={resource}&sig={signature}&se={expiry}[&skn={key name}]``
with ``sig = base64(HMAC-SHA256(base64decode(key), sr + "\\n" + se))`` computed over ``sr`` exactly
as it appears in the token. Microsoft's device SDK quotes ``sr`` with ``quote(safe="")``; its
service SDK uses ``quote_plus``; both verify here because the HMAC is taken over the raw text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote, unquote

from methodhub.config import TokenPolicy

DEFAULT_TOKEN_POLICY = TokenPolicy()
"""Any lifetime, no clock skew: what a hub without ``--max-token-lifetime`` accepts."""

PREFIX = "SharedAccessSignature "
MAX_EXPIRY = 253_402_300_799
"""The latest expiry accepted: 9999-12-31T23:59:59Z (what .NET's DateTime, and so Azure, can hold)."""


class SasTokenError(ValueError):
    """The text is not a well-formed SAS token; the message says which part is wrong."""


def _signature(sr: str, expiry: int | str, key: bytes) -> str:
    return base64.b64encode(hmac.new(key, f"{sr}\n{expiry}".encode(), hashlib.sha256).digest()).decode()


def decode_key(key: str) -> bytes | None:
    """The bytes of a base64 key, or None if it is not valid base64."""
    try:
        return base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return None


def generate_sas_token(resource_uri: str, key: str, expiry: int, key_name: str | None = None) -> str:
    """Sign a token for ``resource_uri`` valid until ``expiry`` (epoch seconds), as Azure's SDKs do.

    Args:
        resource_uri: e.g. ``myhub/devices/dev1`` (quoted here with ``quote(safe="")``).
        key: the base64 symmetric key (a device's, or a shared access policy's).
        expiry: epoch seconds.
        key_name: the policy name (``skn``) for policy-signed tokens; None for device keys.

    Raises:
        SasTokenError: ``key`` is not valid base64.
    """
    raw_key = decode_key(key)
    if raw_key is None:
        raise SasTokenError("the key is not valid base64")
    sr = quote(resource_uri, safe="")
    token = f"{PREFIX}sr={sr}&sig={quote(_signature(sr, expiry, raw_key), safe='')}&se={expiry}"
    return token + (f"&skn={key_name}" if key_name else "")


@dataclass(frozen=True, slots=True)
class SasToken:
    """A parsed SAS token.

    Attributes:
        resource: ``sr`` exactly as received (the signature covers this text).
        resource_decoded: ``sr`` percent-decoded.
        signature: ``sig`` percent-decoded (base64).
        expiry: ``se``, epoch seconds.
        key_name: ``skn``, or None.
        raw: the whole token text.
    """

    resource: str
    resource_decoded: str
    signature: str
    expiry: int
    key_name: str | None
    raw: str

    @classmethod
    def parse(cls, text: str) -> SasToken:
        """Parse ``SharedAccessSignature sr=..&sig=..&se=..[&skn=..]`` (fields in any order)."""
        if not text.startswith(PREFIX):
            raise SasTokenError("it must start with 'SharedAccessSignature '")
        fields: dict[str, str] = {}
        for part in text[len(PREFIX) :].strip().split("&"):
            name, sep, value = part.partition("=")
            if not sep:
                raise SasTokenError(f"field {part!r} has no '='")
            if name in fields:
                raise SasTokenError(f"field {name!r} appears twice")
            fields[name] = value
        for required in ("sr", "sig", "se"):
            if not fields.get(required):
                raise SasTokenError(f"field {required!r} is missing")
        unknown = set(fields) - {"sr", "sig", "se", "skn"}
        if unknown:
            raise SasTokenError(f"unknown field(s) {', '.join(sorted(unknown))}")
        se = fields["se"]
        if not (se.isascii() and se.isdigit()):
            raise SasTokenError(f"se must be an integer (epoch seconds), got {se[:40]!r}")
        if len(se) > len(str(MAX_EXPIRY)) or int(se) > MAX_EXPIRY:
            # Checked before anything converts it: thousands of digits used to raise in int() (and a
            # signed 10**400 in float()), which answered 500 / CONNACK 3 instead of "bad token".
            raise SasTokenError(f"se must be epoch seconds before the year 10000 (at most {MAX_EXPIRY})")
        return cls(
            resource=fields["sr"],
            resource_decoded=unquote(fields["sr"]),
            signature=unquote(fields["sig"]),
            expiry=int(fields["se"]),
            key_name=unquote(fields["skn"]) if fields.get("skn") else None,
            raw=text,
        )

    def verify(self, key: str) -> bool:
        """Whether the signature was made with ``key`` (base64); False for a malformed key."""
        raw_key = decode_key(key)
        if raw_key is None:
            return False
        expected = _signature(self.resource, self.expiry, raw_key)
        return hmac.compare_digest(expected.encode(), self.signature.encode())

    def is_expired(self, now: float, clock_skew: float = 0.0) -> bool:
        """Whether the token is past its expiry at ``now``, allowing ``clock_skew`` seconds."""
        return self.expiry + clock_skew <= now

    def lifetime_refusal(self, now: float, policy: TokenPolicy) -> str | None:
        """Why ``policy`` refuses this token's times at ``now`` (expired, or expiring further
        ahead than ``policy.max_lifetime``), as a clause; None if it accepts them."""
        if self.is_expired(now, policy.clock_skew):
            return f"the SAS token expired at {self.expiry}"
        limit = policy.max_lifetime
        if limit is not None and self.expiry - now > limit + policy.clock_skew:
            return (
                f"the SAS token expires at {self.expiry}, {self.expiry - now:.0f} s from now; this hub "
                f"accepts tokens valid for at most {limit:.0f} s"
            )
        return None
