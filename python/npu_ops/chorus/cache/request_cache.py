"""``RequestCache``: the Chorus inter-request cache (lookup by class + prompt embedding).

Lookup runs an exact cosine search within the request's compatibility class (tenant included
unless ``cross_tenant=True``; then ties prefer the requesting tenant's own entry) over a local
numpy index that follows the backend. Backend trouble never fails a request: a corrupt entry
is removed and skipped, an unreachable backend is a miss; both raise a ``ChorusCacheWarning``.
Bad arguments raise ``TypeError`` / ``ValueError`` naming them.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable

import numpy as np

from .backends.base import CacheBackend, warn_cache
from .backends.memory import InMemoryBackend
from .entry import CacheEntry, CacheMatch
from .errors import BackendUnavailableError, CorruptEntryError
from .eviction import check_eviction
from .index import NumpyIndex
from .key import CompatKey
from .serialization import EntryRecord
from .validation import check_entry, check_finite_nonneg, normalize_embedding

__all__ = ["RequestCache"]

# How many candidates a lookup tries when better ones turn out deleted or corrupt.
_MAX_CANDIDATES = 16


class RequestCache:
    """Inter-request cache of denoising latents.

    Args:
        backend: storage (default: a new ``InMemoryBackend``).
        budget_bytes: bytes the stored entries may take (``CacheEntry.nbytes``); never exceeded.
            Workers sharing a backend should use the same budget (each enforces its own).
        eviction: ``"lru"``, ``"lfu"`` or ``"cost"`` (hit frequency x compute saved, NIRVANA's LCBFU).
        cross_tenant: let tenants share entries (off by default: the tenant is part of the class).
        embedding_dim: expected embedding dimension (default: fixed by the first entry seen).
        clock: time source for the statistics (default ``time.time``).

    Insertion is the caller's job: insert the entry of every miss after its full generation.
    Call ``record_hit`` when a looked-up entry is actually reused: it drives LRU/LFU/cost.
    """

    def __init__(
        self,
        backend: CacheBackend | None = None,
        *,
        budget_bytes: int = 2**30,
        eviction: str = "lru",
        cross_tenant: bool = False,
        embedding_dim: int | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if backend is None:
            backend = InMemoryBackend()
        if not isinstance(backend, CacheBackend):
            raise TypeError(f"backend must be a CacheBackend, got {type(backend).__name__}")
        if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, (int, np.integer)):
            raise TypeError(f"budget_bytes must be an int, got {type(budget_bytes).__name__} ({budget_bytes!r})")
        if budget_bytes < 0:
            raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
        if not isinstance(cross_tenant, bool):
            raise TypeError(f"cross_tenant must be a bool, got {type(cross_tenant).__name__}")
        if embedding_dim is not None and (
            isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1
        ):
            raise ValueError(f"embedding_dim must be None or an int >= 1, got {embedding_dim!r}")
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be callable, got {type(clock).__name__}")
        self.backend = backend
        self.budget_bytes = int(budget_bytes)
        self.eviction = check_eviction(eviction)
        self.cross_tenant = cross_tenant
        self._clock = clock or time.time
        self._index = NumpyIndex(embedding_dim)
        self._cursor = None
        self._lock = threading.RLock()
        self._last_nbytes = 0

    # -- helpers ------------------------------------------------------------------------------
    def _group(self, key: CompatKey) -> str:
        return key.class_digest(include_tenant=not self.cross_tenant)

    def _index_record(self, rec: EntryRecord) -> None:
        try:
            self._index.add(rec.entry_id, self._group(rec.key), rec.embedding, owner=rec.key.tenant)
        except ValueError as e:  # another worker stored a different embedding size
            warn_cache(f"RequestCache: not indexing entry {rec.entry_id!r}: {e}")

    def _sync(self) -> None:
        """Bring the local index up to date with the backend (raises BackendUnavailableError)."""
        with self._lock:
            ch = self.backend.changes(self._cursor, list(self._index.ids()))
            if ch.reset:
                self._index.clear()
            for eid in ch.removed:
                self._index.remove(eid)
            for rec in ch.upserts:
                self._index_record(rec)
            self._cursor = ch.cursor

    def _drop(self, entry_id: str) -> None:
        with self._lock:
            self._index.remove(entry_id)

    def _discard_corrupt(self, entry_id: str) -> None:
        """Forget a corrupt entry here and, if the backend is reachable, there too."""
        self._drop(entry_id)
        try:
            self.backend.delete(entry_id)
        except BackendUnavailableError:
            pass

    # -- public API ---------------------------------------------------------------------------
    def lookup(self, key: CompatKey, embedding: np.ndarray, *, min_similarity: float = -1.0) -> CacheMatch | None:
        """The most similar entry of ``key``'s class with cosine similarity >= ``min_similarity``.

        Args:
            key: the request's compatibility class.
            embedding (np.ndarray[D]): the request's prompt embedding (normalised here).
            min_similarity: threshold in [-1, 1].

        Returns:
            ``CacheMatch`` (entry with latents, similarity) or None (a miss; also on backend
            trouble, with a ``ChorusCacheWarning``). Among equally similar entries (scores equal
            after rounding to 1e-9) the requesting tenant's own entry wins (this matters with
            ``cross_tenant=True``), then the smaller entry id: deterministic on every worker.
        """
        if not isinstance(key, CompatKey):
            raise TypeError(f"key must be a CompatKey, got {type(key).__name__}")
        if isinstance(min_similarity, bool) or not isinstance(min_similarity, (int, float, np.floating)):
            raise TypeError(f"min_similarity must be a float, got {type(min_similarity).__name__}")
        if not (math.isfinite(min_similarity) and -1.0 <= min_similarity <= 1.0):
            raise ValueError(f"min_similarity must be in [-1, 1], got {min_similarity}")
        q = normalize_embedding(embedding, dim=self._index.dim)
        try:
            self._sync()
        except BackendUnavailableError as e:
            warn_cache(f"RequestCache: lookup is a miss: {e}")
            return None
        group = self._group(key)
        for _ in range(_MAX_CANDIDATES):
            with self._lock:
                best = self._index.search(group, q, min_similarity=float(min_similarity), k=1, prefer=key.tenant)
            if not best:
                return None
            eid, sim = best[0]
            try:
                entry = self.backend.get(eid)
            except CorruptEntryError as e:
                warn_cache(f"RequestCache: {e}; removed, treated as a miss")
                self._discard_corrupt(eid)
                continue
            except BackendUnavailableError as e:
                warn_cache(f"RequestCache: lookup is a miss: {e}")
                return None
            if entry is None:  # evicted by another worker since the last sync
                self._drop(eid)
                continue
            if self._group(entry.key) != group:
                warn_cache(f"RequestCache: entry {eid!r} changed class; skipped")
                self._drop(eid)
                continue
            # The index's score (rounded to 1e-9, see index.py), so similarity >= min_similarity holds.
            return CacheMatch(entry=entry, similarity=sim)
        return None

    def insert(self, entry: CacheEntry) -> bool:
        """Store ``entry``, evicting per policy to stay within the budget.

        Sets ``entry.entry_id`` (uuid4 hex) when empty, normalises ``entry.embedding`` and fills
        ``stats.created`` / ``stats.last_used`` when 0. Returns False if the entry alone exceeds
        the budget or the backend is unreachable (warning).
        """
        check_entry(entry, dim=self._index.dim)
        entry.embedding = normalize_embedding(entry.embedding, name="entry.embedding", dim=self._index.dim)
        if not entry.entry_id:
            entry.entry_id = uuid.uuid4().hex
        now = self._clock()
        if entry.stats.created == 0.0:
            entry.stats.created = now
        if entry.stats.last_used == 0.0:
            entry.stats.last_used = entry.stats.created
        if entry.nbytes() > self.budget_bytes:
            return False
        try:
            result = self.backend.insert(entry, budget=self.budget_bytes, policy=self.eviction)
        except BackendUnavailableError as e:
            warn_cache(f"RequestCache: insert skipped: {e}")
            return False
        with self._lock:
            for v in result.evicted:
                self._index.remove(v)
            if result.ok:
                self._index.add(entry.entry_id, self._group(entry.key), entry.embedding, owner=entry.key.tenant)
        return result.ok

    def record_hit(self, entry_id: str, compute_saved: float) -> None:
        """Count a reuse of ``entry_id`` that saved ``compute_saved`` NFE-equivalents (>= 0).
        An entry evicted meanwhile is ignored; backend trouble is a warning."""
        if not isinstance(entry_id, str):
            raise TypeError(f"entry_id must be a str, got {type(entry_id).__name__}")
        saved = check_finite_nonneg("compute_saved", compute_saved)
        try:
            self.backend.update_stats(entry_id, hits=1, compute_saved=saved, last_used=self._clock())
        except BackendUnavailableError as e:
            warn_cache(f"RequestCache: hit not recorded: {e}")

    def get(self, entry_id: str) -> CacheEntry | None:
        """The entry with this id (None when absent, corrupt or the backend is unreachable)."""
        try:
            return self.backend.get(entry_id)
        except CorruptEntryError as e:
            warn_cache(f"RequestCache: {e}; removed")
            self._discard_corrupt(entry_id)
        except BackendUnavailableError as e:
            warn_cache(f"RequestCache: get failed: {e}")
        return None

    def remove(self, entry_id: str) -> bool:
        """Delete an entry; True if it was there."""
        self._drop(entry_id)
        try:
            return self.backend.delete(entry_id)
        except BackendUnavailableError as e:
            warn_cache(f"RequestCache: remove failed: {e}")
            return False

    def clear(self) -> None:
        """Delete every entry of the backend (all tenants, all workers' entries)."""
        self.backend.clear()
        with self._lock:
            self._index.clear()

    def __len__(self) -> int:
        try:
            return self.backend.count()
        except BackendUnavailableError as e:
            warn_cache(f"RequestCache: size unknown, reporting the local index: {e}")
            return len(self._index)

    def nbytes(self) -> int:
        """Bytes charged to the budget by all stored entries (the last known value if unreachable)."""
        try:
            self._last_nbytes = self.backend.total_bytes()
        except BackendUnavailableError as e:
            warn_cache(f"RequestCache: size unknown, reporting the last known: {e}")
        return self._last_nbytes

    def entries(self) -> list[CacheEntry]:
        """Metadata view of every stored entry; [] if unreachable.

        The views have empty ``latents`` (so their ``nbytes()`` counts no latents; ``nbytes()`` of
        the cache is the charged total) and their own copy of the statistics.
        """
        try:
            return [r.to_entry() for r in self.backend.records()]
        except BackendUnavailableError as e:
            warn_cache(f"RequestCache: entries unavailable: {e}")
            return []

    def close(self) -> None:
        self.backend.close()
