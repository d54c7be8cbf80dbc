"""The POP API's device status and lookup actions through the handler (signed requests, the real
SQLite registry, a presence stub saying who is connected)."""

from __future__ import annotations

import base64
import calendar
import time
from typing import Any

import pytest

from methodhub.calls import CallOutcome
from methodhub.dialects.aliyun import pop_devices
from methodhub.dialects.aliyun.pop import AliyunApi
from methodhub.dialects.aliyun.pop_auth import PopAuthenticator
from methodhub.registry import SqliteRegistry
from tests.unit.aliyun.test_pop_api import StubEngine, post

PK = "a1Status"
SINCE = 1_700_000_000.25
"""When the connected devices connected (epoch seconds)."""


class Connected:
    """Presence: the targets in ``online`` are connected (since ``SINCE``); it records what it was
    asked, to show one batched question per request."""

    def __init__(self, *online: str) -> None:
        self.online = set(online)
        self.asked: list[list[str]] = []

    async def connection_states(self, targets: list[str]) -> dict[str, tuple[bool, float | None]]:
        self.asked.append(list(targets))
        return {t: (True, SINCE) if t in self.online else (False, None) for t in targets}


def api_for(registry: SqliteRegistry, presence: Connected) -> AliyunApi:
    engine = StubEngine(CallOutcome(200, b"{}"))
    return AliyunApi(engine, registry, PopAuthenticator(registry), presence)  # type: ignore[arg-type]


async def make_devices(registry: SqliteRegistry, *names: str, product_key: str = PK) -> None:
    for name in names:
        await registry.create_product_device(product_key, name)


def names(prefix: str, values: list[str]) -> dict[str, str]:
    return {f"{prefix}.{i}": value for i, value in enumerate(values, 1)}


# -- GetDeviceStatus -----------------------------------------------------------------------------------


async def test_get_device_status(registry: SqliteRegistry) -> None:
    await make_devices(registry, "on-dev", "off-dev", "dis-dev")
    await registry.update_identity(f"{PK}:dis-dev", status="disabled")
    disabled_at = (await registry.get_identity(f"{PK}:dis-dev")).status_updated_at  # type: ignore[union-attr]
    api = api_for(registry, Connected(f"{PK}:on-dev", f"{PK}:dis-dev"))

    online = await post(api, registry, Action="GetDeviceStatus", ProductKey=PK, DeviceName="on-dev")
    assert online == {
        "status": 200,
        "RequestId": online["RequestId"],
        "Success": True,
        "Data": {"Status": "ONLINE", "Timestamp": 1_700_000_000_250},
    }
    offline = await post(api, registry, Action="GetDeviceStatus", IotId=f"{PK}:off-dev")
    assert offline["Data"] == {"Status": "OFFLINE"}  # when it went offline is not known: left out
    disabled = await post(api, registry, Action="GetDeviceStatus", ProductKey=PK, DeviceName="dis-dev")
    assert disabled["Data"] == {"Status": "DISABLE", "Timestamp": int(disabled_at * 1000)}


async def test_get_device_status_of_an_azure_device_by_iot_id(registry: SqliteRegistry) -> None:
    await registry.create_identity("pump-17")
    api = api_for(registry, Connected("pump-17"))
    body = await post(
        api, registry, Action="GetDeviceStatus", IotId="pump-17", ProductKey="x", DeviceName="y"
    )
    assert body["Data"]["Status"] == "ONLINE"  # IotId wins over ProductKey + DeviceName


@pytest.mark.parametrize(
    "params, status, code",
    [
        ({"ProductKey": PK, "DeviceName": "no-such-dev"}, 200, "iot.device.NotExistedDevice"),
        ({"IotId": "no-such-dev"}, 200, "iot.device.NotExistedDevice"),
        ({"ProductKey": PK}, 400, "MissingParameter"),
        ({}, 400, "MissingParameter"),
        ({"ProductKey": PK, "DeviceName": "a/b/c"}, 200, "InvalidParameter"),
    ],
)
async def test_get_device_status_errors(
    registry: SqliteRegistry, params: dict[str, str], status: int, code: str
) -> None:
    body = await post(api_for(registry, Connected()), registry, Action="GetDeviceStatus", **params)
    assert (body["status"], body["Code"]) == (status, code)


