"""Device status and lookups with the legacy ``aliyun-python-sdk-iot``, unmodified, against a hub with
online devices (a Link SDK device, a paho-mqtt device), an offline one and a disabled one:
``GetDeviceStatus``, ``BatchGetDeviceState``, ``BatchQueryDeviceDetail``, ``QueryDevice``,
``QueryDeviceStatistics``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkiot.request.v20180120.BatchGetDeviceStateRequest import BatchGetDeviceStateRequest
from aliyunsdkiot.request.v20180120.BatchQueryDeviceDetailRequest import BatchQueryDeviceDetailRequest
from aliyunsdkiot.request.v20180120.GetDeviceStatusRequest import GetDeviceStatusRequest
from aliyunsdkiot.request.v20180120.QueryDeviceRequest import QueryDeviceRequest
from aliyunsdkiot.request.v20180120.QueryDeviceStatisticsRequest import QueryDeviceStatisticsRequest

from tests.integration.aliyun.support import (
    LinkkitDevice,
    PahoAliyunDevice,
    call,
    create_product_device,
    device_login,
)
from tests.support import Backend, HubProcess

PK = "a1Status"
LINK = "link-dev"
PAHO = "paho-dev"
OFF = "off-dev"
DISABLED = "dis-dev"
CREATED = [LINK, PAHO, OFF, DISABLED]
"""In the order they are registered."""


@pytest.fixture(scope="module")
def secrets() -> dict[str, str]:
    return {}


@pytest.fixture(scope="module")
def fleet(aliyun_hub: HubProcess, linkkit: Path, secrets: dict[str, str]) -> Iterator[dict[str, Any]]:
    """The four devices: LINK and PAHO connected, OFF never connected, DISABLED disabled."""
    for name in CREATED:
        secrets[name] = create_product_device(aliyun_hub, PK, name)["DeviceSecret"]
    backend = Backend(aliyun_hub)
    try:
        device_id = f"{PK}:{DISABLED}"
        etag = backend.http.get(f"/devices/{device_id}", headers={"Authorization": backend.token}).json()[
            "etag"
        ]
        response = backend.http.put(
            f"/devices/{device_id}",
            json={"deviceId": device_id, "status": "disabled"},
            headers={"Authorization": backend.token, "If-Match": f'"{etag}"'},
        )
        assert response.status_code == 200, response.text
    finally:
        backend.close()
    link = LinkkitDevice(
        linkkit,
        {
            "host": "127.0.0.1",
            "port": aliyun_hub.ports["mqtt"],
            "product_key": PK,
            "device_name": LINK,
            "device_secret": secrets[LINK],
            "mode": "echo",
        },
    )
    paho = PahoAliyunDevice(aliyun_hub, *device_login(PK, PAHO, secrets[PAHO], extra=",_ss=1"))
    try:
        link.wait_ready()
        assert paho.connect() == 0
        yield {"link": link, "paho": paho, "connected_by": time.time()}
    finally:
        paho.close()
        link.close()


def status_request(device_name: str | None = None, *, iot_id: str | None = None) -> GetDeviceStatusRequest:
    request = GetDeviceStatusRequest()
    if iot_id is not None:
        request.set_IotId(iot_id)
    else:
        request.set_ProductKey(PK)
        request.set_DeviceName(device_name)
    return request


def test_get_device_status(owner: AcsClient, fleet: dict[str, Any]) -> None:
    online = call(owner, status_request(LINK))
    assert online["Success"] is True and online["Data"]["Status"] == "ONLINE"
    assert isinstance(online["Data"]["Timestamp"], int)  # ms, when it connected
    assert online["Data"]["Timestamp"] / 1000 <= fleet["connected_by"] + 1
    assert call(owner, status_request(iot_id=f"{PK}:{PAHO}"))["Data"]["Status"] == "ONLINE"
    assert call(owner, status_request(OFF))["Data"] == {"Status": "OFFLINE"}
    assert call(owner, status_request(DISABLED))["Data"]["Status"] == "DISABLE"
    unknown = call(owner, status_request("no-such-dev"))
    assert unknown["Success"] is False and unknown["Code"] == "iot.device.NotExistedDevice"


def test_batch_get_device_state(owner: AcsClient, fleet: dict[str, Any]) -> None:
    request = BatchGetDeviceStateRequest()
    request.set_ProductKey(PK)
    request.set_DeviceNames([OFF, LINK, "no-such-dev", DISABLED, PAHO])
    body = call(owner, request)
    assert body["Success"] is True
    entries = body["DeviceStatusList"]["DeviceStatus"]
    assert [(e["DeviceName"], e["Status"]) for e in entries] == [
        (OFF, "OFFLINE"),
        (LINK, "ONLINE"),
        (DISABLED, "DISABLE"),
        (PAHO, "ONLINE"),
    ]
    link = entries[1]
    assert link["IotId"] == f"{PK}:{LINK}"
    assert time.strptime(link["LastOnlineTime"], "%Y-%m-%d %H:%M:%S")  # Alibaba's format
    assert "LastOnlineTime" not in entries[0]

    by_ids = BatchGetDeviceStateRequest()
    by_ids.set_IotIds([f"{PK}:{PAHO}", f"{PK}:{OFF}"])
    assert [e["Status"] for e in call(owner, by_ids)["DeviceStatusList"]["DeviceStatus"]] == [
        "ONLINE",
        "OFFLINE",
    ]


def test_batch_get_device_state_limit(owner: AcsClient, fleet: dict[str, Any]) -> None:
    request = BatchGetDeviceStateRequest()
    request.set_ProductKey(PK)
    request.set_DeviceNames([LINK] * 50)
    assert len(call(owner, request)["DeviceStatusList"]["DeviceStatus"]) == 1  # 50 is allowed
    request.set_DeviceNames([LINK] * 51)
    body = call(owner, request)
    assert body["Success"] is False and body["Code"] == "InvalidParameter" and "50" in body["ErrorMessage"]


def test_batch_query_device_detail(owner: AcsClient, fleet: dict[str, Any], secrets: dict[str, str]) -> None:
    request = BatchQueryDeviceDetailRequest()
    request.set_ProductKey(PK)
    request.set_DeviceNames([PAHO, "no-such-dev", OFF])
    details = call(owner, request)["Data"]["Data"]
    assert [(d["DeviceName"], d["Status"], d["DeviceSecret"]) for d in details] == [
        (PAHO, "ONLINE", secrets[PAHO]),
        (OFF, "OFFLINE", secrets[OFF]),
    ]
    assert details[0]["IotId"] == f"{PK}:{PAHO}" and details[0]["ProductKey"] == PK
    request.set_DeviceNames([f"dev-{i}" for i in range(101)])
    too_many = call(owner, request)
    assert too_many["Success"] is False and "100" in too_many["ErrorMessage"]


def query_device(page_size: int, *, page: int | None = None, token: str | None = None) -> QueryDeviceRequest:
    request = QueryDeviceRequest()
    request.set_ProductKey(PK)
    request.set_PageSize(page_size)
    if page is not None:
        request.set_CurrentPage(page)
    if token is not None:
        request.set_NextToken(token)
    return request


def test_query_device_pages(owner: AcsClient, fleet: dict[str, Any]) -> None:
    first = call(owner, query_device(3))
    assert (first["Total"], first["PageSize"], first["PageCount"], first["Page"]) == (4, 3, 2, 1)
    infos = first["Data"]["DeviceInfo"]
    assert [d["DeviceName"] for d in infos] == CREATED[::-1][:3]  # newest first
    assert [d["DeviceStatus"] for d in infos] == ["DISABLE", "OFFLINE", "ONLINE"]
    assert time.strptime(infos[0]["GmtCreate"], "%a, %d-%b-%Y %H:%M:%S GMT")
    second = call(owner, query_device(3, token=first["NextToken"]))
    assert [d["DeviceName"] for d in second["Data"]["DeviceInfo"]] == [LINK]
    assert second["Page"] == 2 and "NextToken" not in second
    by_number = call(owner, query_device(3, page=2))
    assert by_number["Data"] == second["Data"]


def test_query_device_page_limits(owner: AcsClient, fleet: dict[str, Any]) -> None:
    for request in (query_device(51), query_device(0), query_device(50, page=201)):
        body = call(owner, request)
        assert body["Success"] is False and body["Code"] == "iot.common.InvalidPageParams", body
    missing = QueryDeviceRequest()
    with pytest.raises(ServerException) as raised:
        owner.do_action_with_exception(missing)
    assert raised.value.get_http_status() == 400 and raised.value.get_error_code() == "MissingParameter"
    assert "ProductKey" in raised.value.get_error_msg()


def test_query_device_statistics(owner: AcsClient, fleet: dict[str, Any]) -> None:
    request = QueryDeviceStatisticsRequest()
    request.set_ProductKey(PK)
    assert call(owner, request)["Data"] == {"deviceCount": 4, "activeCount": 4, "onlineCount": 2}
    everything = call(owner, QueryDeviceStatisticsRequest())["Data"]  # the package's other devices too
    assert everything["deviceCount"] >= 4 and everything["onlineCount"] >= 2


def test_a_device_that_disconnects_goes_offline(
    aliyun_hub: HubProcess, owner: AcsClient, secrets: dict[str, str], fleet: dict[str, Any]
) -> None:
    name = "brief-dev"
    secrets[name] = create_product_device(aliyun_hub, PK, name)["DeviceSecret"]
    device = PahoAliyunDevice(aliyun_hub, *device_login(PK, name, secrets[name], extra=",_ss=1"))
    assert device.connect() == 0
    try:
        assert call(owner, status_request(name))["Data"]["Status"] == "ONLINE"
    finally:
        device.close()
    deadline = time.monotonic() + 10
    while (status := call(owner, status_request(name))["Data"]["Status"]) == "ONLINE":
        assert time.monotonic() < deadline, "still ONLINE 10 s after the device disconnected"
        time.sleep(0.1)
    assert status == "OFFLINE"
    statistics = QueryDeviceStatisticsRequest()
    statistics.set_ProductKey(PK)
    assert call(owner, statistics)["Data"] == {"deviceCount": 5, "activeCount": 5, "onlineCount": 2}
