"""The console's HTTP side on a real hub process: its static files (content types, caching, no way
out of the package's static directory), ``/console/session`` and the ``/console/events`` stream of
device connection changes (Server-Sent Events)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support import HubProcess, PahoDevice

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("console") / "data").start()
    yield hub
    hub.stop()


STATIC = Path(__file__).parents[2] / "src" / "methodhub" / "console" / "static"


@pytest.mark.parametrize(
    ("path", "content_type", "file"),
    [
        ("/console", "text/html; charset=utf-8", "index.html"),
        ("/console/", "text/html; charset=utf-8", "index.html"),
        ("/console/index.html", "text/html; charset=utf-8", "index.html"),
        ("/console/app.js", "text/javascript; charset=utf-8", "app.js"),
        ("/console/hub.js", "text/javascript; charset=utf-8", "hub.js"),
        ("/console/console.css", "text/css; charset=utf-8", "console.css"),
    ],
)
def test_static_files_with_their_types_and_revalidation(
    hub: HubProcess, path: str, content_type: str, file: str
) -> None:
    response = httpx.get(hub.http_url + path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == (STATIC / file).read_bytes()
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    etag = response.headers["etag"]
    again = httpx.get(hub.http_url + path, headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    other = httpx.get(hub.http_url + path, headers={"if-none-match": '"other"'})
    assert other.status_code == 200
    head = httpx.head(hub.http_url + path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(response.content))


@pytest.mark.parametrize(
    "path",
    [
        "/console/..%2Fstatic.py",
        "/console/%2E%2E%2F%2E%2E%2Fpyproject.toml",
        "/console/..",
        "/console/%2e%2e",
        "/console/static.py",
        "/console/__init__.py",
        "/console/static%2Findex.html",
        "/console/.hidden",
        "/console/nothing.js",
    ],
)
def test_no_other_file_is_served(hub: HubProcess, path: str) -> None:
    # A raw request: httpx would normalize "/console/.." itself before sending it.
    with socket.create_connection(("127.0.0.1", hub.ports["http"]), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 "), head
    assert orjson.loads(body)["error"] == "not_found"


def test_the_landing_page_links_the_console(hub: HubProcess) -> None:
    assert 'href="/console"' in httpx.get(hub.http_url + "/").text


def test_session_tells_the_rights_of_the_token(hub: HubProcess) -> None:
    owner = httpx.get(hub.http_url + "/console/session", headers={"authorization": hub.service_token()})
    assert owner.status_code == 200
    assert owner.json()["policy"] == "iothubowner" and "ServiceConnect" in owner.json()["rights"]
    reader = httpx.get(
        hub.http_url + "/console/session", headers={"authorization": hub.service_token("registryRead")}
    )
    assert reader.json()["rights"] == ["RegistryRead"]
    assert httpx.get(hub.http_url + "/console/session").status_code == 401


def _events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, object]]]:
    name = ""
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            yield name, orjson.loads(line[6:])


def test_events_need_a_token_in_the_query(hub: HubProcess) -> None:
    assert httpx.get(hub.http_url + "/console/events").status_code == 401
    bad = httpx.get(hub.http_url + "/console/events", params={"sas": "SharedAccessSignature sr=x"})
    assert bad.status_code == 401


def test_events_push_connects_and_disconnects(hub: HubProcess) -> None:
    key = hub.create_device("watched")
    earlier = PahoDevice(hub, "earlier", hub.create_device("earlier")).online()
    try:
        sas = {"sas": hub.service_token("registryRead")}
        with httpx.stream("GET", hub.http_url + "/console/events", params=sas, timeout=20) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"] == "text/event-stream"
            assert stream.headers["cache-control"] == "no-store"
            assert "content-length" not in stream.headers
            events = _events(stream.iter_lines())
            name, hello = next(events)
            assert name == "hello" and hello["connected"] == ["earlier"]
            device = PahoDevice(hub, "watched", key).online()
            name, event = next(events)
            assert (name, event["target"], event["connected"]) == ("connection", "watched", True)
            device.close()
            name, event = next(events)
            assert (name, event["target"], event["connected"]) == ("connection", "watched", False)
    finally:
        earlier.close()


def test_a_stopping_hub_ends_its_event_streams(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path / "data").start()
    try:
        sas = {"sas": hub.service_token()}
        with httpx.stream("GET", hub.http_url + "/console/events", params=sas, timeout=20) as stream:
            lines = stream.iter_lines()
            assert next(lines) == "event: hello"
            assert hub.stop() == 0  # an open stream does not hold the hub up
            assert [line for line in lines if line.startswith("event:")] == []  # and it ends
    finally:
        hub.stop()
