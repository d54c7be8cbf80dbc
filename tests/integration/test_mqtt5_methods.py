"""Direct methods answered "the MQTT 5 way": a real hub, paho-mqtt v5 as the device answering on the
request's Response Topic with its Correlation Data and a ``status`` user property, httpx as the
backend (docs/azure-compatibility.md, "MQTT 5 request/response")."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support import Backend, HubProcess, PahoDevice, error_code

Request = tuple[str, bytes, Any]
"""(topic, payload, paho's MQTT 5 properties) of a method request."""


class Mqtt5Device:
    """A paho v5 device that records every request with its properties."""

    def __init__(self, hub: HubProcess, device_id: str, transport: str) -> None:
        self.paho = PahoDevice(
            hub, device_id, hub.create_device(device_id), protocol=paho.MQTTv5, transport=transport
        )
        self.requests: queue.Queue[Request] = queue.Queue()
        self.paho.client.on_message = self._on_message
        self.paho.online()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.requests.put((message.topic, bytes(message.payload), message.properties))

    def next_request(self) -> Request:
        return self.requests.get(timeout=10)

    def answer(
        self, request: Request, payload: bytes, user_properties: list[tuple[str, str]], qos: int = 1
    ) -> None:
        """Answer on the request's Response Topic, copying its Correlation Data."""
        _, _, props = request
        answer = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        answer.CorrelationData = props.CorrelationData
        if user_properties:
            answer.UserProperty = user_properties
        info = self.paho.client.publish(props.ResponseTopic, payload, qos=qos, properties=answer)
        info.wait_for_publish(timeout=10)

    def serve(self, handler: Callable[[Request], tuple[bytes, list[tuple[str, str]]]]) -> None:
        def loop() -> None:
            try:
                request = self.next_request()
            except queue.Empty:
                return
            self.answer(request, *handler(request))

        threading.Thread(target=loop, daemon=True).start()


@pytest.fixture(params=["mqtt", "ws"])
def device(shared_hub: HubProcess, device_id: str, request: pytest.FixtureRequest) -> Iterator[Mqtt5Device]:
    dev = Mqtt5Device(shared_hub, device_id, request.param)
    yield dev
    dev.paho.close()


def test_a_v5_device_answers_on_the_response_topic(device: Mqtt5Device, backend: Backend) -> None:
    seen: list[Request] = []

    def handler(request: Request) -> tuple[bytes, list[tuple[str, str]]]:
        seen.append(request)
        return json.dumps({"got": json.loads(request[1])}).encode(), [("status", "201")]

    device.serve(handler)
    response = backend.invoke(device.paho.device_id, "reboot", {"delay": 5})
    assert response.status_code == 200, response.text
    assert response.json() == {"status": 201, "payload": {"got": {"delay": 5}}}
    [(topic, _, props)] = seen
    rid = topic.rpartition("?$rid=")[2]
    assert topic == f"$iothub/methods/POST/reboot/?$rid={rid}"
    assert props.ResponseTopic == "$iothub/methods/response"
    assert props.CorrelationData == rid.encode()


def test_a_v5_answer_without_a_status_is_200(device: Mqtt5Device, backend: Backend) -> None:
    device.serve(lambda request: (b"", []))
    response = backend.invoke(device.paho.device_id, "m")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": 200, "payload": None}


def test_a_v5_answer_with_a_bad_status_is_502001(device: Mqtt5Device, backend: Backend) -> None:
    device.serve(lambda request: (b"{}", [("status", "ok")]))
    response = backend.invoke(device.paho.device_id, "m")
    assert response.status_code == 502
    assert error_code(response) == 502001
    assert "'status' user property" in json.loads(response.json()["Message"])["message"]


def test_a_v5_device_may_still_answer_on_the_rid_topic(device: Mqtt5Device, backend: Backend) -> None:
    def rid_answer() -> None:
        topic, _, _ = device.next_request()
        device.paho.respond(topic.rpartition("?$rid=")[2], 202, b"[1]")

    threading.Thread(target=rid_answer, daemon=True).start()
    response = backend.invoke(device.paho.device_id, "m")
    assert response.json() == {"status": 202, "payload": [1]}
