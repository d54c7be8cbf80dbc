"""Thing models (TSL): validation, the sync/async choice, ImportThingModelTsl / GetThingModelTsl,
and InvokeThingService / InvokeThingsService / CreateJob on async services, through the POP front
door on real queued calls over SQLite (a stub engine stands for the device)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from alibabacloud_iot20180120 import models as tea

from methodhub.calls import CallOutcome
from methodhub.calls.delivery import QueuedCalls
from methodhub.calls.queued import CallState
from methodhub.dialects.aliyun.pop import AliyunApi
from methodhub.dialects.aliyun.pop_auth import PopAuthenticator
from methodhub.dialects.aliyun.pop_jobs import PopJobs
from methodhub.dialects.aliyun.pop_tsl import ThingModels
from methodhub.dialects.aliyun.thing_model import call_type, parse_tsl, tsl_call_type
from methodhub.errors import ErrorKind, HubError
from methodhub.job_runner import JobRunner
from methodhub.registry import SqliteRegistry
from tests.unit.aliyun.test_pop_api import NobodyOnline, StubEngine, post
from tests.unit.aliyun.test_pop_jobs import names, tea_reads

PK = "a1Tsl"
TSL = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"productKey": PK},
    "properties": [{"identifier": "Temp", "dataType": {"type": "float"}}],
    "events": [],
    "services": [
        {
            "identifier": "Echo",
            "callType": "async",
            "inputData": [],
            "outputData": [],
            "method": "thing.service.Echo",
        },
        {"identifier": "Now", "callType": "sync", "inputData": [], "outputData": []},
    ],
}
TSL_TEXT = json.dumps(TSL)


# -- validation -------------------------------------------------------------------------------------


def test_a_tsl_is_read_for_its_services_only() -> None:
    assert parse_tsl(TSL_TEXT) == {"Echo": "async", "Now": "sync"}
    assert parse_tsl('{"services": []}') == {}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "not JSON"),
        ("[1]", "JSON object"),
        ('{"properties": []}', '"services" list'),
        ('{"services": {}}', '"services" list'),
        ('{"services": [1]}', "services[0] is not an object"),
        ('{"services": [{"callType": "sync"}]}', "services[0].identifier missing"),
        ('{"services": [{"identifier": "a-b", "callType": "sync"}]}', "'a-b' is not a service identifier"),
        ('{"services": [{"identifier": "Echo"}]}', "(Echo): callType missing"),
        ('{"services": [{"identifier": "Echo", "callType": "ASYNC"}]}', "callType 'ASYNC' must be"),
        (
            '{"services": [{"identifier": "E", "callType": "sync"}, '
            '{"identifier": "E", "callType": "async"}]}',
            "services[1]: the service 'E' is defined twice",
        ),
        ('{"services": [], "pad": "' + "x" * 262_144 + '"}', "the limit is 262144 bytes"),
    ],
)
def test_bad_tsls_are_refused_saying_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(HubError) as raised:
        parse_tsl(text)
    assert raised.value.kind is ErrorKind.INVALID_ARGUMENT
    assert words in raised.value.message


# -- the choice -------------------------------------------------------------------------------------


def test_default_is_sync() -> None:
    assert tsl_call_type(None, "Echo") == "sync"  # no TSL
    assert tsl_call_type(TSL_TEXT, "Other") == "sync"  # no such service
    assert tsl_call_type(TSL_TEXT, "Now") == "sync"
    assert tsl_call_type(TSL_TEXT, "Echo") == "async"


async def test_choice_by_product_and_module(registry: SqliteRegistry) -> None:
    assert await call_type(registry, PK, "Echo") == "sync"
    await registry.set_product_tsl(PK, TSL_TEXT)
    await registry.set_product_tsl(
        PK, '{"services": [{"identifier": "Charge", "callType": "async"}]}', "Battery"
    )
    assert await call_type(registry, PK, "Echo") == "async"
    assert await call_type(registry, PK, "Charge") == "sync"  # the default module has no Charge
    assert await call_type(registry, PK, "Battery:Charge") == "async"
    assert await call_type(registry, PK, "Battery:Echo") == "sync"  # that module has no Echo
    assert await call_type(registry, PK, "Motor:Echo") == "sync"  # no such module
    assert await call_type(registry, "a1Other", "Echo") == "sync"  # another product
    assert await call_type(registry, None, "Echo") == "sync"  # not an Alibaba device
    await registry.create_product_device(PK, "dev1")
    await registry.create_identity(f"{PK}:azure")  # an Azure device with an id of that shape
    models = ThingModels(registry, None)  # type: ignore[arg-type]
    assert await models.call_type(f"{PK}:dev1", "Echo") == "async"
    assert await models.call_type(f"{PK}:azure", "Echo") == "sync"
    assert await models.call_type("pump-17", "Echo") == "sync"


# -- the POP actions --------------------------------------------------------------------------------


class Ready:
    async def wait_ready(self, target: str, timeout: float) -> bool:
        return target != f"{PK}:asleep"


@pytest.fixture
async def api(registry: SqliteRegistry) -> AsyncIterator[tuple[AliyunApi, StubEngine, QueuedCalls]]:
    engine = StubEngine(CallOutcome(200, b'{"done":1}'))
    calls = QueuedCalls(registry, engine, Ready(), registry, "n1", sweep_interval=3600, settle_delay=0)  # type: ignore[arg-type]
    runner = JobRunner(registry, calls, "n1", interval=3600)
    front = AliyunApi(engine, registry, PopAuthenticator(registry), NobodyOnline())  # type: ignore[arg-type]
    models = ThingModels(registry, calls)
    front.async_services = models
    front.add_actions(models.actions())
    front.add_actions(PopJobs(runner, models).actions())
    for name in ("dev1", "dev2", "asleep"):
        await registry.create_product_device(PK, name)
    await registry.create_product_device("a1Other", "dev1")
    yield front, engine, calls
    await runner.stop()
    await calls.stop()


async def test_import_then_get(
    api: tuple[AliyunApi, StubEngine, QueuedCalls], registry: SqliteRegistry
) -> None:
    front, _, _ = api
    body = await post(front, registry, Action="ImportThingModelTsl", ProductKey=PK, TslStr=TSL_TEXT)
    assert body == {"status": 200, "RequestId": body["RequestId"], "Success": True}
    tea_reads(tea.ImportThingModelTslResponseBody, body)
    got = await post(front, registry, Action="GetThingModelTsl", ProductKey=PK, Simple="false")
    assert got["Success"] is True and got["Data"] == {"TslStr": TSL_TEXT}  # as given, extras kept
    tea_reads(tea.GetThingModelTslResponseBody, got)
    module = await post(
        front,
        registry,
        Action="ImportThingModelTsl",
        ProductKey="a1New",
        FunctionBlockId="Battery",
        TslStr='{"services":[]}',
    )
    assert module["Success"] is True
    got = await post(
        front, registry, Action="GetThingModelTsl", ProductKey="a1New", FunctionBlockId="Battery"
    )
    assert got["Data"] == {"TslStr": '{"services":[]}'}


BAD_IMPORTS: list[tuple[dict[str, str], str, str]] = [
    ({"TslStr": TSL_TEXT}, "MissingParameter", "ProductKey"),
    ({"ProductKey": PK}, "MissingParameter", "TslStr"),
    ({"ProductKey": PK, "TslUrl": "https://example.com/tsl.json"}, "InvalidParameter", "TslUrl"),
    ({"ProductKey": PK, "TslStr": "{"}, "InvalidParameter", "not JSON"),
    (
        {"ProductKey": PK, "TslStr": '{"services":[{"identifier":"X","callType":"maybe"}]}'},
        "InvalidParameter",
        "callType",
    ),
    ({"ProductKey": "a1:PK", "TslStr": TSL_TEXT}, "InvalidParameter", "ProductKey"),
    ({"ProductKey": PK, "FunctionBlockId": "a b", "TslStr": TSL_TEXT}, "InvalidParameter", "FunctionBlockId"),
]


@pytest.mark.parametrize(("params", "code", "words"), BAD_IMPORTS)
async def test_bad_imports(
    api: tuple[AliyunApi, StubEngine, QueuedCalls],
    registry: SqliteRegistry,
    params: dict[str, str],
    code: str,
    words: str,
) -> None:
    front, _, _ = api
    body = await post(front, registry, Action="ImportThingModelTsl", **params)
    assert body["Code"] == code and words in (body.get("ErrorMessage") or body.get("Message") or "")
    assert await registry.get_product_tsl(PK) is None


async def test_get_without_a_tsl(
    api: tuple[AliyunApi, StubEngine, QueuedCalls], registry: SqliteRegistry
) -> None:
    front, _, _ = api
    body = await post(front, registry, Action="GetThingModelTsl", ProductKey=PK)
    assert (body["status"], body["Success"], body["Code"]) == (200, False, "iot.tsl.NotExistedTsl")
    assert "methodhub product set-tsl" in body["ErrorMessage"] and "synchronously" in body["ErrorMessage"]


# -- calls ------------------------------------------------------------------------------------------


async def invoke(front: AliyunApi, registry: SqliteRegistry, device: str, identifier: str) -> dict[str, Any]:
    return await post(
        front,
        registry,
        Action="InvokeThingService",
        ProductKey=PK,
        DeviceName=device,
        Identifier=identifier,
        Args='{"x":1}',
    )


async def test_async_invoke_answers_a_message_id_and_records_the_reply(
    api: tuple[AliyunApi, StubEngine, QueuedCalls], registry: SqliteRegistry
) -> None:
    front, engine, calls = api
    await registry.set_product_tsl(PK, TSL_TEXT)
    body = await invoke(front, registry, "dev1", "Echo")
    assert body == {
        "status": 200,
        "RequestId": body["RequestId"],
        "Success": True,
        "Data": {"MessageId": body["Data"]["MessageId"]},
    }
    tea_reads(tea.InvokeThingServiceResponseBody, body)
    done = await calls.wait(body["Data"]["MessageId"], 5)  # the MessageId is the queued call's id
    assert (done.state, done.outcome_status, done.outcome_payload) == (
        CallState.SUCCEEDED,
        200,
        b'{"done":1}',
    )
    sent = engine.calls[-1]
    assert (sent.target, sent.method, sent.payload, sent.response_timeout) == (
        f"{PK}:dev1",
        "async/Echo",
        b'{"x":1}',
        30.0,
    )
    # QueryDeviceServiceData lists it under its identifier, with input and output.
    listed = await post(
        front,
        registry,
        Action="QueryDeviceServiceData",
        ProductKey=PK,
        DeviceName="dev1",
        Identifier="Echo",
        StartTime="0",
        EndTime="4102444800000",
    )
    [info] = listed["Data"]["List"]["ServiceInfo"]
    assert (info["Identifier"], info["InputData"], info["OutputData"]) == ("Echo", '{"x":1}', '{"done":1}')


async def test_sync_services_still_run_synchronously(
    api: tuple[AliyunApi, StubEngine, QueuedCalls], registry: SqliteRegistry
) -> None:
    front, engine, _ = api
    await registry.set_product_tsl(PK, TSL_TEXT)
    for identifier in ("Now", "Undefined"):
        body = await invoke(front, registry, "dev1", identifier)
        assert body["Data"]["Result"] == '{"done":1}' and engine.calls[-1].method == identifier
        assert engine.calls[-1].response_timeout == 8.0
    assert await registry.list_calls(device_id=f"{PK}:dev1") == []  # nothing queued


async def test_async_to_an_offline_device_fails_as_sync_would(
    api: tuple[AliyunApi, StubEngine, QueuedCalls], registry: SqliteRegistry
) -> None:
    front, engine, _ = api
    await registry.set_product_tsl(PK, TSL_TEXT)
    body = await invoke(front, registry, "asleep", "Echo")
    assert (body["Success"], body["Code"]) == (False, "iot.messagebroker.OFFLINE")
    assert engine.calls == [] and await registry.list_calls(device_id=f"{PK}:asleep") == []


async def test_invoke_things_service_sends_async_services_on_the_service_topic(
    api: tuple[AliyunApi, StubEngine, QueuedCalls], registry: SqliteRegistry
) -> None:
    front, _, _ = api
    await registry.set_product_tsl(PK, TSL_TEXT)
    body = await post(
        front,
        registry,
        Action="InvokeThingsService",
        ProductKey=PK,
        Identifier="Echo",
        Args="{}",
        **names("dev1", "dev2"),
    )
    assert body["Success"] is True
    calls = await registry.list_calls(job_id=body["RequestId"])
    assert {(c.device_id, c.method, c.response_timeout) for c in calls} == {
        (f"{PK}:dev1", "async/Echo", 30.0),
        (f"{PK}:dev2", "async/Echo", 30.0),
    }
    body = await post(
        front,
        registry,
        Action="InvokeThingsService",
        ProductKey=PK,
        Identifier="Now",
        Args="{}",
        **names("dev1"),
    )
    assert [(c.method, c.response_timeout) for c in await registry.list_calls(job_id=body["RequestId"])] == [
        ("Now", 8.0)
    ]


async def test_create_job_takes_the_products_call_type(
    api: tuple[AliyunApi, StubEngine, QueuedCalls], registry: SqliteRegistry
) -> None:
    front, _, _ = api
    await registry.set_product_tsl(PK, TSL_TEXT)
    document = json.dumps({"serviceIdentifier": "Echo", "params": {}})
    product = json.dumps({"targetType": "PRODUCT_KEY", "targetProduct": PK})
    body = await post(
        front,
        registry,
        Action="CreateJob",
        JobName="async_job",
        Type="INVOKE_SERVICE",
        JobDocument=document,
        TargetConfig=product,
    )
    job = await registry.get_job(body["JobId"])
    assert job is not None and (job.request["methodName"], job.request["responseTimeoutInSeconds"]) == (
        "async/Echo",
        30.0,
    )
    mixed = json.dumps(
        {
            "targetType": "DEVICE",
            "targetDevices": [
                {"productKey": PK, "deviceName": "dev1"},
                {"productKey": "a1Other", "deviceName": "dev1"},
            ],
        }
    )
    body = await post(
        front,
        registry,
        Action="CreateJob",
        JobName="mixed_job",
        Type="INVOKE_SERVICE",
        JobDocument=document,
        TargetConfig=mixed,
    )
    assert body["Code"] == "InvalidParameter" and "one job per product" in body["ErrorMessage"]