# -- BatchGetDeviceState -------------------------------------------------------------------------------


async def test_batch_get_device_state_by_names(registry: SqliteRegistry) -> None:
    await make_devices(registry, "on-dev", "off-dev")
    presence = Connected(f"{PK}:on-dev")
    api = api_for(registry, presence)
    params = names("DeviceName", ["off-dev", "no-such-dev", "on-dev", "off-dev"])
    body = await post(api, registry, Action="BatchGetDeviceState", ProductKey=PK, **params)
    assert body["Success"] is True
    assert body["DeviceStatusList"] == {
        "DeviceStatus": [  # the request's order; unknown left out, duplicates once
            {"IotId": f"{PK}:off-dev", "DeviceName": "off-dev", "Status": "OFFLINE"},
            {
                "IotId": f"{PK}:on-dev",
                "DeviceName": "on-dev",
                "Status": "ONLINE",
                "Timestamp": 1_700_000_000_250,
                "LastOnlineTime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(SINCE)),
            },
        ]
    }
    assert presence.asked == [[f"{PK}:off-dev", f"{PK}:on-dev"]]  # one question for the batch


async def test_batch_get_device_state_by_iot_ids_across_products(registry: SqliteRegistry) -> None:
    await make_devices(registry, "dev-a")
    await make_devices(registry, "dev-b", product_key="a1Other")
    await registry.create_identity("pump-17")
    api = api_for(registry, Connected("pump-17"))
    params = names("IotId", [f"{PK}:dev-a", "a1Other:dev-b", "pump-17"])
    body = await post(
        api, registry, Action="BatchGetDeviceState", ProductKey=PK, **names("DeviceName", ["x1234"]), **params
    )
    entries = body["DeviceStatusList"]["DeviceStatus"]
    assert [(e["IotId"], e["DeviceName"], e["Status"]) for e in entries] == [
        (f"{PK}:dev-a", "dev-a", "OFFLINE"),
        ("a1Other:dev-b", "dev-b", "OFFLINE"),
        ("pump-17", None, "ONLINE"),  # not an Alibaba device: no DeviceName
    ]


async def test_batch_list_items_by_index_with_gaps(registry: SqliteRegistry) -> None:
    """The legacy SDK numbers items by position and skips None ones: DeviceName.1, DeviceName.3."""
    await make_devices(registry, "dev-1", "dev-3", "dev-9")
    body = await post(
        api_for(registry, Connected()),
        registry,
        Action="BatchGetDeviceState",
        ProductKey=PK,
        **{"DeviceName.10": "dev-9", "DeviceName.3": "dev-3", "DeviceName.1": "dev-1"},
    )
    assert [e["DeviceName"] for e in body["DeviceStatusList"]["DeviceStatus"]] == ["dev-1", "dev-3", "dev-9"]


@pytest.mark.parametrize(
    "params, status, code, words",
    [
        (
            {"ProductKey": PK, **names("DeviceName", [f"dev-{i}" for i in range(51)])},
            200,
            "InvalidParameter",
            "50",
        ),
        (names("IotId", [f"dev-{i}" for i in range(51)]), 200, "InvalidParameter", "At most 50"),
        ({"ProductKey": PK, "DeviceName.x": "dev-1"}, 200, "InvalidParameter", "DeviceName.1"),
        ({"ProductKey": PK, "DeviceName.0": "dev-1"}, 200, "InvalidParameter", "DeviceName.1"),
        ({"ProductKey": PK, "DeviceName": "dev-1"}, 400, "MissingParameter", "DeviceName.N"),
        ({"ProductKey": PK}, 400, "MissingParameter", "IotId.N"),
        (names("DeviceName", ["dev-1"]), 400, "MissingParameter", "ProductKey"),
        ({"ProductKey": "a1:PK", **names("DeviceName", ["dev-1"])}, 200, "InvalidParameter", "ProductKey"),
        ({"ProductKey": PK, **names("DeviceName", ["d"])}, 200, "InvalidParameter", "4 to 32"),
        (names("IotId", ["bad id!"]), 200, "InvalidParameter", ""),
    ],
)
async def test_batch_get_device_state_errors(
    registry: SqliteRegistry, params: dict[str, str], status: int, code: str, words: str
) -> None:
    body = await post(api_for(registry, Connected()), registry, Action="BatchGetDeviceState", **params)
    assert (body["status"], body["Code"]) == (status, code)
    assert words in body.get("ErrorMessage", body.get("Message", ""))


