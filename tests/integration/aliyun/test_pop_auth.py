"""POP API request authentication, against a running hub: signatures, nonces, timestamps, rights.

Requests are signed by aliyun-python-sdk-core itself (its client, or its ``get_signed_url`` to
replay the very same signed URL with httpx).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.auth.composer.rpc_signature_composer import get_signed_url
from aliyunsdkcore.client import AcsClient
from aliyunsdkiot.request.v20180120.QueryDeviceDetailRequest import QueryDeviceDetailRequest

from tests.integration.aliyun.support import REGION, call, create_product_device, pop_client, rrpc_request
from tests.support import HubProcess, parse_cs

PK = "a1PopAuth"
DN = "probe-dev"


@pytest.fixture(scope="module")
def probe(aliyun_hub: HubProcess) -> str:
    """A registered device to query; returns its IotId."""
    return create_product_device(aliyun_hub, PK, DN)["DeviceId"]


def owner_key(hub: HubProcess) -> str:
    return parse_cs(hub.cli("connection-string").stdout)["SharedAccessKey"]


def query(iot_id: str) -> QueryDeviceDetailRequest:
    request = QueryDeviceDetailRequest()
    request.set_IotId(iot_id)
    return request


def signed_url(hub: HubProcess, secret: str, method: str = "GET", **params: str) -> str:
    """A URL signed by the SDK's own composer, as the SDK would send it."""
    query_params: dict[str, Any] = {"Version": "2018-01-20", "RegionId": REGION, **params}
    path, _ = get_signed_url(query_params, "iothubowner", secret, "JSON", method, {})
    return hub.http_url + path


def raises(client: AcsClient, request: Any) -> ServerException:
    with pytest.raises(ServerException) as raised:
        client.do_action_with_exception(request)
    return raised.value


def test_owner_policy_signs_requests(aliyun_hub: HubProcess, probe: str) -> None:
    body = call(pop_client(aliyun_hub), query(probe))
    assert body["Success"] is True and body["Data"]["IotId"] == probe


def test_wrong_secret_is_refused_and_the_sdk_blames_the_secret(aliyun_hub: HubProcess, probe: str) -> None:
    error = raises(pop_client(aliyun_hub, secret="not-the-key"), query(probe))
    # The hub answered SignatureDoesNotMatch with its string to sign; the SDK found it equal to its
    # own (so only the secret can be wrong) and re-coded the error: proof the canonical forms agree.
    assert error.get_http_status() == 400
    assert error.get_error_code() == "InvalidAccessKeySecret"


def test_signature_mismatch_body(aliyun_hub: HubProcess, probe: str) -> None:
    url = signed_url(aliyun_hub, "not-the-key", Action="QueryDeviceDetail", IotId=probe)
    response = httpx.get(url)
    assert response.status_code == 400
    body = response.json()
    assert body["Code"] == "SignatureDoesNotMatch"
    assert body["Message"].startswith("Specified signature is not matched with our calculation.")
    assert body["Message"].split(":", 1)[1].startswith("GET&%2F&AccessKeyId%3Diothubowner%26Action")
    assert set(body) >= {"RequestId", "HostId", "Code", "Message"}


def test_replayed_request_is_refused(aliyun_hub: HubProcess, probe: str) -> None:
    url = signed_url(aliyun_hub, owner_key(aliyun_hub), Action="QueryDeviceDetail", IotId=probe)
    first = httpx.get(url)
    assert first.status_code == 200 and first.json()["Success"] is True
    replay = httpx.get(url)
    assert replay.status_code == 400
    assert replay.json()["Code"] == "SignatureNonceUsed"


def test_expired_timestamp_is_refused(
    aliyun_hub: HubProcess, probe: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aliyunsdkcore.utils.parameter_helper as helper

    monkeypatch.setattr(helper, "get_iso_8061_date", lambda: "2020-01-01T00:00:00Z")
    error = raises(pop_client(aliyun_hub), query(probe))
    assert error.get_http_status() == 400
    assert error.get_error_code() == "InvalidTimeStamp.Expired"


def test_unknown_access_key_id(aliyun_hub: HubProcess, probe: str) -> None:
    error = raises(pop_client(aliyun_hub, policy="nobody", secret="x"), query(probe))
    assert error.get_http_status() == 404
    assert error.get_error_code() == "InvalidAccessKeyId.NotFound"


def test_policy_rights_apply(aliyun_hub: HubProcess, probe: str) -> None:
    reader = pop_client(aliyun_hub, policy="registryRead")
    assert call(reader, query(probe))["Success"] is True
    error = raises(reader, rrpc_request(PK, DN, b"x"))  # RRpc needs ServiceConnect
    assert error.get_http_status() == 403
    assert error.get_error_code() == "Forbidden.RAM"
    service = pop_client(aliyun_hub, policy="service")
    body = call(service, rrpc_request(PK, DN, b"x"))
    assert body["RrpcCode"] == "OFFLINE"  # authorized; the device is just not connected


def test_unknown_action_and_wrong_version(aliyun_hub: HubProcess) -> None:
    key = owner_key(aliyun_hub)
    response = httpx.get(signed_url(aliyun_hub, key, Action="Pub"))
    assert response.status_code == 404
    assert response.json()["Code"] == "InvalidAction.NotFound"
    assert "not implemented" in response.json()["Message"]
    response = httpx.get(signed_url(aliyun_hub, key, Action="RRpc", Version="2017-04-20"))
    assert response.status_code == 400
    assert response.json()["Code"] == "InvalidVersion"


def test_unsigned_request_names_the_missing_parameter(aliyun_hub: HubProcess) -> None:
    response = httpx.post(
        aliyun_hub.http_url + "/?Action=RRpc&Version=2018-01-20",
        content="ProductKey=a&DeviceName=b",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    body = response.json()
    assert body["Code"] == "MissingParameter" and '"AccessKeyId"' in body["Message"]
