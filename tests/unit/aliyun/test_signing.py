"""Both Alibaba signing recipes: the device login password and the POP API request signature.

Reference values come from Alibaba's documentation (aliyun-rrpc-wire.md §1.3, §2.4) and from the
official SDK's own code (aliyunsdkcore's signature composer), not from methodhub.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import string
from urllib.parse import parse_qsl, urlsplit

import pytest
from aliyunsdkcore.auth.composer import rpc_signature_composer

from methodhub.dialects.aliyun.signing import (
    MqttClientId,
    device_password,
    device_sign_content,
    parse_pop_timestamp,
    pop_percent_encode,
    pop_signature,
    pop_string_to_sign,
    pop_timestamp,
    sign_pop_request,
    verify_device_password,
    verify_pop_signature,
)

# -- device login ----------------------------------------------------------------------------------


def test_documented_check_value() -> None:
    # Alibaba's "MQTT-TCP connection" page: clientId=12345, deviceName=device, productKey=pk,
    # timestamp=789, secret=secret, hmacsha1.
    password = device_password("secret", "12345", "pk", "device", "789", "hmacsha1")
    assert password == "fafd82a3d602b37fb0fa8b7892f24a477f851a14"


def test_sign_content_is_sorted_name_value_pairs() -> None:
    assert device_sign_content("a1PK&dev1", "a1PK", "dev1", "1795350342") == (
        "clientIda1PK&dev1deviceNamedev1productKeya1PKtimestamp1795350342"
    )
    assert device_sign_content("c", "p", "d", None) == "clientIdcdeviceNamedproductKeyp"


@pytest.mark.parametrize(
    "method, digest", [("hmacmd5", hashlib.md5), ("hmacsha1", hashlib.sha1), ("hmacsha256", hashlib.sha256)]
)
def test_each_sign_method_is_the_link_sdks_recipe(method: str, digest: object) -> None:
    # linkkit.py 1236-1243, generalised to the three documented methods.
    secret, pk, dn, ts = "s3cr3t-ümlaut", "a1PK", "dev-1@x.y:z", "1795350342"
    content = f"clientId{pk}&{dn}deviceName{dn}productKey{pk}timestamp{ts}"
    expected = hmac.new(secret.encode("utf-8"), content.encode("utf-8"), digest).hexdigest()  # type: ignore[arg-type]
    assert device_password(secret, f"{pk}&{dn}", pk, dn, ts, method) == expected
    assert verify_device_password(expected.upper(), secret, f"{pk}&{dn}", pk, dn, ts, method)
    assert not verify_device_password(expected, secret + "x", f"{pk}&{dn}", pk, dn, ts, method)
    assert not verify_device_password(expected, secret, f"{pk}&{dn}", pk, dn, "1795350343", method)


def test_unknown_sign_method_never_verifies() -> None:
    password = device_password("s", "c", "p", "d", "1", "hmacsha1")
    assert not verify_device_password(password, "s", "c", "p", "d", "1", "hmacsha512")
    with pytest.raises(KeyError):
        device_password("s", "c", "p", "d", "1", "plain")


def test_client_id_of_the_link_sdk() -> None:
    text = "a1PK&dev1|securemode=3,signmethod=hmacsha1,ext=1,_ss=1,lan=Python,_v=1.2.13,timestamp=1795350342|"
    parsed = MqttClientId.parse(text)
    assert parsed.base == "a1PK&dev1"
    assert parsed.params == {
        "securemode": "3",
        "signmethod": "hmacsha1",
        "ext": "1",
        "_ss": "1",
        "lan": "Python",
        "_v": "1.2.13",
        "timestamp": "1795350342",
    }
    assert str(parsed) == text
    assert MqttClientId.parse("plain-id") == MqttClientId("plain-id")


@pytest.mark.parametrize("text", ["", "|a=1|", "id|a=1", "id|a=1|b=2|", "id|novalue|", "id|=1|"])
def test_malformed_client_ids(text: str) -> None:
    with pytest.raises(ValueError):
        MqttClientId.parse(text)


# -- POP API ---------------------------------------------------------------------------------------

WIRE_DOC_PARAMS = {
    "ProductKey": "a1PK",
    "DeviceName": "dev1",
    "Timeout": "3000",
    "Version": "2018-01-20",
    "Action": "RRpc",
    "Format": "JSON",
    "RegionId": "cn-shanghai",
    "Timestamp": "2026-11-22T12:25:14Z",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureType": "",
    "SignatureVersion": "1.0",
    "SignatureNonce": "87decc2a40d04a0680bbd0db2e6e00da",
    "AccessKeyId": "testAK",
    "RequestBase64Byte": "cGluZw==",
}


def test_wire_doc_worked_example() -> None:
    string_to_sign = pop_string_to_sign("POST", {**WIRE_DOC_PARAMS, "Signature": "ignored"})
    assert string_to_sign == (
        "POST&%2F&AccessKeyId%3DtestAK%26Action%3DRRpc%26DeviceName%3Ddev1%26Format%3DJSON%26ProductKey"
        "%3Da1PK%26RegionId%3Dcn-shanghai%26RequestBase64Byte%3DcGluZw%253D%253D%26SignatureMethod%3D"
        "HMAC-SHA1%26SignatureNonce%3D87decc2a40d04a0680bbd0db2e6e00da%26SignatureType%3D%26"
        "SignatureVersion%3D1.0%26Timeout%3D3000%26Timestamp%3D2026-11-22T12%253A25%253A14Z%26Version"
        "%3D2018-01-20"
    )
    assert pop_signature(string_to_sign, "testSecret") == "B2A0tri55nWfy+k6d+wG4UoCOlM="
    assert verify_pop_signature("B2A0tri55nWfy+k6d+wG4UoCOlM=", string_to_sign, "testSecret")
    assert not verify_pop_signature("B2A0tri55nWfy+k6d+wG4UoCOlM=", string_to_sign, "testSecret2")


def test_percent_encoding_is_rfc3986() -> None:
    assert pop_percent_encode("a b*c~d+e/f=g&h-_.") == "a%20b%2Ac~d%2Be%2Ff%3Dg%26h-_."
    assert pop_percent_encode("ü") == "%C3%BC"


@pytest.mark.parametrize("seed", range(20))
def test_agrees_with_the_official_sdk_on_random_parameters(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + " *~+/=&%-_.:ü中"

    def text(low: int = 0) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, 12)))

    query = {f"Q{text(1)}": text() for _ in range(rng.randint(1, 5))}
    body = {f"B{text(1)}": text() for _ in range(rng.randint(0, 3))}
    method = rng.choice(["GET", "POST"])
    secret = text(1)
    signed_query = dict(query)  # the composer adds the common parameters and Signature to it
    url, sdk_string = rpc_signature_composer.get_signed_url(signed_query, "AK", secret, "JSON", method, body)
    signature = signed_query.pop("Signature")
    assert pop_string_to_sign(method, {**signed_query, **body}) == sdk_string
    assert pop_signature(sdk_string, secret) == signature
    # What a server sees: the URL as sent, percent-decoded, plus the body fields.
    received = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    assert received.pop("Signature") == signature
    assert pop_string_to_sign(method, {**received, **body}) == sdk_string


def test_client_side_signing_round_trips() -> None:
    signed = sign_pop_request(
        "GET", {"Action": "RRpc"}, "iothubowner", "key", nonce="n1", timestamp="2026-01-02T03:04:05Z"
    )
    assert signed["SignatureNonce"] == "n1" and signed["Format"] == "JSON"
    assert verify_pop_signature(signed["Signature"], pop_string_to_sign("GET", signed), "key")
    expected = base64.b64encode(
        hmac.new(b"key&", pop_string_to_sign("GET", signed).encode(), hashlib.sha1).digest()
    ).decode()
    assert signed["Signature"] == expected


def test_timestamps() -> None:
    assert parse_pop_timestamp("2026-11-22T12:25:14Z") == 1795350314.0
    assert pop_timestamp(1795350314.0) == "2026-11-22T12:25:14Z"
    for bad in ("2026-11-22 12:25:14", "2026-11-22T12:25:14", "yesterday", ""):
        with pytest.raises(ValueError):
            parse_pop_timestamp(bad)
