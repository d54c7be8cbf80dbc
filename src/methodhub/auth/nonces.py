"""Replay protection: remembering the signature nonces of signed requests while they could be replayed.

A signed request (Alibaba's POP API) carries a ``SignatureNonce`` and a ``Timestamp``; the hub
accepts it only while its timestamp is within a window of the hub's clock. A nonce therefore has to
be remembered until its request's timestamp leaves that window, and no longer: after that the
request is refused as expired anyway.
"""

from __future__ import annotations

import heapq

from methodhub.errors import ErrorKind, HubError

MAX_NONCES = 1_000_000
"""Nonces remembered at once. Alibaba allows 1,000 RRpc calls/s per account and a 15-minute
timestamp window: ~1M requests in one window at that rate. An entry costs ~150 bytes, so a full
store is ~150 MB; past it, requests are refused (503) rather than remembered less, because forgetting
a nonce early would let its request be replayed."""


class NonceStore:
    """Nonces seen recently, each until its expiry (its request's timestamp + the window).

    Args:
        max_entries: refuse new nonces (``SERVICE_UNAVAILABLE``) while this many are remembered.
    """

    __slots__ = ("_expiries", "_max", "_seen")

    def __init__(self, max_entries: int = MAX_NONCES) -> None:
        self._seen: dict[str, float] = {}
        self._expiries: list[tuple[float, str]] = []  # a heap: the soonest expiry first
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._seen)

    def use(self, nonce: str, expires_at: float, now: float) -> bool:
        """Record ``nonce`` until ``expires_at``; False if it is already recorded (a replay).

        Raises:
            HubError: ``SERVICE_UNAVAILABLE`` when the store is full of unexpired nonces.
        """
        self._forget_expired(now)
        if nonce in self._seen:
            return False
        if len(self._seen) >= self._max:
            raise HubError(
                ErrorKind.SERVICE_UNAVAILABLE,
                "Too many signed requests within the timestamp window to remember their nonces; retry later.",
            )
        self._seen[nonce] = expires_at
        heapq.heappush(self._expiries, (expires_at, nonce))
        return True

    def _forget_expired(self, now: float) -> None:
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, nonce = heapq.heappop(expiries)
            self._seen.pop(nonce, None)
