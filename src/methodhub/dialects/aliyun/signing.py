"""Alibaba Cloud's two signing recipes, byte for byte as the official SDKs compute them.

**Device login** (aliyun-rrpc-wire.md §1.3; Link SDK ``linkkit.py`` 1217-1243). A device connects
with client id ``{clientId}|securemode=3,signmethod=hmacsha1,timestamp=1795350342,...|``, user name
``{deviceName}&{productKey}`` and as password the lowercase hex HMAC, keyed with the DeviceSecret
(UTF-8), of the sorted ``name + value`` pairs of clientId, deviceName, productKey and timestamp::

    clientId{clientId}deviceName{dn}productKey{pk}timestamp{ts}

``signmethod`` picks the hash: ``hmacmd5`` (the documented default), ``hmacsha1`` (what the Link
SDK for Python sends) or ``hmacsha256``. There is no timestamp window: the Link SDK computes the
password once and reuses it on every reconnect, so a window would lock reconnecting devices out.

**POP API requests** (wire doc §2.4; ``aliyunsdkcore/auth/composer/rpc_signature_composer.py``).
Every parameter (query and form body) except ``Signature`` is percent-encoded (RFC 3986: only
``A-Z a-z 0-9 - _ . ~`` stay as they are, space is ``%20``), sorted by name, joined as
``k=v&k=v``; then ``StringToSign = METHOD + "&%2F&" + percentEncode(that)`` and
``Signature = base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))``.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

SIGN_METHODS: dict[str, Callable[..., Any]] = {
    "hmacmd5": hashlib.md5,
    "hmacsha1": hashlib.sha1,
    "hmacsha256": hashlib.sha256,
}
"""Device login signature methods (``signmethod`` in the client id) → hash."""
DEFAULT_SIGN_METHOD = "hmacmd5"
"""What Alibaba documents when ``signmethod`` is absent."""

POP_SIGNATURE_METHOD = "HMAC-SHA1"
POP_SIGNATURE_VERSION = "1.0"
POP_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
"""ISO 8601 UTC without fraction, as ``aliyunsdkcore`` writes ``Timestamp``."""


# -- device login ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MqttClientId:
    """An Alibaba MQTT client id: ``{base}|{name}={value},...|`` (or a bare ``{base}``).

    Attributes:
        base: the part before the first ``|``: the ``clientId`` in the signature (the Link SDK
            sends ``{productKey}&{deviceName}``; Alibaba's docs allow any device-chosen id).
        params: the ``name=value`` pairs between the bars: securemode, signmethod, timestamp, ext,
            _ss, lan, _v, ...
    """

    base: str
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> MqttClientId:
        """Parse a client id.

        Raises:
            ValueError: an empty base, or a parameter section that is not ``|k=v,...|``.
        """
        base, bar, rest = text.partition("|")
        if not base:
            raise ValueError("the part before '|' (the device's clientId) is empty")
        if not bar:
            return cls(base)
        if not rest.endswith("|") or "|" in rest[:-1]:
            raise ValueError("the parameters must be enclosed in '|' as in 'id|securemode=3,...|'")
        params: dict[str, str] = {}
        for item in rest[:-1].split(","):
            if not item:
                continue
            name, eq, value = item.partition("=")
            if not eq or not name:
                raise ValueError(f"'{item}' is not name=value")
            params[name] = value
        return cls(base, params)

    def __str__(self) -> str:
        if not self.params:
            return self.base
        return self.base + "|" + ",".join(f"{k}={v}" for k, v in self.params.items()) + "|"


def device_sign_content(client_id: str, product_key: str, device_name: str, timestamp: str | None) -> str:
    """The text a device signs: sorted ``name + value`` of the signed fields (timestamp if sent)."""
    fields = {"clientId": client_id, "deviceName": device_name, "productKey": product_key}
    if timestamp is not None:
        fields["timestamp"] = timestamp
    return "".join(name + fields[name] for name in sorted(fields))


def device_password(
    device_secret: str,
    client_id: str,
    product_key: str,
    device_name: str,
    timestamp: str | None,
    sign_method: str = "hmacsha1",
) -> str:
    """The MQTT password a device sends: lowercase hex HMAC of :func:`device_sign_content`.

    Args:
        device_secret: the device's DeviceSecret (its UTF-8 bytes are the key).
        client_id: the client id's base (before the first ``|``).
        product_key / device_name: the device's names.
        timestamp: the ``timestamp`` parameter as sent, or None if the client id has none.
        sign_method: ``hmacmd5``, ``hmacsha1`` or ``hmacsha256``.

    Raises:
        KeyError: an unknown ``sign_method``.
    """
    digest = SIGN_METHODS[sign_method]
    content = device_sign_content(client_id, product_key, device_name, timestamp)
    return hmac.new(device_secret.encode(), content.encode(), digest).hexdigest()


def verify_device_password(
    password: str,
    device_secret: str,
    client_id: str,
    product_key: str,
    device_name: str,
    timestamp: str | None,
    sign_method: str,
) -> bool:
    """Whether ``password`` is the device's signature (hex compared case-insensitively, in constant
    time). An unknown ``sign_method`` never verifies."""
    if sign_method not in SIGN_METHODS:
        return False
    expected = device_password(device_secret, client_id, product_key, device_name, timestamp, sign_method)
    return hmac.compare_digest(password.lower().encode(), expected.encode())


# -- POP API requests ----------------------------------------------------------------------------------


def pop_percent_encode(text: str) -> str:
    """RFC 3986 percent-encoding of UTF-8 text: only ``A-Z a-z 0-9 - _ . ~`` are left as they are."""
    return quote(text, safe="~")


def pop_string_to_sign(http_method: str, params: Mapping[str, str]) -> str:
    """``METHOD&%2F&percentEncode(canonicalized query)`` over every parameter but ``Signature``."""
    canonical = "&".join(
        f"{pop_percent_encode(name)}={pop_percent_encode(params[name])}"
        for name in sorted(params)
        if name != "Signature"
    )
    return f"{http_method.upper()}&%2F&{pop_percent_encode(canonical)}"


def pop_signature(string_to_sign: str, access_key_secret: str) -> str:
    """``base64(HMAC-SHA1(secret + "&", string_to_sign))``."""
    mac = hmac.new((access_key_secret + "&").encode(), string_to_sign.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def verify_pop_signature(signature: str, string_to_sign: str, access_key_secret: str) -> bool:
    """Whether ``signature`` signs ``string_to_sign`` with ``access_key_secret`` (constant time)."""
    expected = pop_signature(string_to_sign, access_key_secret)
    return hmac.compare_digest(signature.encode(), expected.encode())


def pop_timestamp(epoch: float | None = None) -> str:
    """``Timestamp`` as the SDK writes it, e.g. ``2026-11-22T12:25:14Z``."""
    return time.strftime(POP_TIMESTAMP_FORMAT, time.gmtime(time.time() if epoch is None else epoch))


def parse_pop_timestamp(text: str) -> float:
    """Epoch seconds of a ``Timestamp`` (``YYYY-MM-DDThh:mm:ssZ``, UTC).

    Raises:
        ValueError: not in that format.
    """
    return float(calendar.timegm(time.strptime(text, POP_TIMESTAMP_FORMAT)))


def sign_pop_request(
    http_method: str,
    params: Mapping[str, str],
    access_key_id: str,
    access_key_secret: str,
    *,
    nonce: str | None = None,
    timestamp: str | None = None,
) -> dict[str, str]:
    """The client side of the recipe (for tools and tests): ``params`` plus the common signature
    parameters and ``Signature``, as ``aliyunsdkcore`` would send them."""
    signed = dict(params)
    signed.update(
        AccessKeyId=access_key_id,
        SignatureMethod=POP_SIGNATURE_METHOD,
        SignatureVersion=POP_SIGNATURE_VERSION,
        SignatureNonce=nonce or secrets.token_hex(16),
        Timestamp=timestamp or pop_timestamp(),
    )
    signed.setdefault("Format", "JSON")
    signed["Signature"] = pop_signature(pop_string_to_sign(http_method, signed), access_key_secret)
    return signed
