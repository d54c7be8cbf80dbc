"""Fixtures for the Azure interop tests: a TLS hub, a CONNECT proxy to it, the official SDKs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.node_support import NodeAgent, node_sdk
from tests.interop.support import Agent, ConnectProxy, side_venv
from tests.support import HubProcess

AZURE_SDKS = ["azure-iot-device==2.14.0", "azure-iot-hub==2.7.0", "six"]
"""The versions azure-direct-methods-wire.md documents. ``six``: azure-iot-hub imports it without
declaring it (wire doc §2.1)."""


@pytest.fixture(scope="session")
def azure_python() -> Path:
    return side_venv("azure", AZURE_SDKS)


@pytest.fixture(scope="session")
def tls_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(
        tmp_path_factory.mktemp("tls-hub"), listeners=("mqtt", "http", "mqtts", "https", "amqps")
    ).start()
    yield hub
    hub.stop()


@pytest.fixture(scope="session")
def proxy(tls_hub: HubProcess) -> Iterator[ConnectProxy]:
    proxy = ConnectProxy({8883: tls_hub.ports["mqtts"], 443: tls_hub.ports["https"]})
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def azure(azure_python: Path, tls_hub: HubProcess) -> Iterator[Agent]:
    """The official SDKs, with a registry manager opened on the hub's HTTPS port (port in HostName,
    as wire doc §2.2 says works) trusting the hub's development CA."""
    agent = Agent(azure_python, Path(__file__).with_name("azure_agent.py"))
    cs = tls_hub.service_cs()
    agent.call(
        "service_open",
        cs=f"HostName={cs['HostName']}:{tls_hub.ports['https']};SharedAccessKeyName={cs['SharedAccessKeyName']};"
        f"SharedAccessKey={cs['SharedAccessKey']}",
        ca_file=str(tls_hub.ca_file),
    )
    yield agent
    agent.close()


@pytest.fixture(scope="session")
def node_modules(pytestconfig: pytest.Config) -> Path:
    """Microsoft's Node.js device SDK from npm, installed once into a cache outside the repo
    (node_support.py). The install's progress is shown while it runs (pytest's capture is off then)."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    if capture is None:  # pytest -p no:capture
        return node_sdk()
    with capture.global_and_fixture_disabled():
        return node_sdk()


@pytest.fixture(scope="session")
def node_agent(node_modules: Path) -> Iterator[NodeAgent]:
    """One ``node node_agent.js`` for the session; each test names its own clients."""
    agent = NodeAgent(node_modules)
    yield agent
    agent.close()
