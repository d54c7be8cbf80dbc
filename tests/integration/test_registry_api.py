"""The device registry over HTTP, in Azure's shapes; OpenAPI; metrics."""

from __future__ import annotations

import base64
import json

import pytest
from openapi_spec_validator import validate

from tests.support import Backend, HubProcess, PahoDevice, error_code

PRIMARY = base64.b64encode(b"p" * 32).decode()
SECONDARY = base64.b64encode(b"s" * 32).decode()


def _auth(backend: Backend, **extra: str) -> dict[str, str]:
    return {"Authorization": backend.token, **extra}


def test_create_get_update_delete_device(backend: Backend, device_id: str) -> None:
    body = {
        "deviceId": device_id,
        "status": "enabled",
        "authentication": {"type": "sas", "symmetricKey": {"primaryKey": PRIMARY, "secondaryKey": SECONDARY}},
        "capabilities": {"iotEdge": False},
    }
    created = backend.http.put(
        f"/devices/{device_id}?api-version=2021-04-12", json=body, headers=_auth(backend)
    )
    assert created.status_code == 200, created.text
    doc = created.json()
    assert doc["deviceId"] == device_id
    assert doc["authentication"] == {
        "symmetricKey": {"primaryKey": PRIMARY, "secondaryKey": SECONDARY},
        "x509Thumbprint": {"primaryThumbprint": None, "secondaryThumbprint": None},
        "type": "sas",
    }
    assert doc["status"] == "enabled" and doc["connectionState"] == "Disconnected"
    for key in ("generationId", "etag", "statusUpdatedTime", "lastActivityTime", "cloudToDeviceMessageCount"):
        assert key in doc
    assert created.headers["etag"] == f'"{doc["etag"]}"'

    got = backend.http.get(f"/devices/{device_id}", headers=_auth(backend))
    assert got.status_code == 200 and got.json()["etag"] == doc["etag"]

    again = backend.http.put(f"/devices/{device_id}", json=body, headers=_auth(backend))
    assert again.status_code == 409 and error_code(again) == 409001

    stale = backend.http.put(
        f"/devices/{device_id}",
        json={**body, "status": "disabled"},
        headers=_auth(backend, **{"If-Match": '"not-the-etag"'}),
    )
    assert stale.status_code == 412 and error_code(stale) == 412001

    updated = backend.http.put(
        f"/devices/{device_id}",
        json={**body, "status": "disabled", "statusReason": "maintenance"},
        headers=_auth(backend, **{"If-Match": f'"{doc["etag"]}"'}),
    )
    assert updated.status_code == 200
    assert updated.json()["status"] == "disabled" and updated.json()["statusReason"] == "maintenance"
    assert updated.json()["etag"] != doc["etag"]

    deleted = backend.http.delete(f"/devices/{device_id}", headers=_auth(backend, **{"If-Match": "*"}))
    assert deleted.status_code == 204 and deleted.content == b""
    gone = backend.http.get(f"/devices/{device_id}", headers=_auth(backend))
    assert gone.status_code == 404 and error_code(gone) == 404001
    assert backend.http.delete(f"/devices/{device_id}", headers=_auth(backend)).status_code == 404


def test_put_without_keys_generates_them_and_they_authenticate(
    shared_hub: HubProcess, backend: Backend, device_id: str
) -> None:
    created = backend.http.put(f"/devices/{device_id}", json={"deviceId": device_id}, headers=_auth(backend))
    assert created.status_code == 200
    keys = created.json()["authentication"]["symmetricKey"]
    assert len(base64.b64decode(keys["primaryKey"])) == 32 and keys["primaryKey"] != keys["secondaryKey"]
    dev = PahoDevice(shared_hub, device_id, keys["primaryKey"])
    try:
        assert dev.connect() == 0
        shown = backend.http.get(f"/devices/{device_id}", headers=_auth(backend)).json()
        assert shown["connectionState"] == "Connected"
    finally:
        dev.close()


