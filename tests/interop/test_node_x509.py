"""X.509 devices with Microsoft's unmodified Node.js device SDK (issue 15): ``Client.fromConnectionString(
"HostName=...;DeviceId=...;x509=true", Transport)`` with ``setOptions({ca, cert, key})``, over each
transport of ``node_support.TRANSPORTS`` (MQTT and AMQP, over TLS and over WebSocket), answering a
direct method called through the hub's REST API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from methodhub.auth.x509 import der_of, thumbprints
from methodhub.process.certificates import certificate_pem, issue
from tests.interop.node_support import TRANSPORTS, NodeAgent, with_host_port
from tests.interop.support import AgentError, ConnectProxy
from tests.support import HOSTNAME, Backend, HubProcess

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def rest(tls_hub: HubProcess) -> Iterator[Backend]:
    client = Backend(tls_hub)
    yield client
    client.close()


def _pem_pair(cn: str) -> tuple[str, str, str]:
    """A self-signed certificate for ``cn``: (certificate PEM, key PEM, SHA-1 thumbprint)."""
    from cryptography.hazmat.primitives import serialization

    cert, key = issue(cn)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return certificate_pem(cert).decode(), key_pem, thumbprints(der_of(cert))[0]


def _open(
    agent: NodeAgent,
    hub: HubProcess,
    proxy: ConnectProxy,
    name: str,
    transport: str,
    device_id: str,
    cert: str,
    key: str,
) -> None:
    spec = TRANSPORTS[transport]
    cs = f"HostName={HOSTNAME};DeviceId={device_id};x509=true"
    args: dict[str, object] = {"ca": hub.ca_file.read_text(), "cert": cert, "key": key, "retry": False}
    if spec.websocket:
        args["ws_proxy_port"] = proxy.port
    else:
        cs = with_host_port(cs, hub.ports[spec.listener])
    agent.call("open", client=name, cs=cs, transport=transport, **args)


@pytest.mark.parametrize("transport", ["mqtt", "mqttws", "amqp", "amqpws"])
def test_a_self_signed_node_device_answers_a_direct_method(
    node_agent: NodeAgent,
    tls_hub: HubProcess,
    proxy: ConnectProxy,
    rest: Backend,
    device_id: str,
    transport: str,
) -> None:
    cert, key, sha1 = _pem_pair(device_id)
    tls_hub.cli("device", "create", device_id, "--x509-thumbprint", sha1)
    name = f"{device_id}/x509"
    _open(node_agent, tls_hub, proxy, name, transport, device_id, cert, key)
    try:
        response = rest.invoke(device_id, "echo", {"n": 1}, connectTimeoutInSeconds=15)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": 200, "payload": {"n": 1}}
    finally:
        node_agent.call("close", client=name)


def test_a_node_device_with_an_unregistered_certificate_does_not_connect(
    node_agent: NodeAgent, tls_hub: HubProcess, proxy: ConnectProxy, device_id: str, tmp_path: Path
) -> None:
    _cert, _key, sha1 = _pem_pair(device_id)
    tls_hub.cli("device", "create", device_id, "--x509-thumbprint", sha1)
    stranger, stranger_key, _ = _pem_pair(device_id)
    with pytest.raises(AgentError):
        _open(node_agent, tls_hub, proxy, f"{device_id}/stranger", "mqtt", device_id, stranger, stranger_key)
