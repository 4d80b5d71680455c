"""Entry <-> bytes: safetensors for tensors (bit-exact, bf16 included), JSON-able metadata.

The blob holds ``latent.<k>`` tensors, ``embedding`` (float32 [D]) and ``token_ids`` (int64 [L]).
The metadata holds everything else plus the blob's sha256, so a truncated or altered blob is
detected before a single latent is handed out.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .entry import CacheEntry, EntryStats
from .errors import CorruptEntryError
from .key import CompatKey

__all__ = [
    "EntryRecord",
    "entry_to_blob",
    "entry_meta",
    "entry_from_blob",
    "record_from_meta",
    "meta_from_json",
    "FORMAT_VERSION",
]

FORMAT_VERSION = 1


@dataclass
class EntryRecord:
    """Metadata of a stored entry (no latents): what indexes, eviction and ``entries()`` need."""

    entry_id: str
    key: CompatKey
    prompt: str
    token_ids: list[int]
    embedding: np.ndarray  # float32 [D], unit norm
    seed: int | None
    nbytes: int
    stats: EntryStats
    latent_steps: list[int]

    def to_entry(self) -> CacheEntry:
        """A metadata view: a ``CacheEntry`` with empty ``latents``."""
        return CacheEntry(
            key=self.key,
            prompt=self.prompt,
            token_ids=list(self.token_ids),
            embedding=self.embedding.copy(),
            latents={},
            seed=self.seed,
            stats=EntryStats(**self.stats.to_dict()),
            entry_id=self.entry_id,
        )


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr, dtype=np.float32).tobytes()).decode("ascii")


def _unb64(s: str, dim: int) -> np.ndarray:
    raw = base64.b64decode(s.encode("ascii"), validate=True)
    if len(raw) != 4 * dim:
        raise ValueError(f"embedding holds {len(raw)} bytes, expected {4 * dim}")
    return np.frombuffer(raw, dtype=np.float32).copy()


def _safetensors_torch():
    try:
        import safetensors.torch
    except ImportError as e:
        raise ImportError(
            "the disk and Redis cache backends need the 'safetensors' package: pip install 'npu_ops[chorus]'"
        ) from e
    return safetensors.torch


def entry_to_blob(entry: CacheEntry) -> bytes:
    """Tensors of an entry as safetensors bytes (latents contiguous copies, embedding, token ids)."""
    save = _safetensors_torch().save

    tensors: dict[str, torch.Tensor] = {
        f"latent.{k}": t.detach().contiguous().clone() for k, t in sorted(entry.latents.items())
    }
    tensors["embedding"] = torch.from_numpy(np.ascontiguousarray(entry.embedding, dtype=np.float32).copy())
    tensors["token_ids"] = torch.tensor([int(t) for t in entry.token_ids], dtype=torch.int64)
    return save(tensors, metadata={"format": f"chorus-entry-v{FORMAT_VERSION}", "entry_id": entry.entry_id})


def entry_meta(entry: CacheEntry, blob: bytes) -> dict[str, Any]:
    """JSON-able metadata of an entry whose tensors were serialised to ``blob``."""
    return {
        "format": FORMAT_VERSION,
        "entry_id": entry.entry_id,
        "key": entry.key.to_dict(),
        "prompt": entry.prompt,
        "token_ids": [int(t) for t in entry.token_ids],
        "embedding_dim": int(np.asarray(entry.embedding).size),
        "embedding_b64": _b64(entry.embedding),
        "seed": entry.seed,
        "nbytes": entry.nbytes(),
        "latent_steps": sorted(entry.latents),
        "blob_sha256": hashlib.sha256(blob).hexdigest(),
        "blob_size": len(blob),
        "stats": entry.stats.to_dict(),
    }


def record_from_meta(meta: dict[str, Any]) -> EntryRecord:
    """Decode metadata; raises ``CorruptEntryError`` on anything malformed."""
    entry_id = str(meta.get("entry_id", "?")) if isinstance(meta, dict) else "?"
    try:
        if meta["format"] != FORMAT_VERSION:
            raise ValueError(f"unknown format {meta['format']!r}")
        emb = _unb64(meta["embedding_b64"], int(meta["embedding_dim"]))
        if not np.all(np.isfinite(emb)):
            raise ValueError("non-finite embedding")
        seed = meta["seed"]
        return EntryRecord(
            entry_id=str(meta["entry_id"]),
            key=CompatKey.from_dict(meta["key"]),
            prompt=str(meta["prompt"]),
            token_ids=[int(t) for t in meta["token_ids"]],
            embedding=emb,
            seed=None if seed is None else int(seed),
            nbytes=int(meta["nbytes"]),
            stats=EntryStats.from_dict(meta["stats"]),
            latent_steps=[int(k) for k in meta["latent_steps"]],
        )
    except CorruptEntryError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoding failure means a corrupt record
        raise CorruptEntryError(entry_id, f"bad metadata ({type(e).__name__}: {e})") from e


def meta_from_json(entry_id: str, text: str | bytes) -> dict[str, Any]:
    try:
        meta = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptEntryError(entry_id, f"metadata is not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise CorruptEntryError(entry_id, "metadata is not a JSON object")
    return meta


def entry_from_blob(meta: dict[str, Any], blob: bytes) -> CacheEntry:
    """Rebuild a full entry; verifies size, sha256 and that the tensors agree with the metadata."""
    record = record_from_meta(meta)
    eid = record.entry_id
    if len(blob) != meta.get("blob_size") or hashlib.sha256(blob).hexdigest() != meta.get("blob_sha256"):
        raise CorruptEntryError(eid, f"blob checksum mismatch ({len(blob)} bytes, expected {meta.get('blob_size')})")
    try:
        tensors = _safetensors_torch().load(blob)
    except Exception as e:  # noqa: BLE001 - the checksum passed, so this is a writer bug; still a miss
        raise CorruptEntryError(eid, f"blob does not decode ({e})") from e
    latents = {}
    for k in record.latent_steps:
        t = tensors.get(f"latent.{k}")
        if t is None:
            raise CorruptEntryError(eid, f"blob lacks latent {k}")
        latents[k] = t
    emb = tensors.get("embedding")
    tok = tensors.get("token_ids")
    if emb is None or tok is None:
        raise CorruptEntryError(eid, "blob lacks embedding or token_ids")
    if not np.array_equal(emb.numpy(), record.embedding) or tok.tolist() != record.token_ids:
        raise CorruptEntryError(eid, "blob embedding / token ids disagree with the metadata")
    return CacheEntry(
        key=record.key,
        prompt=record.prompt,
        token_ids=record.token_ids,
        embedding=record.embedding,
        latents=latents,
        seed=record.seed,
        stats=record.stats,
        entry_id=eid,
    )
