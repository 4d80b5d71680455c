"""Exceptions and the warning category of the Chorus request cache."""

from __future__ import annotations

__all__ = ["ChorusCacheWarning", "CorruptEntryError", "BackendUnavailableError"]


class ChorusCacheWarning(UserWarning):
    """Backend trouble turned into a cache miss (corrupt entry, Redis down or slow)."""


class CorruptEntryError(Exception):
    """A stored entry failed its checksum or could not be decoded; the cache removes it."""

    def __init__(self, entry_id: str, reason: str) -> None:
        super().__init__(f"cache entry {entry_id!r} is corrupt: {reason}")
        self.entry_id = entry_id
        self.reason = reason


class BackendUnavailableError(Exception):
    """The backend could not be reached in time (e.g. Redis down or slow)."""
