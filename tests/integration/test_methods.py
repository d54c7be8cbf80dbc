"""Direct methods end to end: a real hub, paho-mqtt as the device, httpx as the backend."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.support import Backend, HubProcess, PahoDevice, error_code


@pytest.fixture
def device(shared_hub: HubProcess, device_id: str):
    dev = PahoDevice(shared_hub, device_id, shared_hub.create_device(device_id)).online()
    yield dev
    dev.close()


def test_call_reaches_device_and_returns_its_status_and_payload(device: PahoDevice, backend: Backend) -> None:
    device.serve(lambda name, payload: (201, json.dumps({"got": json.loads(payload), "name": name}).encode()))
    response = backend.invoke(device.device_id, "reboot", {"delay": 5, "list": [1, "two", None]})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "status": 201,
        "payload": {"got": {"delay": 5, "list": [1, "two", None]}, "name": "reboot"},
    }


@pytest.mark.parametrize(
    "request_payload, device_body, expected",
    [
        (None, b"", None),  # empty device body means null
        ("text", b'"just a string"', "just a string"),
        ([1, 2], b"[3, 4]", [3, 4]),
        (3.5, b"12345678901234567890123", 12345678901234567890123),  # big integers survive
        ({"id": 2**70, "ok": [True]}, b"{}", {}),  # ... both ways: the device gets 2**70 exactly
    ],
)
def test_payload_shapes(device: PahoDevice, backend: Backend, request_payload, device_body, expected) -> None:
    seen: list[bytes] = []
    device.serve(lambda name, payload: (seen.append(payload) or 200, device_body))
    response = backend.invoke(device.device_id, "m", request_payload)
    assert response.status_code == 200, response.text
    assert response.json()["payload"] == expected
    assert json.loads(seen[0]) == request_payload


def test_device_response_that_is_not_json_is_a_clear_error(device: PahoDevice, backend: Backend) -> None:
    device.serve(lambda name, payload: (200, b"hello world"))
    response = backend.invoke(device.device_id, "m")
    assert response.status_code == 502
    assert error_code(response) == 502001


def test_unknown_device_is_404001(backend: Backend) -> None:
    response = backend.invoke("no-such-device", "m")
    assert response.status_code == 404
    assert error_code(response) == 404001
    assert response.headers["iothub-errorcode"] == "DeviceNotFound"


def test_registered_but_offline_device_is_404103_at_once(
    shared_hub: HubProcess, backend: Backend, device_id: str
) -> None:
    shared_hub.create_device(device_id)
    response = backend.invoke(device_id, "m", responseTimeoutInSeconds=30)
    # at once: waiting for the response timeout would have answered 504101, a connect wait another timeout
    assert response.status_code == 404
    body = response.json()
    assert set(body) == {"Message", "ExceptionMessage"}
    inner = json.loads(body["Message"])
    assert inner["errorCode"] == 404103
    assert inner["info"] == {"timeout": "00:00:00"}


def test_connected_but_not_subscribed_device_is_offline(
    shared_hub: HubProcess, backend: Backend, device_id: str
) -> None:
    dev = PahoDevice(shared_hub, device_id, shared_hub.create_device(device_id))
    assert dev.connect() == 0
    try:
        response = backend.invoke(device_id, "m")
        assert response.status_code == 404 and error_code(response) == 404103
    finally:
        dev.close()


def test_device_that_does_not_answer_times_out_with_504101(device: PahoDevice, backend: Backend) -> None:
    response = backend.invoke(device.device_id, "m", responseTimeoutInSeconds=5)
    assert response.status_code == 504
    assert error_code(response) == 504101
    name, _rid, _ = device.next_request()  # it was delivered
    assert name == "m"


def test_connect_timeout_waits_for_the_device_then_delivers(
    shared_hub: HubProcess, backend: Backend, device_id: str
) -> None:
    key = shared_hub.create_device(device_id)
    dev = PahoDevice(shared_hub, device_id, key)

    def come_online_later() -> None:
        time.sleep(1.5)
        dev.online()
        dev.serve(lambda name, payload: (200, b'{"late": true}'))

    threading.Thread(target=come_online_later, daemon=True).start()
    try:
        response = backend.invoke(device_id, "m", connectTimeoutInSeconds=20)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": 200, "payload": {"late": True}}
    finally:
        dev.close()


def test_connect_timeout_that_expires_is_404103(
    shared_hub: HubProcess, backend: Backend, device_id: str
) -> None:
    shared_hub.create_device(device_id)
    started = time.monotonic()
    response = backend.invoke(device_id, "m", connectTimeoutInSeconds=2)
    elapsed = time.monotonic() - started
    assert response.status_code == 404 and error_code(response) == 404103
    assert json.loads(response.json()["Message"])["info"] == {"timeout": "00:00:02"}
    assert elapsed >= 1.9


def test_disconnect_mid_call_answers_the_caller_at_once(device: PahoDevice, backend: Backend) -> None:
    def drop_on_request() -> None:
        device.next_request()
        device.client.disconnect()

    threading.Thread(target=drop_on_request, daemon=True).start()
    response = backend.invoke(device.device_id, "m", responseTimeoutInSeconds=60)
    assert response.status_code == 404
    assert error_code(response) == 404104  # at once: the response timeout would have answered 504101


def test_takeover_closes_the_first_connection_and_keeps_the_session(
    shared_hub: HubProcess, backend: Backend, device_id: str
) -> None:
    key = shared_hub.create_device(device_id)
    first = PahoDevice(shared_hub, device_id, key).online()
    second = PahoDevice(shared_hub, device_id, key)
    try:
        assert second.connect() == 0
        first.disconnects.get(timeout=10)  # the hub closed the first connection
        # CleanSession=0: the second connection never subscribed, yet receives calls.
        second.serve(lambda name, payload: (200, b'"second"'))
        response = backend.invoke(device_id, "m")
        assert response.json() == {"status": 200, "payload": "second"}
    finally:
        first.client.loop_stop()
        second.close()


def test_clean_session_1_does_not_keep_subscriptions(
    shared_hub: HubProcess, backend: Backend, device_id: str
) -> None:
    key = shared_hub.create_device(device_id)
    dev = PahoDevice(shared_hub, device_id, key, clean_session=True).online()
    dev.close()
    again = PahoDevice(shared_hub, device_id, key, clean_session=True)
    try:
        assert again.connect() == 0
        response = backend.invoke(device_id, "m")
        assert response.status_code == 404 and error_code(response) == 404103
    finally:
        again.close()


def test_response_on_reconnected_connection_with_qos1_is_acknowledged(
    device: PahoDevice, backend: Backend
) -> None:
    results: list = []
    thread = threading.Thread(target=lambda: results.append(backend.invoke(device.device_id, "m")))
    thread.start()
    _, rid, _ = device.next_request()
    info = device.client.publish(f"$iothub/methods/res/200/?$rid={rid}", b'{"ok": 1}', qos=1)
    info.wait_for_publish(timeout=10)
    assert info.is_published()  # the hub sent PUBACK
    thread.join(10)
    assert results[0].json() == {"status": 200, "payload": {"ok": 1}}


def test_stray_responses_are_dropped_and_counted(
    shared_hub: HubProcess, backend: Backend, device_id: str
) -> None:
    key_a = shared_hub.create_device(device_id + "-a")
    key_b = shared_hub.create_device(device_id + "-b")
    a = PahoDevice(shared_hub, device_id + "-a", key_a).online()
    b = PahoDevice(shared_hub, device_id + "-b", key_b).online()
    try:
        before = shared_hub.metric("methodhub_stray_responses_total")
        results: list = []
        thread = threading.Thread(
            target=lambda: results.append(backend.invoke(a.device_id, "m", responseTimeoutInSeconds=10))
        )
        thread.start()
        _, rid, _ = a.next_request()
        b.respond(rid, 500, b'"from the wrong device"')  # another device's rid
        a.respond("ffffffffff", 500, b'"unknown rid"')  # unknown rid
        a.respond(rid, 200, b'"right"')
        thread.join(15)
        a.respond(rid, 500, b'"already answered"')  # answered twice
        assert results[0].json() == {"status": 200, "payload": "right"}
        deadline = time.monotonic() + 5
        while (
            shared_hub.metric("methodhub_stray_responses_total") < before + 3 and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert shared_hub.metric("methodhub_stray_responses_total") == before + 3
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"not json", 400, 400004),
        (b"[]", 400, 400004),
        (b'{"payload": 1}', 400, 400004),
        (b'{"methodName": "a/b"}', 400, 400004),
        (b'{"methodName": "m", "responseTimeoutInSeconds": 4}', 400, 400004),
        (b'{"methodName": "m", "responseTimeoutInSeconds": 301}', 400, 400004),
        (b'{"methodName": "m", "responseTimeoutInSeconds": "10"}', 400, 400004),
        (b'{"methodName": "m", "connectTimeoutInSeconds": -1}', 400, 400004),
        (b'{"methodName": "m", "connectTimeoutInSeconds": 301}', 400, 400004),
        # 1,000 levels deep: was a RecursionError (500) re-encoding it; now the depth limit.
        (b'{"methodName": "m", "payload": ' + b"[" * 1000 + b"]" * 1000 + b"}", 400, 400004),
        # A long integer sends the body through the exact (stdlib) parser, which read 1e999 as
        # infinity and delivered null; it is refused like NaN.
        (b'{"methodName": "m", "payload": [1e999, 12345678901234567890]}', 400, 400004),
    ],
)
def test_bad_bodies_are_400(backend: Backend, body: bytes, status: int, code: int) -> None:
    response = backend.http.post(
        "/twins/whatever/methods", content=body, headers={"Authorization": backend.token}
    )
    assert response.status_code == status
    assert error_code(response) == code
    assert json.loads(response.json()["Message"])["message"]


def test_payload_over_128_kib_is_413(backend: Backend, device: PahoDevice) -> None:
    response = backend.invoke(device.device_id, "m", "x" * (128 * 1024))
    assert response.status_code == 413
    assert error_code(response) == 413001
    ok = backend.invoke(device.device_id, "m", "x" * (120 * 1024), responseTimeoutInSeconds=5)
    assert ok.status_code == 504  # under the limit it was delivered (and not answered)
    assert len(device.next_request()[2]) == 120 * 1024 + 2


def test_a_device_response_over_128_kib_is_413_for_the_caller(backend: Backend, device: PahoDevice) -> None:
    """Issue 9: it used to be passed on to the caller."""
    device.serve(lambda name, payload: (200, b'"' + b"x" * (128 * 1024) + b'"'))
    response = backend.invoke(device.device_id, "big")
    assert response.status_code == 413
    assert error_code(response) == 413001
    assert "at most 131072 bytes" in response.text


def test_huge_http_body_is_refused_without_reading_it(backend: Backend) -> None:
    response = backend.http.post(
        "/twins/x/methods",
        content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={"Authorization": backend.token},
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "garbage",
        "bad-signature",
        "expired",
        "unknown-policy",
        "no-rights",
        "se-thousands-of-digits",
        "se-signed-10e400",
    ],
)
def test_bad_service_tokens_are_401(shared_hub: HubProcess, backend: Backend, kind: str) -> None:
    from tests.support import sign

    cs = shared_hub.service_cs()
    now = int(time.time())
    tokens = {
        "missing": None,
        "garbage": "Bearer abc",
        "bad-signature": sign(
            cs["HostName"], "c2VjcmV0c2VjcmV0c2VjcmV0", now + 600, "iothubowner", quoted=False
        ),
        "expired": sign(cs["HostName"], cs["SharedAccessKey"], now - 10, "iothubowner", quoted=False),
        "unknown-policy": sign(cs["HostName"], cs["SharedAccessKey"], now + 600, "nobody", quoted=False),
        "no-rights": shared_hub.service_token("registryRead"),
        # issue 9: these answered 500 (int() of 5,000 digits; float() of a validly signed 10**400)
        "se-thousands-of-digits": f"SharedAccessSignature sr={cs['HostName']}&sig=x&se={'9' * 5000}"
        "&skn=iothubowner",
        "se-signed-10e400": sign(cs["HostName"], cs["SharedAccessKey"], 10**400, "iothubowner", quoted=False),
    }
    headers = {} if tokens[kind] is None else {"Authorization": tokens[kind]}
    response = backend.http.post("/twins/x/methods", json={"methodName": "m"}, headers=headers)
    assert response.status_code == 401
    assert error_code(response) == 401002


def test_service_token_with_port_in_sr_is_accepted(shared_hub: HubProcess, backend: Backend) -> None:
    from tests.support import sign

    cs = shared_hub.service_cs("service")
    port = shared_hub.ports["http"]
    token = sign(
        f"{cs['HostName']}:{port}", cs["SharedAccessKey"], int(time.time()) + 600, "service", quoted=False
    )
    response = backend.http.post(
        "/twins/nobody-here/methods",
        json={"methodName": "m"},
        headers={"Authorization": token, "Host": f"localhost:{port}"},
    )
    assert response.status_code == 404 and error_code(response) == 404001


def test_device_ids_are_path_decoded(shared_hub: HubProcess, backend: Backend) -> None:
    device_id = "odd%id(1)!"
    key = shared_hub.create_device(device_id)
    dev = PahoDevice(shared_hub, device_id, key).online()
    try:
        dev.serve(lambda name, payload: (200, b"1"))
        response = backend.invoke(device_id, "m")  # sent as /twins/odd%25id%281%29%21/methods
        assert response.json() == {"status": 200, "payload": 1}
    finally:
        dev.close()


def test_many_concurrent_calls_each_get_their_own_answer(device: PahoDevice, backend: Backend) -> None:
    device.serve(lambda name, payload: (200, payload))
    results: dict[int, dict] = {}

    def call(i: int) -> None:
        response = backend.http.post(
            f"/twins/{device.device_id}/methods",
            json={"methodName": "m", "payload": {"i": i}},
            headers={"Authorization": backend.token},
        )
        results[i] = response.json()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {i: {"status": 200, "payload": {"i": i}} for i in range(40)}


def test_an_encoded_slash_in_a_device_id_does_not_reach_a_module(
    shared_hub: HubProcess, backend: Backend, device_id: str
) -> None:
    from tests.support import HOSTNAME, parse_cs, sign

    shared_hub.create_device(device_id)
    module_key = parse_cs(shared_hub.cli("device", "create", device_id, "--module", "b").stdout)[
        "SharedAccessKey"
    ]
    token = sign(f"{HOSTNAME}/devices/{device_id}/modules/b", module_key, int(time.time()) + 3600)
    module = PahoDevice(shared_hub, f"{device_id}/b", None, password=token).online()
    try:
        module.serve(lambda name, payload: (200, b'"module b answered"'))
        assert backend.invoke(device_id, "m", module_id="b").json()["payload"] == "module b answered"
        response = backend.http.post(
            f"/twins/{device_id}%2Fb/methods",
            json={"methodName": "m"},
            headers={"Authorization": backend.token},
        )
        assert response.status_code == 400 and error_code(response) == 400004, response.text
        assert "cannot contain '/'" in json.loads(response.json()["Message"])["message"]
        as_module = backend.http.post(
            f"/twins/{device_id}/modules/b%2Fc/methods",
            json={"methodName": "m"},
            headers={"Authorization": backend.token},
        )
        assert as_module.status_code == 400 and error_code(as_module) == 400004
    finally:
        module.close()
