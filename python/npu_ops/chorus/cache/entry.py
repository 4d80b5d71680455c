"""What the cache stores: ``CacheEntry`` (value), ``EntryStats`` (for eviction), ``CacheMatch``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .key import CompatKey

__all__ = ["EntryStats", "CacheEntry", "CacheMatch", "METADATA_OVERHEAD_BYTES"]

# Flat charge for the JSON metadata / hash fields of an entry, so that entries without latents
# still cost something and the budget bounds the entry count.
METADATA_OVERHEAD_BYTES = 256


@dataclass
class EntryStats:
    """Usage statistics; eviction policies rank entries by them."""

    hits: int = 0
    created: float = 0.0  # time.time()
    last_used: float = 0.0
    compute_saved: float = 0.0  # accumulated NFE-equivalents saved by hits on this entry
    full_nfe: float = 0.0  # NFE-equivalents its own (full) generation cost

    def to_dict(self) -> dict[str, float]:
        return {
            "hits": self.hits,
            "created": self.created,
            "last_used": self.last_used,
            "compute_saved": self.compute_saved,
            "full_nfe": self.full_nfe,
        }

    @classmethod
    def from_dict(cls, d: dict) -> EntryStats:
        return cls(
            hits=int(d["hits"]),
            created=float(d["created"]),
            last_used=float(d["last_used"]),
            compute_saved=float(d["compute_saved"]),
            full_nfe=float(d["full_nfe"]),
        )


@dataclass
class CacheEntry:
    """One cached request.

    Attributes:
        key: the compatibility class.
        prompt: the source prompt.
        token_ids: tokenizer ids of the DiT text encoder (for the token diff).
        embedding (np.ndarray[D] float32): L2-normalised prompt embedding
            (``RequestCache.insert`` validates and normalises it).
        latents: ``k -> x_k`` (``Tensor[B, C, T, H, W]`` or any shape), the latent at the START of
            step ``k`` (``x_0`` = initial noise, ``x_num_steps`` = final latent); CPU tensors.
        seed: the seed that produced ``x_0`` (None = server-chosen).
        stats: usage statistics.
        entry_id: assigned by insert when empty (uuid4 hex).
    """

    key: CompatKey
    prompt: str
    token_ids: list[int]
    embedding: np.ndarray
    latents: dict[int, torch.Tensor]
    seed: int | None = None
    stats: EntryStats = field(default_factory=EntryStats)
    entry_id: str = ""

    def nbytes(self) -> int:
        """Bytes charged to the budget: latents + embedding + token ids + prompt + flat metadata."""
        latent_bytes = sum(t.numel() * t.element_size() for t in self.latents.values())
        emb = np.asarray(self.embedding)
        return (
            latent_bytes
            + 4 * int(emb.size)  # stored as float32
            + 8 * len(self.token_ids)  # stored as int64
            + len(self.prompt.encode("utf-8"))
            + METADATA_OVERHEAD_BYTES
        )


@dataclass(frozen=True)
class CacheMatch:
    """A lookup result: the entry (with latents) and the cosine similarity of the embeddings."""

    entry: CacheEntry
    similarity: float
