"""Microsoft's unmodified Azure IoT Node.js device SDK from npm against methodhub.

``azure-iot-device`` 1.18.4 with its transport packages (``tests/interop/node/package-lock.json``),
driven by ``node_agent.js`` as ``Client`` and ``ModuleClient``, trusting the hub's development CA
(``setOptions({ca})``). Calls are made through the hub's REST API. Every device test runs over each
transport in :data:`NODE_TRANSPORTS`; how each one reaches the hub's free ports is in
``node_support.py`` (:class:`NodeTransport`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.interop.node_support import TRANSPORTS, NodeAgent, NodeTransport, with_host_port
from tests.interop.support import AgentError, ConnectProxy
from tests.support import Backend, HubProcess, error_code, parse_cs

pytestmark = pytest.mark.timeout(120)

NODE_TRANSPORTS = ["mqtt", "mqttws", "amqp", "amqpws"]
"""The SDK transports the device tests run over (keys of ``node_support.TRANSPORTS``): MQTT and AMQP,
each over TLS and over WebSocket."""


@pytest.fixture(params=NODE_TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> NodeTransport:
    return TRANSPORTS[request.param]


@pytest.fixture
def rest(tls_hub: HubProcess) -> Iterator[Backend]:
    client = Backend(tls_hub)
    yield client
    client.close()


class NodeClients:
    """Opens Node SDK clients over one transport for a test, and closes them after it."""

    def __init__(
        self,
        agent: NodeAgent,
        hub: HubProcess,
        proxy: ConnectProxy,
        rest: Backend,
        transport: NodeTransport,
        prefix: str,
    ) -> None:
        self.agent, self.hub, self.proxy, self.rest, self.transport = agent, hub, proxy, rest, transport
        self.prefix = prefix
        self.opened: list[tuple[NodeAgent, str]] = []

    def open(
        self,
        label: str,
        cs: str,
        *,
        module: bool = False,
        ready: bool = True,
        retry: bool = True,
        agent: NodeAgent | None = None,
    ) -> str:
        """Open a ``Client`` (``ModuleClient`` with ``module``) named ``{test}/{label}`` for ``cs``; returns
        the name. ``ready``: then make one ``echo`` call with a connect timeout, so the test starts with
        the device's methods subscribed (the SDK subscribes after ``open`` resolves, and says nothing
        when it has). ``retry=False``: the SDK's ``NoRetry`` policy (node_agent.js ``open``)."""
        agent = agent or self.agent
        name = f"{self.prefix}/{label}"
        args: dict[str, Any] = {"transport": self.transport.name, "ca": self.hub.ca_file.read_text()}
        if self.transport.websocket:
            args["ws_proxy_port"] = self.proxy.port
        else:
            cs = with_host_port(cs, self.hub.ports[self.transport.listener])
        dialed = len(self.proxy.targets)
        try:
            agent.call("open", client=name, cs=cs, module=module, retry=retry, **args)
        except TimeoutError as exc:  # say what the hub saw, too
            raise TimeoutError(
                f"{exc}\nhub log (last 30 lines):\n" + "\n".join(self.hub.stderr_lines[-30:])
            ) from None
        self.opened.append((agent, name))
        if self.transport.websocket:  # the SDK dialed Azure's port; the proxy sent it to the hub's
            assert f"localhost:{self.transport.sdk_port}" in self.proxy.targets[dialed:]
        if ready:
            ids = parse_cs(cs)
            response = self.rest.invoke(
                ids["DeviceId"],
                "echo",
                "ready",
                module_id=ids.get("ModuleId"),
                connectTimeoutInSeconds=15,
                responseTimeoutInSeconds=15,
            )
            assert response.status_code == 200, response.text
            assert response.json() == {"status": 200, "payload": "ready"}
        return name

    def close(self, name: str, agent: NodeAgent | None = None) -> None:
        agent = agent or self.agent
        self.opened.remove((agent, name))
        agent.call("close", client=name)

    def close_all(self) -> None:
        for agent, name in self.opened:
            if agent.proc.poll() is None:
                try:
                    agent.call("close", timeout=20, client=name)
                except Exception:  # a client the test broke on purpose; the agent reports it
                    pass


