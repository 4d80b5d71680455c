"""``CacheBackend``: the storage interface behind ``RequestCache``.

A backend stores whole entries and their statistics and is the single source of truth; each
``RequestCache`` keeps a local embedding index and follows the backend through ``changes``.
Backends must be safe for concurrent use by threads (and, for shared backends, by processes):
``insert`` reads the statistics, chooses victims and writes in one atomic step, so the byte budget
holds whatever runs beside it.

Errors: ``get`` raises ``CorruptEntryError`` for an entry that fails its checks; any method may
raise ``BackendUnavailableError`` when the store cannot be reached in time. ``RequestCache`` turns
both into a warning and a miss.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from ..entry import CacheEntry
from ..errors import ChorusCacheWarning
from ..serialization import EntryRecord

__all__ = ["CacheBackend", "Changes", "InsertResult", "warn_cache"]


def warn_cache(message: str) -> None:
    warnings.warn(message, ChorusCacheWarning, stacklevel=3)


@dataclass
class InsertResult:
    ok: bool  # False: the entry alone exceeds the budget (nothing was evicted)
    evicted: list[str] = field(default_factory=list)


@dataclass
class Changes:
    """What changed since ``cursor``: with ``reset`` the index is rebuilt from ``upserts`` alone."""

    cursor: Any
    reset: bool = False
    upserts: list[EntryRecord] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


class CacheBackend(ABC):
    """Storage for cache entries. Subclasses: InMemoryBackend, DiskBackend, RedisBackend."""

    @abstractmethod
    def insert(self, entry: CacheEntry, *, budget: int, policy: str) -> InsertResult:
        """Atomically evict (``policy`` order, see ``eviction.py``) until ``entry`` fits in ``budget``
        bytes, then store it. An entry with the same id is replaced. ``entry`` is validated and
        has its id, normalised embedding and stats set."""

    @abstractmethod
    def get(self, entry_id: str) -> CacheEntry | None:
        """The full entry (own copy of the latents), None when absent."""

    @abstractmethod
    def delete(self, entry_id: str) -> bool:
        """Remove an entry; True if it was there."""

    @abstractmethod
    def records(self) -> list[EntryRecord]:
        """Metadata of every entry (no latents)."""

    @abstractmethod
    def changes(self, cursor: Any, known: Collection[str]) -> Changes:
        """Index updates since ``cursor`` (None = from scratch); ``known`` = ids the caller indexes."""

    @abstractmethod
    def update_stats(self, entry_id: str, *, hits: int, compute_saved: float, last_used: float) -> bool:
        """Add ``hits`` and ``compute_saved``, set ``last_used``; False if the entry is gone."""

    @abstractmethod
    def total_bytes(self) -> int:
        """Bytes charged to the budget by the stored entries."""

    @abstractmethod
    def count(self) -> int:
        """Number of stored entries."""

    def clear(self) -> None:
        """Remove every entry."""
        for rec in self.records():
            self.delete(rec.entry_id)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections / handles."""
