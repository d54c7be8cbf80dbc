"""The current official backend SDK, ``alibabacloud_iot20180120`` (Tea, on ``alibabacloud_tea_openapi``),
unmodified and default-configured — it signs with ACS3-HMAC-SHA256 in headers — against a running
hub, over HTTP and HTTPS; and the same client with ``signature_algorithm='v2'``.

The SDK is pointed at the hub with its own options only: ``Config(endpoint="127.0.0.1:PORT",
protocol="http")`` (``https`` + ``ca`` for TLS). The device is Alibaba's Link SDK (linkkit), as in
``test_linkkit_rrpc.py``. Requests the SDK would not send by itself (a GET, a tampered body, a
replay) are signed by the SDK's own signer (``alibabacloud_tea_openapi.utils.Utils.get_authorization``)
and sent with httpx.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from alibabacloud_iot20180120 import models
from alibabacloud_iot20180120.client import Client
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.utils import Utils
from darabonba.request import DaraRequest

from tests.integration.aliyun.support import REGION, LinkkitDevice
from tests.support import HubProcess, parse_cs

PK = "a1TeaSdk"
ECHO = "tea-echo"
TOPIC = f"/{PK}/{ECHO}/user/get"


def policy_key(hub: HubProcess, policy: str = "iothubowner") -> str:
    return parse_cs(hub.cli("connection-string", "--policy", policy).stdout)["SharedAccessKey"]


def tea_client(
    hub: HubProcess,
    *,
    policy: str = "iothubowner",
    secret: str | None = None,
    https: bool = False,
    **extra: Any,
) -> Client:
    """The Tea client as a user configures it for another endpoint (nothing else changed)."""
    config = open_api_models.Config(
        access_key_id=policy,
        access_key_secret=secret if secret is not None else policy_key(hub, policy),
        region_id=REGION,
        endpoint=f"localhost:{hub.ports['https']}" if https else f"127.0.0.1:{hub.ports['http']}",
        protocol="https" if https else "http",
        read_timeout=15_000,
        **({"ca": str(hub.ca_file)} if https else {}),
        **extra,
    )
    return Client(config)


def rrpc(message: bytes, topic: str | None = None, device_name: str = ECHO) -> models.RRpcRequest:
    return models.RRpcRequest(
        product_key=PK,
        device_name=device_name,
        timeout=3000,
        request_base_64byte=base64.b64encode(message).decode(),
        topic=topic,
    )


def failure(call: Any, *args: Any) -> Any:
    """The exception the SDK raises for a 4xx/5xx answer (it carries ``code``, ``status_code``, ``data``)."""
    with pytest.raises(Exception) as raised:
        call(*args)
    error = raised.value
    for attribute in ("code", "status_code", "data"):
        assert hasattr(error, attribute), f"{type(error).__name__}: {error}"
    return error


@pytest.fixture(scope="module")
def echo_device(aliyun_hub: HubProcess, linkkit: Path, tsl_file: str) -> Iterator[LinkkitDevice]:
    """Registered with the Tea SDK's RegisterDevice (default signature); answers everything."""
    response = tea_client(aliyun_hub).register_device(
        models.RegisterDeviceRequest(product_key=PK, device_name=ECHO)
    )
    assert response.status_code == 200 and response.body.success is True
    data = response.body.data
    assert (data.product_key, data.device_name, data.iot_id) == (PK, ECHO, f"{PK}:{ECHO}")
    config = {
        "host": "127.0.0.1",
        "port": aliyun_hub.ports["mqtt"],
        "product_key": PK,
        "device_name": ECHO,
        "device_secret": data.device_secret,
        "mode": "echo",
        "rrpc_topics": [TOPIC],
        "tsl": tsl_file,
    }
    device = LinkkitDevice(linkkit, config)
    try:
        device.wait_ready()
        yield device
    finally:
        device.close()


