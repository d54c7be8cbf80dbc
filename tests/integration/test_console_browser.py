"""The web console in a real browser: Debian's headless chromium driven by Playwright's Python API
against a real hub process with paho-mqtt devices (``scripts/ensure-tools`` installs chromium).

Every wait is on page state (Playwright's auto-waiting ``expect``), bounded by ``WAIT_MS``; nothing
sleeps. Screenshots of each page go to the test's temporary directory, and to
``$METHODHUB_CONSOLE_SCREENSHOTS`` when set (``docs/console/`` is made that way).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support import Backend, HubProcess, PahoDevice

pytestmark = pytest.mark.timeout(120)

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "chromium is missing: run scripts/ensure-tools (Debian package chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path / "data", args=["--history", "on"]).start()  # the calls page shows it
    yield hub
    hub.stop()


def _connection_string(hub: HubProcess, policy: str) -> str:
    cs = hub.service_cs(policy)
    return ";".join(f"{k}={cs[k]}" for k in ("HostName", "SharedAccessKeyName", "SharedAccessKey"))


def _sign_in(page: Page, hub: HubProcess, policy: str) -> None:
    page.goto(hub.http_url + "/console")
    page.fill("#connection-string", _connection_string(hub, policy))
    page.click("#signin button[type=submit]")
    expect(page.locator("#nav")).to_be_visible()
    expect(page.locator("#who")).to_contain_text(policy)


def _echo(name: str, payload: bytes) -> tuple[int, bytes]:
    return 200, json.dumps({"method": name, "got": json.loads(payload or b"null")}).encode()


class Shots:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        target = os.environ.get("METHODHUB_CONSOLE_SCREENSHOTS")
        self.target = Path(target) if target else None

    def take(self, page: Page, name: str) -> None:
        path = self.tmp / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 1000
        if self.target is not None:
            self.target.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.target / path.name)


def test_the_console_tour(browser: Browser, hub: HubProcess, tmp_path: Path) -> None:
    shots = Shots(tmp_path)
    farm_key = hub.create_device("farm-1")
    sleepy_key = hub.create_device("sleepy")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    devices: list[PahoDevice] = []
    try:
        # A wrong connection string: a message, no traceback, still on the sign-in page.
        page.goto(hub.http_url + "/console")
        expect(page.locator("#connection-string")).to_be_visible()
        expect(page.locator("#nav")).to_be_hidden()
        shots.take(page, "signin")
        page.fill("#connection-string", "HostName=localhost;SharedAccessKeyName=iothubowner")
        page.click("#signin button[type=submit]")
        expect(page.locator("#signin [role=alert]")).to_contain_text("SharedAccessKey")
        wrong_key = "HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=bm90"
        page.fill("#connection-string", wrong_key)
        page.click("#signin button[type=submit]")
        expect(page.locator("#signin [role=alert]")).to_contain_text("signature does not match")
        assert page.evaluate("sessionStorage.length") == 0
        _sign_in(page, hub, "iothubowner")
        assert page.evaluate("sessionStorage.length") == 1 and page.evaluate("localStorage.length") == 0

        # Devices: farm-1 goes online while the page is open.
        page.goto(hub.http_url + "/console#/devices")
        row = page.locator("tr[data-device='farm-1']")
        expect(row.locator(".state")).to_have_text("offline")
        farm = PahoDevice(hub, "farm-1", farm_key).online()
        devices.append(farm)
        farm.serve(_echo)
        expect(row.locator(".state")).to_have_text("online")
        expect(row).to_have_attribute("data-source", "event")  # pushed by /console/events
        expect(page.locator("#live")).to_have_text("live")
        page.fill("#device-search", "farm")
        expect(page.locator("tr[data-device='sleepy']")).to_have_count(0)
        shots.take(page, "devices")

        # The device page: an invalid payload is refused in the page; a valid one is invoked.
        page.fill("#device-search", "")
        row.locator("a").click()
        expect(page.locator("#device-state .state")).to_have_text("online")
        page.fill("#method", "ping")
        page.fill("#payload", "{not json")
        expect(page.locator("#payload-error")).to_contain_text("Not JSON")
        page.fill("#payload", '{"n": 1}')
        expect(page.locator("#payload-error")).to_have_text("")
        page.click("#invoke")
        expect(page.locator("#result-status")).to_have_text("200")
        expect(page.locator("#result-payload")).to_contain_text('"got": {')
        expect(page.locator("#invoke-result")).to_contain_text(" ms")
        # Tags edited through PATCH /twins/{id}.
        expect(page.locator("#twin")).to_contain_text('"deviceId": "farm-1"')
        page.fill("#tags", '{"site": "north"}')
        page.click("#save-tags")
        expect(page.locator("#twin")).to_contain_text('"site": "north"')
        shots.take(page, "device")

        # Queue a call for the offline device; it completes when the device connects.
        page.goto(hub.http_url + "/console#/device/sleepy")
        expect(page.locator("#device-state .state")).to_have_text("offline")
        page.fill("#method", "wake")
        page.fill("#payload", '{"at": "dawn"}')
        page.click("#invoke")  # offline: the hub's error, and the hint to queue it
        expect(page.locator("#invoke-result [role=alert]")).to_contain_text("404: ")
        expect(page.locator("#invoke-result [role=alert]")).to_contain_text("(404103)")  # Azure's errorCode
        expect(page.locator("#invoke-result [role=alert]")).not_to_contain_text('{"')
        expect(page.locator("#invoke-result")).to_contain_text("queue the call")
        page.click("#queue")
        expect(page.locator("#invoke-result")).to_contain_text("Queued")
        call_id = page.locator("#invoke-result code").inner_text()
        page.goto(hub.http_url + "/console#/calls")
        # the queued call's row (the refused direct call is in the history too, failed)
        queued = page.locator(f"#calls tr[data-call='{call_id}']")
        expect(page.locator("#calls tr", has_text="wake")).to_have_count(2)
        expect(queued.locator(".state")).to_have_text("queued")
        expect(queued.locator("button.cancel")).to_be_visible()
        sleepy = PahoDevice(hub, "sleepy", sleepy_key).online()
        devices.append(sleepy)
        sleepy.serve(_echo)
        expect(queued.locator(".state")).to_have_text("succeeded")
        expect(queued).to_contain_text('"at":"dawn"')
        shots.take(page, "calls")

        # A queued call cancelled from the list (its device never connects).
        hub.create_device("ghost")
        page.goto(hub.http_url + "/console#/device/ghost")
        page.fill("#method", "never")
        page.click("#queue")
        expect(page.locator("#invoke-result")).to_contain_text("Queued")
        page.goto(hub.http_url + "/console#/calls")
        page.fill("#filter-device", "ghost")
        page.press("#filter-device", "Enter")
        ghost = page.locator("#calls tr", has_text="never")
        expect(page.locator("#calls tr")).to_have_count(1)
        page.select_option("#filter-door", "azure")  # the hub's filters: not a direct call
        expect(page.locator("#calls tr")).to_have_count(0)
        page.select_option("#filter-door", "native")
        page.select_option("#filter-since", "300")
        expect(page.locator("#calls tr")).to_have_count(1)
        ghost.locator("button.cancel").click()
        expect(ghost.locator(".state")).to_have_text("cancelled")

        # A job over a query: progress and per-device results.
        page.goto(hub.http_url + "/console#/jobs")
        page.fill("#job-query", "tags.site = 'north'")
        page.fill("#job-method", "report")
        page.click("#create-job")
        expect(page.locator("#job-created")).to_contain_text("Created job")
        expect(page.locator("#job-detail .state").first).to_have_text("completed")
        expect(page.locator("#job-detail [role=progressbar]")).to_have_attribute("aria-valuenow", "1")
        expect(page.locator("#job-devices tr")).to_have_count(1)
        expect(page.locator("#job-devices tr")).to_contain_text("farm-1")
        expect(page.locator("#jobs tr")).to_have_count(1)
        shots.take(page, "jobs")

        page.goto(hub.http_url + "/console#/overview")
        expect(page.locator("#online-count")).to_have_text("2 / 3")
        expect(page.locator("main")).to_contain_text("Latency p50 / p95 / p99 (last hour)")
        expect(page.locator("#latency")).to_have_text("— / — / — ms")  # no call since the page opened
        backend = Backend(hub)
        try:  # calls while the page watches: their latency percentiles from the histogram
            assert all(backend.invoke("farm-1", "ping").status_code == 200 for _ in range(5))
        finally:
            backend.close()
        expect(page.locator("#latency")).to_have_text(re.compile(r"^[\d.]+ / [\d.]+ / [\d.]+ ms$"))
        expect(page.locator(".error-code")).to_have_text(["device_offline: 1"])
        shots.take(page, "overview")
        page.click("#signout")
        expect(page.locator("#connection-string")).to_be_visible()
        assert page.evaluate("sessionStorage.length") == 0
        assert errors == []
    finally:
        page.close()
        for device in devices:
            device.close()


def test_a_policy_without_service_connect_sees_read_only_pages(browser: Browser, hub: HubProcess) -> None:
    hub.create_device("farm-2")
    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        _sign_in(page, hub, "registryRead")
        expect(page.locator("#who")).to_contain_text("read-only")
        page.goto(hub.http_url + "/console#/devices")
        expect(page.locator("tr[data-device='farm-2'] .state")).to_have_text("offline")
        page.goto(hub.http_url + "/console#/device/farm-2")
        expect(page.locator("main")).to_contain_text("read-only")
        expect(page.locator("#invoke")).to_have_count(0)
        expect(page.locator("#queue")).to_have_count(0)
        page.goto(hub.http_url + "/console#/jobs")
        expect(page.locator("main")).to_contain_text("read-only")
        expect(page.locator("#create-job")).to_have_count(0)
    finally:
        page.close()
