"""``GET /console`` and ``GET /console/{file}``: the console's static files, from the package.

The files are read once, when the hub starts, from ``methodhub/console/static/`` (package data): a
request names one of them by its flat name, looked up in that table, so no path a client sends ever
reaches the file system (no directory traversal, whatever the encoding). Each answer carries its
content type, an ``ETag`` and ``Cache-Control: no-cache`` (the names are not versioned, so a browser
revalidates, and gets ``304`` while the file is unchanged), ``X-Content-Type-Options: nosniff`` and a
Content-Security-Policy that allows only this origin (no CDN, no inline script).
"""

from __future__ import annotations

import hashlib
from importlib import resources

from methodhub.http.messages import Request, Response
from methodhub.http.routing import Routes

__all__ = ["CONTENT_TYPES", "CSP", "ConsoleFiles"]

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
INDEX = "index.html"


class ConsoleFiles:
    """The console's files by name: ``(content type, ETag, bytes)``."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        if files is None:
            files = {}
            for entry in resources.files("methodhub.console").joinpath("static").iterdir():
                if entry.is_file() and not entry.name.startswith("."):
                    files[entry.name] = entry.read_bytes()
        self.files: dict[str, tuple[str, str, bytes]] = {}
        for name, body in files.items():
            suffix = name[name.rfind(".") :] if "." in name else ""
            content_type = CONTENT_TYPES.get(suffix)
            if content_type is None:
                continue  # only the kinds a browser needs are served
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            self.files[name] = (content_type, etag, body)

    def register(self, routes: Routes) -> None:
        routes.add("GET", "/console", self._index)
        routes.add("GET", "/console/", self._index)
        routes.add("GET", "/console/{name}", self._file)

    def _index(self, request: Request) -> Response:
        return self._serve(request, INDEX)

    def _file(self, request: Request) -> Response:
        return self._serve(request, request.path_params["name"])

    def _serve(self, request: Request, name: str) -> Response:
        entry = self.files.get(name)
        if entry is None:
            return Response.json(
                {"error": "not_found", "message": f"The console has no file '{name}'; open /console."}, 404
            )
        content_type, etag, body = entry
        headers = [
            ("etag", etag),
            ("cache-control", "no-cache"),
            ("x-content-type-options", "nosniff"),
            ("content-security-policy", CSP),
            ("referrer-policy", "no-referrer"),
        ]
        match = request.headers.get("if-none-match")
        if match is not None and etag in [tag.strip() for tag in match.split(",")]:
            return Response(304, b"", None, headers)
        return Response(200, body, content_type, headers)
