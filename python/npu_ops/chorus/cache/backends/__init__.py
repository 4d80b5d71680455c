"""Storage backends of the Chorus request cache (one interface, ``CacheBackend``)."""

from __future__ import annotations

from .base import CacheBackend, Changes, InsertResult
from .disk import DiskBackend
from .memory import InMemoryBackend
from .redis import RedisBackend

__all__ = ["CacheBackend", "Changes", "InsertResult", "InMemoryBackend", "DiskBackend", "RedisBackend"]
