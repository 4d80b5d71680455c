"""Chorus benchmark cases at Wan-2.1 (1.3B) 480p shapes, their seeded inputs and what each provider calls.

Shapes (Wan-2.1 at 480x832, 81 frames): VAE latent ``[1, 16, 21, 60, 104]`` (16 channels, 21 latent
frames, 60x104); DiT tokens ``[1, 32760, 1536]`` (21 * 30 * 52 patches of 1x2x2, width 1536); text
cross-attention ``[1, 12, Nq, 512]`` logits (12 heads of 128, 512 T5 tokens), ``scale = 1 / sqrt(128)``.

Inputs (seeded): ``fresh``, ``cached`` ~ N(0, 1). Soft masks ~ U[0, 1) in the data dtype; hard masks
``U[0, 1) < 0.5`` as bool (random, the worst case for a kernel that branches on the mask). Scores
~ N(0, 128), so ``scale * scores`` ~ N(0, 1); alpha is 1 except 10 amplified key tokens (1.5 to 2.5).

Providers (``call``): ``npu_ops`` (the op); ``naive`` (``mask * fresh + (1 - mask) * cached``; a bool
mask is first converted to the data dtype, inside the timed call, since ``1 - bool`` is an error);
``lerp`` (``torch.lerp(cached, fresh, mask)``) for soft masks, ``where`` (``torch.where(mask, fresh,
cached)``) for bool masks; ``unfused`` (``(scale * scores + alpha.log()).softmax(-1)``, or
``(scale * scores).softmax(-1) * alpha`` for ``renormalize=False``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

import npu_ops

__all__ = ["Case", "CASES", "DEFAULT_CASES", "QUICK_SHAPES", "DTYPES", "make_inputs", "call", "grad_leaves"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}

WAN_HEAD_DIM = 128
WAN_TEXT_TOKENS = 512
WAN_TOKENS = 21 * 30 * 52  # 32760


@dataclass(frozen=True)
class Case:
    """One workload: ``op`` is ``masked_blend`` (data ``shape``, ``aux`` the mask shape, ``hard`` for a
    bool mask) or ``amplified_softmax`` (scores ``shape``, ``aux`` the alpha shape)."""

    name: str
    op: str
    title: str
    shape: tuple[int, ...]
    aux: tuple[int, ...]
    quick_shape: tuple[int, ...]
    quick_aux: tuple[int, ...]
    hard: bool = False
    renormalize: bool = True

    @property
    def providers(self) -> tuple[str, ...]:
        if self.op == "amplified_softmax":
            return ("npu_ops", "unfused")
        return ("npu_ops", "naive", "where" if self.hard else "lerp")

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(WAN_HEAD_DIM)

    def shapes(self, quick: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return (self.quick_shape, self.quick_aux) if quick else (self.shape, self.aux)

    def shape_text(self, quick: bool) -> str:
        data, aux = self.shapes(quick)
        kind = "bool" if self.hard else "soft"
        second = f"mask {list(aux)} {kind}" if self.op == "masked_blend" else f"alpha {list(aux)}"
        return f"{list(data)}, {second}"


_LATENT, _LATENT_MASK = (1, 16, 21, 60, 104), (1, 1, 21, 60, 104)
_Q_LATENT, _Q_LATENT_MASK = (1, 16, 3, 15, 26), (1, 1, 3, 15, 26)
_TOKENS, _TOKENS_MASK = (1, WAN_TOKENS, 1536), (1, WAN_TOKENS, 1)
_Q_TOKENS, _Q_TOKENS_MASK = (1, 780, 1536), (1, 780, 1)
_ALPHA = (1, 1, 1, WAN_TEXT_TOKENS)
_Q_SCORES = (1, 12, 256, WAN_TEXT_TOKENS)

CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case("latent_soft", "masked_blend", "Wan latent, soft mask", _LATENT, _LATENT_MASK, _Q_LATENT, _Q_LATENT_MASK),
        Case(
            "latent_bool",
            "masked_blend",
            "Wan latent, bool mask",
            _LATENT,
            _LATENT_MASK,
            _Q_LATENT,
            _Q_LATENT_MASK,
            hard=True,
        ),
        Case(
            "tokens_soft", "masked_blend", "Wan DiT tokens, soft mask", _TOKENS, _TOKENS_MASK, _Q_TOKENS, _Q_TOKENS_MASK
        ),
        Case(
            "tokens_bool",
            "masked_blend",
            "Wan DiT tokens, bool mask",
            _TOKENS,
            _TOKENS_MASK,
            _Q_TOKENS,
            _Q_TOKENS_MASK,
            hard=True,
        ),
        Case(
            "xattn_4k",
            "amplified_softmax",
            "Wan cross-attn, 4096 of 32760 queries",
            (1, 12, 4096, WAN_TEXT_TOKENS),
            _ALPHA,
            _Q_SCORES,
            _ALPHA,
        ),
        Case(
            "xattn_4k_p2p",
            "amplified_softmax",
            "same, renormalize=False",
            (1, 12, 4096, WAN_TEXT_TOKENS),
            _ALPHA,
            _Q_SCORES,
            _ALPHA,
            renormalize=False,
        ),
        Case(
            "xattn_full",
            "amplified_softmax",
            "Wan cross-attn, all 32760 queries (3.2 GB fp32 with the baseline)",
            (1, 12, WAN_TOKENS, WAN_TEXT_TOKENS),
            _ALPHA,
            _Q_SCORES,
            _ALPHA,
        ),
    )
}

#: Cases of a run without ``--cases`` (``xattn_full`` only on request).
DEFAULT_CASES = ("latent_soft", "latent_bool", "tokens_soft", "tokens_bool", "xattn_4k", "xattn_4k_p2p")
QUICK_SHAPES = "latent [1, 16, 3, 15, 26], tokens [1, 780, 1536], scores [1, 12, 256, 512]"


def make_inputs(case: Case, dtype: torch.dtype, quick: bool, seed: int = 0) -> list[Tensor]:
    """Seeded inputs of ``case``: ``[fresh, cached, mask]`` or ``[scores, alpha]`` (none requires grad)."""
    g = torch.Generator().manual_seed(seed)
    data, aux = case.shapes(quick)
    if case.op == "masked_blend":
        fresh = torch.randn(data, generator=g).to(dtype)
        cached = torch.randn(data, generator=g).to(dtype)
        u = torch.rand(aux, generator=g)
        return [fresh, cached, u < 0.5 if case.hard else u.to(dtype)]
    scores = torch.randn(data, generator=g).mul_(math.sqrt(WAN_HEAD_DIM)).to(dtype)
    alpha = torch.ones(aux)
    idx = torch.randperm(aux[-1], generator=g)[:10]
    alpha[..., idx] = torch.linspace(1.5, 2.5, 10)
    return [scores, alpha.to(dtype)]


def call(case: Case, provider: str, *xs: Tensor) -> Tensor:
    """One forward of ``provider`` on ``xs`` (the tensors of :func:`make_inputs`, or copies of them)."""
    if case.op == "masked_blend":
        fresh, cached, mask = xs
        if provider == "npu_ops":
            return npu_ops.masked_blend(fresh, cached, mask)
        if provider == "naive":
            m = mask.to(fresh.dtype) if mask.dtype == torch.bool else mask
            return m * fresh + (1 - m) * cached
        if provider == "lerp":
            return torch.lerp(cached, fresh, mask)
        if provider == "where":
            return torch.where(mask, fresh, cached)
    else:
        scores, alpha = xs
        if provider == "npu_ops":
            return npu_ops.amplified_softmax(scores, alpha, scale=case.scale, renormalize=case.renormalize)
        if provider == "unfused":
            if case.renormalize:
                return (case.scale * scores + alpha.log()).softmax(-1)
            return (case.scale * scores).softmax(-1) * alpha
    raise ValueError(f"unknown provider {provider!r} for {case.name}")


def grad_leaves(case: Case, xs: list[Tensor]) -> list[Tensor]:
    """Leaf views of the differentiable inputs that require grad (all but a bool mask)."""
    return [x.detach().requires_grad_() for x in xs if x.is_floating_point()]


def with_leaves(xs: list[Tensor], leaves: list[Tensor]) -> list[Tensor]:
    """``xs`` with its floating tensors replaced, in order, by ``leaves``."""
    it = iter(leaves)
    return [next(it) if x.is_floating_point() else x for x in xs]
