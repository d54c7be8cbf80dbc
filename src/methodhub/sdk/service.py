"""The service SDK: call methods on devices from a backend, over the hub's Azure-shaped REST API.

Example::

    from methodhub.sdk import ServiceClient

    with ServiceClient.from_connection_string(cs, url="http://127.0.0.1:8080") as hub:
        result = hub.invoke("pump-17", "reboot", {"delay": 5}, timeout=30)
        print(result.status, result.payload)

``AsyncServiceClient`` is the same for asyncio (``await hub.invoke(...)``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from methodhub.dialects.azure.connection_string import ConnectionString
from methodhub.dialects.azure.sas import generate_sas_token
from methodhub.dialects.azure.topics import API_VERSION
from methodhub.sdk.errors import ERRORS_BY_CODE, MethodHubError

TOKEN_TTL = 3600
TOKEN_RENEW_MARGIN = 300
HTTP_TIMEOUT_MARGIN = 10.0
PAGE_MAX = 1000
"""Calls the hub lists in one page at most (``GET /calls?limit=``)."""
"""The HTTP read timeout is the call's timeouts plus this, so the hub, not the socket, reports a timeout."""


@dataclass(frozen=True, slots=True)
class MethodResult:
    """The device's answer: its own status code and its JSON payload (decoded)."""

    status: int
    payload: Any


class _Credentials:
    """A service SAS token, re-signed shortly before it expires (the hub caches it until then)."""

    def __init__(self, cs: ConnectionString) -> None:
        if not cs.shared_access_key_name or not cs.shared_access_key:
            raise ValueError("a service connection string needs SharedAccessKeyName and SharedAccessKey")
        self._cs = cs
        self._key: str = cs.shared_access_key
        self._token = ""
        self._expiry = 0

    def header(self) -> str:
        now = time.time()
        if now > self._expiry - TOKEN_RENEW_MARGIN:
            self._expiry = int(now) + TOKEN_TTL
            self._token = generate_sas_token(
                self._cs.host_name, self._key, self._expiry, self._cs.shared_access_key_name
            )
        return self._token


def _request(
    device_id: str, method: str, payload: Any, module_id: str | None, timeout: int, connect_timeout: int
) -> tuple[str, bytes]:
    path = f"/twins/{quote(device_id, safe='')}"
    if module_id:
        path += f"/modules/{quote(module_id, safe='')}"
    body = json.dumps(
        {
            "methodName": method,
            "payload": payload,
            "responseTimeoutInSeconds": timeout,
            "connectTimeoutInSeconds": connect_timeout,
        }
    ).encode()
    return f"{path}/methods?api-version={API_VERSION}", body


def _result(response: httpx.Response) -> MethodResult:
    if response.status_code == 200:
        try:
            doc = response.json()
            return MethodResult(int(doc["status"]), doc.get("payload"))
        except (ValueError, KeyError, TypeError):
            raise MethodHubError(
                f"the answer from {response.url.copy_with(query=None)} is not a method result "
                "(is that URL the hub's?)",
                status=response.status_code,
            ) from None
    raise error_from_response(response)


def error_from_response(response: httpx.Response) -> MethodHubError:
    """The SDK exception for an error response in Azure's shape (or any other)."""
    code: int | None = None
    message = f"HTTP {response.status_code} {response.reason_phrase}"
    info: dict[str, Any] = {}
    try:
        inner = json.loads(response.json()["Message"])
        code = int(inner["errorCode"])
        message = inner.get("message") or message
        info = inner.get("info") or {}
    except (ValueError, KeyError, TypeError):
        pass
    cls = ERRORS_BY_CODE.get(code or 0, MethodHubError)
    return cls(
        message,
        status=response.status_code,
        code=code,
        name=response.headers.get("iothub-errorcode"),
        info=info,
    )


