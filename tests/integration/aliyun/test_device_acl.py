"""Alibaba device logins and topic ACLs, with paho-mqtt logging in as Alibaba documents for plain MQTT
clients (passwords computed here, independently of methodhub), including hostile devices."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from aliyunsdkcore.client import AcsClient
from aliyunsdkiot.request.v20180120.DeleteDeviceRequest import DeleteDeviceRequest

from tests.integration.aliyun.support import (
    PahoAliyunDevice,
    call,
    create_product_device,
    device_login,
    rrpc_request,
)
from tests.support import HubProcess

PK = "a1Acl"


@pytest.fixture(scope="module")
def secrets_by_name(aliyun_hub: HubProcess) -> dict[str, str]:
    return {
        name: create_product_device(aliyun_hub, PK, name)["DeviceSecret"]
        for name in ("victim", "attacker", "plain-dev", "md5-dev", "sha256-dev", "doomed")
    }


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def online(hub: HubProcess, name: str, secret: str, **login: str) -> PahoAliyunDevice:
    device = PahoAliyunDevice(hub, *device_login(PK, name, secret, extra=",ext=1,_ss=1", **login))
    assert device.connect() == 0
    return device


@pytest.mark.parametrize("sign_method, name", [("hmacmd5", "md5-dev"), ("hmacsha256", "sha256-dev")])
def test_login_with_each_sign_method(
    aliyun_hub: HubProcess, owner: AcsClient, secrets_by_name: dict[str, str], sign_method: str, name: str
) -> None:
    device = online(aliyun_hub, name, secrets_by_name[name], sign_method=sign_method)
    try:
        body = call(owner, rrpc_request(PK, name, b"x", timeout_ms=1000))
        assert body["RrpcCode"] == "TIMEOUT"  # online (auto-subscribed) and silent
        topic, payload = device.messages.get(timeout=5)
        assert topic == f"/sys/{PK}/{name}/rrpc/request/{body['MessageId']}" and payload == b"x"
    finally:
        device.close()


def test_bad_logins_are_refused(aliyun_hub: HubProcess, secrets_by_name: dict[str, str]) -> None:
    client_id, username, password = device_login(PK, "victim", secrets_by_name["victim"])
    cases = [
        (device_login(PK, "victim", "wrong-secret-0123456789"), 4),  # wrong secret
        (device_login(PK, "no-such-dev", secrets_by_name["victim"]), 4),  # unknown device
        ((client_id.replace("timestamp=", "timestamp=1"), username, password), 4),  # signed other text
        ((client_id, username, password.upper()), 0),  # hex compares case-insensitively
        (  # dynamic registration (one secret per product) is not supported
            (
                f"victim.{PK}|random=123,authType=register,securemode=2,signmethod=hmacsha256|",
                f"victim&{PK}",
                "0",
            ),
            5,
        ),
    ]
    for login, code in cases:
        device = PahoAliyunDevice(aliyun_hub, *login)
        try:
            assert device.connect() == code, login
        finally:
            device.close()


def test_device_without_server_side_subscription_subscribes_itself(
    aliyun_hub: HubProcess, owner: AcsClient, secrets_by_name: dict[str, str], pool: ThreadPoolExecutor
) -> None:
    device = PahoAliyunDevice(aliyun_hub, *device_login(PK, "plain-dev", secrets_by_name["plain-dev"]))
    try:
        assert device.connect() == 0
        assert call(owner, rrpc_request(PK, "plain-dev", b"x"))["RrpcCode"] == "OFFLINE"
        assert device.subscribe(f"/sys/{PK}/plain-dev/rrpc/request/+") == [0]
        pending = pool.submit(call, owner, rrpc_request(PK, "plain-dev", b"ping", timeout_ms=5000))
        topic, payload = device.messages.get(timeout=10)
        assert payload == b"ping"
        device.publish(topic.replace("/rrpc/request/", "/rrpc/response/"), b"pong", qos=1)  # QoS 1 too
        body = pending.result(timeout=10)
    finally:
        device.close()
    assert body["RrpcCode"] == "SUCCESS" and base64.b64decode(body["PayloadBase64Byte"]) == b"pong"


def test_subscriptions_outside_the_devices_own_topics_are_refused(
    aliyun_hub: HubProcess, secrets_by_name: dict[str, str]
) -> None:
    device = online(aliyun_hub, "attacker", secrets_by_name["attacker"])
    try:
        for foreign in (
            f"/sys/{PK}/victim/rrpc/request/+",
            f"/ext/rrpc/+/{PK}/victim/user/get",
            f"/ext/rrpc/+/sys/{PK}/victim/thing/service/+",
            f"/{PK}/victim/user/get",
            f"/sys/{PK}/+/rrpc/request/+",
            "/sys/#",
            "/ext/rrpc/#",
            "#",
        ):
            assert device.subscribe(foreign) == [0x80], foreign
        assert device.subscribe(f"/{PK}/attacker/user/#", qos=1) == [1]
        assert device.subscribe(f"/ext/rrpc/+/{PK}/attacker/user/get") == [0]
    finally:
        device.close()


def test_device_cannot_answer_another_devices_message_id(
    aliyun_hub: HubProcess, owner: AcsClient, secrets_by_name: dict[str, str], pool: ThreadPoolExecutor
) -> None:
    victim = online(aliyun_hub, "victim", secrets_by_name["victim"])
    attacker = online(aliyun_hub, "attacker", secrets_by_name["attacker"])
    try:
        strays = aliyun_hub.metric("methodhub_stray_responses_total")
        pending = pool.submit(call, owner, rrpc_request(PK, "victim", b"secret", timeout_ms=8000))
        topic, _ = victim.messages.get(timeout=10)
        message_id = topic.rsplit("/", 1)[1]

        # On its own topic with the victim's id: dropped and counted.
        attacker.publish(f"/sys/{PK}/attacker/rrpc/response/{message_id}", b"forged", qos=1)
        deadline = time.monotonic() + 5
        while aliyun_hub.metric("methodhub_stray_responses_total") < strays + 1:
            assert time.monotonic() < deadline, "the forged reply was not counted as stray"
            time.sleep(0.05)
        # On the victim's topic: the connection is closed.
        attacker.client.publish(f"/sys/{PK}/victim/rrpc/response/{message_id}", b"forged", 0)
        attacker.disconnects.get(timeout=5)
        assert not pending.done()

        victim.publish(topic.replace("/rrpc/request/", "/rrpc/response/"), b"genuine")
        body = pending.result(timeout=10)
    finally:
        victim.close()
        attacker.close()
    assert body["RrpcCode"] == "SUCCESS" and base64.b64decode(body["PayloadBase64Byte"]) == b"genuine"


def test_device_deleted_through_the_api_is_disconnected(
    aliyun_hub: HubProcess, owner: AcsClient, secrets_by_name: dict[str, str]
) -> None:
    device = online(aliyun_hub, "doomed", secrets_by_name["doomed"])
    try:
        request = DeleteDeviceRequest()
        request.set_IotId(f"{PK}:doomed")
        assert call(owner, request)["Success"] is True
        device.disconnects.get(timeout=5)  # the change feed re-checks live connections (0.5 s)
    finally:
        device.close()
    again = PahoAliyunDevice(aliyun_hub, *device_login(PK, "doomed", secrets_by_name["doomed"]))
    try:
        assert again.connect() == 4
    finally:
        again.close()
