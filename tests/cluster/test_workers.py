"""``methodhub serve --workers N``: several node processes sharing the ports of one machine, and the
start-up errors of cluster nodes."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from methodhub.process import datadir
from tests.cluster.conftest import echo, wait_for
from tests.servers import NatsServer
from tests.support import Backend, HubProcess, PahoDevice, methodhub


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def workers_hub(tmp_path: Path) -> Iterator[HubProcess]:
    """Two workers and the private nats-server the parent starts for them (no --nats)."""
    hub = HubProcess(tmp_path / "data", args=["--workers", "2"]).start()
    # start() returns once a worker listens; the parent records hub.json when both do
    wait_for(lambda: (hub.data_dir / "hub.json").exists(), 30, "the workers to start")
    yield hub
    hub.stop()


def test_two_workers_share_the_ports_and_reach_each_others_devices(workers_hub: HubProcess) -> None:
    hub = workers_hub
    info = json.loads((hub.data_dir / "hub.json").read_text())
    assert hub.proc is not None and info["pid"] == hub.proc.pid
    assert len(info["workers"]) == 2 and all(_alive(pid) for pid in info["workers"])
    assert info["nats"].startswith("nats://127.0.0.1:")
    assert info["http"] == hub.http_url

    devices = []
    for n in range(3):
        device_id = f"worker-dev-{n}"
        device = PahoDevice(hub, device_id, hub.create_device(device_id)).online()
        device.serve(echo)
        devices.append(device)
    token = Backend(hub).token
    try:
        # Each call on a new HTTP connection: the kernel picks a worker for each, so most calls
        # cross from one worker to the other through NATS (all would be local with one chance in
        # 2^30 here). All must be answered by the device.
        for round_ in range(10):
            for device in devices:
                with httpx.Client(base_url=hub.http_url, timeout=10) as http:
                    response = http.post(
                        f"/twins/{device.device_id}/methods",
                        json={"methodName": "m", "payload": round_},
                        headers={"Authorization": token},
                    )
                assert response.status_code == 200, response.text
                assert response.json()["payload"] == {"echo": round_}

        # A worker that dies is started again; the devices it held reconnect (paho retries) and
        # are callable again.
        victim = info["workers"][0]
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: victim not in json.loads((hub.data_dir / "hub.json").read_text())["workers"],
            10,
            "the parent to start a new worker",
        )

        def all_answer() -> bool:
            for device in devices:
                with httpx.Client(base_url=hub.http_url, timeout=10) as http:
                    response = http.post(
                        f"/twins/{device.device_id}/methods",
                        json={"methodName": "m"},
                        headers={"Authorization": token},
                    )
                if response.status_code != 200:
                    return False
            return True

        wait_for(all_answer, 15, "every device to be callable after a worker restarted")
    finally:
        for device in devices:
            device.close()

    nats_pid = next(
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit()
        and Path(f"/proc/{pid}/stat").exists()
        and _parent(int(pid)) == hub.proc.pid
        and "nats-server" in _cmdline(int(pid))
    )
    workers = json.loads((hub.data_dir / "hub.json").read_text())["workers"]
    assert hub.stop() == 0
    assert not _alive(nats_pid) and not any(_alive(pid) for pid in workers)
    assert not (hub.data_dir / "hub.json").exists()


@pytest.mark.parametrize("how", ["SIGTERM to the parent", "Ctrl-C (SIGINT to every process)"])
def test_stopping_the_workers_answers_every_call_in_flight_at_once(workers_hub: HubProcess, how: str) -> None:
    """Calls delivered to silent devices (most relayed between the workers through NATS) and calls
    waiting for a device to connect: all answered 503 503002 at once; exit code 0, no traceback."""
    hub = workers_hub
    assert hub.proc is not None
    workers = json.loads((hub.data_dir / "hub.json").read_text())["workers"]
    devices = [PahoDevice(hub, f"silent-{n}", hub.create_device(f"silent-{n}")).online() for n in range(2)]
    hub.create_device("never-connects")
    token = Backend(hub).token

    def invoke(target: str, **fields: object) -> tuple[httpx.Response, float]:
        with httpx.Client(base_url=hub.http_url, timeout=30) as http:  # a connection each: any worker
            response = http.post(
                f"/twins/{target}/methods",
                json={"methodName": "hang", "responseTimeoutInSeconds": 60, **fields},
                headers={"Authorization": token},
            )
        return response, time.monotonic()

    try:
        with ThreadPoolExecutor(24) as pool:
            futures = [pool.submit(invoke, "never-connects", connectTimeoutInSeconds=60) for _ in range(4)]
            futures += [pool.submit(invoke, device.device_id) for device in devices for _ in range(10)]
            wait_for(
                lambda: all(device.requests.qsize() == 10 for device in devices), 15, "the calls to arrive"
            )
            time.sleep(0.3)
            assert not any(f.done() for f in futures)
            signalled = time.monotonic()
            if how.startswith("SIGTERM"):
                hub.proc.send_signal(signal.SIGTERM)
            else:  # a terminal's Ctrl-C signals the whole process group: parent and workers
                for pid in [hub.proc.pid, *workers]:
                    os.kill(pid, signal.SIGINT)
            answers = [f.result(timeout=15) for f in futures]
        answered_in = max(at for _, at in answers) - signalled
        print(f"\n{how}, {len(answers)} calls in flight, 2 workers: answered in {answered_in * 1000:.0f} ms")
        for response, _ in answers:
            assert response.status_code == 503, response.text
            assert json.loads(response.json()["Message"])["errorCode"] == 503002
        assert answered_in < 5
        assert hub.proc.wait(20) == 0
        assert not any(_alive(pid) for pid in workers)
        time.sleep(0.2)
        log = "\n".join(hub.stderr_lines)
        assert "Traceback" not in log and "never retrieved" not in log and " ERROR " not in log, log
    finally:
        for device in devices:
            device.client.loop_stop()


def test_a_second_signal_to_the_parent_exits_at_once(workers_hub: HubProcess) -> None:
    hub = workers_hub
    assert hub.proc is not None
    workers = json.loads((hub.data_dir / "hub.json").read_text())["workers"]
    # A request whose body is still arriving keeps its worker's clean stop waiting (HTTP grace, 5 s).
    slow = socket.create_connection(("127.0.0.1", hub.ports["http"]))
    try:
        slow.sendall(b"POST /twins/x/methods HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.2)
        first = time.monotonic()
        hub.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert hub.proc.poll() is None, "the clean stop ended before the second signal; nothing to test"
        hub.proc.send_signal(signal.SIGTERM)
        assert hub.proc.wait(10) == 143
        assert time.monotonic() - first < 5, "it waited for the slow request's grace (5 s) after all"
        wait_for(lambda: not any(_alive(pid) for pid in workers), 5, "the workers to be gone")
        assert not (hub.data_dir / "hub.json").exists()
        time.sleep(0.2)
        assert "Traceback" not in "\n".join(hub.stderr_lines)
    finally:
        slow.close()


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    started = time.monotonic()
    result = methodhub(
        "serve",
        "--mqtt-port",
        "0",
        "--http-port",
        "0",
        "--mqtts-port",
        "-1",
        "--https-port",
        "-1",
        "--amqps-port",
        "-1",
        *args,
        data_dir=data_dir,
        env=env,
        check=False,
        timeout=30,
    )
    return result.returncode, result.stderr, time.monotonic() - started


def test_workers_without_nats_say_what_they_need(tmp_path: Path) -> None:
    code, stderr, _ = _serve(
        tmp_path / "data", "--workers", "2", env={"METHODHUB_NATS_SERVER": str(tmp_path / "no-such-binary")}
    )
    assert code == 1
    assert "--workers 2 needs NATS" in stderr
    assert "--nats nats://HOST:PORT" in stderr and "apt-get install nats-server" in stderr
    assert "Traceback" not in stderr


def test_an_unreachable_nats_fails_the_start_clearly(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{_free_port()}"
    code, stderr, elapsed = _serve(tmp_path / "data", "--nats", url)
    assert code == 1
    assert f"cannot reach NATS at {url}" in stderr
    assert "needs a running NATS server" in stderr
    assert "Traceback" not in stderr
    assert elapsed < 15


def test_nats_url_from_the_environment(tmp_path: Path, nats: NatsServer) -> None:
    hub = HubProcess(tmp_path / "data")
    os.environ["METHODHUB_NATS"] = nats.url
    try:
        hub.start()
    finally:
        del os.environ["METHODHUB_NATS"]
    try:
        assert any("connected to NATS at " + nats.url in line for line in hub.stderr_lines)
    finally:
        hub.stop()


def test_the_parent_of_workers_holds_the_data_dir(workers_hub: HubProcess) -> None:
    """A second hub on the data dir of ``--workers 2`` refuses, naming the parent, also after a
    worker was restarted; the workers (which take no lock of their own) keep serving."""
    hub = workers_hub
    assert hub.proc is not None
    record = json.loads((hub.data_dir / "hub.json").read_text())
    code, stderr, _ = _serve(hub.data_dir)
    assert code == 1 and "Traceback" not in stderr
    assert f"in use by another hub (pid {hub.proc.pid})" in stderr
    victim = record["workers"][0]
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: victim not in json.loads((hub.data_dir / "hub.json").read_text())["workers"],
        10,
        "the parent to start a new worker",
    )
    code, stderr, _ = _serve(hub.data_dir)
    assert code == 1 and f"(pid {hub.proc.pid})" in stderr
    device = PahoDevice(hub, "locked-dev", hub.create_device("locked-dev")).online()
    device.serve(echo)
    try:
        response = Backend(hub).invoke("locked-dev", "m", 1)
        assert response.status_code == 200 and response.json()["payload"] == {"echo": 1}
    finally:
        device.close()
    assert hub.stop() == 0
    datadir.lock_data_dir(hub.data_dir).release()  # the parent released it when it stopped
