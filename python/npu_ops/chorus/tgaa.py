"""Token-Guided Attention Amplification on Wan's cross-attention (``block.attn2``) and the recording of
per-token attention maps that Stage-2 region masks are built from.

:func:`install_tgaa` swaps every ``attn2`` processor for a :class:`TGAAProcessor` sharing one
:class:`TGAAState`. While the state is inactive the processor calls the original processor (so a
step without TGAA is bit-identical to the stock model). While active it computes

- ``amplified_attention(q, k, v, alpha)`` with ``alpha[j] = alpha_step`` on the added tokens and 1
  elsewhere (``mode="renorm"``: ``softmax(s + log alpha)``, ``"value"``: ``softmax(s) * alpha``);
- when ``record`` is on, the probabilities explicitly (``npu_ops.amplified_softmax``) and, per layer,
  ``token_attention_mass`` of the video queries on the added tokens, plus the mass the source
  prompt's removed tokens would receive (queries against the source's projected text states).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .amplified_softmax import amplified_softmax
from .attention import amplified_attention, token_attention_mass

__all__ = ["TGAAState", "TGAAProcessor", "install_tgaa", "uninstall_tgaa"]


@dataclass
class TGAAState:
    """Shared by the processors of one model; set per step by the pipeline."""

    active: bool = False
    alpha: Tensor | None = None  # [1, 1, 1, L] key factors, or None (no amplification)
    renormalize: bool = True
    record: bool = False
    added_mask: Tensor | None = None  # [L] bool: the request's added tokens
    source_ctx: Tensor | None = None  # [B, Ls, dim]: the source's text states after the text projection
    removed_mask: Tensor | None = None  # [Ls] bool: the source's removed tokens
    mass: Tensor | None = field(default=None, repr=False)  # [B, Nq] summed over recorded layers
    layers: int = 0

    def reset_maps(self) -> None:
        self.mass, self.layers = None, 0

    def _add(self, m: Tensor) -> None:
        self.mass = m if self.mass is None else self.mass + m


def _heads(x: Tensor, heads: int) -> Tensor:
    return x.unflatten(2, (heads, -1)).transpose(1, 2)  # [B, N, H*D] -> [B, H, N, D]


class TGAAProcessor:
    """Replacement for ``WanAttnProcessor`` on a text-to-video cross-attention (see the module)."""

    def __init__(self, base, state: TGAAState):
        self.base, self.state = base, state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        st = self.state
        if not st.active or (st.alpha is None and not st.record):  # nothing to amplify: the stock path
            return self.base(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        if attn.add_k_proj is not None:
            raise NotImplementedError("TGAAProcessor: image-conditioned (I2V) cross-attention is not supported")
        if attention_mask is not None or rotary_emb is not None:
            raise NotImplementedError("TGAAProcessor: expects Wan's unmasked cross-attention without RoPE")
        q = _heads(attn.norm_q(attn.to_q(hidden_states)), attn.heads)
        k = _heads(attn.norm_k(attn.to_k(encoder_hidden_states)), attn.heads)
        v = _heads(attn.to_v(encoder_hidden_states), attn.heads)
        scale = 1.0 / math.sqrt(q.shape[-1])
        alpha = st.alpha if st.alpha is not None else torch.ones(1, 1, 1, k.shape[2], dtype=q.dtype)
        if st.record:
            probs = amplified_softmax(
                torch.matmul(q, k.transpose(-2, -1)), alpha, scale=scale, renormalize=st.renormalize
            )
            out = torch.matmul(probs, v)
            self._record(attn, q, probs, scale)
        else:
            out = amplified_attention(q, k, v, alpha, scale=scale, renormalize=st.renormalize)
        out = out.transpose(1, 2).flatten(2, 3).type_as(hidden_states)
        return attn.to_out[1](attn.to_out[0](out))

    def _record(self, attn, q: Tensor, probs: Tensor, scale: float) -> None:
        st = self.state
        mass = None
        if st.added_mask is not None and bool(st.added_mask.any()):
            mass = token_attention_mass(probs, st.added_mask)
        if st.source_ctx is not None and st.removed_mask is not None and bool(st.removed_mask.any()):
            ks = _heads(attn.norm_k(attn.to_k(st.source_ctx)), attn.heads)
            src_probs = torch.softmax(torch.matmul(q, ks.transpose(-2, -1)) * scale, dim=-1)
            m = token_attention_mass(src_probs, st.removed_mask)
            mass = m if mass is None else mass + m
        if mass is not None:
            st._add(mass.float())
        st.layers += 1


def install_tgaa(model) -> TGAAState:
    """Put a :class:`TGAAProcessor` on every ``block.attn2`` of a Wan transformer; returns the shared state
    (idempotent: a model already carrying them returns its state)."""
    existing = getattr(model, "_chorus_tgaa_state", None)
    if existing is not None:
        return existing
    state = TGAAState()
    for block in model.blocks:
        block.attn2.set_processor(TGAAProcessor(block.attn2.processor, state))
    model._chorus_tgaa_state = state
    return state


def uninstall_tgaa(model) -> None:
    """Restore the original ``attn2`` processors."""
    if getattr(model, "_chorus_tgaa_state", None) is None:
        return
    for block in model.blocks:
        proc = block.attn2.processor
        if isinstance(proc, TGAAProcessor):
            block.attn2.set_processor(proc.base)
    del model._chorus_tgaa_state
