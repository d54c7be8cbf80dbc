"""SAS tokens, connection strings, the verified-token cache and service authentication."""

from methodhub.auth.cache import VerifiedTokenCache
from methodhub.auth.connection_string import ConnectionString, ConnectionStringError
from methodhub.auth.sas import SasToken, SasTokenError, generate_sas_token
from methodhub.auth.service import ServiceAuthenticator

__all__ = [
    "ConnectionString",
    "ConnectionStringError",
    "SasToken",
    "SasTokenError",
    "ServiceAuthenticator",
    "VerifiedTokenCache",
    "generate_sas_token",
]