# -- BatchQueryDeviceDetail ------------------------------------------------------------------------------


async def test_batch_query_device_detail(registry: SqliteRegistry) -> None:
    await make_devices(registry, "on-dev", "off-dev")
    on = await registry.get_product_device(PK, "on-dev")
    assert on is not None
    api = api_for(registry, Connected(f"{PK}:on-dev"))
    params = names("DeviceName", ["on-dev", "no-such-dev", "off-dev"])
    body = await post(api, registry, Action="BatchQueryDeviceDetail", ProductKey=PK, **params)
    details = body["Data"]["Data"]
    assert [(d["DeviceName"], d["Status"]) for d in details] == [("on-dev", "ONLINE"), ("off-dev", "OFFLINE")]
    created = on.identity.created_at
    assert details[0] == {
        "IotId": f"{PK}:on-dev",
        "ProductKey": PK,
        "DeviceName": "on-dev",
        "DeviceSecret": on.device_secret,
        "Status": "ONLINE",
        "NodeType": 0,
        "GmtCreate": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created)),
        "UtcCreate": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(created)),
    }
    # the same fields QueryDeviceDetail answers (it adds GmtOnline/UtcOnline)
    single = await post(api, registry, Action="QueryDeviceDetail", ProductKey=PK, DeviceName="on-dev")
    assert {k: v for k, v in single["Data"].items() if k not in ("GmtOnline", "UtcOnline")} == details[0]


@pytest.mark.parametrize(
    "params, status, code",
    [
        (
            {"ProductKey": PK, **names("DeviceName", [f"dev-{i}" for i in range(101)])},
            200,
            "InvalidParameter",
        ),
        (names("DeviceName", ["dev-1"]), 400, "MissingParameter"),
        ({"ProductKey": PK}, 400, "MissingParameter"),
    ],
)
async def test_batch_query_device_detail_errors(
    registry: SqliteRegistry, params: dict[str, str], status: int, code: str
) -> None:
    body = await post(api_for(registry, Connected()), registry, Action="BatchQueryDeviceDetail", **params)
    assert (body["status"], body["Code"]) == (status, code)


async def test_batch_query_device_detail_takes_100(registry: SqliteRegistry) -> None:
    await make_devices(registry, "dev-0", "dev-99")
    params = names("DeviceName", [f"dev-{i}" for i in range(100)])
    body = await post(
        api_for(registry, Connected()), registry, Action="BatchQueryDeviceDetail", ProductKey=PK, **params
    )
    assert [d["DeviceName"] for d in body["Data"]["Data"]] == ["dev-0", "dev-99"]


# -- QueryDevice ---------------------------------------------------------------------------------------


async def query_device(api: AliyunApi, registry: SqliteRegistry, **params: str) -> dict[str, Any]:
    return await post(api, registry, Action="QueryDevice", ProductKey=PK, **params)


