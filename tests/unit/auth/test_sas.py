"""SAS tokens: what methodhub signs verifies, what Azure's SDKs sign verifies, and nothing else does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
from urllib.parse import quote, quote_plus

import pytest

from methodhub.dialects.azure.sas import SasToken, SasTokenError, generate_sas_token
from tests.support import sign

KEY = base64.b64encode(bytes(range(32))).decode()
OTHER_KEY = base64.b64encode(bytes(range(1, 33))).decode()
EXPIRY = 2_000_000_000
RESOURCE = "myhub.example.com/devices/dev1"


def _hmac(sr: str, expiry: int, key: str) -> str:
    digest = hmac.new(base64.b64decode(key), f"{sr}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def service_sdk_token(uri: str, key: str, expiry: int, key_name: str) -> str:
    """What azure-iot-hub's ``SasToken`` builds: ``sr`` with ``quote_plus`` and ``sig`` with ``quote``
    (default ``safe='/'``, so a ``/`` in the signature travels unescaped)."""
    sr = quote_plus(uri)
    return f"SharedAccessSignature sr={sr}&sig={quote(_hmac(sr, expiry, key))}&se={expiry}&skn={key_name}"


# -- sign → parse → verify ----------------------------------------------------------------------------


def test_generated_token_parses_and_verifies() -> None:
    token = SasToken.parse(generate_sas_token(RESOURCE, KEY, EXPIRY))
    assert token.resource_decoded == RESOURCE
    assert token.resource == quote(RESOURCE, safe="")
    assert token.expiry == EXPIRY
    assert token.key_name is None
    assert token.verify(KEY)


def test_generated_token_carries_policy_name() -> None:
    text = generate_sas_token("myhub.example.com", KEY, EXPIRY, key_name="iothubowner")
    token = SasToken.parse(text)
    assert token.key_name == "iothubowner"
    assert token.raw == text
    assert token.verify(KEY)


def test_generated_token_matches_an_independent_signer() -> None:
    assert generate_sas_token(RESOURCE, KEY, EXPIRY) == sign(RESOURCE, KEY, EXPIRY)
    assert generate_sas_token("h", KEY, EXPIRY, "service") == sign("h", KEY, EXPIRY, "service")


def test_generate_rejects_a_key_that_is_not_base64() -> None:
    with pytest.raises(SasTokenError, match="base64"):
        generate_sas_token(RESOURCE, "not base64!", EXPIRY)


def test_device_sdk_flavour_verifies() -> None:
    """azure-iot-device: ``quote(uri, safe='')`` for sr and sig."""
    token = SasToken.parse(sign(RESOURCE, KEY, EXPIRY, quoted=True))
    assert token.resource == "myhub.example.com%2Fdevices%2Fdev1"
    assert token.resource_decoded == RESOURCE
    assert token.verify(KEY)


def test_service_sdk_flavour_verifies_even_with_an_unescaped_slash_in_sig() -> None:
    expiry = next(e for e in itertools.count(EXPIRY) if "/" in _hmac(quote_plus("myhub:8443"), e, KEY))
    text = service_sdk_token("myhub:8443", KEY, expiry, "service")
    assert "/" in text.split("sig=")[1].split("&")[0]  # the case we mean to cover
    token = SasToken.parse(text)
    assert token.resource_decoded == "myhub:8443"
    assert token.key_name == "service"
    assert token.verify(KEY)


def test_lowercase_percent_escapes_verify() -> None:
    """.NET's WebUtility.UrlEncode writes ``%2f``; the HMAC covers sr exactly as sent."""
    sr = "myhub.example.com%2fdevices%2fdev1"
    text = f"SharedAccessSignature sr={sr}&sig={quote(_hmac(sr, EXPIRY, KEY), safe='')}&se={EXPIRY}"
    token = SasToken.parse(text)
    assert token.resource_decoded == RESOURCE
    assert token.verify(KEY)


def test_unescaped_signature_verifies() -> None:
    """Some hand-written signers leave ``+``, ``/`` and ``=`` in sig unescaped."""
    sr = quote(RESOURCE, safe="")
    expiry = next(e for e in itertools.count(EXPIRY) if "+" in _hmac(sr, e, KEY))
    token = SasToken.parse(f"SharedAccessSignature sr={sr}&sig={_hmac(sr, expiry, KEY)}&se={expiry}")
    assert token.verify(KEY)


def test_fields_in_any_order() -> None:
    sr = quote(RESOURCE, safe="")
    sig = quote(_hmac(sr, EXPIRY, KEY), safe="")
    token = SasToken.parse(f"SharedAccessSignature skn=p&se={EXPIRY}&sig={sig}&sr={sr}")
    assert (token.resource_decoded, token.expiry, token.key_name) == (RESOURCE, EXPIRY, "p")
    assert token.verify(KEY)


