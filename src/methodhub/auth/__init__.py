"""SAS tokens, connection strings, the verified-token cache and service authentication (Azure SAS
and Alibaba-signed requests)."""

from methodhub.auth.aliyun import (
    DEFAULT_SIGN_METHOD,
    SIGN_METHODS,
    MqttClientId,
    device_password,
    verify_device_password,
)
from methodhub.auth.aliyun_service import PopAuthenticator
from methodhub.auth.cache import VerifiedTokenCache
from methodhub.auth.connection_string import ConnectionString, ConnectionStringError
from methodhub.auth.nonces import NonceStore
from methodhub.auth.sas import SasToken, SasTokenError, generate_sas_token
from methodhub.auth.service import ServiceAuthenticator

__all__ = [
    "DEFAULT_SIGN_METHOD",
    "SIGN_METHODS",
    "ConnectionString",
    "ConnectionStringError",
    "MqttClientId",
    "NonceStore",
    "PopAuthenticator",
    "SasToken",
    "SasTokenError",
    "ServiceAuthenticator",
    "VerifiedTokenCache",
    "device_password",
    "generate_sas_token",
    "verify_device_password",
]
