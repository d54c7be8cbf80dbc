"""The canary: well-behaved devices answering direct method calls — one over MQTT (paho-mqtt), one
over AMQP (:mod:`fuzz.amqpcanary`) — and a backend (httpx) calling each of them every ``interval``
seconds while the fuzzer runs. Every call that does not come back 200 with the payload it sent is
a failure: the hub stopped serving someone."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import paho.mqtt.client as paho
from bench.common import API_VERSION

METHODS_FILTER = "$iothub/methods/POST/#"


@dataclass
class CanaryFailure:
    at: float
    """Seconds since the canary started."""
    call: int
    what: str
    device: str = ""


@dataclass
class DeviceStats:
    """One canary device's calls."""

    calls: int = 0
    ok: int = 0
    failures: int = 0
    latencies: list[float] = field(default_factory=list)

    def to_json(self, disconnects: int) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "ok": self.ok,
            "success_pct": round(100.0 * self.ok / self.calls, 3) if self.calls else 0.0,
            "failures": self.failures,
            "device_disconnects": disconnects,
            "latency_ms": _percentiles(self.latencies),
        }


def _percentiles(latencies: list[float]) -> dict[str, float | None]:
    lat = sorted(latencies)

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else None

    return {"p50": pct(0.5), "p99": pct(0.99), "max": round(lat[-1] * 1000, 1) if lat else None}


@dataclass
class CanaryStats:
    calls: int = 0
    ok: int = 0
    failures: list[CanaryFailure] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    disconnects: int = 0
    devices: dict[str, DeviceStats] = field(default_factory=dict)
    device_disconnects: dict[str, int] = field(default_factory=dict)
    transports: dict[str, str] = field(default_factory=dict)

    @property
    def success_pct(self) -> float:
        return 100.0 * self.ok / self.calls if self.calls else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "ok": self.ok,
            "success_pct": round(self.success_pct, 3),
            "device_disconnects": self.disconnects,
            "latency_ms": _percentiles(self.latencies),
            "devices": {
                name: {
                    "transport": self.transports.get(name, ""),
                    **st.to_json(self.device_disconnects.get(name, 0)),
                }
                for name, st in self.devices.items()
            },
            "failures": [
                {"at_s": round(f.at, 2), "device": f.device, "call": f.call, "what": f.what}
                for f in self.failures[:100]
            ],
            "failures_total": len(self.failures),
        }


class CanaryDevice(Protocol):
    """A device the canary's backend calls: it answers method ``echo`` with its payload, status 200."""

    device_id: str
    transport: str
    disconnects: int

    def start(self, ready_timeout: float) -> None:
        """Connect and subscribe to methods; SystemExit when it cannot."""
        ...

    def stop(self) -> None: ...


class MqttCanaryDevice:
    """paho-mqtt, MQTT 3.1.1, SAS, CleanSession, a QoS 1 subscription to the methods topic."""

    transport = "mqtt"

    def __init__(self, host: str, port: int, hostname: str, device_id: str, password: str) -> None:
        self.device_id = device_id
        self.host = host
        self.port = port
        self.disconnects = 0
        self._stopping = False
        self._subscribed = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=device_id, clean_session=True, protocol=paho.MQTTv311
        )
        self.client.username_pw_set(f"{hostname}/{device_id}/?api-version={API_VERSION}", password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(0.1, 1.0)

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: Any, properties: Any = None
    ) -> None:
        if not rc.is_failure:
            client.subscribe(METHODS_FILTER, qos=1)

    def _on_disconnect(self, client: paho.Client, *args: Any) -> None:
        if not self._stopping:
            self.disconnects += 1

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        # $iothub/methods/POST/{name}/?$rid={rid}: echo the payload back
        rid = message.topic.rsplit("$rid=", 1)[-1]
        client.publish(f"$iothub/methods/res/200/?$rid={rid}", message.payload, qos=0)

    def start(self, ready_timeout: float) -> None:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(ready_timeout):
            raise SystemExit("fuzz: the MQTT canary device could not connect and subscribe before fuzzing")

    def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()


class Canary:
    """Calls each of ``devices`` in turn, a round every ``interval`` seconds."""

    def __init__(
        self,
        *,
        http_url: str,
        owner_token: str,
        devices: list[CanaryDevice],
        interval: float = 0.1,
        call_timeout: float = 5.0,
    ) -> None:
        self.devices = devices
        self.http_url = http_url
        self.owner_token = owner_token
        self.interval = interval
        self.call_timeout = call_timeout
        self.stats = CanaryStats()
        for device in devices:
            self.stats.devices[device.device_id] = DeviceStats()
            self.stats.transports[device.device_id] = device.transport
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, ready_timeout: float = 15) -> None:
        for device in self.devices:
            device.start(ready_timeout)
        with httpx.Client(base_url=self.http_url, timeout=self.call_timeout + 5) as http:
            for device in self.devices:
                deadline = time.monotonic() + ready_timeout
                # the first call must work before fuzzing starts
                while (problem := self._call(http, device.device_id, -1)) is not None:
                    if time.monotonic() > deadline:
                        raise SystemExit(
                            f"fuzz: the {device.transport} canary's first direct method call failed "
                            f"before fuzzing: {problem}"
                        )
                    time.sleep(0.2)
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="fuzz-canary", daemon=True)
        self._thread.start()

    def _call(self, http: httpx.Client, device_id: str, n: int) -> str | None:
        """One call; None when it worked, else what went wrong."""
        body = {
            "methodName": "echo",
            "payload": {"n": n},
            "responseTimeoutInSeconds": max(5, int(self.call_timeout)),
        }
        try:
            answer = http.post(
                f"/twins/{device_id}/methods?api-version={API_VERSION}",
                json=body,
                headers={"Authorization": self.owner_token},
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:200]
        if answer.status_code != 200:
            return f"HTTP {answer.status_code}: {answer.text[:160]}"
        try:
            doc = json.loads(answer.content)
        except ValueError:
            return f"not JSON: {answer.text[:100]}"
        if doc.get("status") != 200 or doc.get("payload") != {"n": n}:
            return f"wrong answer: {answer.text[:160]}"
        return None

    def _run(self) -> None:
        n = 0
        with httpx.Client(base_url=self.http_url, timeout=self.call_timeout + 5) as http:
            while not self._stop.is_set():
                round_began = time.monotonic()
                for device in self.devices:
                    began = time.monotonic()
                    problem = self._call(http, device.device_id, n)
                    took = time.monotonic() - began
                    with self._lock:
                        mine = self.stats.devices[device.device_id]
                        self.stats.calls += 1
                        mine.calls += 1
                        if problem is None and took > self.call_timeout:
                            problem = f"answered after {took:.1f} s (limit {self.call_timeout:g} s)"
                        if problem is None:
                            self.stats.ok += 1
                            mine.ok += 1
                            self.stats.latencies.append(took)
                            mine.latencies.append(took)
                        else:
                            mine.failures += 1
                            self.stats.failures.append(
                                CanaryFailure(began - self.started, n, problem, device.device_id)
                            )
                    n += 1
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - round_began)))

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.stats.calls, self.stats.ok

    def stop(self) -> CanaryStats:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.call_timeout * len(self.devices) + 10)
        for device in self.devices:
            device.stop()
            self.stats.device_disconnects[device.device_id] = device.disconnects
        self.stats.disconnects = sum(self.stats.device_disconnects.values())
        return self.stats
