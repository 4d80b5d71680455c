"""Argument checks shared by the cache and its backends; errors name the argument and value."""

from __future__ import annotations

import math

import numpy as np
import torch

from .entry import CacheEntry, EntryStats
from .key import CompatKey

__all__ = ["normalize_embedding", "check_entry", "check_finite_nonneg"]


def normalize_embedding(embedding: object, *, name: str = "embedding", dim: int | None = None) -> np.ndarray:
    """Validate a 1-D finite non-zero vector and return it L2-normalised as float32 ``[D]``."""
    if isinstance(embedding, torch.Tensor):
        embedding = embedding.detach().cpu().numpy()
    try:
        arr = np.asarray(embedding)
    except Exception as e:  # noqa: BLE001 - anything unconvertible is a bad argument
        raise TypeError(f"{name} must be a 1-D float array, got {type(embedding).__name__}") from e
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must be a 1-D float array, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be 1-D and non-empty, got shape {tuple(arr.shape)}")
    if dim is not None and arr.size != dim:
        raise ValueError(f"{name} must have dim {dim} (the cache's embedding dim), got {arr.size}")
    arr64 = arr.astype(np.float64)
    if not np.all(np.isfinite(arr64)):
        raise ValueError(f"{name} must be finite, got {int((~np.isfinite(arr64)).sum())} non-finite values")
    peak = float(np.max(np.abs(arr64)))
    if peak == 0.0:
        raise ValueError(f"{name} must have a non-zero L2 norm, got an all-zero vector")
    scaled = arr64 / peak  # scale first: huge or subnormal vectors must not overflow / underflow the norm
    return (scaled / np.linalg.norm(scaled)).astype(np.float32)


def check_finite_nonneg(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {v}")
    return v


def check_entry(entry: object, *, dim: int | None) -> None:
    """Check a ``CacheEntry`` before insertion (types, latent step range, CPU tensors)."""
    if not isinstance(entry, CacheEntry):
        raise TypeError(f"entry must be a CacheEntry, got {type(entry).__name__}")
    if not isinstance(entry.key, CompatKey):
        raise TypeError(f"entry.key must be a CompatKey, got {type(entry.key).__name__}")
    if not isinstance(entry.prompt, str):
        raise TypeError(f"entry.prompt must be a str, got {type(entry.prompt).__name__}")
    if not isinstance(entry.token_ids, (list, tuple)) or not all(
        isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in entry.token_ids
    ):
        raise TypeError("entry.token_ids must be a list of ints")
    if any(not (-(2**63) <= int(t) < 2**63) for t in entry.token_ids):
        raise ValueError("entry.token_ids must fit in int64")
    if entry.seed is not None and (isinstance(entry.seed, bool) or not isinstance(entry.seed, int)):
        raise TypeError(f"entry.seed must be an int or None, got {type(entry.seed).__name__}")
    if not isinstance(entry.stats, EntryStats):
        raise TypeError(f"entry.stats must be an EntryStats, got {type(entry.stats).__name__}")
    hits = entry.stats.hits
    if isinstance(hits, bool) or not isinstance(hits, (int, np.integer)) or hits < 0:
        raise ValueError(f"entry.stats.hits must be an int >= 0, got {hits!r}")
    for name in ("created", "last_used", "compute_saved", "full_nfe"):
        check_finite_nonneg(f"entry.stats.{name}", getattr(entry.stats, name))
    if not isinstance(entry.entry_id, str):
        raise TypeError(f"entry.entry_id must be a str, got {type(entry.entry_id).__name__}")
    if entry.entry_id and not (entry.entry_id.isascii() and entry.entry_id.replace("-", "").isalnum()):
        # Ids become file names and Redis keys: letters, digits and '-' only.
        raise ValueError(f"entry.entry_id must hold only ASCII letters, digits and '-', got {entry.entry_id!r}")
    if len(entry.entry_id) > 128:
        raise ValueError(f"entry.entry_id must be at most 128 characters, got {len(entry.entry_id)}")
    if not isinstance(entry.latents, dict):
        raise TypeError(f"entry.latents must be a dict[int, Tensor], got {type(entry.latents).__name__}")
    for k, t in entry.latents.items():
        if isinstance(k, bool) or not isinstance(k, int):
            raise TypeError(f"entry.latents keys must be ints (step indices), got {k!r}")
        if not 0 <= k <= entry.key.num_steps:
            raise ValueError(f"entry.latents step {k} is outside [0, num_steps={entry.key.num_steps}]")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"entry.latents[{k}] must be a torch.Tensor, got {type(t).__name__}")
        if t.device.type != "cpu":
            raise ValueError(f"entry.latents[{k}] must be a CPU tensor, got device {t.device}")
        if not t.dtype.is_floating_point:
            raise TypeError(f"entry.latents[{k}] must be a floating-point tensor, got {t.dtype}")
        if t.is_sparse or t.layout != torch.strided:
            raise ValueError(f"entry.latents[{k}] must be a dense tensor, got layout {t.layout}")
    normalize_embedding(entry.embedding, name="entry.embedding", dim=dim)
