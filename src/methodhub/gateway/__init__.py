"""The MQTT side of the hub: listeners, device authentication, sessions, topic ACLs, dialects."""

from methodhub.gateway.dialect import ConnectRefused, Dialect, Principal
from methodhub.gateway.gateway import Gateway
from methodhub.gateway.session import DeviceSession, SessionTable

__all__ = ["ConnectRefused", "DeviceSession", "Dialect", "Gateway", "Principal", "SessionTable"]
