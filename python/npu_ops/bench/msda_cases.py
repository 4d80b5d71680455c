"""Named MSDA benchmark cases from real models and a seeded input factory.

Shapes follow ``notes/msda.md`` sections 7 and 10.4 (C = 32 and 8 heads unless noted). Locations are
made the way a real layer makes them: a reference point per query plus per-(head, level, point)
offsets of a few pixels of the level, ``loc = ref + sigma_px * N(0, 1) / (w_l, h_l)``.

- Encoders (``Nq = Nk``, self-attention over the flattened multi-level map): the reference point of
  query ``i`` is the normalised pixel centre of its own position, ``((c + 0.5) / w, (r + 0.5) / h)``.
- Decoders and cross-attention: reference points uniform in ``[0, 1]^2``.
- ``sigma_px`` is calibrated per case (bisection on the generated offsets) so that 5% of the sampling
  locations have a coordinate outside ``[0, 1]``; border handling is exercised as in a real model.
- Attention weights: ``softmax`` over the ``L * P`` samples of N(0, 1) logits.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Case", "MsdaInputs", "CASES", "QUICK_CASES", "make_inputs", "scaled", "resolve_case"]

OUT_OF_MAP_TARGET = 0.05


@dataclass(frozen=True)
class Case:
    """One benchmark workload.

    ``num_queries=None`` means encoder self-attention (``Nq = Nk``, reference points at the queries'
    own pixel centres); otherwise reference points are uniform in ``[0, 1]``.
    """

    name: str
    title: str
    bs: int
    levels: tuple[tuple[int, int], ...]
    num_queries: int | None
    points: int = 4
    heads: int = 8
    channels: int = 32

    @property
    def num_keys(self) -> int:
        return sum(h * w for h, w in self.levels)

    @property
    def nq(self) -> int:
        return self.num_keys if self.num_queries is None else self.num_queries

    def shape_dict(self) -> dict[str, object]:
        """The shape as a JSON-friendly dict (for the CSV)."""
        return {
            "bs": self.bs,
            "num_keys": self.num_keys,
            "num_queries": self.nq,
            "heads": self.heads,
            "channels": self.channels,
            "levels": [list(hw) for hw in self.levels],
            "points": self.points,
            "ref_points": "own_pixel_centre" if self.num_queries is None else "uniform",
        }


_DETR_LEVELS = ((100, 167), (50, 84), (25, 42), (13, 21))

CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case("detr_enc", "Deformable-DETR encoder, 800x1333", 1, _DETR_LEVELS, None),
        Case("detr_dec", "Deformable-DETR decoder, 800x1333", 1, _DETR_LEVELS, 300),
        Case("bevformer_tsa", "BEVFormer-base temporal self-attn, 200x200 BEV", 2, ((200, 200),), 40000),
        Case(
            "bevformer_sca",
            "BEVFormer-base spatial cross-attn, 6 cams",
            6,
            ((116, 200), (58, 100), (29, 50), (15, 25)),
            9680,
            points=8,
        ),
        Case("mask2former", "Mask2Former pixel decoder, 1024x1024", 1, ((128, 128), (64, 64), (32, 32)), None),
        Case("rtdetr_dec", "RT-DETR decoder, 640x640", 16, ((80, 80), (40, 40), (20, 20)), 300),
    )
}

#: Cases of the ``--quick`` smoke run (each scaled down by ``QUICK_SCALE``).
QUICK_CASES = ("detr_enc", "bevformer_sca")
QUICK_SCALE = 8


def scaled(case: Case, factor: int, max_bs: int = 2) -> Case:
    """A small version of ``case``: level sides divided by ``factor`` (rounded up), fixed query
    counts divided by ``factor**2`` (rounded up; at most the original), ``bs`` capped at ``max_bs``."""
    levels = tuple((math.ceil(h / factor), math.ceil(w / factor)) for h, w in case.levels)
    nq = None if case.num_queries is None else max(1, math.ceil(case.num_queries / factor**2))
    return dataclasses.replace(
        case, name=f"{case.name}/{factor}", levels=levels, num_queries=nq, bs=min(case.bs, max_bs)
    )


def resolve_case(name: str, bs: int | None = None, scale: int | None = None) -> Case:
    """``CASES[name]`` with ``bs`` overridden and, if ``scale``, scaled down (bs then capped at 2)."""
    case = CASES[name]
    if bs is not None:
        case = dataclasses.replace(case, bs=bs)
    return scaled(case, scale) if scale else case


@dataclass
class MsdaInputs:
    """Arguments of ``npu_ops.msda`` plus how the locations were made."""

    value: Tensor
    spatial_shapes: Tensor
    level_start_index: Tensor
    sampling_locations: Tensor
    attention_weights: Tensor
    sigma_px: float
    out_of_map: float

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.value, self.sampling_locations, self.attention_weights))


def _own_pixel_centres(levels: tuple[tuple[int, int], ...]) -> Tensor:
    """``[Nk, 2]`` normalised ``(x, y)`` pixel centres of every key of the flattened map."""
    parts = []
    for h, w in levels:
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        parts.append(torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1))
    return torch.cat(parts)


def _out_fraction(ref: Tensor, noise: Tensor, sigma: float) -> float:
    loc = ref + sigma * noise
    return ((loc < 0) | (loc > 1)).any(-1).float().mean().item()


def _calibrate_sigma(ref: Tensor, noise: Tensor, target: float) -> float:
    """``sigma`` (pixels) with ``target`` of the locations outside ``[0, 1]``, by bisection in log space
    on at most 4096 queries. ``ref``: ``[n, 1, 1, 1, 2]``; ``noise``: ``[n, H, L, P, 2]`` already
    divided by the level size."""
    if ref.shape[0] > 4096:
        idx = torch.linspace(0, ref.shape[0] - 1, 4096).long()
        ref, noise = ref[idx], noise[idx]
    lo, hi = math.log(1e-3), math.log(1e3)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if _out_fraction(ref, noise, math.exp(mid)) < target:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def make_inputs(case: Case, dtype: torch.dtype = torch.float32, seed: int = 0) -> MsdaInputs:
    """Seeded inputs for ``case`` in ``dtype`` (all three float tensors; none requires grad)."""
    g = torch.Generator().manual_seed(seed)
    bs, nq, heads, ch, p = case.bs, case.nq, case.heads, case.channels, case.points
    num_levels = len(case.levels)
    shapes = torch.tensor(case.levels, dtype=torch.long)
    sizes = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])

    value = torch.randn(bs, case.num_keys, heads, ch, generator=g)
    if case.num_queries is None:
        ref = _own_pixel_centres(case.levels).expand(bs, -1, -1)
    else:
        ref = torch.rand(bs, nq, 2, generator=g)
    ref = ref.reshape(bs * nq, 1, 1, 1, 2)
    # Offsets in pixels of each level, normalised by (w_l, h_l).
    wh = shapes.flip(-1).to(torch.float32).view(1, 1, num_levels, 1, 2)
    noise = torch.randn(bs * nq, heads, num_levels, p, 2, generator=g).div_(wh)
    sigma = _calibrate_sigma(ref, noise, OUT_OF_MAP_TARGET)
    loc = noise.mul_(sigma).add_(ref)
    out_frac = ((loc < 0) | (loc > 1)).any(-1).float().mean().item()
    logits = torch.randn(bs, nq, heads, num_levels * p, generator=g)
    attn = logits.softmax(-1).view(bs, nq, heads, num_levels, p)
    return MsdaInputs(
        value=value.to(dtype),
        spatial_shapes=shapes,
        level_start_index=starts,
        sampling_locations=loc.view(bs, nq, heads, num_levels, p, 2).to(dtype),
        attention_weights=attn.to(dtype),
        sigma_px=sigma,
        out_of_map=out_frac,
    )
