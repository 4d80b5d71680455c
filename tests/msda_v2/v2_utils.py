"""Inputs and an independent float64 reference for the msda_v2 tests (written from the math)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

LEVELS_SQ = [(6, 6), (3, 3), (1, 1)]
LEVELS_RECT = [(6, 4), (3, 5), (1, 1), (2, 1)]


@dataclass
class V2Inputs:
    value: torch.Tensor
    levels: list[tuple[int, int]]
    loc: torch.Tensor
    attn: torch.Tensor
    npl: list[int]

    @property
    def shapes(self) -> torch.Tensor:
        return torch.tensor(self.levels, dtype=torch.int64)

    def tensors(self):
        return self.value, self.loc, self.attn

    def to(self, dtype, requires_grad=False) -> V2Inputs:
        conv = [t.detach().to(dtype).requires_grad_(requires_grad) for t in self.tensors()]
        return V2Inputs(conv[0], self.levels, conv[1], conv[2], self.npl)


def make_inputs(bs, nq, heads, channels, levels, npl, dtype=torch.float64, seed=0, spread=0.15) -> V2Inputs:
    """Locations mostly in [0, 1] with a share just outside (border bands, dropped points)."""
    g = torch.Generator().manual_seed(seed)
    nk = sum(h * w for h, w in levels)
    value = torch.randn(bs, nk, heads, channels, generator=g, dtype=torch.float64)
    loc = torch.rand(bs, nq, heads, sum(npl), 2, generator=g, dtype=torch.float64) * (1 + 2 * spread) - spread
    attn = torch.rand(bs, nq, heads, sum(npl), generator=g, dtype=torch.float64)
    return V2Inputs(value, list(levels), loc, attn, list(npl)).to(dtype)


def exact_msda_v2(value, levels, loc, attn, npl, method):
    """Float64 MSDA v2 from the definition: explicit corner weights and bounds, no grid_sample.

    default: pixel = loc * size - 0.5; a point with pixel outside (-1, size) (or non-finite) is
    dropped; each of the four corners counts only inside the map. discrete: nearest pixel
    clamp(floor(loc * size + 0.5), 0, size - 1) per axis; non-finite points dropped.
    """
    value, loc, attn = value.double(), loc.double(), attn.double()
    bs, _, heads, channels = value.shape
    nq = loc.shape[1]
    out = value.new_zeros(bs, nq, heads, channels)
    b_idx = torch.arange(bs)[:, None, None, None]
    h_idx = torch.arange(heads)[None, None, :, None]
    start, p0 = 0, 0
    for (hh, ww), npts in zip(levels, npl):
        lx, ly = loc[:, :, :, p0 : p0 + npts, 0], loc[:, :, :, p0 : p0 + npts, 1]
        a = attn[:, :, :, p0 : p0 + npts]
        finite = torch.isfinite(lx) & torch.isfinite(ly)
        lx, ly = torch.where(finite, lx, 0.0), torch.where(finite, ly, 0.0)
        if method == "default":
            x, y = lx * ww - 0.5, ly * hh - 0.5
            keep = finite & (x > -1) & (y > -1) & (x < ww) & (y < hh)
            x0, y0 = torch.floor(x), torch.floor(y)
            fx, fy = x - x0, y - y0
            corners = [
                (x0, y0, (1 - fx) * (1 - fy)),
                (x0 + 1, y0, fx * (1 - fy)),
                (x0, y0 + 1, (1 - fx) * fy),
                (x0 + 1, y0 + 1, fx * fy),
            ]
        else:
            xi = torch.floor(lx * ww + 0.5).clamp(0, ww - 1)
            yi = torch.floor(ly * hh + 0.5).clamp(0, hh - 1)
            keep = finite
            corners = [(xi, yi, torch.ones_like(xi))]
        for cx, cy, wgt in corners:
            inside = keep & (cx >= 0) & (cx < ww) & (cy >= 0) & (cy < hh)
            pix = (cy.clamp(0, hh - 1) * ww + cx.clamp(0, ww - 1)).long() + start
            v = value[b_idx, pix, h_idx]  # [bs, nq, heads, npts, C]
            coef = torch.where(inside, wgt * a, 0.0)
            out += (coef[..., None] * v).sum(3)
        start += hh * ww
        p0 += npts
    return out.reshape(bs, nq, heads * channels)


def fwd_bwd(fn, inp: V2Inputs, grad_out, dtype):
    v, loc, attn = (t.detach().to(dtype).requires_grad_() for t in inp.tensors())
    out = fn(v, loc, attn)
    grads = torch.autograd.grad(out, (v, loc, attn), grad_out.to(dtype), allow_unused=True)
    grads = [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, (v, loc, attn))]
    return out.detach(), grads