class ServiceClient:
    """Calls methods on devices (blocking). Use as a context manager, or call :meth:`close`.

    Args:
        connection_string: a service connection string (``methodhub connection-string``).
        url: the hub's base URL; default ``https://{HostName}`` as Azure. For a local hub's plain
            HTTP listener pass e.g. ``http://127.0.0.1:8080``.
        verify: TLS verification (True, False, or a CA bundle path).
    """

    def __init__(self, connection_string: str, *, url: str | None = None, verify: bool | str = True) -> None:
        cs = ConnectionString.parse(connection_string)
        self._credentials = _Credentials(cs)
        self._http = httpx.Client(base_url=url or f"https://{cs.host_name}", verify=verify, timeout=None)

    @classmethod
    def from_connection_string(cls, connection_string: str, **kwargs: Any) -> ServiceClient:
        return cls(connection_string, **kwargs)

    def invoke(
        self,
        device_id: str,
        method: str,
        payload: Any = None,
        *,
        module_id: str | None = None,
        timeout: int = 30,
        connect_timeout: int = 0,
    ) -> MethodResult:
        """Call ``method`` on the device and return its answer.

        Raises:
            DeviceNotFoundError, DeviceOfflineError, DeviceDisconnectedError, CallTimeoutError,
            UnauthorizedError, MethodHubError: as the hub reports.
        """
        path, body = _request(device_id, method, payload, module_id, timeout, connect_timeout)
        response = self._http.post(
            path,
            content=body,
            headers={"authorization": self._credentials.header(), "content-type": "application/json"},
            timeout=timeout + connect_timeout + HTTP_TIMEOUT_MARGIN,
        )
        return _result(response)

    # -- queued calls (methodhub's /calls; docs/queued-calls.md) -------------------------------------

    def _calls(self, method: str, path: str = "", **kwargs: Any) -> dict[str, Any]:
        response = self._http.request(
            method, f"/calls{path}", headers={"authorization": self._credentials.header()}, **kwargs
        )
        if response.status_code not in (200, 202):
            raise error_from_response(response)
        doc: dict[str, Any] = response.json()
        return doc

    def queue_call(
        self,
        device_id: str,
        method: str,
        payload: Any = None,
        *,
        module_id: str | None = None,
        timeout: int = 30,
        expires: int = 86_400,
        attempts: int = 1,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Queue ``method`` for the device: it is delivered when the device is online (at once if
        it is), within ``expires`` seconds, tried up to ``attempts`` times. Returns the call record
        (``callId``, ``state``, ...)."""
        body: dict[str, Any] = {
            "deviceId": device_id,
            "moduleId": module_id,
            "methodName": method,
            "payload": payload,
            "responseTimeoutInSeconds": timeout,
            "expiresInSeconds": expires,
            "attempts": attempts,
        }
        if idempotency_key is not None:
            body["idempotencyKey"] = idempotency_key
        return self._calls("POST", json=body)

    def get_call(self, call_id: str, *, wait: float | None = None) -> dict[str, Any]:
        """The call record; ``wait``: up to that many seconds (≤ 300) for it to end."""
        params = {"waitSeconds": wait} if wait is not None else None
        timeout = (wait or 0) + HTTP_TIMEOUT_MARGIN
        return self._calls("GET", f"/{quote(call_id, safe='')}", params=params, timeout=timeout)

    def list_calls(
        self,
        *,
        device_id: str | None = None,
        state: str | None = None,
        job_id: str | None = None,
        method_name: str | None = None,
        front_door: str | None = None,
        since: str | None = None,
        until: str | None = None,
        status: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Call records, newest first, at most ``limit`` (any number: the hub's pages, 1,000 at
        most each, are followed). Every filter given must hold: ``front_door`` one of ``azure``,
        ``aliyun``, ``native``, ``job``; ``since`` (inclusive) and ``until`` (exclusive) ISO 8601
        times of creation; ``status`` the device's status code. Synchronous calls are listed when
        the hub records them (``serve --history on``, its default)."""
        filters = (
            ("deviceId", device_id),
            ("state", state),
            ("jobId", job_id),
            ("methodName", method_name),
            ("frontDoor", front_door),
            ("since", since),
            ("until", until),
            ("status", None if status is None else str(status)),
        )
        params = {k: v for k, v in filters if v is not None}
        calls: list[dict[str, Any]] = []
        while len(calls) < limit:
            params["limit"] = str(min(limit - len(calls), PAGE_MAX))
            page = self._calls("GET", params=params)
            calls += page["calls"]
            token = page.get("continuationToken")
            if not token or not page["calls"]:
                break
            params["continuationToken"] = token
        return calls

    def cancel_call(self, call_id: str) -> dict[str, Any]:
        """Cancel a call not sent yet (``ConflictError``-style 409 otherwise)."""
        return self._calls("DELETE", f"/{quote(call_id, safe='')}")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncServiceClient:
    """:class:`ServiceClient` for asyncio."""

    def __init__(self, connection_string: str, *, url: str | None = None, verify: bool | str = True) -> None:
        cs = ConnectionString.parse(connection_string)
        self._credentials = _Credentials(cs)
        self._http = httpx.AsyncClient(base_url=url or f"https://{cs.host_name}", verify=verify, timeout=None)

    @classmethod
    def from_connection_string(cls, connection_string: str, **kwargs: Any) -> AsyncServiceClient:
        return cls(connection_string, **kwargs)

    async def invoke(
        self,
        device_id: str,
        method: str,
        payload: Any = None,
        *,
        module_id: str | None = None,
        timeout: int = 30,
        connect_timeout: int = 0,
    ) -> MethodResult:
        """See :meth:`ServiceClient.invoke`."""
        path, body = _request(device_id, method, payload, module_id, timeout, connect_timeout)
        response = await self._http.post(
            path,
            content=body,
            headers={"authorization": self._credentials.header(), "content-type": "application/json"},
            timeout=timeout + connect_timeout + HTTP_TIMEOUT_MARGIN,
        )
        return _result(response)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncServiceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
