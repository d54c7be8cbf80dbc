"""``GET /`` for people: a small page saying what this server is and where to go next.

``/`` is also the Alibaba POP API's endpoint; :meth:`methodhub.dialects.aliyun.pop.AliyunApi.register`
sends a request here only when it is not a POP call (no POP parameters, not a POST).
"""

from __future__ import annotations

from html import escape

from methodhub import __version__
from methodhub.http.messages import Request, Response

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>methodhub {version}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; }}
code {{ font-size: 0.9em; }}
small {{ color: #666; font-weight: normal; }}
</style>
</head>
<body>
<h1>methodhub <small>{version}</small></h1>
<p>A self-hosted IoT hub for synchronous cloud-to-device calls: Azure IoT Hub direct methods and
Alibaba Cloud RRPC, spoken so that the official SDKs work unmodified.</p>
<h2>HTTP API</h2>
<ul>
<li><a href="/openapi.json">/openapi.json</a>: the OpenAPI document of this API</li>
<li><code>POST /twins/{{deviceId}}/methods</code>: invoke a direct method (Azure's REST API)</li>
<li><code>GET</code> or <code>POST /?Action=RRpc&amp;…</code>: Alibaba IoT Platform's POP API</li>
<li><a href="/health">/health</a> and <a href="/metrics">/metrics</a> (Prometheus)</li>
</ul>
<h2>Documentation</h2>
<p><code>README.md</code> and <code>docs/</code> in the methodhub source: azure-compatibility.md,
aliyun-compatibility.md, operations.md (limits and tuning), cluster.md, performance.md.
On this machine, <code>methodhub --help</code> lists the commands.</p>
<h2>Console</h2>
<p><a href="/console">/console</a>: devices with their live connection state, calls by hand,
queued calls and jobs; sign in with a service connection string
(<code>methodhub connection-string</code>).</p>
</body>
</html>
"""

BODY = _PAGE.format(version=escape(__version__)).encode()
_HEADERS = [
    ("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ("x-content-type-options", "nosniff"),
]


def landing_page(request: Request) -> Response:
    """The page (HTML), for ``GET /`` and ``HEAD /``."""
    return Response(200, BODY, "text/html; charset=utf-8", list(_HEADERS))
