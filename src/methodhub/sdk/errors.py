"""The SDK's exceptions: one family, one class per failure a program can act on."""

from __future__ import annotations

from typing import Any


class MethodHubError(Exception):
    """A call or request failed. ``status`` is the HTTP status, ``code`` Azure's errorCode."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        name: str | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.name = name
        self.info = info or {}

    def __str__(self) -> str:
        detail = f" ({self.code} {self.name})" if self.code else ""
        return f"{self.message}{detail}"


class DeviceNotFoundError(MethodHubError):
    """The device (or module) is not registered (404001 / 404010)."""


class DeviceOfflineError(MethodHubError):
    """The device was not online, and did not come online within the connect timeout (404103)."""


class DeviceDisconnectedError(MethodHubError):
    """The device disconnected before it answered (404104)."""


class CallTimeoutError(MethodHubError):
    """The device did not answer within the response timeout (504101)."""


class UnauthorizedError(MethodHubError):
    """The credentials were refused (401)."""


class CredentialError(MethodHubError):
    """The hub refused the device's credentials (CONNACK 4 or 5). Not retried: fix the key."""


ERRORS_BY_CODE: dict[int, type[MethodHubError]] = {
    404001: DeviceNotFoundError,
    404010: DeviceNotFoundError,
    404103: DeviceOfflineError,
    404104: DeviceDisconnectedError,
    504101: CallTimeoutError,
    401002: UnauthorizedError,
}
