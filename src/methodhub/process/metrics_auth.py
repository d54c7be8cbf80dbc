"""``serve --metrics-auth``: who may read ``GET /metrics`` (docs/metrics.md, "Protecting /metrics").

Off by default (a scraper on a private network needs nothing). When on, a request needs either

* ``Authorization: SharedAccessSignature sr=...&sig=...&se=...&skn=...``: a service SAS token of
  any shared access policy holding **RegistryRead** (the least right a policy can hold; a scraper
  needs no right to call devices or change the registry), checked like every service token; or
* ``Authorization: Bearer <token>``: the static token of ``--metrics-token-file`` (when given), for
  scrapers that send one fixed header (Prometheus ``authorization.credentials_file``).

Anything else is 401 with what to send.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from methodhub.dialects.azure.service_auth import ServiceAuthenticator
from methodhub.errors import HubError
from methodhub.http.messages import Request, Response
from methodhub.http.wire import error_response
from methodhub.metrics import Metrics
from methodhub.registry import Right

METRICS_RIGHT = Right.REGISTRY_READ
"""The right a policy's SAS token needs to read ``/metrics`` under ``--metrics-auth``."""

_CHALLENGE = [("www-authenticate", 'Bearer realm="methodhub-metrics"')]


class MetricsTokenError(ValueError):
    """``--metrics-token-file`` cannot be used (unreadable or empty)."""


def read_metrics_token(path: Path) -> str:
    """The static bearer token in ``path`` (surrounding whitespace stripped)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise MetricsTokenError(f"cannot read --metrics-token-file {path}: {exc}") from None
    if not token:
        raise MetricsTokenError(f"--metrics-token-file {path} is empty; put the scrapers' token in it")
    if any(ch.isspace() for ch in token):
        raise MetricsTokenError(f"--metrics-token-file {path}: the token must be one word (no spaces)")
    return token


class MetricsGuard:
    """Checks a ``GET /metrics`` request's credentials (see the module docstring)."""

    def __init__(self, auth: ServiceAuthenticator, metrics: Metrics, bearer: str | None = None) -> None:
        self._auth = auth
        self._metrics = metrics
        self._bearer = bearer.encode() if bearer else None

    async def refusal(self, request: Request) -> Response | None:
        """None when ``request`` may read the metrics; else the 401 to answer."""
        header = (request.headers.get("authorization") or "").strip()
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer" and self._bearer is not None:
            if hmac.compare_digest(credentials.strip().encode(), self._bearer):
                return None
            self._metrics.auth_failed("service", "metrics_bearer")
            return _unauthorized("The bearer token does not match --metrics-token-file's.")
        if scheme.lower() == "sharedaccesssignature":
            try:
                await self._auth.authenticate(header, request.headers.get("host"), METRICS_RIGHT)
            except HubError as exc:
                return _unauthorized(exc.message)
            return None
        if not header:
            return _unauthorized("No Authorization header.")
        if scheme.lower() == "bearer":
            return _unauthorized("This hub has no --metrics-token-file: it accepts no bearer token.")
        return _unauthorized(f"The Authorization scheme {scheme[:40]!r} is not accepted here.")


def _unauthorized(why: str) -> Response:
    return error_response(
        401,
        "Unauthorized",
        f"{why} This hub protects GET /metrics (serve --metrics-auth): send a service SAS token of a "
        f"policy with {METRICS_RIGHT} ('Authorization: SharedAccessSignature sr=...&sig=...&se=...&skn=...', "
        "see `methodhub connection-string`), or 'Authorization: Bearer <token>' with the token of "
        "--metrics-token-file, if the hub was started with one.",
        _CHALLENGE,
    )
