"""`methodhub serve`'s HTTP limits against a real hub: slow clients, connection floods, the fd limit,
and what `/` answers a person."""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from methodhub import __version__
from tests.support import HubProcess

DRIP_GUARD = 10.0
"""Seconds a dripping client keeps going before the test gives up (a guard, not a timing check)."""


@pytest.fixture(scope="module")
def limited_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    args = ["--http-head-timeout", "0.5", "--http-body-timeout", "0.5", "--http-max-unestablished", "8"]
    hub = HubProcess(tmp_path_factory.mktemp("limits"), args=args).start()
    yield hub
    hub.stop()


def _connect(hub: HubProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", hub.ports["http"]), timeout=5)


def _open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def _drip(sock: socket.socket, data: bytes) -> bytes:
    """Send a byte at a time, 20 ms apart, until the hub answers (or closes); what it sent."""
    sock.settimeout(0.02)
    deadline = time.monotonic() + DRIP_GUARD
    received = b""
    for byte in data:
        if time.monotonic() > deadline:
            break
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        with contextlib.suppress(TimeoutError):
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
            if b"\r\n\r\n" in received:
                break
    sock.settimeout(5)
    with contextlib.suppress(OSError):
        while chunk := sock.recv(4096):
            received += chunk
    return received


def test_a_head_sent_a_byte_at_a_time_gets_408(limited_hub: HubProcess) -> None:
    with _connect(limited_hub) as sock:
        answer = _drip(sock, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 2000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"did not arrive within 0.5 s" in answer and b"connection: close" in answer.lower()


def test_a_body_sent_a_byte_at_a_time_gets_408(limited_hub: HubProcess) -> None:
    with _connect(limited_hub) as sock:
        sock.sendall(b"POST /twins/x/methods HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
        answer = _drip(sock, b"{" + b" " * 1998 + b"}")
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"The request body did not arrive within 0.5 s." in answer


def test_a_flood_of_silent_connections_does_not_lock_out_a_real_client(limited_hub: HubProcess) -> None:
    silent = [_connect(limited_hub) for _ in range(40)]  # 5 x --http-max-unestablished
    try:
        health = httpx.get(f"{limited_hub.http_url}/health", timeout=5)
        assert health.status_code == 200
        closed = 0
        for sock in silent[:32]:  # the oldest ones made room
            sock.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                closed += sock.recv(1) == b""
        assert closed == 32
    finally:
        for sock in silent:
            sock.close()
    assert any("not yet established" in line for line in limited_hub.stderr_lines)
    assert not any("Traceback" in line for line in limited_hub.stderr_lines)


def test_transfer_codings_other_than_chunked_are_501(limited_hub: HubProcess) -> None:
    with _connect(limited_hub) as sock:
        sock.sendall(
            b"POST /twins/x/methods HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n"
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 501 "), answer[:200]
    assert b"not_implemented" in answer


def test_get_slash_is_a_landing_page_and_pop_calls_still_reach_the_pop_api(limited_hub: HubProcess) -> None:
    page = httpx.get(limited_hub.http_url + "/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert f"methodhub <small>{__version__}</small>" in page.text
    assert 'href="/openapi.json"' in page.text and "docs/" in page.text and "console" in page.text.lower()
    assert httpx.head(limited_hub.http_url + "/").status_code == 200
    pop = httpx.get(limited_hub.http_url + "/?Action=RRpc")
    assert pop.status_code == 400 and pop.json()["Code"] == "MissingParameter"  # Version, then more
    form = httpx.post(limited_hub.http_url + "/", content=b"", headers={"content-type": "text/plain"})
    assert form.status_code == 400 and "Code" in form.json()


def test_near_the_fd_limit_the_hub_sheds_old_connections_warns_and_keeps_serving(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # the hub inherits it
    try:
        hub = HubProcess(tmp_path / "data")
        hub.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    silent: list[socket.socket] = []
    try:
        for _ in range(400):  # more than the hub's fds: without shedding, accept() fails (EMFILE)
            silent.append(_connect(hub))
        # The kernel completed all 400 handshakes at once; connections still queued behind them
        # while the hub drains the queue may be dropped at the fd limit, as any server's would.
        for _ in range(20):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{hub.http_url}/health", timeout=5).status_code == 200:
                    break
            time.sleep(0.2)
        for _ in range(5):  # and from then on it serves
            assert httpx.get(f"{hub.http_url}/health", timeout=5).status_code == 200
        held = sum(1 for sock in silent if _open(sock))
        assert held < 256  # old connections were shed: the hub cannot hold them all
    finally:
        for sock in silent:
            sock.close()
        hub.stop()
    warnings = [line for line in hub.stderr_lines if "near the file descriptor limit" in line]
    assert 1 <= len(warnings) <= 2, warnings  # rate-limited: not one per connection
    assert not any("Traceback" in line for line in hub.stderr_lines)
