"""Credentials already verified, kept until they expire, so hot paths skip HMACs and lookups."""

from __future__ import annotations

from typing import Any

DEFAULT_MAX_ENTRIES = 200_000
"""Enough for one cached token per device at our 100,000-device target, with room for services;
an entry costs ~300 bytes, so a full cache stays near 60 MB."""


class VerifiedTokenCache:
    """Maps a credential's exact text to what it proved (a principal), until its expiry.

    ``invalidate(owner)`` drops every entry of one identity or policy (registry change). When full,
    the oldest half of the entries is dropped: cheap, and a miss costs only a re-verification.
    """

    __slots__ = ("_entries", "_max", "_owners")

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._entries: dict[str, tuple[Any, float, str]] = {}
        self._owners: dict[str, set[str]] = {}
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, credential: str, now: float) -> Any | None:
        """The principal proved by ``credential``, or None if unknown or expired."""
        entry = self._entries.get(credential)
        if entry is None:
            return None
        if entry[1] <= now:
            self._remove(credential)
            return None
        return entry[0]

    def put(self, credential: str, principal: Any, expiry: float, owner: str) -> None:
        """Remember that ``credential`` proves ``principal`` until ``expiry``; ``owner`` is the
        identity key or ``policy:{name}`` whose change invalidates it."""
        if credential not in self._entries and len(self._entries) >= self._max:
            for old in list(self._entries)[: self._max // 2]:
                self._remove(old)
        self._entries[credential] = (principal, expiry, owner)
        self._owners.setdefault(owner, set()).add(credential)

    def invalidate(self, owner: str) -> None:
        for credential in self._owners.pop(owner, ()):
            self._entries.pop(credential, None)

    def clear(self) -> None:
        self._entries.clear()
        self._owners.clear()

    def _remove(self, credential: str) -> None:
        entry = self._entries.pop(credential, None)
        if entry is not None:
            owned = self._owners.get(entry[2])
            if owned is not None:
                owned.discard(credential)
                if not owned:
                    del self._owners[entry[2]]