async def test_query_device_pages_newest_first(registry: SqliteRegistry) -> None:
    created = [f"dev-{i:02d}" for i in range(12)]
    await make_devices(registry, *created)
    await make_devices(registry, "elsewhere", product_key="a1Other")
    api = api_for(registry, Connected(f"{PK}:dev-11"))
    newest_first = created[::-1]

    first = await query_device(api, registry, PageSize="5")
    assert (first["Total"], first["PageSize"], first["PageCount"], first["Page"]) == (12, 5, 3, 1)
    infos = first["Data"]["DeviceInfo"]
    assert [d["DeviceName"] for d in infos] == newest_first[:5]
    assert infos[0]["DeviceStatus"] == "ONLINE" and infos[1]["DeviceStatus"] == "OFFLINE"
    device = await registry.get_product_device(PK, "dev-11")
    assert device is not None
    gmt = time.strptime(infos[0]["GmtCreate"], "%a, %d-%b-%Y %H:%M:%S GMT")
    assert calendar.timegm(gmt) == int(device.identity.created_at)
    assert set(infos[0]) == {
        "IotId",
        "ProductKey",
        "DeviceName",
        "DeviceSecret",
        "DeviceStatus",
        "GmtCreate",
        "GmtModified",
        "UtcCreate",
        "UtcModified",
    }
    assert infos[0]["DeviceSecret"] == device.device_secret and infos[0]["IotId"] == f"{PK}:dev-11"

    by_page = await query_device(api, registry, PageSize="5", CurrentPage="3")
    assert [d["DeviceName"] for d in by_page["Data"]["DeviceInfo"]] == newest_first[10:]
    assert by_page["Page"] == 3 and "NextToken" not in by_page  # the last page

    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = await query_device(api, registry, PageSize="5", **({"NextToken": token} if token else {}))
        pages += 1
        assert page["Page"] == pages
        seen += [d["DeviceName"] for d in page["Data"]["DeviceInfo"]]
        token = page.get("NextToken")
        if token is None:
            break
    assert seen == newest_first and pages == 3

    default = await query_device(api, registry)
    assert default["PageSize"] == 10 and len(default["Data"]["DeviceInfo"]) == 10
    beyond = await query_device(api, registry, CurrentPage="9")
    assert beyond["Data"]["DeviceInfo"] == [] and beyond["Total"] == 12 and "NextToken" not in beyond


async def test_query_device_of_a_product_without_devices(registry: SqliteRegistry) -> None:
    body = await post(api_for(registry, Connected()), registry, Action="QueryDevice", ProductKey="a1Nothing")
    assert body["Success"] is True
    assert (body["Data"], body["Total"], body["PageCount"], body["Page"]) == ({"DeviceInfo": []}, 0, 0, 1)


@pytest.mark.parametrize(
    "params, status, code",
    [
        ({"PageSize": "0"}, 200, "iot.common.InvalidPageParams"),
        ({"PageSize": "51"}, 200, "iot.common.InvalidPageParams"),
        ({"PageSize": "ten"}, 200, "iot.common.InvalidPageParams"),
        ({"PageSize": "9" * 5000}, 200, "iot.common.InvalidPageParams"),
        ({"CurrentPage": "0"}, 200, "iot.common.InvalidPageParams"),
        ({"CurrentPage": "-1"}, 200, "iot.common.InvalidPageParams"),
        ({"PageSize": "50", "CurrentPage": "201"}, 200, "iot.common.InvalidPageParams"),  # 10,050 > 10,000
        ({"NextToken": "not-a-token"}, 200, "InvalidParameter"),
        ({"NextToken": base64.urlsafe_b64encode(b"mh1:a1Other:10").decode()}, 200, "InvalidParameter"),
        (
            {"NextToken": base64.urlsafe_b64encode(b"mh1:a1Status:999999").decode()},
            200,
            "iot.common.InvalidPageParams",
        ),
        ({"ProductKey": ""}, 400, "MissingParameter"),
    ],
)
async def test_query_device_errors(
    registry: SqliteRegistry, params: dict[str, str], status: int, code: str
) -> None:
    body = await post(
        api_for(registry, Connected()), registry, **{"Action": "QueryDevice", "ProductKey": PK, **params}
    )
    assert (body["status"], body["Code"]) == (status, code)


async def test_query_device_accepts_the_limits(registry: SqliteRegistry) -> None:
    body = await query_device(api_for(registry, Connected()), registry, PageSize="50", CurrentPage="200")
    assert body["Success"] is True and body["Page"] == 200  # exactly 10,000


# -- QueryDeviceStatistics -------------------------------------------------------------------------------