@pytest.fixture
def node(
    node_agent: NodeAgent,
    tls_hub: HubProcess,
    proxy: ConnectProxy,
    rest: Backend,
    transport: NodeTransport,
    device_id: str,
) -> Iterator[NodeClients]:
    clients = NodeClients(node_agent, tls_hub, proxy, rest, transport, device_id)
    yield clients
    clients.close_all()


def _create(hub: HubProcess, device_id: str, *extra: str) -> str:
    return hub.cli("device", "create", device_id, *extra).stdout.strip()


def _methods(agent: NodeAgent, name: str, count: int) -> list[dict[str, Any]]:
    """The method requests the SDK handed to ``name``'s handlers after the readiness call, once there
    are ``count`` of them (``count=0``: those seen so far)."""
    return agent.wait_events(name, "method", count, lambda e: e["payload"] != "ready")


def _wait_disconnected(rest: Backend, device_id: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        twin = rest.http.get(
            f"/devices/{device_id}?api-version=2021-04-12", headers={"Authorization": rest.token}
        ).json()
        if twin["connectionState"] == "Disconnected":
            return
        assert time.monotonic() < deadline, f"the hub still has {device_id} connected: {twin}"
        time.sleep(0.1)


class BackgroundCall:
    """A REST call running in a thread of its own, with its own HTTP client."""

    def __init__(self, hub: HubProcess, device_id: str, method: str, payload: Any, **fields: Any) -> None:
        self.backend = Backend(hub)
        self.response: httpx.Response | None = None
        self.done = threading.Event()

        def run() -> None:
            try:
                self.response = self.backend.invoke(device_id, method, payload, **fields)
            finally:
                self.done.set()

        threading.Thread(target=run, daemon=True).start()

    def result(self, timeout: float) -> httpx.Response:
        assert self.done.wait(timeout), f"the call did not end in {timeout} s"
        self.backend.close()
        assert self.response is not None, "the call raised (see the thread's exception above)"
        return self.response


PAYLOADS: dict[str, Any] = {
    "object": {"delay": 5, "mode": "fast"},
    "array": [1, "two", None, {"three": 3}, [4.5]],
    "string": "just a string",
    "number": 42.5,
    "integer": 7,
    "boolean": False,
    "null": None,
    "nested": {"a": {"b": {"c": [{"d": [1, 2, {"e": None}]}, {}], "f": "ü ✓"}}, "empty": []},
}


def test_device_answers_payloads_of_every_shape(
    node: NodeClients, node_agent: NodeAgent, rest: Backend, tls_hub: HubProcess, device_id: str
) -> None:
    name = node.open("device", _create(tls_hub, device_id))
    for shape, value in PAYLOADS.items():
        response = rest.invoke(device_id, "echo", value)
        assert response.status_code == 200, (shape, response.text)
        assert response.json() == {"status": 200, "payload": value}, shape
    # each request reached the SDK's handler as the JSON the backend sent
    methods = _methods(node_agent, name, len(PAYLOADS))
    assert [e["payload"] for e in methods] == list(PAYLOADS.values())
    assert {e["method"] for e in methods} == {"echo"}


def test_device_status_and_handler_errors_are_passed_through(
    node: NodeClients, rest: Backend, tls_hub: HubProcess, device_id: str
) -> None:
    node.open("device", _create(tls_hub, device_id))
    response = rest.invoke(device_id, "status", {"status": 417, "payload": {"reason": "lid open"}})
    assert response.status_code == 200
    assert response.json() == {"status": 417, "payload": {"reason": "lid open"}}
    response = rest.invoke(device_id, "status", {"status": 201})
    assert response.json() == {"status": 201, "payload": None}
    # a handler that throws: the SDK itself answers 400 with the error's text
    response = rest.invoke(device_id, "throw", {"message": "sensor on fire"})
    assert response.json() == {"status": 400, "payload": "Invalid request format: sensor on fire"}


def test_closed_device_is_404103_device_not_online(
    node: NodeClients, rest: Backend, tls_hub: HubProcess, device_id: str
) -> None:
    name = node.open("device", _create(tls_hub, device_id))
    node.close(name)
    _wait_disconnected(rest, device_id)
    response = rest.invoke(device_id, "echo", {}, responseTimeoutInSeconds=30)
    assert response.status_code == 404 and error_code(response) == 404103


def test_slow_handler_is_504101_gateway_timeout(
    node: NodeClients, node_agent: NodeAgent, rest: Backend, tls_hub: HubProcess, device_id: str
) -> None:
    name = node.open("device", _create(tls_hub, device_id))
    started = time.monotonic()
    response = rest.invoke(device_id, "slow", {"seconds": 7}, responseTimeoutInSeconds=5)
    elapsed = time.monotonic() - started
    assert response.status_code == 504 and error_code(response) == 504101
    assert elapsed > 4.5  # it waited the response timeout; the handler's answer (at 7 s) would be a 200
    assert [e["method"] for e in _methods(node_agent, name, 1)] == ["slow"]  # the device did get it


def test_connect_timeout_waits_for_a_device_that_connects_later(
    node: NodeClients, node_agent: NodeAgent, tls_hub: HubProcess, device_id: str
) -> None:
    cs = _create(tls_hub, device_id)
    call = BackgroundCall(
        tls_hub, device_id, "echo", {"late": True}, connectTimeoutInSeconds=30, responseTimeoutInSeconds=10
    )
    time.sleep(1)
    assert not call.done.is_set()  # waiting for the device, not 404103 at once
    name = node.open("device", cs, ready=False)
    response = call.result(timeout=40)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": 200, "payload": {"late": True}}
    assert [e["payload"] for e in _methods(node_agent, name, 1)] == [{"late": True}]


@pytest.mark.parametrize("drop", ["close", "kill"])
def test_device_dropping_mid_call_is_answered_404104_at_once(
    node: NodeClients,
    node_modules: Path,
    tls_hub: HubProcess,
    device_id: str,
    drop: str,
) -> None:
    """``close``: the SDK's clean close (MQTT DISCONNECT) while its handler works on the call;
    ``kill``: the device's process dies (the kernel closes its connection, no goodbye)."""
    own_agent = NodeAgent(node_modules) if drop == "kill" else node.agent
    try:
        name = node.open("device", _create(tls_hub, device_id), agent=own_agent)
        call = BackgroundCall(tls_hub, device_id, "slow", {"seconds": 60}, responseTimeoutInSeconds=60)
        own_agent.wait_event(name, "method", lambda e: e["method"] == "slow")
        dropped = time.monotonic()
        if drop == "kill":
            own_agent.kill()
        else:
            node.close(name, agent=own_agent)
        response = call.result(timeout=15)  # not the 60 s of the response timeout or the handler
        assert time.monotonic() - dropped < 15
        assert response.status_code == 404 and error_code(response) == 404104, response.text
    finally:
        if own_agent is not node.agent:
            own_agent.close()


def test_module_client_answers_module_methods(
    node: NodeClients, node_agent: NodeAgent, rest: Backend, tls_hub: HubProcess, device_id: str
) -> None:
    device_cs = _create(tls_hub, device_id)
    module_cs = _create(tls_hub, device_id, "--module", "filter")
    assert parse_cs(module_cs)["ModuleId"] == "filter"
    module = node.open("module", module_cs, module=True)

    response = rest.invoke(device_id, "echo", {"x": 1}, module_id="filter")
    assert response.json() == {"status": 200, "payload": {"x": 1}}
    # the module's connection does not make the device itself callable
    response = rest.invoke(device_id, "echo", {})
    assert response.status_code == 404 and error_code(response) == 404103

    # with the device connected too, each call reaches the identity it names
    device = node.open("device", device_cs)
    assert rest.invoke(device_id, "echo", "to device").json()["payload"] == "to device"
    assert rest.invoke(device_id, "echo", "to module", module_id="filter").json()["payload"] == "to module"
    assert [e["payload"] for e in _methods(node_agent, device, 1)] == ["to device"]
    assert [e["payload"] for e in _methods(node_agent, module, 2)] == [{"x": 1}, "to module"]


def test_second_client_with_the_same_device_id_takes_over(
    request: pytest.FixtureRequest,
    node: NodeClients,
    node_agent: NodeAgent,
    rest: Backend,
    tls_hub: HubProcess,
    device_id: str,
) -> None:
    """The first client runs with ``NoRetry``: with the SDK's default policy it reconnects at once when
    the hub closes its connection, and the two clients would take the device from each other in turn
    (every ~0.1 s, as they would on Azure IoT Hub)."""
    if node.transport.name in ("amqp", "amqpws"):
        request.applymarker(
            pytest.mark.xfail(
                strict=False,
                reason="known, open (issue 11): over AMQP the taken-over Node client, though on NoRetry, "
                "sometimes connects once more and takes the device back, so the second client's call "
                "fails 404104; it passes in most runs",
            )
        )
    cs = _create(tls_hub, device_id)
    first = node.open("first", cs, retry=False)
    second = node.open("second", cs)
    node_agent.wait_event(first, "disconnected")  # the hub closed the first connection
    for n in range(3):
        response = rest.invoke(device_id, "echo", {"n": n})
        assert response.json() == {"status": 200, "payload": {"n": n}}
    assert [e["payload"] for e in _methods(node_agent, second, 3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert _methods(node_agent, first, 0) == []
    assert node_agent.events(second, "disconnected") == []


@pytest.fixture
def clients_over(
    node_agent: NodeAgent, tls_hub: HubProcess, proxy: ConnectProxy, rest: Backend, device_id: str
) -> Iterator[dict[str, NodeClients]]:
    """Node clients of one test over each transport (``clients_over["amqp"].open(...)``)."""
    over = {
        name: NodeClients(node_agent, tls_hub, proxy, rest, TRANSPORTS[name], f"{device_id}/{name}")
        for name in NODE_TRANSPORTS
    }
    yield over
    for clients in over.values():
        clients.close_all()


@pytest.mark.parametrize(("first", "second"), [("mqtt", "amqp"), ("amqp", "mqtt"), ("mqttws", "amqpws")])
def test_takeover_across_transports(
    clients_over: dict[str, NodeClients],
    node_agent: NodeAgent,
    rest: Backend,
    tls_hub: HubProcess,
    device_id: str,
    first: str,
    second: str,
) -> None:
    """The same device on one transport, then on the other: the newer connection gets the calls and
    the hub ends the older one (MQTT: the connection closed; AMQP: its links detached)."""
    cs = _create(tls_hub, device_id)
    old = clients_over[first].open("old", cs, retry=False)
    new = clients_over[second].open("new", cs)
    node_agent.wait_event(old, "disconnected")
    for n in range(3):
        assert rest.invoke(device_id, "echo", {"n": n}).json() == {"status": 200, "payload": {"n": n}}
    assert [e["payload"] for e in _methods(node_agent, new, 3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert _methods(node_agent, old, 0) == []


def test_a_wrong_key_fails_open_with_unauthorized_and_the_hub_logs_it(
    node: NodeClients, tls_hub: HubProcess, device_id: str
) -> None:
    cs = _create(tls_hub, device_id)
    ids = parse_cs(cs)
    wrong = cs.replace(ids["SharedAccessKey"], "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXkgISE=")
    logged = len(tls_hub.stderr_lines)
    with pytest.raises(AgentError) as refused:
        node.open("device", wrong, ready=False, retry=False)
    assert refused.value.error == "UnauthorizedError", refused.value
    deadline = time.monotonic() + 10
    while not any(device_id in line for line in tls_hub.stderr_lines[logged:]):
        assert time.monotonic() < deadline, "the hub logged no refusal"
        time.sleep(0.1)


def test_twin_get_and_reported_update_are_stored_over_every_transport(
    node: NodeClients, node_agent: NodeAgent, rest: Backend, tls_hub: HubProcess, device_id: str
) -> None:
    """``getTwin`` gets the twin with both sides' ``$version``; ``reported.update`` is stored (the
    next ``getTwin`` and the service's twin show it); a patch over the limits fails at once."""
    name = node.open("device", _create(tls_hub, device_id))
    twin = node_agent.call("get_twin", client=name)
    assert twin["desired"]["$version"] == 1 and twin["reported"]["$version"] == 1
    node_agent.call("update_reported", client=name, patch={"firmware": "1.2"}, timeout=30)
    twin = node_agent.call("get_twin", client=name)
    assert twin["reported"]["firmware"] == "1.2" and twin["reported"]["$version"] == 2
    service = rest.http.get(
        f"/twins/{quote(device_id, safe='')}?api-version=2021-04-12", headers={"Authorization": rest.token}
    )
    assert service.status_code == 200 and service.json()["properties"]["reported"]["firmware"] == "1.2"
    with pytest.raises(AgentError):
        node_agent.call("update_reported", client=name, patch={"bad.key": 1}, timeout=30)


def test_desired_property_changes_reach_the_twin_listener(
    node: NodeClients, node_agent: NodeAgent, rest: Backend, tls_hub: HubProcess, device_id: str
) -> None:
    """``twin.on('properties.desired')`` hears a service PATCH of the desired properties (the SDK
    subscribes when the listener is added; a notification comes within the change-feed poll)."""
    name = node.open("device", _create(tls_hub, device_id))
    node_agent.call("watch_desired", client=name)
    # The SDK subscribes after the listener is added and says nothing when it has: change the
    # desired properties until a change is heard (each PATCH is 200 at once either way).
    deadline = time.monotonic() + 20
    n = 0
    while not [e for e in node_agent.events(name, "desired") if "interval" in e["delta"]]:
        assert time.monotonic() < deadline, node_agent.events(name, "desired")
        n += 1
        patched = rest.http.patch(
            f"/twins/{quote(device_id, safe='')}?api-version=2021-04-12",
            json={"properties": {"desired": {"interval": n}}},
            headers={"Authorization": rest.token, "If-Match": '"*"'},
        )
        assert patched.status_code == 200, patched.text
        time.sleep(0.5)
    heard = [e["delta"] for e in node_agent.events(name, "desired") if "interval" in e["delta"]]
    assert 1 <= heard[0]["interval"] <= n and heard[0]["$version"] == heard[0]["interval"] + 1


def test_128_kb_payloads_each_way(
    node: NodeClients, node_agent: NodeAgent, rest: Backend, tls_hub: HubProcess, device_id: str
) -> None:
    name = node.open("device", _create(tls_hub, device_id))
    big = "p" * (128 * 1024 - 2)  # the JSON string is exactly 128 KiB
    response = rest.invoke(device_id, "echo", big)
    assert response.status_code == 200, response.text[:300]
    assert response.json() == {"status": 200, "payload": big}
    assert [len(e["payload"]) for e in _methods(node_agent, name, 1)] == [len(big)]


def test_the_client_reconnects_after_a_hub_restart(
    node_agent: NodeAgent, transport: NodeTransport, tmp_path: Path, device_id: str
) -> None:
    """A hub of its own, stopped and started again on the same ports: the SDK (default retry policy)
    reconnects by itself and answers calls again."""
    listeners = ("mqtt", "http", "mqtts", "https", "amqps")
    hub = HubProcess(tmp_path / "data", listeners=listeners).start()
    same_ports = [arg for name in listeners for arg in (f"--{name}-port", str(hub.ports[name]))]
    proxy = ConnectProxy({443: hub.ports["https"]})
    rest = Backend(hub)
    clients = NodeClients(node_agent, hub, proxy, rest, transport, device_id)
    try:
        name = clients.open("device", _create(hub, device_id))
        assert hub.stop() == 0
        rest.close()
        hub = HubProcess(tmp_path / "data", listeners=listeners, args=same_ports).start()
        rest = Backend(hub)
        clients.hub, clients.rest = hub, rest
        response = rest.invoke(
            device_id, "echo", "again", connectTimeoutInSeconds=60, responseTimeoutInSeconds=10
        )
        assert response.json() == {"status": 200, "payload": "again"}, response.text
        assert [e["payload"] for e in _methods(node_agent, name, 1)] == ["again"]
    finally:
        clients.close_all()
        rest.close()
        proxy.close()
        hub.stop()
