"""Chorus request cache: entries keyed by compatibility class + prompt embedding.

See ``docs/chorus_cache.md``. ``RequestCache`` is the entry point; backends: ``InMemoryBackend``
(default), ``DiskBackend`` (directory, survives restarts), ``RedisBackend`` (shared by workers).
"""

from __future__ import annotations

from .backends import CacheBackend, DiskBackend, InMemoryBackend, RedisBackend
from .entry import CacheEntry, CacheMatch, EntryStats
from .errors import BackendUnavailableError, ChorusCacheWarning, CorruptEntryError
from .eviction import EVICTION_POLICIES
from .index import NumpyIndex
from .key import CompatKey
from .request_cache import RequestCache

__all__ = [
    "CompatKey",
    "CacheEntry",
    "EntryStats",
    "CacheMatch",
    "RequestCache",
    "CacheBackend",
    "InMemoryBackend",
    "DiskBackend",
    "RedisBackend",
    "NumpyIndex",
    "EVICTION_POLICIES",
    "ChorusCacheWarning",
    "CorruptEntryError",
    "BackendUnavailableError",
]
