"""The Python SDK we ship: DeviceClient (asyncio, on methodhub.mqtt) and ServiceClient (httpx)."""

from __future__ import annotations

import asyncio
import http.server
import signal
import subprocess
import sys
import threading
import time

import pytest

from methodhub.sdk import (
    AsyncServiceClient,
    CallTimeoutError,
    CredentialError,
    DeviceClient,
    DeviceNotFoundError,
    DeviceOfflineError,
    MethodHubError,
    MethodRequest,
    MethodResponse,
    ServiceClient,
)
from tests.support import HubProcess


def _clients(hub: HubProcess, device_id: str, **kwargs) -> tuple[DeviceClient, AsyncServiceClient]:
    device_cs = hub.cli("device", "create", device_id).stdout.strip()
    device = DeviceClient.from_connection_string(device_cs, host="127.0.0.1", port=hub.mqtt_port, **kwargs)
    service = AsyncServiceClient.from_connection_string(
        hub.cli("connection-string").stdout.strip(), url=hub.http_url
    )
    return device, service


async def test_handlers_sync_async_and_fallback(shared_hub: HubProcess, device_id: str) -> None:
    device, service = _clients(shared_hub, device_id)

    @device.method("add")
    async def add(request: MethodRequest):
        return 200, {"sum": sum(request.payload)}

    @device.method("blocking")
    def blocking(request: MethodRequest):  # a plain function runs in a worker thread
        time.sleep(0.2)
        return MethodResponse(202, {"slept": True, "rid_seen": bool(request.request_id)})

    @device.method("just-payload")
    def just_payload(request: MethodRequest):
        return ["a", "b"]

    @device.method("broken")
    async def broken(request: MethodRequest):
        raise RuntimeError("boom")

    async with device, service:
        assert (await service.invoke(device_id, "add", [1, 2, 3])).payload == {"sum": 6}
        result = await service.invoke(device_id, "blocking")
        assert (result.status, result.payload) == (202, {"slept": True, "rid_seen": True})
        assert (await service.invoke(device_id, "just-payload")).payload == ["a", "b"]
        failed = await service.invoke(device_id, "broken")
        assert failed.status == 500 and "boom" in failed.payload["error"]
        unknown = await service.invoke(device_id, "nope")
        assert unknown.status == 501


async def test_default_handler_catches_every_method(shared_hub: HubProcess, device_id: str) -> None:
    device, service = _clients(shared_hub, device_id)
    device.on_method(None, lambda request: (200, request.name))
    async with device, service:
        assert (await service.invoke(device_id, "anything")).payload == "anything"


async def test_service_errors_are_typed(shared_hub: HubProcess, device_id: str) -> None:
    device, service = _clients(shared_hub, device_id)

    @device.method("slow")
    async def slow(request: MethodRequest):
        await asyncio.sleep(8)
        return 200, None

    async with service:
        with pytest.raises(DeviceNotFoundError) as not_found:
            await service.invoke("no-such-device", "m")
        assert not_found.value.code == 404001 and not_found.value.status == 404
        with pytest.raises(DeviceOfflineError):
            await service.invoke(device_id, "m")
        async with device:
            with pytest.raises(CallTimeoutError) as timeout:
                await service.invoke(device_id, "slow", timeout=5)
            assert timeout.value.code == 504101


def test_sync_service_client(shared_hub: HubProcess, device_id: str) -> None:
    shared_hub.create_device(device_id)
    cs = shared_hub.cli("connection-string", "--policy", "service").stdout.strip()
    with (
        ServiceClient.from_connection_string(cs, url=shared_hub.http_url) as service,
        pytest.raises(DeviceOfflineError),
    ):
        service.invoke(device_id, "m")


async def test_wrong_key_raises_credential_error(shared_hub: HubProcess, device_id: str) -> None:
    shared_hub.create_device(device_id)
    device = DeviceClient(
        hostname="localhost",
        device_id=device_id,
        key="d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXkxMjM=",
        host="127.0.0.1",
        port=shared_hub.mqtt_port,
    )
    with pytest.raises(CredentialError):
        await device.connect()


