"""Chorus: inter-request caching for video diffusion-transformer serving.

- :func:`masked_blend`: blend fresh latents / tokens into cached ones inside a region mask
  (Stage 2), ``out = cached + mask * (fresh - cached)``.
- :func:`amplified_softmax`: softmax with per-key amplification (token-guided attention
  amplification), renormalised (``softmax(scale * s + log(alpha))``) or not
  (``softmax(scale * s) * alpha``).
- :func:`amplified_attention`: attention built on the same maths.
- :func:`token_attention_mass`: per query, the attention mass on a set of key tokens (the map
  Stage-2 region masks are built from).

Serving (inter-request caching around a diffusers Wan transformer; needs the ``chorus`` extra, imported
lazily): :class:`ChorusConfig`, :func:`plan`, :class:`ChorusPipeline`, :func:`enable_chorus`,
the prompt encoders and ``npu_ops.chorus.cache`` (the request cache).

``masked_blend`` and ``amplified_softmax`` are dispatcher ops (``torch.ops.npu_ops.*``) with fakes
and autograd, so they work under ``torch.compile`` and ``torch.library.opcheck``.
"""

from __future__ import annotations

from .amplified_softmax import amplified_softmax
from .attention import amplified_attention, token_attention_mass
from .masked_blend import masked_blend

__all__ = ["masked_blend", "amplified_softmax", "amplified_attention", "token_attention_mass"]

# Serving API, imported on first use (keeps ``import npu_ops`` free of diffusers / transformers).
_LAZY = {
    "ChorusConfig": "config",
    "RegionPolicy": "config",
    "TGAAConfig": "config",
    "Request": "policy",
    "StagePlan": "policy",
    "plan": "policy",
    "ChorusPipeline": "pipeline",
    "enable_chorus": "enable",
    "disable_chorus": "enable",
    "MiniLMEncoder": "encoder",
    "HashingEncoder": "encoder",
    "tiny_wan_transformer": "tiny_wan",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
