"""Credential plumbing shared by every dialect: the verified-credential cache and the nonce store.

Each cloud's own credentials live with its dialect (:mod:`methodhub.dialects.azure.sas`,
:mod:`methodhub.dialects.aliyun.signing`)."""

from methodhub.auth.cache import VerifiedTokenCache
from methodhub.auth.nonces import NonceStore

__all__ = ["NonceStore", "VerifiedTokenCache"]