def test_registry_validation_errors(backend: Backend) -> None:
    bad_id = backend.http.put("/devices/bad%23id", json={}, headers=_auth(backend))
    assert bad_id.status_code == 400 and error_code(bad_id) == 400004
    mismatch = backend.http.put("/devices/a1", json={"deviceId": "a2"}, headers=_auth(backend))
    assert mismatch.status_code == 400
    x509 = backend.http.put(
        "/devices/a3", json={"authentication": {"type": "selfSigned"}}, headers=_auth(backend)
    )
    assert x509.status_code == 400
    bad_key = backend.http.put(
        "/devices/a4",
        json={"authentication": {"type": "sas", "symmetricKey": {"primaryKey": "!!", "secondaryKey": "!!"}}},
        headers=_auth(backend),
    )
    assert bad_key.status_code == 400


@pytest.mark.parametrize(
    "body, says",
    [
        ({"capabilities": "iotEdge"}, "capabilities must be a JSON object; got a string"),
        ({"capabilities": {"iotEdge": "yes"}}, "capabilities.iotEdge must be true or false"),
        ({"authentication": {"symmetricKey": "abc"}}, "authentication.symmetricKey must be a JSON object"),
        ({"statusReason": {"why": 1}}, "statusReason must be a string; got an object"),
        ({"statusReason": "x" * 129}, "statusReason has at most 128 characters"),
    ],
)
def test_wrongly_typed_registry_fields_are_400_not_500(
    backend: Backend, device_id: str, body: dict, says: str
) -> None:
    response = backend.http.put(f"/devices/{device_id}", json=body, headers=_auth(backend))
    assert response.status_code == 400 and error_code(response) == 400004, response.text
    assert says in json.loads(response.json()["Message"])["message"]
    assert backend.http.get(f"/devices/{device_id}", headers=_auth(backend)).status_code == 404
    # ...and on an update, too (If-Match: the device exists).
    assert backend.http.put(f"/devices/{device_id}", json={}, headers=_auth(backend)).status_code == 200
    update = backend.http.put(f"/devices/{device_id}", json=body, headers=_auth(backend, **{"If-Match": "*"}))
    assert update.status_code == 400 and error_code(update) == 400004


def test_registry_rights_are_enforced(shared_hub: HubProcess, backend: Backend, device_id: str) -> None:
    service_only = {"Authorization": shared_hub.service_token("service")}
    assert backend.http.get(f"/devices/{device_id}", headers=service_only).status_code == 401
    read_only = {"Authorization": shared_hub.service_token("registryRead")}
    assert backend.http.put(f"/devices/{device_id}", json={}, headers=read_only).status_code == 401
    assert backend.http.get("/devices", headers=read_only).status_code == 200


def test_list_devices(backend: Backend, device_id: str) -> None:
    for suffix in ("a", "b"):
        backend.http.put(f"/devices/{device_id}-{suffix}", json={}, headers=_auth(backend))
    listed = backend.http.get("/devices?top=10000", headers=_auth(backend))
    ids = [d["deviceId"] for d in listed.json()]
    assert f"{device_id}-a" in ids and f"{device_id}-b" in ids
    assert ids == sorted(ids)


def test_unknown_route_and_method(backend: Backend) -> None:
    missing = backend.http.get("/nothing-here")
    assert missing.status_code == 404 and json.loads(missing.json()["Message"])["errorCode"] == 404000
    wrong = backend.http.get("/twins/x/methods")
    assert wrong.status_code == 405 and "POST" in wrong.headers["allow"]


def test_openapi_document_is_valid(backend: Backend) -> None:
    doc = backend.http.get("/openapi.json").json()
    validate(doc)
    assert "/twins/{deviceId}/methods" in doc["paths"]
    assert {"/console/events", "/console/session"} <= doc["paths"].keys()


def test_metrics_count_calls_by_outcome(shared_hub: HubProcess, backend: Backend) -> None:
    before = shared_hub.metric('methodhub_calls_total{outcome="device_not_found"}')
    backend.invoke("no-such-device-for-metrics", "m")
    assert shared_hub.metric('methodhub_calls_total{outcome="device_not_found"}') == before + 1
