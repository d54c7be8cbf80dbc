"""Reading the running hub's HTTP API from commands that work without it too (``device list``'s
connection states, ``status``): the hub on the data dir (its ``hub.json``), asked as iothubowner."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from methodhub.cli.tls import tls_trust
from methodhub.dialects.azure.sas import generate_sas_token
from methodhub.process.datadir import read_runtime

if TYPE_CHECKING:
    import httpx

    from methodhub.registry import Registry

READ_TIMEOUT = 5.0
"""Seconds a read of the hub's API may take before the command says the state is unknown."""


def running_hub_url(data_dir: Path) -> str | None:
    """The HTTP(S) base URL of the hub running on the data dir, or None if none is (or it has no
    HTTP listener)."""
    runtime = read_runtime(data_dir)
    if runtime is None:
        return None
    url = runtime.get("http") or runtime.get("https")
    return str(url) if url else None


async def owner_token(registry: Registry, hostname: str) -> str | None:
    """A short-lived iothubowner token for the hub's API, or None if that policy is gone."""
    policy = await registry.get_policy("iothubowner")
    if policy is None:
        return None
    return generate_sas_token(hostname, policy.keys.primary, int(time.time()) + 300, policy.name)


def hub_client(url: str, data_dir: Path) -> httpx.AsyncClient:
    """An HTTP client of the hub at ``url`` that trusts what ``invoke`` trusts."""
    import httpx

    verify = tls_trust(None, data_dir) if url.startswith("https://") else True
    return httpx.AsyncClient(base_url=url, verify=verify, timeout=READ_TIMEOUT)


async def get_json(client: httpx.AsyncClient, path: str, token: str, **params: str) -> Any:
    """The JSON the hub answers ``GET path`` with; raises ``httpx.HTTPError`` (also for a status
    other than 200)."""
    response = await client.get(path, params=params, headers={"authorization": token})
    response.raise_for_status()
    return response.json()
