"""Plumbing for the Alibaba Cloud tests: the official SDKs pointed at a hub, and devices.

* Backend: ``aliyun-python-sdk-core`` + ``aliyun-python-sdk-iot`` (in the ``dev`` extra; they install
  cleanly on Python 3.11). The one clean way to point them at another host is the client-wide
  endpoint override ``client.add_endpoint(region, "Iot", "host:port")`` (aliyunsdkcore/client.py
  ``add_endpoint`` → endpoint resolver entry ``iot.{region}``; plain HTTP is the SDK's default
  protocol), so every request class works unchanged (aliyun-rrpc-wire.md §4).
* Devices: Alibaba's Link SDK for Python (``aliyun-iot-linkkit``), which needs ``paho-mqtt<2``, in a
  side venv (``.venv-interop/linkkit``, made once and cached), running ``linkkit_device.py``;
  and, for hostile or hand-rolled devices, paho-mqtt 2 from the project's venv logging in the way
  Alibaba documents for plain MQTT clients.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from aliyunsdkcore.client import AcsClient
from aliyunsdkiot.request.v20180120.RRpcRequest import RRpcRequest

from tests.interop.support import end_stdin_driven, side_venv
from tests.support import V5_TO_V3_CONNACK, HubProcess, parse_cs

LINKKIT = ["aliyun-iot-linkkit==1.2.13", "paho-mqtt==1.6.1"]
"""The versions aliyun-rrpc-wire.md documents; linkkit breaks on paho-mqtt 2 (wire doc §1.1)."""
DEVICE_SCRIPT = Path(__file__).with_name("linkkit_device.py")
REGION = "cn-shanghai"
TSL = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "properties": [],
    "events": [],
    "services": [
        {"identifier": name, "name": name, "callType": "sync", "inputData": [], "outputData": []}
        for name in ("Echo", "Fail")
    ],
}
"""A thing model with two synchronous services; linkkit only reads the identifiers."""


def linkkit_python() -> Path:
    return side_venv("linkkit", LINKKIT)


def create_product_device(hub: HubProcess, product_key: str, device_name: str, *extra: str) -> dict[str, str]:
    """``methodhub device create --product PK DN``: its ``key=value`` lines as a dict."""
    out = hub.cli("device", "create", "--product", product_key, device_name, *extra).stdout
    lines = out.strip().splitlines()
    return dict(line.split("=", 1) for line in lines)


def pop_client(hub: HubProcess, policy: str = "iothubowner", secret: str | None = None) -> AcsClient:
    """The official client, signing with a shared access policy (AccessKeyId = policy name)."""
    key = (
        secret
        if secret is not None
        else parse_cs(hub.cli("connection-string", "--policy", policy).stdout)["SharedAccessKey"]
    )
    client = AcsClient(policy, key, REGION, timeout=15)
    client.add_endpoint(REGION, "Iot", f"127.0.0.1:{hub.ports['http']}")
    return client


def call(client: AcsClient, request: Any) -> dict[str, Any]:
    """``do_action_with_exception`` and the JSON body (it raises ServerException for non-2xx)."""
    return json.loads(client.do_action_with_exception(request))


def rrpc_request(
    product_key: str, device_name: str, message: bytes, *, timeout_ms: int = 3000, topic: str | None = None
) -> RRpcRequest:
    request = RRpcRequest()
    request.set_ProductKey(product_key)
    request.set_DeviceName(device_name)
    request.set_Timeout(timeout_ms)
    request.set_RequestBase64Byte(base64.b64encode(message).decode())
    if topic is not None:
        request.set_Topic(topic)
    return request


class LinkkitDevice:
    """``linkkit_device.py`` in the side venv; its JSON-line events arrive on :attr:`events`."""

    def __init__(self, python: Path, config: dict[str, Any]) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr_lines: list[str] = []
        self.proc = subprocess.Popen(
            [str(python), str(DEVICE_SCRIPT), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    def next_event(self, name: str, timeout: float = 15, **fields: Any) -> dict[str, Any]:
        """The next event called ``name`` whose ``fields`` have these values (others are dropped)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                break
            if event["event"] == name and all(event.get(k) == v for k, v in fields.items()):
                return event
        raise AssertionError(
            f"no {name!r} event from the linkkit device; stderr:\n" + "\n".join(self.stderr_lines[-30:])
        )

    def wait_ready(self) -> LinkkitDevice:
        self.next_event("ready", timeout=30)
        return self

    def close(self) -> None:
        end_stdin_driven(self.proc)


def device_login(
    product_key: str,
    device_name: str,
    secret: str,
    *,
    sign_method: str = "hmacsha1",
    client_id: str = "client-1",
    extra: str = "",
    timestamp: str | None = "1795350342",
) -> tuple[str, str, str]:
    """(client id, user name, password) the way Alibaba documents it for plain MQTT clients, computed
    here independently of methodhub."""
    digest = {"hmacmd5": hashlib.md5, "hmacsha1": hashlib.sha1, "hmacsha256": hashlib.sha256}[sign_method]
    content = f"clientId{client_id}deviceName{device_name}productKey{product_key}"
    params = f"securemode=3,signmethod={sign_method}{extra}"
    if timestamp is not None:
        content += f"timestamp{timestamp}"
        params += f",timestamp={timestamp}"
    password = hmac.new(secret.encode(), content.encode(), digest).hexdigest()
    return f"{client_id}|{params}|", f"{device_name}&{product_key}", password


class PahoAliyunDevice:
    """A paho-mqtt 2 device logged in with Alibaba credentials (for hand-rolled and hostile devices)."""

    def __init__(self, hub: HubProcess, client_id: str, username: str, password: str) -> None:
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311
        )
        self.client.username_pw_set(username, password)
        self.hub = hub
        self.connack: queue.Queue[int] = queue.Queue()
        self.subacks: queue.Queue[list[int]] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.disconnects: queue.Queue[Any] = queue.Queue()
        self.client.on_connect = lambda c, u, f, rc, p=None: self.connack.put(
            V5_TO_V3_CONNACK.get(int(rc.value), int(rc.value))
        )
        self.client.on_subscribe = lambda c, u, mid, granted, p=None: self.subacks.put(
            [int(g.value) for g in granted]
        )
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.client.on_disconnect = lambda c, u, *args: self.disconnects.put(args)

    def connect(self, timeout: float = 10) -> int:
        self.client.reconnect_delay_set(30, 60)  # a refused or cut-off device stays down in tests
        self.client.connect("127.0.0.1", self.hub.ports["mqtt"], keepalive=60)
        self.client.loop_start()
        return self.connack.get(timeout=timeout)

    def subscribe(self, topic: str, qos: int = 0) -> list[int]:
        self.client.subscribe(topic, qos)
        return self.subacks.get(timeout=10)

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        self.client.publish(topic, payload, qos).wait_for_publish(timeout=10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
