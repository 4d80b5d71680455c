"""Builders shared by the Chorus cache tests (keys, entries with recognisable latents)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from npu_ops.chorus.cache import CacheEntry, CompatKey

DIM = 16
NUM_STEPS = 4


def make_key(**overrides) -> CompatKey:
    fields = dict(
        model_id="tiny-wan",
        height=32,
        width=32,
        num_frames=5,
        scheduler="flow_match_euler",
        sigmas=(1.0, 0.75, 0.5, 0.25, 0.0),
        num_steps=NUM_STEPS,
    )
    fields.update(overrides)
    return CompatKey(**fields)


def unit(seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def near(v: np.ndarray, eps: float, seed: int) -> np.ndarray:
    """A unit vector close to ``v`` (cosine about 1 - eps^2/2)."""
    w = v.astype(np.float64) + eps * np.random.default_rng(seed).standard_normal(v.size)
    return (w / np.linalg.norm(w)).astype(np.float32)


def tag_of(prompt: str) -> float:
    """A per-prompt value written into every latent element, to recognise torn entries."""
    return float(int(hashlib.sha256(prompt.encode()).hexdigest()[:6], 16) % 1000) + 0.5


def make_entry(
    prompt: str,
    embedding: np.ndarray,
    key: CompatKey | None = None,
    *,
    shape=(1, 4, 2, 4, 4),
    dtype=torch.float32,
    steps=(0, 2),
    random_latents: bool = False,
    seed: int | None = None,
) -> CacheEntry:
    key = key or make_key()
    g = torch.Generator().manual_seed(int(tag_of(prompt)))
    latents = {}
    for k in steps:
        if random_latents:
            latents[k] = torch.randn(shape, generator=g).to(dtype)
        else:
            latents[k] = torch.full(shape, tag_of(prompt) + k, dtype=dtype)
    return CacheEntry(
        key=key,
        prompt=prompt,
        token_ids=[len(prompt), 7, 11],
        embedding=embedding,
        latents=latents,
        seed=seed,
    )


def assert_untorn(entry: CacheEntry) -> None:
    """Every latent of an entry made with ``random_latents=False`` carries its prompt's tag."""
    for k, t in entry.latents.items():
        expect = tag_of(entry.prompt) + k
        assert torch.all(t == expect), f"torn entry {entry.entry_id}: latent {k} is not {expect}"
    assert entry.token_ids == [len(entry.prompt), 7, 11]