# -- every action, default configuration ----------------------------------------------------------------


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_default_client_calls_every_action(
    aliyun_hub: HubProcess, echo_device: LinkkitDevice, https: bool
) -> None:
    client = tea_client(aliyun_hub, https=https)

    answered = client.r_rpc(rrpc(b"ping")).body
    assert (answered.success, answered.rrpc_code) == (True, "SUCCESS")
    assert base64.b64decode(answered.payload_base_64byte) == b"pong:ping"
    assert isinstance(answered.message_id, int)

    custom = client.r_rpc(rrpc(b"hi", topic=TOPIC)).body
    assert custom.rrpc_code == "SUCCESS" and base64.b64decode(custom.payload_base_64byte) == b"custom:hi"

    service = client.invoke_thing_service(
        models.InvokeThingServiceRequest(product_key=PK, device_name=ECHO, identifier="Echo", args='{"x": 1}')
    ).body
    assert service.success is True
    assert json.loads(service.data.result) == {"echo": {"x": 1}, "identifier": "Echo"}

    detail = client.query_device_detail(models.QueryDeviceDetailRequest(iot_id=f"{PK}:{ECHO}")).body
    assert detail.success is True
    assert (detail.data.device_name, detail.data.status) == (ECHO, "ONLINE")

    name = f"gone-{'s' if https else 'p'}"
    created = client.register_device(models.RegisterDeviceRequest(product_key=PK, device_name=name)).body
    assert created.success is True
    deleted = client.delete_device(models.DeleteDeviceRequest(product_key=PK, device_name=name)).body
    assert deleted.success is True
    after = client.query_device_detail(models.QueryDeviceDetailRequest(product_key=PK, device_name=name)).body
    assert (after.success, after.code) == (False, "iot.device.NotExistedDevice")


def test_v2_configured_client_still_works(aliyun_hub: HubProcess, echo_device: LinkkitDevice) -> None:
    client = tea_client(aliyun_hub, signature_algorithm="v2")
    answered = client.r_rpc(rrpc(b"old")).body
    assert answered.rrpc_code == "SUCCESS" and base64.b64decode(answered.payload_base_64byte) == b"pong:old"
    detail = client.query_device_detail(models.QueryDeviceDetailRequest(product_key=PK, device_name=ECHO))
    assert detail.body.data.status == "ONLINE"


def test_offline_device_through_the_default_client(aliyun_hub: HubProcess) -> None:
    client = tea_client(aliyun_hub)
    client.register_device(models.RegisterDeviceRequest(product_key=PK, device_name="never-online"))
    body = client.r_rpc(rrpc(b"x", device_name="never-online")).body
    assert (body.success, body.rrpc_code) == (True, "OFFLINE")


# -- refusals the SDK reports ---------------------------------------------------------------------------


def query(client: Client) -> Any:
    return client.query_device_detail(models.QueryDeviceDetailRequest(product_key=PK, device_name=ECHO))


def test_wrong_secret(aliyun_hub: HubProcess) -> None:
    error = failure(query, tea_client(aliyun_hub, secret="not-the-key"))
    assert (error.status_code, error.code) == (400, "SignatureDoesNotMatch")
    assert "server StringToSign is [ACS3-HMAC-SHA256\n" in error.data["Message"]
    assert "x-acs-action:QueryDeviceDetail\n" in error.data["Message"]  # the canonical request too


def test_unknown_access_key_and_missing_right(aliyun_hub: HubProcess) -> None:
    error = failure(query, tea_client(aliyun_hub, policy="nobody", secret="x"))
    assert (error.status_code, error.code) == (404, "InvalidAccessKeyId.NotFound")
    reader = tea_client(aliyun_hub, policy="registryRead")
    assert query(reader).body.success is True
    error = failure(reader.r_rpc, rrpc(b"x"))
    assert (error.status_code, error.code) == (403, "Forbidden.RAM")


def test_a_scheme_the_hub_does_not_verify_is_named(aliyun_hub: HubProcess) -> None:
    """The SDK can sign with SM3; the hub answers IncompleteSignature naming it, not 'Action missing'."""
    error = failure(query, tea_client(aliyun_hub, signature_algorithm="ACS3-HMAC-SM3"))
    assert (error.status_code, error.code) == (400, "IncompleteSignature")
    assert "'ACS3-HMAC-SM3'" in error.data["Message"] and "ACS3-HMAC-SHA256" in error.data["Message"]


def test_skewed_date(aliyun_hub: HubProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Utils, "get_timestamp", staticmethod(lambda: "2020-01-01T00:00:00Z"))
    error = failure(query, tea_client(aliyun_hub))
    assert (error.status_code, error.code) == (400, "InvalidTimeStamp.Expired")
    assert "x-acs-date '2020-01-01T00:00:00Z'" in error.data["Message"]