async def test_token_renewal_keeps_methods_working(shared_hub: HubProcess, device_id: str) -> None:
    # token_ttl=123: the client renews 120 s before expiry, i.e. after ~3 s: DISCONNECT, then CONNECT
    # with a fresh token and no SUBSCRIBE, as Microsoft's SDK does.
    device, service = _clients(shared_hub, device_id, token_ttl=123)
    device.on_method("ping", lambda request: (200, "pong"))
    connections_before = shared_hub.metric("methodhub_mqtt_connections_total")
    runner = asyncio.create_task(device.run())
    try:
        async with service:
            await device.wait_connected(10)
            assert (await service.invoke(device_id, "ping")).payload == "pong"
            deadline = time.monotonic() + 15
            while shared_hub.metric("methodhub_mqtt_connections_total") < connections_before + 2:
                assert time.monotonic() < deadline, "the client did not renew its token"
                await asyncio.sleep(0.2)
            await device.wait_connected(10)
            result = await service.invoke(device_id, "ping", connect_timeout=5)
            assert result.payload == "pong"
    finally:
        await device.disconnect()
        runner.cancel()


async def test_device_client_reconnects_after_hub_restart(fresh_hub: HubProcess, device_id: str) -> None:
    device, service = _clients(fresh_hub, device_id, reconnect_min=0.2, reconnect_max=1.0)
    device.on_method("ping", lambda request: (200, "pong"))
    runner = asyncio.create_task(device.run())
    try:
        await device.wait_connected(10)
        fresh_hub.stop()
        fresh_hub.args = [
            "--mqtt-port",
            str(fresh_hub.ports["mqtt"]),
            "--http-port",
            str(fresh_hub.ports["http"]),
        ]
        await asyncio.to_thread(fresh_hub.start)
        async with service:
            result = await service.invoke(device_id, "ping", connect_timeout=20)
        assert result.payload == "pong"
    finally:
        await device.disconnect()
        runner.cancel()


def test_run_forever_returns_quietly_on_ctrl_c(shared_hub: HubProcess, device_id: str) -> None:
    device_cs = shared_hub.cli("device", "create", device_id).stdout.strip()
    script = (
        "import logging, sys\n"
        "from methodhub.sdk import DeviceClient\n"
        "logging.basicConfig(level=logging.INFO)\n"
        f"device = DeviceClient.from_connection_string({device_cs!r}, host='127.0.0.1', "
        f"port={shared_hub.mqtt_port})\n"
        "device.run_forever()\n"
        "print('returned')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # until it is connected
            seen.append(line)
            if "connected" in line:
                break
        assert any("connected" in line for line in seen), seen
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert out == "returned\n"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_an_answer_that_is_not_a_hubs_is_a_method_hub_error(shared_hub: HubProcess) -> None:
    class NotAHub(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            body = b"<html>hello</html>"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotAHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cs = shared_hub.cli("connection-string").stdout.strip()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with (
            ServiceClient.from_connection_string(cs, url=url) as service,
            pytest.raises(MethodHubError) as raised,
        ):
            service.invoke("pump-1", "m")
        assert "is not a method result" in str(raised.value) and url in str(raised.value)
    finally:
        server.shutdown()
        server.server_close()


def test_queued_calls_and_the_history_through_the_sdk(tmp_path, device_id: str) -> None:
    hub = HubProcess(tmp_path / "data", args=["--history", "on"]).start()
    try:
        hub.cli("device", "create", device_id)
        with ServiceClient.from_connection_string(
            hub.cli("connection-string").stdout.strip(), url=hub.http_url
        ) as svc:
            queued = svc.queue_call(device_id, "wake", {"n": 1}, expires=600)
            assert queued["state"] == "queued" and svc.get_call(queued["callId"])["methodName"] == "wake"
            for n in range(3):  # synchronous calls to an offline device: each in the history, failed
                with pytest.raises(DeviceOfflineError):
                    svc.invoke(device_id, f"ping{n}")
            deadline = time.monotonic() + 10
            while len(listed := svc.list_calls(device_id=device_id)) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)  # records are written in batches, 0.2 s after the first waits
            assert [c["methodName"] for c in listed] == ["ping2", "ping1", "ping0", "wake"]
            assert [c["methodName"] for c in svc.list_calls(device_id=device_id, limit=2)] == [
                "ping2",
                "ping1",
            ]
            assert [c["methodName"] for c in svc.list_calls(device_id=device_id, front_door="native")] == [
                "wake"
            ]
            failed = svc.list_calls(device_id=device_id, state="failed", method_name="ping1")
            assert len(failed) == 1 and failed[0]["error"]["errorCode"] == "DeviceNotOnline"
            assert svc.list_calls(device_id=device_id, until="2000-01-01T00:00:00Z") == []
            assert len(svc.list_calls(device_id=device_id, since="2000-01-01T00:00:00Z")) == 4
            assert svc.list_calls(device_id=device_id, status=200) == []
            cancelled = svc.cancel_call(queued["callId"])
            assert cancelled["state"] == "cancelled"
            with pytest.raises(MethodHubError):
                svc.list_calls(front_door="nowhere")
    finally:
        hub.stop()
