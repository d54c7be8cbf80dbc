"""The metrics a node reads from its registry at scrape time (process/hub.py): queued calls, running
jobs and their device calls, on a real node (in this process, HTTP on a free port, no devices)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from methodhub.calls.jobs import Job, JobType
from methodhub.config import HubConfig
from methodhub.http.messages import Request
from methodhub.process.hub import Hub


def samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Hub]:
    config = HubConfig(
        data_dir=tmp_path,
        mqtt_port=-1,
        http_port=0,
        mqtts_port=-1,
        https_port=-1,
        amqps_port=-1,
        record_runtime=False,
    )
    hub = Hub(config)
    await hub.start()
    yield hub
    await hub.stop()


async def scrape(hub: Hub) -> dict[str, float]:
    response = await hub._metrics(Request("GET", "/metrics"))
    assert response.status == 200
    return samples(bytes(response.body).decode())


async def test_queued_calls_and_jobs_are_read_from_the_registry_at_most_every_five_seconds(node: Hub) -> None:
    assert node.registry is not None and node.jobs is not None and node.queued is not None
    before = await scrape(node)
    assert before['methodhub_queued_calls{state="queued"}'] == 0
    assert before["methodhub_jobs_running"] == 0
    assert before['methodhub_job_device_calls{state="queued"}'] == 0
    await node.registry.create_identity("sleepy")  # never connects: its calls stay queued
    await node.queued.create("sleepy", None, "reboot", b"{}")
    request = {"methodName": "reboot", "payload": "{}", "responseTimeoutInSeconds": 30}
    now = time.time()
    await node.jobs.create(Job("j1", JobType.DEVICE_METHOD, "*", request, now, now, 600.0))
    await node.jobs.run_now()
    cached = await scrape(node)  # within 5 s of the last read: the cached values
    assert cached['methodhub_queued_calls{state="queued"}'] == 0
    for refresher in node.metrics._refreshers:
        refresher.fetched_at -= 5.0
    after = await scrape(node)
    assert after['methodhub_queued_calls{state="queued"}'] == 2  # the call and the job's
    assert after["methodhub_jobs_running"] == 1
    assert after['methodhub_job_device_calls{state="queued"}'] == 1
    assert after['methodhub_job_device_calls{state="succeeded"}'] == 0
    assert after["methodhub_event_loop_lag_last_seconds"] >= 0
