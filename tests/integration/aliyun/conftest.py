"""Fixtures: one hub (MQTT, MQTT/TLS, HTTP, HTTPS) for the whole Alibaba package, the official SDKs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aliyunsdkcore.client import AcsClient

from tests.integration.aliyun.support import TSL, linkkit_python, pop_client
from tests.support import HubProcess


@pytest.fixture(scope="package")
def aliyun_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(
        tmp_path_factory.mktemp("aliyun-hub"),
        listeners=("mqtt", "http", "mqtts", "https"),
        args=["--history", "on"],  # test_call_history.py reads it
    ).start()
    yield hub
    hub.stop()


@pytest.fixture(scope="package")
def linkkit() -> Path:
    """The side venv's python with aliyun-iot-linkkit 1.2.13 and paho-mqtt 1.6.1."""
    return linkkit_python()


@pytest.fixture(scope="package")
def tsl_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("tsl") / "tsl.json"
    path.write_text(json.dumps(TSL))
    return str(path)


@pytest.fixture(scope="package")
def owner(aliyun_hub: HubProcess) -> AcsClient:
    """aliyun-python-sdk-core signing as the iothubowner policy."""
    return pop_client(aliyun_hub)
