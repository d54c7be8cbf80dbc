"""Alibaba's official SDKs end to end, unmodified: Link SDK devices, aliyun-python-sdk-iot backend.

One hub for the package; two long-lived linkkit devices for this module: ``echo-dev`` (registered
with the CLI, answers everything, custom RRPC topic ``/{PK}/echo-dev/user/get``, services Echo and
Fail) and ``silent-dev`` (registered with the RegisterDevice API, never answers).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkiot.request.v20180120.DeleteDeviceRequest import DeleteDeviceRequest
from aliyunsdkiot.request.v20180120.InvokeThingServiceRequest import InvokeThingServiceRequest
from aliyunsdkiot.request.v20180120.QueryDeviceDetailRequest import QueryDeviceDetailRequest
from aliyunsdkiot.request.v20180120.RegisterDeviceRequest import RegisterDeviceRequest

from tests.integration.aliyun.support import LinkkitDevice, call, create_product_device, rrpc_request
from tests.support import Backend, HubProcess

PK = "a1LinkKit"
ECHO = "echo-dev"
SILENT = "silent-dev"
CUSTOM_TOPIC = f"/{PK}/{ECHO}/user/get"


def device_config(hub: HubProcess, device_name: str, secret: str, mode: str, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": hub.ports["mqtt"],
        "product_key": PK,
        "device_name": device_name,
        "device_secret": secret,
        "mode": mode,
        **extra,
    }


@pytest.fixture(scope="module")
def echo_device(aliyun_hub: HubProcess, linkkit: Path, tsl_file: str) -> Iterator[LinkkitDevice]:
    names = create_product_device(aliyun_hub, PK, ECHO)
    config = device_config(
        aliyun_hub, ECHO, names["DeviceSecret"], "echo", rrpc_topics=[CUSTOM_TOPIC], tsl=tsl_file
    )
    device = LinkkitDevice(linkkit, config)
    try:
        device.wait_ready()
        yield device
    finally:
        device.close()


@pytest.fixture(scope="module")
def silent_device(
    aliyun_hub: HubProcess, owner: AcsClient, linkkit: Path, tsl_file: str
) -> Iterator[LinkkitDevice]:
    request = RegisterDeviceRequest()
    request.set_ProductKey(PK)
    request.set_DeviceName(SILENT)
    secret = call(owner, request)["Data"]["DeviceSecret"]  # the API's secret logs the SDK in
    device = LinkkitDevice(linkkit, device_config(aliyun_hub, SILENT, secret, "silent", tsl=tsl_file))
    try:
        device.wait_ready()
        yield device
    finally:
        device.close()


def service_request(identifier: str, args: Any, *, device_name: str = ECHO, iot_id: str | None = None):
    request = InvokeThingServiceRequest()
    if iot_id is not None:
        request.set_IotId(iot_id)
    else:
        request.set_ProductKey(PK)
        request.set_DeviceName(device_name)
    request.set_Identifier(identifier)
    request.set_Args(json.dumps(args))
    return request


# -- identities ------------------------------------------------------------------------------------


def test_cli_prints_the_alibaba_names_and_the_methodhub_id(aliyun_hub: HubProcess, owner: AcsClient) -> None:
    lines = aliyun_hub.cli("device", "create", "--product", PK, "cli-dev").stdout.strip().splitlines()
    assert [line.split("=", 1)[0] for line in lines] == [
        "ProductKey",
        "DeviceName",
        "DeviceSecret",
        "DeviceId",
    ]
    values = dict(line.split("=", 1) for line in lines)
    assert values["ProductKey"] == PK and values["DeviceName"] == "cli-dev"
    assert values["DeviceId"] == f"{PK}:cli-dev"
    assert len(values["DeviceSecret"]) == 32 and values["DeviceSecret"].isalnum()
    # One identity: the same device through the CLI, the Azure registry API and the POP API.
    shown = json.loads(aliyun_hub.cli("device", "show", values["DeviceId"]).stdout)
    assert shown["deviceId"] == values["DeviceId"]
    assert (shown["productKey"], shown["deviceName"], shown["deviceSecret"]) == (
        PK,
        "cli-dev",
        values["DeviceSecret"],
    )
    backend = Backend(aliyun_hub)
    try:
        assert (
            backend.http.get(
                f"/devices/{values['DeviceId']}", headers={"Authorization": backend.token}
            ).json()["deviceId"]
            == values["DeviceId"]
        )
    finally:
        backend.close()
    request = QueryDeviceDetailRequest()
    request.set_ProductKey(PK)
    request.set_DeviceName("cli-dev")
    data = call(owner, request)["Data"]
    assert data["IotId"] == values["DeviceId"] and data["DeviceSecret"] == values["DeviceSecret"]
    assert data["Status"] == "OFFLINE"


def test_register_query_delete_with_the_sdk(aliyun_hub: HubProcess, owner: AcsClient) -> None:
    register = RegisterDeviceRequest()
    register.set_ProductKey(PK)
    register.set_DeviceName("api-dev")
    body = call(owner, register)
    assert body["Success"] is True
    data = body["Data"]
    assert data["IotId"] == f"{PK}:api-dev" and data["ProductKey"] == PK and data["DeviceName"] == "api-dev"
    assert len(data["DeviceSecret"]) == 32

    again = call(owner, register)
    assert again["Success"] is False and again["Code"] == "iot.device.AlreadyExistedDeviceName"

    by_iot_id = QueryDeviceDetailRequest()
    by_iot_id.set_IotId(data["IotId"])
    detail = call(owner, by_iot_id)["Data"]
    assert (detail["ProductKey"], detail["DeviceName"], detail["DeviceSecret"]) == (
        PK,
        "api-dev",
        data["DeviceSecret"],
    )

    delete = DeleteDeviceRequest()
    delete.set_ProductKey(PK)
    delete.set_DeviceName("api-dev")
    assert call(owner, delete)["Success"] is True
    gone = call(owner, by_iot_id)
    assert gone["Success"] is False and gone["Code"] == "iot.device.NotExistedDevice"
    assert aliyun_hub.cli("device", "show", data["IotId"], check=False).returncode == 1


# -- RRPC ------------------------------------------------------------------------------------------


def test_system_rrpc_round_trip(owner: AcsClient, echo_device: LinkkitDevice) -> None:
    message = bytes(range(256))  # opaque bytes, not UTF-8
    body = call(owner, rrpc_request(PK, ECHO, message))
    assert body["Success"] is True and body["RrpcCode"] == "SUCCESS"
    assert base64.b64decode(body["PayloadBase64Byte"]) == b"pong:" + message
    assert isinstance(body["MessageId"], int) and body["MessageId"] > 0
    seen = echo_device.next_event("message", topic=f"/sys/{PK}/{ECHO}/rrpc/request/{body['MessageId']}")
    assert base64.b64decode(seen["payload"]) == message


def test_custom_topic_rrpc(owner: AcsClient, echo_device: LinkkitDevice) -> None:
    body = call(owner, rrpc_request(PK, ECHO, b"hello", topic=CUSTOM_TOPIC))
    assert body["RrpcCode"] == "SUCCESS"
    assert base64.b64decode(body["PayloadBase64Byte"]) == b"custom:hello"
    seen = echo_device.next_event("rrpc", id=str(body["MessageId"]))
    assert seen["topic"] == f"/ext/rrpc/{body['MessageId']}{CUSTOM_TOPIC}"


def test_custom_topic_the_device_did_not_subscribe_is_offline(
    owner: AcsClient, echo_device: LinkkitDevice
) -> None:
    body = call(owner, rrpc_request(PK, ECHO, b"x", topic=f"/{PK}/{ECHO}/user/other"))
    assert body == {"RequestId": body["RequestId"], "Success": True, "RrpcCode": "OFFLINE"}


def test_custom_topic_of_another_device_is_refused(owner: AcsClient, echo_device: LinkkitDevice) -> None:
    body = call(owner, rrpc_request(PK, ECHO, b"x", topic=f"/{PK}/{SILENT}/user/get"))
    assert body["Success"] is False and body["Code"] == "InvalidParameter"
    assert "own topics" in body["ErrorMessage"]


def test_synchronous_thing_service(owner: AcsClient, echo_device: LinkkitDevice) -> None:
    args = {"x": 1.5, "text": "grüß", "list": [1, None]}
    body = call(owner, service_request("Echo", args))
    assert body["Success"] is True
    assert json.loads(body["Data"]["Result"]) == {"echo": args, "identifier": "Echo"}
    message_id = body["Data"]["MessageId"]
    assert isinstance(message_id, str) and message_id.isdigit()
    assert echo_device.next_event("service", request_id=message_id)["params"] == args


def test_thing_service_answered_with_an_error_code(owner: AcsClient, echo_device: LinkkitDevice) -> None:
    body = call(owner, service_request("Fail", {}))
    assert body["Success"] is False and body["Code"] == "iot.device.InvokeThingServiceFailed"
    assert "460" in body["ErrorMessage"]
    assert json.loads(body["Data"]["Result"])["identifier"] == "Fail"


def test_one_identity_callable_through_every_api(
    aliyun_hub: HubProcess, owner: AcsClient, echo_device: LinkkitDevice
) -> None:
    by_iot_id = call(owner, service_request("Echo", {"via": "IotId"}, iot_id=f"{PK}:{ECHO}"))
    assert json.loads(by_iot_id["Data"]["Result"])["echo"] == {"via": "IotId"}
    backend = Backend(aliyun_hub)
    try:
        response = backend.invoke(f"{PK}:{ECHO}", "Echo", {"via": "azure"}, responseTimeoutInSeconds=5)
    finally:
        backend.close()
    assert response.status_code == 200, response.text
    assert response.json() == {"status": 200, "payload": {"echo": {"via": "azure"}, "identifier": "Echo"}}
    detail = QueryDeviceDetailRequest()
    detail.set_IotId(f"{PK}:{ECHO}")
    assert call(owner, detail)["Data"]["Status"] == "ONLINE"


# -- failures --------------------------------------------------------------------------------------


def test_offline_device(aliyun_hub: HubProcess, owner: AcsClient) -> None:
    create_product_device(aliyun_hub, PK, "offline-dev")
    body = call(owner, rrpc_request(PK, "offline-dev", b"x", timeout_ms=8000))
    # at once: after the timeout it would be RrpcCode TIMEOUT
    assert body == {"RequestId": body["RequestId"], "Success": True, "RrpcCode": "OFFLINE"}
    service = call(owner, service_request("Echo", {}, device_name="offline-dev"))
    assert service["Success"] is False and service["Code"] == "iot.messagebroker.OFFLINE"


def test_device_that_never_answers(owner: AcsClient, silent_device: LinkkitDevice) -> None:
    started = time.monotonic()
    body = call(owner, rrpc_request(PK, SILENT, b"anyone?", timeout_ms=1000))
    elapsed = time.monotonic() - started
    assert elapsed > 0.9  # it waited the timeout it was given
    assert body["Success"] is True and body["RrpcCode"] == "TIMEOUT"
    assert "PayloadBase64Byte" not in body
    silent_device.next_event("message", topic=f"/sys/{PK}/{SILENT}/rrpc/request/{body['MessageId']}")


def test_unknown_device(owner: AcsClient) -> None:
    body = call(owner, rrpc_request(PK, "no-such-dev", b"x"))
    assert body["Success"] is False and body["Code"] == "iot.device.NotExistedDevice"


@pytest.mark.parametrize("timeout_ms", [999, 8001])
def test_timeout_outside_alibabas_range(owner: AcsClient, timeout_ms: int) -> None:
    body = call(owner, rrpc_request(PK, ECHO, b"x", timeout_ms=timeout_ms))
    assert body["Success"] is False and body["Code"] == "iot.messagebroker.InvalidTimeoutValue"


def test_message_that_is_not_base64(owner: AcsClient) -> None:
    request = rrpc_request(PK, ECHO, b"")
    request.set_RequestBase64Byte("not base64!")
    body = call(owner, request)
    assert body["Success"] is False and body["Code"] == "iot.messagebroker.MessageContentIsNotBase64Encode"


def test_missing_parameter_is_a_pop_error(owner: AcsClient) -> None:
    request = rrpc_request(PK, ECHO, b"x")
    request.add_query_param("Timeout", "")
    with pytest.raises(ServerException) as raised:
        owner.do_action_with_exception(request)
    assert raised.value.get_http_status() == 400
    assert raised.value.get_error_code() == "MissingParameter"
    assert "Timeout" in raised.value.get_error_msg()


# -- TLS -------------------------------------------------------------------------------------------


def test_linkkit_over_tls(aliyun_hub: HubProcess, owner: AcsClient, linkkit: Path) -> None:
    names = create_product_device(aliyun_hub, PK, "tls-dev")
    config = device_config(aliyun_hub, "tls-dev", names["DeviceSecret"], "echo")
    # linkkit checks the certificate against the CA it is given (and the host name): the hub's CA.
    config.update(host="localhost", port=aliyun_hub.ports["mqtts"], ca=aliyun_hub.ca_file.read_text())
    device = LinkkitDevice(linkkit, config)
    try:
        device.wait_ready()
        body = call(owner, rrpc_request(PK, "tls-dev", b"over tls"))
    finally:
        device.close()
    assert body["RrpcCode"] == "SUCCESS"
    assert base64.b64decode(body["PayloadBase64Byte"]) == b"pong:over tls"