def test_replayed_nonce(aliyun_hub: HubProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    nonce = hashlib.md5(b"tea-replay").hexdigest()
    monkeypatch.setattr(Utils, "get_nonce", staticmethod(lambda: nonce))
    client = tea_client(aliyun_hub)
    assert query(client).body.success is True
    error = failure(query, client)
    assert (error.status_code, error.code) == (400, "SignatureNonceUsed")
    assert nonce in error.data["Message"]


# -- requests signed by the SDK's signer, sent by hand --------------------------------------------------


def sdk_signed(
    hub: HubProcess,
    method: str,
    action: str,
    query_params: dict[str, str],
    body: bytes = b"",
    *,
    host: str | None = None,
) -> dict[str, str]:
    """The headers ``do_request`` would send, signed by the SDK's own ``get_authorization``."""
    request = DaraRequest()
    request.method = method
    request.pathname = "/"
    request.query = dict(query_params)
    request.headers = {
        "host": host or f"127.0.0.1:{hub.ports['http']}",
        "x-acs-version": "2018-01-20",
        "x-acs-action": action,
        "user-agent": Utils.get_user_agent(None),
        "x-acs-date": Utils.get_timestamp(),
        "x-acs-signature-nonce": Utils.get_nonce(),
        "accept": "application/json",
    }
    if body:
        request.headers["content-type"] = "application/x-www-form-urlencoded"
    payload = Utils.hash(body, "ACS3-HMAC-SHA256").hex()
    request.headers["x-acs-content-sha256"] = payload
    request.headers["Authorization"] = Utils.get_authorization(
        request, "ACS3-HMAC-SHA256", payload, "iothubowner", policy_key(hub)
    )
    return request.headers


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_get_with_the_query_only(aliyun_hub: HubProcess, echo_device: LinkkitDevice, https: bool) -> None:
    params = {"ProductKey": PK, "DeviceName": ECHO, "Note": "a b+c/é"}  # encodings the signature covers
    host = f"localhost:{aliyun_hub.ports['https']}" if https else None
    headers = sdk_signed(aliyun_hub, "GET", "QueryDeviceDetail", params, host=host)
    base = aliyun_hub.https_url if https else aliyun_hub.http_url
    verify = ssl.create_default_context(cafile=str(aliyun_hub.ca_file)) if https else True
    response = httpx.get(f"{base}/?{urlencode(params)}", headers=headers, verify=verify)
    assert response.status_code == 200, response.text
    assert response.json()["Data"]["Status"] == "ONLINE"


def test_post_form_body_and_its_hash(aliyun_hub: HubProcess, echo_device: LinkkitDevice) -> None:
    query_params = {"ProductKey": PK, "DeviceName": ECHO, "Timeout": "3000"}
    body = b"RequestBase64Byte=" + base64.b64encode(b"form").replace(b"=", b"%3D")
    url = f"{aliyun_hub.http_url}/?{urlencode(query_params)}"
    headers = sdk_signed(aliyun_hub, "POST", "RRpc", query_params, body)
    response = httpx.post(url, headers=headers, content=body)
    assert response.status_code == 200, response.text
    assert base64.b64decode(response.json()["PayloadBase64Byte"]) == b"pong:form"
    # The same signed headers with another body: its hash is not the signed one.
    headers = sdk_signed(aliyun_hub, "POST", "RRpc", query_params, body)
    tampered = body.replace(b"Zm9ybQ", b"ZXZpbA")
    response = httpx.post(url, headers=headers, content=tampered)
    assert response.status_code == 400
    assert response.json()["Code"] == "SignatureDoesNotMatch"
    assert hashlib.sha256(tampered).hexdigest() in response.json()["Message"]


def test_unsigned_header_and_missing_authorization(aliyun_hub: HubProcess) -> None:
    params = {"ProductKey": PK, "DeviceName": ECHO}
    url = f"{aliyun_hub.http_url}/?{urlencode(params)}"
    headers = sdk_signed(aliyun_hub, "POST", "QueryDeviceDetail", params)
    response = httpx.post(url, headers={**headers, "x-acs-extra": "sneaked in"})
    assert response.status_code == 400
    assert response.json()["Code"] == "IncompleteSignature" and "'x-acs-extra'" in response.json()["Message"]
    without = sdk_signed(aliyun_hub, "POST", "QueryDeviceDetail", params)
    del without["Authorization"]
    response = httpx.post(url, headers=without)
    assert response.status_code == 400
    body = response.json()
    assert body["Code"] == "IncompleteSignature" and "no Authorization header" in body["Message"]
