"""Test-only stand-in for ``npu_ops.chorus.cache`` (branch h6cache), implementing exactly the API of
/work/wt/CHORUS_SERVING_API.md with an in-memory dict and brute-force cosine search. ``conftest.py``
installs it as ``npu_ops.chorus.cache`` only when the real package is absent."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class CompatKey:
    model_id: str
    height: int
    width: int
    num_frames: int
    scheduler: str
    sigmas: tuple
    num_steps: int
    guidance: str = "none"
    dtype: str = "float32"
    model_revision: str = ""
    lora: tuple = ()
    tenant: str = "default"

    def class_digest(self, *, include_tenant: bool = True) -> str:
        d = asdict(self)
        d["sigmas"] = [round(float(s), 6) for s in self.sigmas]
        if not include_tenant:
            d.pop("tenant")
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=list).encode()).hexdigest()


@dataclass
class EntryStats:
    hits: int = 0
    created: float = 0.0
    last_used: float = 0.0
    compute_saved: float = 0.0
    full_nfe: float = 0.0


@dataclass
class CacheEntry:
    key: CompatKey
    prompt: str
    token_ids: list
    embedding: np.ndarray
    latents: dict
    seed: int | None = None
    stats: EntryStats = field(default_factory=EntryStats)
    entry_id: str = ""

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.latents.values()) + 4 * self.embedding.size + 256


@dataclass(frozen=True)
class CacheMatch:
    entry: CacheEntry
    similarity: float


class RequestCache:
    def __init__(self, backend=None, *, budget_bytes: int = 2**30, eviction: str = "lru", cross_tenant: bool = False):
        self.budget_bytes, self.cross_tenant = budget_bytes, cross_tenant
        self._entries: dict[str, CacheEntry] = {}

    def lookup(self, key, embedding, *, min_similarity: float = -1.0):
        digest = key.class_digest(include_tenant=not self.cross_tenant)
        best = None
        for e in self._entries.values():
            if e.key.class_digest(include_tenant=not self.cross_tenant) != digest:
                continue
            sim = float(np.dot(e.embedding, embedding))
            if sim >= min_similarity and (best is None or sim > best.similarity):
                best = CacheMatch(e, sim)
        return best

    def insert(self, entry: CacheEntry) -> bool:
        if entry.nbytes() > self.budget_bytes:
            return False
        entry.entry_id = entry.entry_id or uuid.uuid4().hex
        entry.embedding = np.asarray(entry.embedding, np.float32) / np.linalg.norm(entry.embedding)
        entry.latents = {k: v.detach().clone().contiguous() for k, v in entry.latents.items()}
        entry.stats.created = entry.stats.last_used = time.time()
        while self._entries and self.nbytes() + entry.nbytes() > self.budget_bytes:
            oldest = min(self._entries.values(), key=lambda e: e.stats.last_used)
            del self._entries[oldest.entry_id]
        self._entries[entry.entry_id] = entry
        return True

    def record_hit(self, entry_id: str, compute_saved: float) -> None:
        e = self._entries.get(entry_id)
        if e is not None:
            e.stats.hits += 1
            e.stats.compute_saved += compute_saved
            e.stats.last_used = time.time()

    def __len__(self) -> int:
        return len(self._entries)

    def nbytes(self) -> int:
        return sum(e.nbytes() for e in self._entries.values())

    def entries(self) -> list:
        return list(self._entries.values())


class InMemoryBackend:  # the stand-in keeps entries in RequestCache itself
    pass


_ = torch  # latents are torch tensors