async def test_query_device_statistics(registry: SqliteRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pop_devices, "STATISTICS_BATCH", 2)  # several batches of devices
    await make_devices(registry, "dev-1", "dev-2", "dev-3", "dev-4", "dev-5")
    await make_devices(registry, "dev-x", product_key="a1Other")
    await registry.create_identity("pump-17")
    await registry.create_identity("pump-17", "module-1")  # a module is no device
    presence = Connected(f"{PK}:dev-1", f"{PK}:dev-4", "a1Other:dev-x", "pump-17")
    api = api_for(registry, presence)

    product = await post(api, registry, Action="QueryDeviceStatistics", ProductKey=PK)
    assert product["Data"] == {"deviceCount": 5, "activeCount": 5, "onlineCount": 2}
    assert max(len(asked) for asked in presence.asked) == 2
    everything = await post(api, registry, Action="QueryDeviceStatistics")
    assert everything["Data"] == {"deviceCount": 7, "activeCount": 7, "onlineCount": 4}
    none = await post(api, registry, Action="QueryDeviceStatistics", ProductKey="a1Nothing")
    assert none["Data"] == {"deviceCount": 0, "activeCount": 0, "onlineCount": 0}
    bad = await post(api, registry, Action="QueryDeviceStatistics", ProductKey="a1:PK")
    assert bad["Code"] == "InvalidParameter"


async def test_the_actions_need_registry_read(registry: SqliteRegistry) -> None:
    """Signed with the ``service`` policy (ServiceConnect only): refused before anything is read."""
    from urllib.parse import urlencode

    from methodhub.dialects.aliyun.signing import sign_pop_request
    from methodhub.http.messages import Request, Response
    from tests.unit.aliyun.test_pop_api import FORM

    service = await registry.get_policy("service")
    assert service is not None
    api = api_for(registry, Connected())
    for action in (
        "GetDeviceStatus",
        "BatchGetDeviceState",
        "BatchQueryDeviceDetail",
        "QueryDevice",
        "QueryDeviceStatistics",
    ):
        params = {"Version": "2018-01-20", "Action": action, "ProductKey": PK}
        signed = sign_pop_request("POST", params, service.name, service.keys.primary)
        result = api.handle(Request("POST", "/", headers=FORM, body=urlencode(signed).encode()))
        response = result if isinstance(result, Response) else await result
        assert response.status == 403, action


# -- the field names, checked against Alibaba's typed SDK models ---------------------------------------------


def without_nones(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nones(v) for v in value]
    return value


async def test_every_answer_has_only_fields_alibabas_sdk_models_know(registry: SqliteRegistry) -> None:
    """``alibabacloud_iot20180120``'s response models read the fields they define and write them back:
    an answer that survives ``from_map(...).to_map()`` unchanged has no misnamed field (and the
    types the SDK expects survive too: a model keeps what it reads)."""
    from alibabacloud_iot20180120 import models

    await make_devices(registry, "on-dev", "off-dev", "dis-dev")
    await registry.update_identity(f"{PK}:dis-dev", status="disabled")
    api = api_for(registry, Connected(f"{PK}:on-dev"))
    every = names("DeviceName", ["on-dev", "off-dev", "dis-dev"])
    cases = [
        (
            models.GetDeviceStatusResponseBody,
            {"Action": "GetDeviceStatus", "ProductKey": PK, "DeviceName": "on-dev"},
        ),
        (
            models.BatchGetDeviceStateResponseBody,
            {"Action": "BatchGetDeviceState", "ProductKey": PK, **every},
        ),
        (
            models.BatchQueryDeviceDetailResponseBody,
            {"Action": "BatchQueryDeviceDetail", "ProductKey": PK, **every},
        ),
        (models.QueryDeviceResponseBody, {"Action": "QueryDevice", "ProductKey": PK, "PageSize": "2"}),
        (models.QueryDeviceStatisticsResponseBody, {"Action": "QueryDeviceStatistics"}),
        (
            models.QueryDeviceDetailResponseBody,
            {"Action": "QueryDeviceDetail", "ProductKey": PK, "DeviceName": "on-dev"},
        ),
    ]
    for model, params in cases:
        body = await post(api, registry, **params)
        del body["status"]
        assert body["Success"] is True, body
        assert model().from_map(body).to_map() == without_nones(body), params["Action"]
    error = await post(api, registry, Action="QueryDevice", ProductKey=PK, PageSize="99")
    del error["status"]
    assert models.QueryDeviceResponseBody().from_map(error).to_map() == error
