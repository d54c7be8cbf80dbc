"""A raw-socket HTTP/1.1 client for the server tests: we want to see bytes, not a library's view."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

IO_TIMEOUT = 5.0
"""Guard against hangs only; no test asserts on timing."""


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    head: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class RawClient:
    """One TCP connection; send bytes, read responses one by one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_head(self) -> tuple[int, dict[str, str], bytes]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
        lines = head[:-4].split(b"\r\n")
        version, status, *_ = lines[0].split(b" ", 2)
        assert version == b"HTTP/1.1", lines[0]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            key = name.decode("latin-1").lower()
            assert key not in headers, f"duplicate header {key}"
            headers[key] = value.strip().decode("latin-1")
        return int(status), headers, head

    async def response(self, *, head_request: bool = False) -> RawResponse:
        status, headers, head = await self.read_head()
        length = headers.get("content-length")
        body = b""
        if length is not None and not head_request:
            body = await asyncio.wait_for(self.reader.readexactly(int(length)), IO_TIMEOUT)
        return RawResponse(status, headers, body, head)

    async def closed_by_server(self) -> bool:
        """True when the server closed the connection (EOF, or a reset) with nothing more sent."""
        try:
            rest = await asyncio.wait_for(self.reader.read(65536), IO_TIMEOUT)
        except ConnectionResetError:
            return True
        return rest == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def request(
    method: str = "GET",
    target: str = "/",
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    version: str = "HTTP/1.1",
) -> bytes:
    """Bytes of one request; Content-Length is added when there is a body."""
    lines = [f"{method} {target} {version}", "Host: test"]
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
