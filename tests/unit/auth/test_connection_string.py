"""Connection strings as Azure's tools print them, and the mistakes people make typing them."""

from __future__ import annotations

import pytest

from methodhub.dialects.azure.connection_string import ConnectionString, ConnectionStringError
from methodhub.dialects.azure.sas import SasToken, SasTokenError, generate_sas_token

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def test_device_connection_string() -> None:
    cs = ConnectionString.parse(f"HostName=myhub.example.com;DeviceId=dev1;SharedAccessKey={KEY}")
    assert cs.host_name == "myhub.example.com"
    assert cs.device_id == "dev1"
    assert cs.module_id is None
    assert cs.shared_access_key == KEY  # the trailing '=' of the base64 key survives
    assert cs.is_device
    assert not cs.is_service


def test_module_connection_string() -> None:
    cs = ConnectionString.parse(f"HostName=h;DeviceId=dev1;ModuleId=mod-a;SharedAccessKey={KEY}")
    assert (cs.device_id, cs.module_id) == ("dev1", "mod-a")
    assert cs.is_device


def test_service_connection_string() -> None:
    cs = ConnectionString.parse(f"HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey={KEY}")
    assert cs.shared_access_key_name == "iothubowner"
    assert cs.is_service
    assert not cs.is_device


def test_host_name_alone_is_neither_device_nor_service() -> None:
    cs = ConnectionString.parse("HostName=h")
    assert not cs.is_device
    assert not cs.is_service


def test_keys_are_case_insensitive_and_order_free_and_whitespace_tolerant() -> None:
    cs = ConnectionString.parse(f"  sharedaccesskey = {KEY} ; DEVICEID=dev1;hostname=h; ")
    assert cs == ConnectionString(host_name="h", device_id="dev1", shared_access_key=KEY)


def test_gateway_and_signature_and_x509() -> None:
    token = generate_sas_token("h/devices/dev1", KEY, 2_000_000_000)
    cs = ConnectionString.parse(
        f"HostName=h;DeviceId=dev1;SharedAccessSignature={token};GatewayHostName=edge.local;x509=true"
    )
    assert cs.shared_access_signature == token
    assert SasToken.parse(cs.shared_access_signature).verify(KEY)
    assert cs.gateway_host_name == "edge.local"
    assert cs.x509 == "true"


@pytest.mark.parametrize(
    "text",
    [
        f"HostName=h;DeviceId=dev1;SharedAccessKey={KEY}",
        f"HostName=h;DeviceId=dev1;ModuleId=m;SharedAccessKey={KEY}",
        f"HostName=h;SharedAccessKeyName=service;SharedAccessKey={KEY}",
        "HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=h&sig=x%3D&se=1;"
        "GatewayHostName=g",
    ],
)
def test_canonical_text_round_trips_exactly(text: str) -> None:
    assert str(ConnectionString.parse(text)) == text


def test_printing_uses_canonical_names_and_order() -> None:
    cs = ConnectionString.parse(f"sharedaccesskey={KEY};moduleid=m;deviceid=d;hostname=h")
    assert str(cs) == f"HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey={KEY}"
    assert ConnectionString.parse(str(cs)) == cs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "HostName is missing"),
        (f"DeviceId=dev1;SharedAccessKey={KEY}", "HostName is missing"),
        (f"HostName=;DeviceId=dev1;SharedAccessKey={KEY}", "HostName is missing"),
        ("HostName=h;HostName=i", "HostName appears twice"),
        ("HostName=h;deviceid=a;DeviceId=b", "DeviceId appears twice"),
        ("HostName=h;DeviceId", "malformed part 'DeviceId'"),
        ("HostName=h;Color=blue", "unknown or malformed part 'Color'"),
        ("HostName=h;SharedAccessKeyNam=x", "unknown or malformed part"),
        ("just some text", "unknown or malformed part"),
    ],
)
def test_bad_connection_strings_are_rejected(text: str, message: str) -> None:
    with pytest.raises(ConnectionStringError, match=message):
        ConnectionString.parse(text)


def test_unknown_part_error_lists_the_expected_keys() -> None:
    with pytest.raises(ConnectionStringError) as info:
        ConnectionString.parse("HostName=h;Hostname2=x")
    assert "SharedAccessKey" in str(info.value)
    assert "DeviceId" in str(info.value)


def test_connection_string_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        ConnectionString.parse("nope")


def test_a_bad_key_parses_but_cannot_sign() -> None:
    """The key is not checked at parse time; signing with it reports the problem."""
    cs = ConnectionString.parse("HostName=h;DeviceId=d;SharedAccessKey=not-base64!")
    assert cs.shared_access_key is not None
    with pytest.raises(SasTokenError, match="base64"):
        generate_sas_token(f"{cs.host_name}/devices/{cs.device_id}", cs.shared_access_key, 1)
