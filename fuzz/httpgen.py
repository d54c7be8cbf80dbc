"""Bad HTTP/1.1 requests: request lines, headers, framing (Content-Length, chunked) and JSON bodies.

Requests go to the hub's real routes (direct methods, the registry, the Alibaba POP endpoint,
/health, ...) with or without a valid owner token, so they reach the handlers, not only the parser.
Method calls only name devices that are never connected (``fzh-*``): a call to a live device that
does not answer would hold the request for its whole response timeout.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from fuzz.mqttgen import BAD_UTF8, Unit

API = "api-version=2021-04-12"


@dataclass(slots=True)
class HttpInput:
    """One HTTP connection's input: its units (requests or pieces), and whether the last request is
    deliberately incomplete (then the hub's head/body deadline must close it)."""

    units: list[Unit]
    partial: bool
    requests: int


def _json_body(rng: random.Random) -> tuple[bytes, str]:
    depth = rng.choice((100, 1000, 5000, 100000))
    choice = rng.randrange(22)
    bodies: list[tuple[bytes, str]] = [
        (
            b'{"methodName":"m","payload":' + b"[" * depth + b"]" * depth + b"}",
            f"payload nested {depth} deep",
        ),
        (b"[" * depth + b"]" * depth, f"array nested {depth} deep"),
        (b'{"a":' * depth + b"1" + b"}" * depth, f"object nested {depth} deep"),
        (b'{"methodName":"m","payload":1e999}', "payload 1e999"),
        (b'{"methodName":"m","payload":-1e999}', "payload -1e999"),
        (b'{"methodName":"m","payload":' + b"9" * rng.choice((400, 4301, 20000)) + b"}", "a huge integer"),
        (b'{"methodName":"m","responseTimeoutInSeconds":1e999}', "timeout 1e999"),
        (b'{"methodName":"m","responseTimeoutInSeconds":' + b"9" * 400 + b"}", "timeout 10^400"),
        (b'{"methodName":"m","responseTimeoutInSeconds":"30"}', "timeout as a string"),
        (b'{"methodName":"m","connectTimeoutInSeconds":-5}', "negative connect timeout"),
        (
            b'{"methodName":' + rng.choice((b"1", b"null", b"[]", b'""', b'"' + b"m" * 5000 + b'"')) + b"}",
            "bad methodName",
        ),
        (b'{"methodName":"' + rng.choice(BAD_UTF8) + b'"}', "invalid UTF-8 in a string"),
        (b'{"methodName":"m","payload":"\\ud800"}', "a lone surrogate escape"),
        (b"\xef\xbb\xbf{}", "a BOM"),
        (b'{"methodName":"m","payload":NaN}', "NaN"),
        (b'{"methodName":"m","methodName":"n"}', "a duplicate key"),
        (b'{"methodName":"m"} trailing', "trailing garbage"),
        (b'{"capabilities":"yes"}', "capabilities as a string"),
        (b'{"authentication":{"type":"sas","symmetricKey":"k"}}', "symmetricKey as a string"),
        (b'{"statusReason":{"a":1},"status":"disabled"}', "statusReason as an object"),
        (
            b'{"authentication":{"type":"sas","symmetricKey":{"primaryKey":"!!","secondaryKey":1}}}',
            "keys not base64",
        ),
        (rng.randbytes(rng.randint(0, 64)), "random bytes"),
    ]
    return bodies[choice]


def _request_line(rng: random.Random) -> tuple[str, str, str, bool, str]:
    """(method, target, what, needs auth, label) of one request to a real route."""
    device = f"fzh-{rng.randrange(8)}"
    routes = (
        ("POST", f"/twins/{device}/methods?{API}", True, "invoke"),
        ("POST", f"/twins/{device}/modules/m1/methods?{API}", True, "invoke module"),
        ("PUT", f"/devices/{device}?{API}", True, "put device"),
        ("GET", f"/devices/{device}?{API}", True, "get device"),
        ("DELETE", f"/devices/{device}?{API}", True, "delete device"),
        ("GET", f"/devices?{API}&top=" + rng.choice(("1", "-1", "1e9", "x", "9" * 50)), True, "list devices"),
        ("GET", "/health", False, "health"),
        ("GET", "/metrics", False, "metrics"),
        ("GET", "/openapi.json", False, "openapi"),
        ("GET", "/", False, "landing / POP"),
        (
            "GET",
            "/?Action=RRpc&Format=JSON&Version=2018-01-20&SignatureMethod=HMAC-SHA1&Signature=x",
            False,
            "POP RRpc",
        ),
        (
            "POST",
            f"/twins/{rng.choice(('a%2Fb', '%00', '..', '%ZZ', 'x' * 300, '%C0%AF'))}/methods?{API}",
            True,
            "odd id",
        ),
    )
    method, target, auth, label = routes[rng.randrange(len(routes))]
    return method, target, label, auth, label


def _chunked(rng: random.Random, body: bytes, broken: bool) -> tuple[bytes, str, bool]:
    """A chunked body, valid or broken in one of eight ways; and whether it is *incomplete* (it
    promises more than is sent, so a silent client must meet the hub's body deadline). Extensions,
    trailers and bare LFs are not incomplete: a parser may accept them, and the connection is then
    an idle keep-alive one, held for the idle timeout, not the body deadline."""
    pieces, pos = [], 0
    while pos < len(body):
        n = rng.randint(1, max(1, len(body) // 3 + 1))
        pieces.append(f"{n:x}".encode() + b"\r\n" + body[pos : pos + n] + b"\r\n")
        pos += n
    tail = b"0\r\n\r\n"
    if not broken:
        return b"".join(pieces) + tail, "chunked", False
    choice = rng.randrange(8)
    if choice == 0:
        return b"zz\r\n" + body + b"\r\n" + tail, "chunked, bad size", False
    if choice == 1:
        return b"ffffffffffffffffff\r\n" + body, "chunked, size 2^72", False
    if choice == 2:
        return b"".join(pieces), "chunked, no last chunk", True
    if choice == 3:
        return f"{len(body):x};ext=1;x\r\n".encode() + body + b"\r\n" + tail, "chunked, extensions", False
    if choice == 4:
        return b"".join(pieces) + b"0\r\nX-Trailer: 1\r\n\r\n", "chunked, trailer", False
    if choice == 5:
        return (
            f"{len(body) + 5:x}\r\n".encode() + body + b"\r\n" + tail,
            "chunked, size larger than data",
            True,
        )
    if choice == 6:
        return b"-1\r\n" + body + b"\r\n" + tail, "chunked, negative size", False
    return f"{len(body):x}\n".encode() + body + b"\n0\n\n", "chunked, bare LF", False


def request(rng: random.Random, host: str, owner_token: str) -> tuple[bytes, str, bool]:
    """One request, bad in zero to three ways. Returns bytes, label, and whether it may be incomplete
    on the wire (a framing that promises more than is sent)."""
    method, target, label, auth, _ = _request_line(rng)
    version = "HTTP/1.1"
    headers: list[tuple[str, str]] = [("Host", host)]
    if auth and rng.random() < 0.85:
        headers.append(("Authorization", owner_token))
    body, body_label = b"", ""
    if method in ("POST", "PUT") or rng.random() < 0.05:
        if rng.random() < 0.3:
            body, body_label = (
                b'{"methodName":"m","payload":{"a":1},"responseTimeoutInSeconds":5}',
                "valid JSON",
            )
        else:
            body, body_label = _json_body(rng)
        headers.append(
            (
                "Content-Type",
                rng.choice(("application/json", "application/json; charset=latin-1", "text/plain")),
            )
        )
    framing = "length"
    incomplete = False
    defects: list[str] = []
    for _ in range(rng.choices((0, 1, 2, 3), (2, 5, 2, 1))[0]):
        choice = rng.randrange(26)
        if choice == 0:
            method = rng.choice(
                ("GE T", "get", "", "X" * 100, "CONNECT", "TRACE", "OPTIONS", "PATCH", "\x00")
            )
            defects.append(f"method {method[:10]!r}")
        elif choice == 1:
            target = rng.choice(
                (
                    "*",
                    "http://evil/x",
                    "//x",
                    "/" + "a" * 20000,
                    "/%",
                    "/%zz",
                    "/a b",
                    "/\x01",
                    "/é",
                    "/?" + "&" * 5000,
                )
            )
            defects.append(f"target {target[:20]!r}")
        elif choice == 2:
            version = rng.choice(
                ("HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "HTTP/1.1x", "", "HTTP/1.1 extra", "http/1.1")
            )
            defects.append(f"version {version!r}")
        elif choice == 3:
            headers = [h for h in headers if h[0] != "Host"]
            defects.append("no Host")
        elif choice == 4:
            headers.append(("X-Big", "v" * rng.choice((8000, 17000, 17000, 100000))))
            defects.append("huge header")
        elif choice == 5:
            headers += [(f"X-H{i}", "v") for i in range(rng.choice((100, 1000)))]
            defects.append("many headers")
        elif choice == 6:
            framing = "dup-length"
            defects.append("two Content-Length")
        elif choice == 7:
            framing = "length+chunked"
            defects.append("Content-Length and chunked")
        elif choice == 8:
            framing = "chunked"
        elif choice == 9:
            framing = "chunked-broken"
        elif choice == 10:
            framing = rng.choice(("gzip,chunked", "chunked,gzip", "identity", "chunked, chunked"))
            defects.append(f"Transfer-Encoding {framing}")
        elif choice == 11:
            framing = rng.choice(
                ("length-short", "length-long", "length-negative", "length-junk", "length-huge")
            )
            defects.append(framing)
        elif choice == 12:
            headers.append(("Bad Header", "x"))
            defects.append("space in a header name")
        elif choice == 13:
            headers.append(("X-Fold", "a\r\n b"))
            defects.append("obs-fold")
        elif choice == 14:
            headers.append(("X-Nul", "a\x00b"))
            defects.append("NUL in a header")
        elif choice == 15:
            headers.append(("X-Latin", "\xe9\xff"))
            defects.append("non-ASCII header")
        elif choice == 16:
            headers.append(("Expect", rng.choice(("100-continue", "nonsense"))))
            defects.append("Expect")
        elif choice == 17:
            headers = [
                (k, v[: rng.randrange(len(v))] if k == "Authorization" and v else v) for k, v in headers
            ]
            defects.append("truncated token")
        elif choice == 18:
            headers.append(
                (
                    "Authorization",
                    "SharedAccessSignature sr=localhost&sig=x&se="
                    + "9" * rng.choice((20, 400, 5000))
                    + "&skn=iothubowner",
                )
            )
            defects.append("huge se")
        elif choice == 19:
            headers.append(("Connection", rng.choice(("close", "keep-alive", "Upgrade", "x" * 100))))
        elif choice == 20:
            headers.append(("Upgrade", rng.choice(("websocket", "h2c", "TLS/1.0"))))
            defects.append("Upgrade on a non-WebSocket route")
        elif choice == 21:
            headers.append(("Content-Encoding", "gzip"))
            defects.append("Content-Encoding gzip")
        elif choice == 22:
            headers.append(("", "empty name"))
            defects.append("empty header name")
        elif choice == 23:
            body = body + rng.randbytes(rng.randint(1, 100))
            defects.append("body junk")
        elif choice == 24:
            body = b"x" * rng.choice((1024 * 1024 + 1, 200_000))
            defects.append(f"{len(body)} B body")
        else:
            headers.append(("X-Ctl", "a\x7fb\x1b"))
            defects.append("control characters")
    if body or framing != "length":
        if framing == "length":
            headers.append(("Content-Length", str(len(body))))
        elif framing == "dup-length":
            headers += [("Content-Length", str(len(body))), ("Content-Length", str(len(body) + 1))]
        elif framing == "length+chunked":
            chunked, _, _ = _chunked(rng, body, False)
            headers += [("Content-Length", str(len(body))), ("Transfer-Encoding", "chunked")]
            body = chunked
        elif framing in ("chunked", "chunked-broken"):
            body, how, incomplete = _chunked(rng, body, framing == "chunked-broken")
            headers.append(("Transfer-Encoding", "chunked"))
            defects.append(how)
        elif framing.startswith("length-"):
            value = {
                "length-short": str(max(0, len(body) - 3)),
                "length-long": str(len(body) + 10),
                "length-negative": "-1",
                "length-junk": rng.choice(("1x", " 5", "0x10", "+5", "5, 5")),
                "length-huge": "9" * 30,
            }[framing]
            headers.append(("Content-Length", value))
            incomplete = framing in ("length-long", "length-huge")
        else:
            headers.append(("Transfer-Encoding", framing))
            body, _, _ = _chunked(rng, body, False)
    line = f"{method} {target} {version}".rstrip() if version else f"{method} {target}"
    head = line + "\r\n" + "".join(f"{k}: {v}\r\n" if k else f": {v}\r\n" for k, v in headers) + "\r\n"
    what = f"{line.split(' ?')[0][:70]}" + (f" body: {body_label}" if body_label else "")
    if defects:
        what += " — " + "; ".join(defects)
    return head.encode("latin-1", "replace") + body, f"{label}: {what}", incomplete


def http_input(rng: random.Random, host: str, owner_token: str) -> HttpInput:
    """A connection's worth of requests: usually one, sometimes a pipeline, sometimes cut short."""
    count = rng.choices((1, 2, 5, 20), (70, 15, 10, 5))[0]
    units: list[Unit] = []
    incomplete = False
    for _ in range(count):
        data, label, maybe_incomplete = request(rng, host, owner_token)
        units.append(Unit(data, label))
        incomplete = incomplete or maybe_incomplete
    partial = False
    if rng.random() < 0.12:  # a request cut short, then silence: the head/body deadline must fire
        data, label, _ = request(rng, host, owner_token)
        cut = rng.randrange(1, len(data))
        units.append(Unit(data[:cut], f"{label} (first {cut} of {len(data)} bytes)", "cut short"))
        partial = True
    elif rng.random() < 0.03:
        units.append(Unit(rng.randbytes(rng.randint(1, 200)), "random bytes", "junk"))
    return HttpInput(units, partial or incomplete, count)
