"""``InMemoryBackend``: the embedded default; entries live in this process only."""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Collection
from typing import Any

from ..entry import CacheEntry, EntryStats
from ..eviction import choose_victims
from ..serialization import EntryRecord
from .base import CacheBackend, Changes, InsertResult

__all__ = ["InMemoryBackend"]


def _record(e: CacheEntry, stats: EntryStats) -> EntryRecord:
    return EntryRecord(
        entry_id=e.entry_id,
        key=e.key,
        prompt=e.prompt,
        token_ids=list(e.token_ids),
        embedding=e.embedding.copy(),
        seed=e.seed,
        nbytes=e.nbytes(),
        stats=EntryStats(**stats.to_dict()),
        latent_steps=sorted(e.latents),
    )


class InMemoryBackend(CacheBackend):
    """Entries held in a dict under a lock. Stored latents are private copies and ``get`` returns
    fresh copies, so callers can never change (or observe a half-written) cached latent.

    Args:
        log_size: how many changes are kept for ``changes``; a reader further behind rebuilds.
    """

    def __init__(self, *, log_size: int = 10_000) -> None:
        self._lock = threading.RLock()
        self._entries: dict[str, CacheEntry] = {}
        self._stats: dict[str, EntryStats] = {}
        self._sizes: dict[str, int] = {}
        self._token = uuid.uuid4().hex
        self._seq = 0
        self._log: deque[tuple[int, str, str]] = deque(maxlen=log_size)

    def _log_change(self, op: str, entry_id: str) -> None:
        self._seq += 1
        self._log.append((self._seq, op, entry_id))

    def _remove(self, entry_id: str) -> bool:
        if self._entries.pop(entry_id, None) is None:
            return False
        del self._stats[entry_id], self._sizes[entry_id]
        self._log_change("del", entry_id)
        return True

    def insert(self, entry: CacheEntry, *, budget: int, policy: str) -> InsertResult:
        stored = CacheEntry(
            key=entry.key,
            prompt=entry.prompt,
            token_ids=[int(t) for t in entry.token_ids],
            embedding=entry.embedding.copy(),
            latents={k: t.detach().contiguous().clone() for k, t in entry.latents.items()},
            seed=entry.seed,
            stats=EntryStats(),
            entry_id=entry.entry_id,
        )
        size = stored.nbytes()
        with self._lock:
            sizes = {k: v for k, v in self._sizes.items() if k != entry.entry_id}
            stats = {k: self._stats[k] for k in sizes}
            victims = choose_victims(policy, stats, sizes, size, budget)
            if victims is None:
                return InsertResult(False)
            self._remove(entry.entry_id)
            for v in victims:
                self._remove(v)
            self._entries[entry.entry_id] = stored
            self._stats[entry.entry_id] = EntryStats(**entry.stats.to_dict())
            self._sizes[entry.entry_id] = size
            self._log_change("add", entry.entry_id)
            return InsertResult(True, victims)

    def get(self, entry_id: str) -> CacheEntry | None:
        with self._lock:
            e = self._entries.get(entry_id)
            if e is None:
                return None
            stats = EntryStats(**self._stats[entry_id].to_dict())
        # Stored tensors are never written after insertion, so copying outside the lock is safe.
        return CacheEntry(
            key=e.key,
            prompt=e.prompt,
            token_ids=list(e.token_ids),
            embedding=e.embedding.copy(),
            latents={k: t.clone() for k, t in e.latents.items()},
            seed=e.seed,
            stats=stats,
            entry_id=e.entry_id,
        )

    def delete(self, entry_id: str) -> bool:
        with self._lock:
            return self._remove(entry_id)

    def records(self) -> list[EntryRecord]:
        with self._lock:
            return [_record(e, self._stats[k]) for k, e in self._entries.items()]

    def changes(self, cursor: Any, known: Collection[str]) -> Changes:
        with self._lock:
            token, seq = cursor if cursor is not None else (None, -1)
            first = self._log[0][0] if self._log else self._seq + 1
            if token != self._token or seq < first - 1:
                return Changes((self._token, self._seq), True, self.records(), [])
            upserts, removed = {}, set()
            for s, op, eid in self._log:
                if s <= seq:
                    continue
                if op == "add" and eid in self._entries:
                    upserts[eid] = _record(self._entries[eid], self._stats[eid])
                    removed.discard(eid)
                elif op == "del":
                    upserts.pop(eid, None)
                    removed.add(eid)
            return Changes((self._token, self._seq), False, list(upserts.values()), sorted(removed))

    def update_stats(self, entry_id: str, *, hits: int, compute_saved: float, last_used: float) -> bool:
        with self._lock:
            s = self._stats.get(entry_id)
            if s is None:
                return False
            s.hits += hits
            s.compute_saved += compute_saved
            s.last_used = last_used
            return True

    def total_bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def count(self) -> int:
        with self._lock:
            return len(self._entries)
