"""The canary: a well-behaved device (paho-mqtt, authenticated) answering direct method calls, and
a backend (httpx) calling it every ``interval`` seconds while the fuzzer runs. Every call that does
not come back 200 with the payload it sent is a failure: the hub stopped serving someone."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class CanaryStats:
    calls: int = 0
    ok: int = 0
    failures: list[CanaryFailure] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    disconnects: int = 0

    @property
    def success_pct(self) -> float:
        return 100.0 * self.ok / self.calls if self.calls else 0.0

    def to_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else None

        return {
            "calls": self.calls,
            "ok": self.ok,
            "success_pct": round(self.success_pct, 3),
            "device_disconnects": self.disconnects,
            "latency_ms": {
                "p50": pct(0.5),
                "p99": pct(0.99),
                "max": round(lat[-1] * 1000, 1) if lat else None,
            },
            "failures": [
                {"at_s": round(f.at, 2), "call": f.call, "what": f.what} for f in self.failures[:100]
            ],
            "failures_total": len(self.failures),
        }


class Canary:
    def __init__(
        self,
        *,
        host: str,
        mqtt_port: int,
        http_url: str,
        hostname: str,
        device_id: str,
        password: str,
        owner_token: str,
        interval: float = 0.1,
        call_timeout: float = 5.0,
    ) -> None:
        self.device_id = device_id
        self.http_url = http_url
        self.owner_token = owner_token
        self.interval = interval
        self.call_timeout = call_timeout
        self.stats = CanaryStats()
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=device_id, clean_session=True, protocol=paho.MQTTv311
        )
        self.client.username_pw_set(f"{hostname}/{device_id}/?api-version={API_VERSION}", password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(0.1, 1.0)
        self.host = host
        self.mqtt_port = mqtt_port

    # -- the device --

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: Any, properties: Any = None
    ) -> None:
        if not rc.is_failure:
            client.subscribe(METHODS_FILTER, qos=1)

    def _on_disconnect(self, client: paho.Client, *args: Any) -> None:
        if not self._stop.is_set():
            with self._lock:
                self.stats.disconnects += 1

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        # $iothub/methods/POST/{name}/?$rid={rid}: echo the payload back
        rid = message.topic.rsplit("$rid=", 1)[-1]
        client.publish(f"$iothub/methods/res/200/?$rid={rid}", message.payload, qos=0)

    # -- the backend --

    def start(self, ready_timeout: float = 15) -> None:
        self.client.connect(self.host, self.mqtt_port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(ready_timeout):
            raise SystemExit("fuzz: the canary device could not connect and subscribe before fuzzing")
        with httpx.Client(base_url=self.http_url, timeout=self.call_timeout + 5) as http:
            deadline = time.monotonic() + ready_timeout
            while self._call(http, -1) is not None:  # the first call must work before fuzzing starts
                if time.monotonic() > deadline:
                    raise SystemExit("fuzz: the canary's first direct method call failed before fuzzing")
                time.sleep(0.2)
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="fuzz-canary", daemon=True)
        self._thread.start()

    def _call(self, http: httpx.Client, n: int) -> str | None:
        """One call; None when it worked, else what went wrong."""
        body = {
            "methodName": "echo",
            "payload": {"n": n},
            "responseTimeoutInSeconds": max(5, int(self.call_timeout)),
        }
        try:
            answer = http.post(
                f"/twins/{self.device_id}/methods?api-version={API_VERSION}",
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
                began = time.monotonic()
                problem = self._call(http, n)
                took = time.monotonic() - began
                with self._lock:
                    self.stats.calls += 1
                    if problem is None and took > self.call_timeout:
                        problem = f"answered after {took:.1f} s (limit {self.call_timeout:g} s)"
                    if problem is None:
                        self.stats.ok += 1
                        self.stats.latencies.append(took)
                    else:
                        self.stats.failures.append(CanaryFailure(began - self.started, n, problem))
                n += 1
                self._stop.wait(max(0.0, self.interval - took))

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.stats.calls, self.stats.ok

    def stop(self) -> CanaryStats:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.call_timeout + 10)
        self.client.disconnect()
        self.client.loop_stop()
        return self.stats
