"""Test support: a real hub in a subprocess, paho devices, SAS tokens, raw MQTT sockets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import paho.mqtt.client as paho

HOSTNAME = "localhost"
V5_TO_V3_CONNACK = {0x84: 1, 0x85: 2, 0x88: 3, 0x86: 4, 0x87: 5}
LISTENING = re.compile(r"(mqtts|https|amqps|amqp|mqtt|http) listening on (\S+):(\d+)")


def sign(resource: str, key: str, expiry: int, key_name: str | None = None, *, quoted: bool = True) -> str:
    """A SAS token, computed independently of methodhub (as Azure's SDK code does)."""
    sr = quote(resource, safe="") if quoted else quote_plus(resource)
    digest = hmac.new(base64.b64decode(key), f"{sr}\n{expiry}".encode(), hashlib.sha256).digest()
    token = (
        f"SharedAccessSignature sr={sr}&sig={quote(base64.b64encode(digest).decode(), safe='')}&se={expiry}"
    )
    return token + (f"&skn={key_name}" if key_name else "")


def parse_cs(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.strip().split(";"))


def methodhub(
    *args: str, data_dir: Path, env: dict[str, str] | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "methodhub", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@dataclass
class HubProcess:
    """A hub started with ``methodhub serve`` on free ports, as a user would start it."""

    data_dir: Path
    args: list[str] = field(default_factory=list)
    listeners: tuple[str, ...] = ("mqtt", "http")
    proc: subprocess.Popen[str] | None = None
    ports: dict[str, int] = field(default_factory=dict)
    stdout_lines: list[str] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    data_dir_after_command: bool = False
    """``serve --data-dir DIR`` instead of ``--data-dir DIR serve``."""

    def start(self, timeout: float = 30) -> HubProcess:
        data_dir = ["--data-dir", str(self.data_dir)]
        cmd = [
            sys.executable,
            "-m",
            "methodhub",
            *([] if self.data_dir_after_command else data_dir),
            "serve",
            *(data_dir if self.data_dir_after_command else []),
            "--mqtt-port",
            "0",
            "--http-port",
            "0",
            "--mqtts-port",
            "0" if "mqtts" in self.listeners else "-1",
            "--https-port",
            "0" if "https" in self.listeners else "-1",
            "--amqps-port",
            "0" if "amqps" in self.listeners else "-1",
            *(["--amqp-port", "0"] if "amqp" in self.listeners else []),
            "--hostname",
            HOSTNAME,
            *self.args,
        ]
        self.ports = {}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready = threading.Event()
        wanted = set(self.listeners)

        def pump(stream: Any, sink: list[str], parse: bool) -> None:
            for line in stream:
                sink.append(line.rstrip("\n"))
                if parse and (m := LISTENING.search(line)):
                    self.ports[m.group(1)] = int(m.group(3))
                    if wanted <= self.ports.keys():
                        ready.set()

        self._pumps = [
            threading.Thread(target=pump, args=(self.proc.stdout, self.stdout_lines, False), daemon=True),
            threading.Thread(target=pump, args=(self.proc.stderr, self.stderr_lines, True), daemon=True),
        ]
        for thread in self._pumps:
            thread.start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                time.sleep(0.1)  # let the pump threads read the last lines
                raise RuntimeError("hub did not start:\n" + "\n".join(self.stderr_lines))
        return self

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for thread in getattr(self, "_pumps", []):  # they reach EOF once the hub is gone
            thread.join(2)
        if not any(thread.is_alive() for thread in getattr(self, "_pumps", [])):
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()
        return self.proc.returncode

    @property
    def mqtt_port(self) -> int:
        return self.ports["mqtt"]

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def https_url(self) -> str:
        return f"https://localhost:{self.ports['https']}"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"

    def cli(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return methodhub(*args, data_dir=self.data_dir, **kwargs)

    def service_cs(self, policy: str = "iothubowner") -> dict[str, str]:
        return parse_cs(self.cli("connection-string", "--policy", policy).stdout)

    def create_device(self, device_id: str) -> str:
        """Register a device; returns its primary key."""
        return parse_cs(self.cli("device", "create", device_id).stdout)["SharedAccessKey"]

    def service_token(self, policy: str = "iothubowner", ttl: int = 3600) -> str:
        cs = self.service_cs(policy)
        return sign(
            cs["HostName"],
            cs["SharedAccessKey"],
            int(time.time()) + ttl,
            cs["SharedAccessKeyName"],
            quoted=False,
        )

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.http_url}/metrics").text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                key = line.split(" ")[0]
                if key == name or key.startswith(name + "{"):
                    total += float(line.rsplit(" ", 1)[1])
        return total


class Backend:
    """A backend calling the hub's REST API with httpx, with a cached service token."""

    def __init__(self, hub: HubProcess, policy: str = "iothubowner", *, https: bool = False) -> None:
        self.hub = hub
        self.token = hub.service_token(policy)
        if https:
            trust = ssl.create_default_context(cafile=str(hub.ca_file))
            self.http = httpx.Client(base_url=hub.https_url, timeout=60, verify=trust)
        else:
            self.http = httpx.Client(base_url=hub.http_url, timeout=60)

    def invoke(
        self,
        device_id: str,
        method: str = "echo",
        payload: Any = None,
        *,
        module_id: str | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> httpx.Response:
        body = {"methodName": method, "payload": payload, **fields}
        path = f"/twins/{quote(device_id, safe='')}" + (
            f"/modules/{quote(module_id, safe='')}" if module_id else ""
        )
        return self.http.post(
            f"{path}/methods?api-version=2021-04-12",
            json=body,
            headers={"Authorization": token or self.token},
        )

    def close(self) -> None:
        self.http.close()


def error_code(response: httpx.Response) -> int:
    import json

    return json.loads(response.json()["Message"])["errorCode"]


def error_message(response: httpx.Response) -> str:
    """The ``message`` of an Azure error body: says which path produced the error."""
    import json

    return json.loads(response.json()["Message"])["message"]


def _client(
    client_id: str, clean_session: bool, *, websockets: bool = False, protocol: int = paho.MQTTv311
) -> paho.Client:
    transport = "websockets" if websockets else "tcp"
    if hasattr(paho, "CallbackAPIVersion"):  # paho-mqtt 2.x
        return paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session if protocol != paho.MQTTv5 else None,  # v5: clean start
            protocol=protocol,
            transport=transport,
        )
    return paho.Client(
        client_id=client_id, clean_session=clean_session, protocol=paho.MQTTv311, transport=transport
    )


class PahoDevice:
    """A device on paho-mqtt, connecting the way Azure's device SDK does (CleanSession=0, QoS 1)."""

    def __init__(
        self,
        hub: HubProcess,
        device_id: str,
        key: str | None,
        *,
        password: str | None = None,
        username: str | None = None,
        clean_session: bool = False,
        keepalive: int = 60,
        transport: str = "mqtt",
        protocol: int = paho.MQTTv311,
        client_cert: tuple[Path, Path] | None = None,
    ) -> None:
        """``transport``: ``mqtt`` (plain), ``mqtts`` (TLS), ``ws`` / ``wss`` (MQTT over WebSocket on
        the HTTP / HTTPS port at ``/$iothub/websocket``); TLS trusts the hub's development CA.
        ``protocol``: ``paho.MQTTv311`` (as Azure's SDKs) or ``paho.MQTTv5``. ``client_cert``:
        (certificate, key) PEM files the TLS connection presents (X.509 devices)."""
        self.device_id = device_id
        self.hub = hub
        self.transport = transport
        self.client = _client(
            device_id, clean_session, websockets=transport in ("ws", "wss"), protocol=protocol
        )
        if transport in ("ws", "wss"):
            self.client.ws_set_options(path="/$iothub/websocket")
        if transport in ("mqtts", "wss"):
            certfile, keyfile = (str(client_cert[0]), str(client_cert[1])) if client_cert else (None, None)
            self.client.tls_set(ca_certs=str(hub.ca_file), certfile=certfile, keyfile=keyfile)
        self.connack: queue.Queue[int] = queue.Queue()
        self.subacks: queue.Queue[list[int]] = queue.Queue()
        self.requests: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.disconnects: queue.Queue[Any] = queue.Queue()
        self.keepalive = keepalive
        if password is None and key is not None:
            password = sign(f"{HOSTNAME}/devices/{device_id}", key, int(time.time()) + 3600)
        self.client.username_pw_set(username or f"{HOSTNAME}/{device_id}/?api-version=2021-04-12", password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda c, u, m: self.requests.put((m.topic, m.payload))
        self.client.on_disconnect = self._on_disconnect
        self.auto_answer: Any = None

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, properties: Any = None) -> None:
        # paho 2 reports an MQTT 3.1.1 CONNACK return code as the matching MQTT 5 reason code.
        code = int(getattr(rc, "value", rc))
        self.connack.put(V5_TO_V3_CONNACK.get(code, code) if hasattr(rc, "value") else code)

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: Any, granted: Any, properties: Any = None
    ) -> None:
        self.subacks.put([int(getattr(g, "value", g)) for g in granted])

    def _on_disconnect(self, client: Any, userdata: Any, *args: Any) -> None:
        self.disconnects.put(args)

    def connect(self, timeout: float = 10) -> int:
        port = self.hub.ports[
            {"mqtt": "mqtt", "mqtts": "mqtts", "ws": "http", "wss": "https"}[self.transport]
        ]
        host = "localhost" if self.transport in ("mqtts", "wss") else "127.0.0.1"
        self.client.connect(host, port, keepalive=self.keepalive)
        self.client.loop_start()
        return self.connack.get(timeout=timeout)

    def subscribe(
        self, topic: str = "$iothub/methods/POST/#", qos: int = 1, timeout: float = 10
    ) -> list[int]:
        self.client.subscribe(topic, qos)
        return self.subacks.get(timeout=timeout)

    def online(self) -> PahoDevice:
        assert self.connect() == 0
        assert self.subscribe() == [1]
        return self

    def next_request(self, timeout: float = 10) -> tuple[str, str, bytes]:
        """(method name, rid, payload) of the next method request."""
        topic, payload = self.requests.get(timeout=timeout)
        match = re.fullmatch(r"\$iothub/methods/POST/([^/]+)/\?\$rid=(.+)", topic)
        assert match, topic
        return match.group(1), match.group(2), payload

    def respond(self, rid: str, status: int = 200, payload: bytes = b"{}", qos: int = 1) -> None:
        info = self.client.publish(f"$iothub/methods/res/{status}/?$rid={rid}", payload, qos=qos)
        info.wait_for_publish(timeout=10)

    def serve(self, handler: Any) -> None:
        """Answer every request in a background thread with ``handler(name, payload) -> (status, bytes)``."""

        def loop() -> None:
            while True:
                try:
                    name, rid, payload = self.next_request(timeout=60)
                except queue.Empty:
                    return
                status, body = handler(name, payload)
                try:
                    self.respond(rid, status, body)
                except RuntimeError:  # disconnected meanwhile (the test is closing it): done
                    return

        threading.Thread(target=loop, daemon=True).start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class RawMqtt:
    """A raw socket to the MQTT port, for sending malformed bytes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_all(self, timeout: float = 5) -> bytes:
        """Everything until the hub closes the connection (fails the test if it does not)."""
        self.sock.settimeout(timeout)
        chunks = []
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def close(self) -> None:
        self.sock.close()


def connect_packet(
    client_id: str,
    username: str | None,
    password: str | None,
    *,
    keepalive: int = 60,
    clean: bool = False,
    level: int = 4,
) -> bytes:
    """A CONNECT packet built by hand (independent of methodhub's codec)."""

    def s(text: str | bytes) -> bytes:
        data = text.encode() if isinstance(text, str) else text
        return len(data).to_bytes(2, "big") + data

    flags = (
        (0x02 if clean else 0) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    )
    body = s("MQTT") + bytes([level, flags]) + keepalive.to_bytes(2, "big") + s(client_id)
    if username is not None:
        body += s(username)
    if password is not None:
        body += s(password)
    return bytes([0x10]) + remaining_length(len(body)) + body


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def wait_until_stored(location: str, client_id: str, timeout: float = 15.0) -> dict[str, int]:
    """Wait until a hub has written ``client_id``'s persisted session to the registry at
    ``location`` (it writes in the background), and return it. Read through a registry object of
    this process's own, which sees only what is written."""
    from methodhub.registry import open_registry  # the rest of this module runs hubs as users do

    async def load() -> dict[str, int] | None:
        registry = open_registry(location)
        await registry.open()
        try:
            return await registry.load_session(client_id)
        finally:
            await registry.close()

    deadline = time.monotonic() + timeout
    while (stored := asyncio.run(load())) is None:
        assert time.monotonic() < deadline, f"the session of {client_id} was not written to the registry"
        time.sleep(0.05)
    return stored
