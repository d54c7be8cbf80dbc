"""The Python SDKs we ship: a device client (answer calls) and a service client (make calls)."""

from methodhub.sdk.device import DeviceClient, MethodRequest, MethodResponse
from methodhub.sdk.errors import (
    CallTimeoutError,
    CredentialError,
    DeviceDisconnectedError,
    DeviceNotFoundError,
    DeviceOfflineError,
    MethodHubError,
    UnauthorizedError,
)
from methodhub.sdk.service import AsyncServiceClient, MethodResult, ServiceClient

__all__ = [
    "AsyncServiceClient",
    "CallTimeoutError",
    "CredentialError",
    "DeviceClient",
    "DeviceDisconnectedError",
    "DeviceNotFoundError",
    "DeviceOfflineError",
    "MethodHubError",
    "MethodRequest",
    "MethodResponse",
    "MethodResult",
    "ServiceClient",
    "UnauthorizedError",
]
