"""X.509 devices with Microsoft's unmodified Python SDKs (issue 15): ``IoTHubRegistryManager``
registers them (``create_device_with_x509``, ``create_device_with_certificate_authority``,
``create_module_with_x509``) and ``IoTHubDeviceClient.create_from_x509_certificate`` /
``IoTHubModuleClient.create_from_x509_certificate`` connect with ``X509(cert_file, key_file)`` over
MQTT/TLS (8883) and MQTT over WebSocket (443), through the CONNECT proxy of ``support.py``, and
answer direct methods called through the hub's REST API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from methodhub.auth.x509 import der_of, thumbprints
from methodhub.process.certificates import issue, load_issuer, write_pair
from tests.interop.support import Agent, AgentError, ConnectProxy
from tests.support import HOSTNAME, HubProcess

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def connect_x509(azure: Agent, tls_hub: HubProcess, proxy: ConnectProxy) -> Iterator[Any]:
    """``connect_x509(name, device_id, cert, key, **options)``: an SDK X.509 client, shut down after."""
    names: list[str] = []
    ca = tls_hub.ca_file.read_text()

    def open_client(name: str, device_id: str, cert: Path, key: Path, **options: Any) -> dict[str, Any]:
        names.append(name)
        return azure.call(
            "device_connect_x509",
            name=name,
            hostname=HOSTNAME,
            device_id=device_id,
            cert_file=str(cert),
            key_file=str(key),
            ca=ca,
            proxy=["127.0.0.1", proxy.port],
            **options,
        )

    yield open_client
    for name in names:
        try:
            azure.call("device_shutdown", name=name)
        except AgentError:
            pass


def _self_signed(tmp_path: Path, cn: str) -> tuple[Path, Path, str, str]:
    cert, key = issue(cn)
    paths = tmp_path / f"{cn.replace('/', '-')}.pem", tmp_path / f"{cn.replace('/', '-')}-key.pem"
    write_pair(cert, key, *paths)
    sha1, sha256 = thumbprints(der_of(cert))
    return paths[0], paths[1], sha1, sha256


def test_self_signed_device_registered_and_connected_with_the_sdks_answers_methods(
    azure: Agent, tls_hub: HubProcess, proxy: ConnectProxy, connect_x509: Any, device_id: str, tmp_path: Path
) -> None:
    cert, key, sha1, sha256 = _self_signed(tmp_path, device_id)
    created = azure.call("service_create_device_x509", device_id=device_id, primary=sha1, secondary=sha256)
    assert created["authentication"] == {
        "symmetricKey": {},  # msrest drops the null keys
        "x509Thumbprint": {"primaryThumbprint": sha1, "secondaryThumbprint": sha256},
        "type": "selfSigned",
    }
    assert connect_x509("mqtt", device_id, cert, key)["connected"] is True
    assert "localhost:8883" in proxy.targets
    result = azure.call("service_invoke", device_id=device_id, method="reboot", payload={"delay": 1})
    assert result == {"status": 200, "payload": {"method": "reboot", "payload": {"delay": 1}}}
    azure.call("device_shutdown", name="mqtt")
    assert connect_x509("ws", device_id, cert, key, websockets=True)["connected"] is True
    assert "localhost:443" in proxy.targets
    result = azure.call("service_invoke", device_id=device_id, method="ping", payload=None)
    assert result["status"] == 200 and result["payload"]["method"] == "ping"


def test_an_unregistered_certificate_is_refused_by_the_hub(
    azure: Agent, tls_hub: HubProcess, connect_x509: Any, device_id: str, tmp_path: Path
) -> None:
    _cert, _key, sha1, _sha256 = _self_signed(tmp_path, device_id)
    azure.call("service_create_device_x509", device_id=device_id, primary=sha1, secondary=None)
    stranger, stranger_key, _, _ = _self_signed(tmp_path / "..", device_id)  # same CN, other key
    with pytest.raises(AgentError):
        connect_x509("stranger", device_id, stranger, stranger_key)
    assert any("neither of the identity's registered thumbprints" in line for line in tls_hub.stderr_lines)


def test_ca_issued_device_and_self_signed_module(
    azure: Agent, tls_hub: HubProcess, connect_x509: Any, device_id: str, tmp_path: Path
) -> None:
    tls_hub.cli("ca", "dev-cert", "interop-root", "--is-ca", "--out", str(tmp_path / "root"))
    code = tls_hub.cli("ca", "add", f"interop-{device_id}"[:64], str(tmp_path / "root.pem")).stdout.strip()
    root_key = str(tmp_path / "root-key.pem")
    tls_hub.cli(
        "ca",
        "dev-cert",
        code,
        "--ca",
        str(tmp_path / "root.pem"),
        "--ca-key",
        root_key,
        "--out",
        str(tmp_path / "pop"),
    )
    tls_hub.cli("ca", "verify", f"interop-{device_id}"[:64], str(tmp_path / "pop.pem"))
    issuer = load_issuer((tmp_path / "root.pem").read_bytes(), (tmp_path / "root-key.pem").read_bytes())
    leaf, leaf_key = issue(device_id, issuer)
    write_pair(leaf, leaf_key, tmp_path / "leaf.pem", tmp_path / "leaf-key.pem")
    created = azure.call("service_create_device_ca", device_id=device_id)
    assert created["authentication"]["type"] == "certificateAuthority"
    assert (
        connect_x509("ca", device_id, tmp_path / "leaf.pem", tmp_path / "leaf-key.pem")["connected"] is True
    )
    result = azure.call("service_invoke", device_id=device_id, method="status", payload=[1])
    assert result == {"status": 200, "payload": {"method": "status", "payload": [1]}}
    # a module of the device, self-signed, as its own identity
    cert, key, sha1, _ = _self_signed(tmp_path, f"{device_id}/agent")
    module = azure.call(
        "service_create_module_x509", device_id=device_id, module_id="agent", primary=sha1, secondary=None
    )
    assert module["authentication"]["type"] == "selfSigned"
    assert connect_x509("module", device_id, cert, key, module_id="agent")["connected"] is True
    result = azure.call(
        "service_invoke", device_id=device_id, module_id="agent", method="calibrate", payload={"x": 2}
    )
    assert result == {"status": 200, "payload": {"method": "calibrate", "payload": {"x": 2}}}
