"""WebSocket (RFC 6455) client frames and opening handshakes, valid and broken.

Frames are built here with the mask key drawn from the input's random generator (so a seed gives
the same bytes every run); the hub's answers are parsed with ``wsproto``'s frame layer.
"""

from __future__ import annotations

import base64
import random
import struct

from fuzz.mqttgen import Unit

WEBSOCKET_PATH = "/$iothub/websocket"
AMQP_SUBPROTOCOL = "AMQPWSB10"
"""AMQP over WebSocket (served on the HTTPS port only: the HTTP port must refuse it)."""

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def ws_frame(
    opcode: int,
    payload: bytes,
    *,
    mask: bytes | None = b"\x00\x00\x00\x00",
    fin: bool = True,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """One frame; ``mask=None`` sends it unmasked (a client must mask), ``length`` lies about its size."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    mask_bit = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes((first, mask_bit | n))
    elif n < 1 << 16:
        head = bytes((first, mask_bit | 126)) + struct.pack(">H", n)
    else:
        head = bytes((first, mask_bit | 127)) + struct.pack(">Q", n & 0xFFFFFFFFFFFFFFFF)
    if mask is None:
        return head + payload
    return head + mask + _xor(payload, mask)


def _xor(data: bytes, mask: bytes) -> bytes:
    if not data or mask == b"\x00\x00\x00\x00":
        return data
    key = int.from_bytes((mask * (len(data) // 4 + 1))[: len(data)], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(len(data), "big")


def handshake(
    host: str,
    *,
    key: bytes,
    path: str = WEBSOCKET_PATH,
    method: str = "GET",
    protocol: str | None = "mqtt",
    version: str = "13",
    connection: str | None = "Upgrade",
    upgrade: str | None = "websocket",
    extra: str = "",
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if upgrade is not None:
        lines.append(f"Upgrade: {upgrade}")
    if connection is not None:
        lines.append(f"Connection: {connection}")
    lines.append(f"Sec-WebSocket-Key: {base64.b64encode(key).decode()}")
    if version:
        lines.append(f"Sec-WebSocket-Version: {version}")
    if protocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def frame_stream(rng: random.Random, data: bytes, mutate: bool) -> tuple[bytes, str]:
    """MQTT bytes as client frames: one binary frame, several, or (``mutate``) with one frame-level
    defect. Returns the bytes and a label of what was done."""
    mask = rng.randbytes(4) if rng.random() < 0.5 else b"\x00\x00\x00\x00"
    if not mutate:
        if rng.random() < 0.7 or len(data) < 2:
            return ws_frame(OP_BINARY, data, mask=mask), "one binary frame"
        parts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 8))))
        pieces = [data[a:b] for a, b in zip([0, *parts], [*parts, len(data)], strict=True)]
        if rng.random() < 0.5:  # one message in fragments (continuation frames)
            out = [
                ws_frame(OP_BINARY if i == 0 else OP_CONT, p, mask=mask, fin=i == len(pieces) - 1)
                for i, p in enumerate(pieces)
            ]
            return b"".join(out), f"{len(pieces)} fragments"
        return b"".join(ws_frame(OP_BINARY, p, mask=mask) for p in pieces), f"{len(pieces)} binary frames"
    choice = rng.randrange(12)
    if choice == 0:
        return ws_frame(OP_TEXT, data, mask=mask), "text frame"
    if choice == 1:
        return ws_frame(OP_BINARY, data, mask=None), "unmasked frame"
    if choice == 2:
        return ws_frame(OP_BINARY, data, mask=mask, rsv=rng.randint(1, 7)), "RSV bits set"
    if choice == 3:
        return ws_frame(rng.choice((3, 4, 5, 6, 7, 0xB, 0xC, 0xF)), data, mask=mask), "reserved opcode"
    if choice == 4:
        return ws_frame(OP_CONT, data, mask=mask), "continuation without a start"
    if choice == 5:
        return ws_frame(OP_BINARY, data[:1], mask=mask, fin=False) + ws_frame(
            OP_BINARY, data[1:], mask=mask
        ), ("new message inside a fragmented one")
    if choice == 6:
        return ws_frame(OP_PING, b"p" * 126, mask=mask) + ws_frame(
            OP_BINARY, data, mask=mask
        ), "control frame > 125 B"
    if choice == 7:
        return ws_frame(OP_PING, b"", mask=mask, fin=False) + ws_frame(
            OP_BINARY, data, mask=mask
        ), "fragmented ping"
    if choice == 8:
        return ws_frame(OP_BINARY, data, mask=mask, length=1 << 63), "length 2^63"
    if choice == 9:
        pings = b"".join(ws_frame(OP_PING, b"x", mask=mask) for _ in range(rng.choice((10, 500))))
        return pings + ws_frame(OP_BINARY, data, mask=mask), "pings before the data"
    if choice == 10:
        close = ws_frame(OP_CLOSE, struct.pack(">H", 1000), mask=mask)
        after = rng.choice((ws_frame(OP_PING, b"late", mask=mask), ws_frame(OP_BINARY, data, mask=mask)))
        return ws_frame(OP_BINARY, data, mask=mask) + close + after, "frames after CLOSE"
    code = rng.choice((0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535))
    reason = rng.choice((b"", b"bye", b"\xff\xfe", b"r" * 124))
    return ws_frame(OP_BINARY, data, mask=mask) + ws_frame(
        OP_CLOSE, struct.pack(">H", code) + reason, mask=mask
    ), (f"CLOSE code {code}")


def bad_websocket(rng: random.Random, host: str) -> tuple[list[Unit], bool]:
    """A WebSocket input for the ``websocket`` target: a broken handshake, or a good one followed by
    broken frames. Returns the units and whether the first unit is a handshake to wait on."""
    key = rng.randbytes(16)
    choice = rng.randrange(12)
    if choice < 6:
        variants = (
            dict(connection=None),  # no "Connection: Upgrade"
            dict(upgrade=None),
            dict(version=rng.choice(("8", "", "13, 8", "x" * 100))),
            dict(key=rng.choice((b"short", b"", rng.randbytes(17)))),
            dict(
                protocol=rng.choice(
                    ("mqttv5", "", "mqtt, mqtt", "\x00mqtt", AMQP_SUBPROTOCOL, "amqpwsb10", "AMQPWSB10, mqtt")
                )
            ),
            dict(method=rng.choice(("POST", "PUT", "HEAD"))),
            dict(
                path=rng.choice(
                    (
                        "/$iothub/websocket?x=1",
                        "/$iothub/websocket/",
                        "/$IOTHUB/websocket",
                        "/%24iothub/websocket",
                    )
                )
            ),
            dict(connection="keep-alive, Upgrade", extra="Sec-WebSocket-Extensions: permessage-deflate"),
            dict(extra="Content-Length: 5\r\n\r\nhello"),
            dict(extra="Transfer-Encoding: chunked"),
            dict(upgrade="websocket, h2c"),
        )
        args = dict(rng.choice(variants))
        if "key" in args:
            k = args.pop("key")
            data = handshake(host, key=k, **args)  # type: ignore[arg-type]
        else:
            data = handshake(host, key=key, **args)  # type: ignore[arg-type]
        label = "WebSocket handshake " + ", ".join(f"{k}={str(v)[:30]!r}" for k, v in args.items())
        return [Unit(data, label, "bad handshake")], False
    units = [Unit(handshake(host, key=key), "WebSocket handshake (valid)")]
    mask = rng.randbytes(4)
    for _ in range(rng.randint(1, 4)):
        frame_choice = rng.randrange(6)
        if frame_choice == 0:
            data, label = frame_stream(rng, rng.randbytes(rng.randint(0, 40)), True)
        elif frame_choice == 1:
            data, label = ws_frame(OP_PING, rng.randbytes(rng.randint(0, 125)), mask=mask), "ping"
        elif frame_choice == 2:
            data, label = (
                ws_frame(OP_CLOSE, b"\x03\xe8", mask=mask) + ws_frame(OP_PING, b"after", mask=mask),
                ("ping after CLOSE"),
            )
        elif frame_choice == 3:
            data, label = (
                ws_frame(OP_BINARY, b"\x10", mask=mask, length=rng.choice((200, 70000))),
                "frame shorter than announced",
            )
        elif frame_choice == 4:
            data, label = (
                bytes((rng.randrange(256), rng.randrange(256))) + rng.randbytes(rng.randint(0, 10)),
                "garbage frame",
            )
        else:
            data, label = ws_frame(OP_PONG, b"unsolicited", mask=mask), "unsolicited pong"
        units.append(Unit(data, label, "bad frame"))
    return units, True
