"""Attention helpers built on the Chorus ops: amplified attention and token attention maps."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .amplified_softmax import _FLOAT_DTYPES, amplified_softmax

__all__ = ["amplified_attention", "token_attention_mass"]


def _check_alpha_values(op: str, alpha: Tensor) -> None:
    bad = ~(torch.isfinite(alpha) & (alpha >= 0))
    if bool(bad.any()):
        hits = bad.nonzero()
        idx = tuple(int(i) for i in hits[0])
        more = f" (and {hits.shape[0] - 1} more)" if hits.shape[0] > 1 else ""
        raise RuntimeError(
            f"{op}: alpha must be finite and >= 0 (alpha = 0 removes a key), got alpha{list(idx)} = "
            f"{float(alpha[idx])}{more}"
        )


def amplified_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    alpha: Tensor,
    *,
    scale: float | None = None,
    renormalize: bool = True,
) -> Tensor:
    """Attention with per-key amplification: ``amplified_softmax(scale * q @ k^T, alpha) @ v``.

    Args:
        q (Tensor[B, H, Nq, D]): queries (any leading dims, as in ``scaled_dot_product_attention``).
        k (Tensor[B, H, L, D]): keys.
        v (Tensor[B, H, L, Dv]): values.
        alpha (Tensor): per-key factors broadcastable to ``Tensor[B, H, Nq, L]``, typically
            ``Tensor[B, 1, 1, L]``; floating, >= 0 and finite (0 removes a key).
        scale (float, optional): logit scale; ``1 / sqrt(D)`` when None.
        renormalize (bool): True: ``softmax(scale * q k^T + log(alpha)) @ v`` (attention to key
            ``j`` multiplied by ``alpha_j`` and renormalised); False: ``(softmax(scale * q k^T) *
            alpha) @ v`` (Prompt-to-Prompt re-weighting).

    Returns:
        Tensor[B, H, Nq, Dv] in ``q``'s dtype. Queries whose keys are all removed get zeros.

    On CPU the renormalised mode runs ``torch.nn.functional.scaled_dot_product_attention`` with the
    additive key bias ``log(alpha)`` (``-inf`` where ``alpha = 0``; rounded to ``q``'s dtype), so the
    ``[B, H, Nq, L]`` probabilities are never materialised. When ``alpha`` needs a gradient, and for
    ``renormalize=False``, it computes ``q @ k^T``, :func:`npu_ops.amplified_softmax` and ``@ v``
    explicitly (exact alpha gradient, also where ``alpha = 0``). The alpha value check runs in eager
    mode only: under ``torch.compile`` tracing it is skipped on the ``scaled_dot_product_attention``
    path (the explicit path checks in the kernel).

    Raises:
        RuntimeError: alpha negative, NaN or infinite (eager), or not floating; shape errors from
        ``scaled_dot_product_attention`` / :func:`npu_ops.amplified_softmax`.

    Example::

        >>> q, k, v = torch.randn(1, 2, 6, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
        >>> alpha = torch.tensor([1.0, 2.0, 1.0, 0.0, 1.0]).view(1, 1, 1, 5)
        >>> npu_ops.chorus.amplified_attention(q, k, v, alpha).shape
        torch.Size([1, 2, 6, 8])
    """
    op = "npu_ops.chorus.amplified_attention"
    for name, t in (("q", q), ("k", k), ("v", v), ("alpha", alpha)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if alpha.dtype not in _FLOAT_DTYPES:
        raise RuntimeError(f"{op}: alpha must have dtype float32, float64, float16 or bfloat16, got {alpha.dtype}")
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    explicit = not renormalize or (alpha.requires_grad and torch.is_grad_enabled())
    if explicit:
        scores = torch.matmul(q, k.transpose(-2, -1))
        probs = amplified_softmax(scores, alpha, scale=scale, renormalize=renormalize)
        return torch.matmul(probs, v)
    if not torch.compiler.is_compiling():
        _check_alpha_values(op, alpha)
    if alpha.dim() < q.dim():  # SDPA wants the bias with the query's rank
        alpha = alpha.reshape((1,) * (q.dim() - alpha.dim()) + tuple(alpha.shape))
    bias = torch.log(alpha.to(torch.float32 if alpha.dtype != torch.float64 else alpha.dtype)).to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    # A query with every key removed: zeros, as amplified_softmax gives (SDPA may give NaN).
    return out.masked_fill((alpha == 0).all(dim=-1, keepdim=True), 0.0)


def token_attention_mass(probs: Tensor, token_mask: Tensor) -> Tensor:
    """Per query, the attention mass on a set of key tokens, averaged over heads.

    ``mass[b, i] = mean_h sum_j probs[b, h, i, j] * token_mask[b, j]``: the map Chorus Stage-2 region
    masks are built from (reshape ``Nq`` to the latent token grid, e.g. ``(T', H', W')``, then
    normalise, threshold or keep the top fraction, and dilate).

    Args:
        probs (Tensor[B, H, Nq, L]): attention probabilities, e.g. from
            :func:`npu_ops.amplified_softmax` (cross-attention of video queries to text keys).
        token_mask (Tensor[L] or Tensor[B, L]): the key tokens of interest; bool (the set) or
            floating (per-token weights). Same device as ``probs``.

    Returns:
        Tensor[B, Nq] in ``probs``' dtype (accumulated in float32, or float64 for float64 probs).

    Raises:
        RuntimeError naming the argument for wrong ranks, sizes, dtypes or devices.

    Example::

        >>> probs = torch.rand(1, 2, 6, 5).softmax(-1)
        >>> new_tokens = torch.tensor([False, True, True, False, False])
        >>> npu_ops.chorus.token_attention_mass(probs, new_tokens).shape
        torch.Size([1, 6])
    """
    op = "npu_ops.chorus.token_attention_mass"
    for name, t in (("probs", probs), ("token_mask", token_mask)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")

    def fail(msg: str) -> None:
        raise RuntimeError(f"{op}: {msg}")

    if probs.dim() != 4:
        fail(f"probs must be 4-D [B, H, Nq, L], got shape {list(probs.shape)}")
    if probs.dtype not in _FLOAT_DTYPES:
        fail(f"probs must have dtype float32, float64, float16 or bfloat16, got {probs.dtype}")
    b, _, _, length = probs.shape
    if token_mask.dim() not in (1, 2):
        fail(f"token_mask must be [L] or [B, L], got shape {list(token_mask.shape)}")
    if token_mask.shape[-1] != length:
        fail(f"token_mask must have L = probs.shape[-1] = {length} entries, got shape {list(token_mask.shape)}")
    if token_mask.dim() == 2 and token_mask.shape[0] != b:
        fail(f"token_mask [B, L] must have B = probs.shape[0] = {b}, got shape {list(token_mask.shape)}")
    if token_mask.dtype != torch.bool and token_mask.dtype not in _FLOAT_DTYPES:
        fail(f"token_mask must be bool or floating, got {token_mask.dtype}")
    if token_mask.device != probs.device:
        fail(f"token_mask is on {token_mask.device} but probs is on {probs.device}")
    acc = torch.float64 if probs.dtype == torch.float64 else torch.float32
    weights = token_mask.to(acc).expand(b, length).unsqueeze(-1)  # [B, L, 1]
    mass = torch.matmul(probs.mean(dim=1, dtype=acc), weights).squeeze(-1)  # [B, Nq]
    return mass.to(probs.dtype)
