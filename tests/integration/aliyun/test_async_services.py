"""Asynchronous thing services end to end: a product's TSL given with the CLI (and with the POP API
through the legacy ``aliyun-python-sdk-iot``), ``InvokeThingService`` answered at once with a
MessageId, an unmodified Link SDK device (linkkit) answering on ``…/thing/service/{id}_reply`` with
``thing_answer_service``, the recorded result read back (``GET /calls/{MessageId}``,
QueryDeviceServiceData), and the Tea SDK reading the same answers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_iot20180120 import models as tea
from aliyunsdkcore.client import AcsClient
from aliyunsdkiot.request.v20180120.GetThingModelTslRequest import GetThingModelTslRequest
from aliyunsdkiot.request.v20180120.ImportThingModelTslRequest import ImportThingModelTslRequest
from aliyunsdkiot.request.v20180120.InvokeThingServiceRequest import InvokeThingServiceRequest
from aliyunsdkiot.request.v20180120.InvokeThingsServiceRequest import InvokeThingsServiceRequest
from aliyunsdkiot.request.v20180120.QueryDeviceServiceDataRequest import QueryDeviceServiceDataRequest

from tests.integration.aliyun.support import (
    LinkkitDevice,
    PahoAliyunDevice,
    call,
    create_product_device,
    device_login,
)
from tests.integration.aliyun.test_tea_sdk import tea_client
from tests.support import Backend, HubProcess

pytestmark = pytest.mark.timeout(180)

PK = "a1Async"
SLOW = "slow-async"
DELAY = 2.0
HUB_TSL = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"productKey": PK},
    "properties": [],
    "events": [],
    "services": [
        {"identifier": "Echo", "name": "Echo", "callType": "async", "inputData": [], "outputData": []},
        {"identifier": "Fail", "name": "Fail", "callType": "sync", "inputData": [], "outputData": []},
    ],
}
"""The product's thing model as the hub knows it: Echo asynchronous, Fail synchronous (the device's
own TSL file only names them: linkkit ignores callType)."""


@pytest.fixture(scope="module")
def slow_device(
    aliyun_hub: HubProcess, linkkit: Path, tsl_file: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LinkkitDevice]:
    tsl = tmp_path_factory.mktemp("async-tsl") / "tsl.json"
    tsl.write_text(json.dumps(HUB_TSL))
    done = aliyun_hub.cli("product", "set-tsl", PK, str(tsl))
    assert "asynchronous: Echo" in done.stderr
    secret = create_product_device(aliyun_hub, PK, SLOW)["DeviceSecret"]
    config = {
        "host": "127.0.0.1",
        "port": aliyun_hub.ports["mqtt"],
        "product_key": PK,
        "device_name": SLOW,
        "device_secret": secret,
        "mode": "echo",
        "tsl": tsl_file,
        "delay": DELAY,  # answers every service DELAY seconds after it arrives
    }
    device = LinkkitDevice(linkkit, config).wait_ready()
    try:
        yield device
    finally:
        device.close()


def invoke(identifier: str, args: Any, device_name: str = SLOW) -> InvokeThingServiceRequest:
    request = InvokeThingServiceRequest()
    request.set_ProductKey(PK)
    request.set_DeviceName(device_name)
    request.set_Identifier(identifier)
    request.set_Args(json.dumps(args))
    return request


def wait_ended(backend: Backend, call_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = backend.http.get(f"/calls/{call_id}", headers={"Authorization": backend.token})
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        if found["state"] not in ("queued", "sent") or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_async_service_answers_at_once_and_records_the_devices_reply(
    aliyun_hub: HubProcess, owner: AcsClient, slow_device: LinkkitDevice
) -> None:
    started = time.monotonic()
    answer = call(owner, invoke("Echo", {"x": 1}))
    assert time.monotonic() - started < DELAY  # the device has not answered yet
    assert answer["Success"] is True and set(answer["Data"]) == {"MessageId"}
    message_id = answer["Data"]["MessageId"]
    event = slow_device.next_event("service", identifier="Echo")
    assert event["params"] == {"x": 1}
    backend = Backend(aliyun_hub)
    try:
        recorded = wait_ended(backend, message_id)  # the MessageId is the call's id
    finally:
        backend.close()
    # Answered by thing_answer_service on …/Echo_reply (an RRPC-mode request would have been
    # answered on its /ext/rrpc topic, which this call does not wait on: it would time out).
    assert recorded["state"] == "succeeded", recorded
    assert recorded["outcome"] == {"status": 200, "payload": {"echo": {"x": 1}, "identifier": "Echo"}}
    assert recorded["methodName"] == "async/Echo"
    query = QueryDeviceServiceDataRequest()
    query.set_ProductKey(PK)
    query.set_DeviceName(SLOW)
    query.set_Identifier("Echo")
    query.set_StartTime(int(time.time() * 1000) - 120_000)
    query.set_EndTime(int(time.time() * 1000) + 1000)
    infos = call(owner, query)["Data"]["List"]["ServiceInfo"]
    assert infos[0]["Identifier"] == "Echo" and json.loads(infos[0]["InputData"]) == {"x": 1}
    assert json.loads(infos[0]["OutputData"]) == {"echo": {"x": 1}, "identifier": "Echo"}


def test_a_sync_service_of_the_same_product_still_runs_in_rrpc_mode(
    owner: AcsClient, slow_device: LinkkitDevice
) -> None:
    started = time.monotonic()
    answer = call(owner, invoke("Fail", {"y": 2}))
    assert time.monotonic() - started >= DELAY * 0.9  # waited for the device's answer
    assert answer["Success"] is False and answer["Code"] == "iot.device.InvokeThingServiceFailed"
    assert json.loads(answer["Data"]["Result"]) == {"echo": {"y": 2}, "identifier": "Fail"}


def test_invoke_things_service_sends_async_services_on_the_service_topic(
    aliyun_hub: HubProcess, owner: AcsClient, slow_device: LinkkitDevice
) -> None:
    request = InvokeThingsServiceRequest()
    request.set_ProductKey(PK)
    request.set_DeviceNames([SLOW])
    request.set_Identifier("Echo")
    request.set_Args(json.dumps({"batch": True}))
    answer = call(owner, request)
    assert answer["Success"] is True
    slow_device.next_event("service", identifier="Echo", params={"batch": True})
    backend = Backend(aliyun_hub)
    try:
        response = backend.http.get(
            "/calls", params={"jobId": answer["RequestId"]}, headers={"Authorization": backend.token}
        )
        [made] = response.json()["calls"]
        recorded = wait_ended(backend, made["callId"])
    finally:
        backend.close()
    assert recorded["state"] == "succeeded", recorded
    assert recorded["outcome"]["payload"] == {"echo": {"batch": True}, "identifier": "Echo"}


def test_tsl_through_the_pop_api_and_the_tea_sdk(
    aliyun_hub: HubProcess, owner: AcsClient, slow_device: LinkkitDevice
) -> None:
    get = GetThingModelTslRequest()
    get.set_ProductKey(PK)
    assert json.loads(call(owner, get)["Data"]["TslStr"]) == HUB_TSL  # what the CLI set
    # Another product, its TSL imported before its first device (the legacy SDK).
    other = {"services": [{"identifier": "Echo", "callType": "async"}], "properties": []}
    imported = ImportThingModelTslRequest()
    imported.set_ProductKey("a1AsyncApi")
    imported.set_TslStr(json.dumps(other))
    assert call(owner, imported)["Success"] is True
    get.set_ProductKey("a1AsyncApi")
    assert json.loads(call(owner, get)["Data"]["TslStr"]) == other
    bad = ImportThingModelTslRequest()
    bad.set_ProductKey("a1AsyncApi")
    bad.set_TslStr('{"services": [{"identifier": "Echo", "callType": "later"}]}')
    refused = call(owner, bad)
    assert refused["Success"] is False and refused["Code"] == "InvalidParameter"
    assert "callType" in refused["ErrorMessage"]
    # The Tea SDK (default configuration: ACS3 signature) reads the async answer into its model.
    client = tea_client(aliyun_hub)
    body = client.invoke_thing_service(
        tea.InvokeThingServiceRequest(product_key=PK, device_name=SLOW, identifier="Echo", args='{"tea": 1}')
    ).body
    assert body.success is True and body.data.message_id and body.data.result is None
    slow_device.next_event("service", identifier="Echo", params={"tea": 1})
    tsl = client.get_thing_model_tsl(tea.GetThingModelTslRequest(product_key=PK)).body
    assert tsl.success is True and json.loads(tsl.data.tsl_str) == HUB_TSL


def test_replies_from_a_hand_rolled_device_are_matched_by_id(
    aliyun_hub: HubProcess, owner: AcsClient
) -> None:
    """A paho device (auto-subscribed, ``_ss=1``) answering by hand: a wrong id and another device's
    reply answer nothing (the latter closes that device's connection); the right id does; a reply
    that is not JSON ends its call as an invalid device response."""
    secrets = {
        name: create_product_device(aliyun_hub, PK, name)["DeviceSecret"] for name in ("hand-1", "hand-2")
    }
    devices = {
        name: PahoAliyunDevice(aliyun_hub, *device_login(PK, name, secret, extra=",ext=1,_ss=1"))
        for name, secret in secrets.items()
    }
    backend = Backend(aliyun_hub)
    try:
        for device in devices.values():
            assert device.connect() == 0
        first = call(owner, invoke("Echo", {"n": 1}, "hand-1"))["Data"]["MessageId"]
        topic, payload = devices["hand-1"].messages.get(timeout=10)
        assert topic == f"/sys/{PK}/hand-1/thing/service/Echo"  # the service topic, not /ext/rrpc
        request = json.loads(payload)
        assert request["method"] == "thing.service.Echo" and request["params"] == {"n": 1}
        assert isinstance(request["id"], str)
        reply = f"{topic}_reply"
        devices["hand-1"].publish(
            reply, json.dumps({"id": request["id"] + "0", "code": 200, "data": {}}).encode()
        )
        devices["hand-2"].publish(reply, json.dumps({"id": request["id"], "code": 200, "data": {}}).encode())
        assert devices["hand-2"].disconnects.get(timeout=10) is not None  # another device's topic
        time.sleep(0.5)
        response = backend.http.get(f"/calls/{first}", headers={"Authorization": backend.token})
        assert response.json()["state"] == "sent"  # still waiting: neither answered it
        answer = {"id": request["id"], "code": 200, "data": {"ok": True}}
        devices["hand-1"].publish(reply, json.dumps(answer).encode())
        recorded = wait_ended(backend, first)
        assert (recorded["state"], recorded["outcome"]) == (
            "succeeded",
            {"status": 200, "payload": {"ok": True}},
        )
        second = call(owner, invoke("Echo", {"n": 2}, "hand-1"))["Data"]["MessageId"]
        devices["hand-1"].messages.get(timeout=10)
        devices["hand-1"].publish(reply, b"not json at all")
        failed = wait_ended(backend, second)
        assert failed["state"] == "failed" and failed["error"]["errorCode"] == "InvalidDeviceResponse", failed
        assert "Echo_reply" in failed["error"]["message"]
    finally:
        backend.close()
        for device in devices.values():
            device.close()