# -- rejected -------------------------------------------------------------------------------------------


def test_wrong_key_does_not_verify() -> None:
    assert not SasToken.parse(generate_sas_token(RESOURCE, KEY, EXPIRY)).verify(OTHER_KEY)


def test_malformed_key_does_not_verify() -> None:
    assert not SasToken.parse(generate_sas_token(RESOURCE, KEY, EXPIRY)).verify("***")


def test_tampered_signature_does_not_verify() -> None:
    text = generate_sas_token(RESOURCE, KEY, EXPIRY)
    sig = text.split("sig=")[1].split("&")[0]
    tampered = text.replace(sig, ("B" if sig[0] == "A" else "A") + sig[1:])
    assert not SasToken.parse(tampered).verify(KEY)


@pytest.mark.parametrize(
    "other_sr",
    [
        quote("myhub.example.com/devices/dev2", safe=""),  # another device
        "myhub.example.com/devices/dev1",  # same resource, quoted differently from what was signed
    ],
)
def test_changed_resource_does_not_verify(other_sr: str) -> None:
    text = generate_sas_token(RESOURCE, KEY, EXPIRY)
    forged = text.replace(f"sr={quote(RESOURCE, safe='')}", f"sr={other_sr}")
    assert forged != text
    assert not SasToken.parse(forged).verify(KEY)


def test_changed_expiry_does_not_verify() -> None:
    text = generate_sas_token(RESOURCE, KEY, EXPIRY)
    assert not SasToken.parse(text.replace(f"se={EXPIRY}", f"se={EXPIRY + 1}")).verify(KEY)


def test_expiry() -> None:
    token = SasToken.parse(generate_sas_token(RESOURCE, KEY, EXPIRY))
    assert not token.is_expired(EXPIRY - 1)
    assert token.is_expired(EXPIRY)
    assert token.is_expired(EXPIRY + 0.5)


GOOD = f"sr=a&sig=b&se={EXPIRY}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must start with"),
        (GOOD, "must start with"),
        (f"sharedaccesssignature {GOOD}", "must start with"),
        (f"Bearer {GOOD}", "must start with"),
        (f"SharedAccessSignature sig=b&se={EXPIRY}", "'sr' is missing"),
        (f"SharedAccessSignature sr=a&se={EXPIRY}", "'sig' is missing"),
        ("SharedAccessSignature sr=a&sig=b", "'se' is missing"),
        (f"SharedAccessSignature sr=&sig=b&se={EXPIRY}", "'sr' is missing"),
        (f"SharedAccessSignature sr=a&sig=&se={EXPIRY}", "'sig' is missing"),
        ("SharedAccessSignature sr=a&sig=b&se=", "'se' is missing"),
        (f"SharedAccessSignature {GOOD}&sr=c", "'sr' appears twice"),
        (f"SharedAccessSignature {GOOD}&sig=c", "'sig' appears twice"),
        (f"SharedAccessSignature {GOOD}&skn=p&skn=q", "'skn' appears twice"),
        (f"SharedAccessSignature {GOOD}&foo=1", "unknown field"),
        (f"SharedAccessSignature {GOOD}&", "has no '='"),
        (f"SharedAccessSignature {GOOD}&&skn=p", "has no '='"),
        ("SharedAccessSignature garbage", "has no '='"),
        ("SharedAccessSignature ", "has no '='"),
        ("SharedAccessSignature sr=a&sig=b&se=soon", "se must be an integer"),
        ("SharedAccessSignature sr=a&sig=b&se=-5", "se must be an integer"),
        ("SharedAccessSignature sr=a&sig=b&se=1.5e9", "se must be an integer"),
        ("SharedAccessSignature sr=a&sig=b&se=0x77359400", "se must be an integer"),
        ("SharedAccessSignature sr=a&sig=b&se=²", "se must be an integer"),  # isdigit() but not int()
        ("SharedAccessSignature sr=a&sig=b&se=١٢٣", "se must be an integer"),  # non-ASCII digits
        # Issue 9: thousands of digits raised in int() (over Python's 4300-digit limit) and 10**400
        # in float() later on: a 500 / CONNACK 3 instead of "bad token".
        ("SharedAccessSignature sr=a&sig=b&se=" + "9" * 5000, "before the year 10000"),
        ("SharedAccessSignature sr=a&sig=b&se=1" + "0" * 400, "before the year 10000"),
        ("SharedAccessSignature sr=a&sig=b&se=253402300800", "before the year 10000"),
    ],
)
def test_malformed_tokens_are_rejected(text: str, message: str) -> None:
    with pytest.raises(SasTokenError, match=message):
        SasToken.parse(text)


def test_the_latest_expiry_still_parses() -> None:
    assert SasToken.parse("SharedAccessSignature sr=a&sig=b&se=253402300799").expiry == 253402300799
