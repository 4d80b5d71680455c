"""Helpers for the Chorus op tests: seeded inputs, closed-form float64 references, assertions."""

from __future__ import annotations

import torch

FLOATS = [torch.float64, torch.float32]
LOWP = [torch.float16, torch.bfloat16]
DTYPE_IDS = {torch.float64: "fp64", torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}

# (atol, rtol) against the float64 reference; atol is scaled by the reference's magnitude.
TOL = {torch.float64: (1e-12, 1e-10), torch.float32: (2e-6, 1e-5)}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(shape, seed: int, dtype=torch.float64, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(shape, generator=gen(seed), dtype=torch.float64) * scale).to(dtype)


def rand(shape, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(shape, generator=gen(seed), dtype=torch.float64).to(dtype)


def make_mask(shape, seed: int, kind: str) -> torch.Tensor:
    """``soft`` (float64 in [0, 1] with exact 0s and 1s), ``bool`` or ``uint8`` (values 0, 1, 7)."""
    u = rand(shape, seed)
    if kind == "soft":
        return torch.where(u < 0.15, 0.0, torch.where(u > 0.85, 1.0, u))
    if kind == "bool":
        return u > 0.5
    if kind == "uint8":
        return torch.where(u < 0.4, 0, torch.where(u < 0.7, 1, 7)).to(torch.uint8)
    raise ValueError(kind)


def make_alpha(shape, seed: int, zeros: float = 0.2) -> torch.Tensor:
    """float64 alpha in [0, 3) with a fraction of exact zeros (removed keys)."""
    u = rand(shape, seed)
    a = 3.0 * rand(shape, seed + 1)
    return torch.where(u < zeros, 0.0, a)


# ----------------------------------------------------------------------------------------------
# References (float64, closed form)


def sum_to(t: torch.Tensor, shape) -> torch.Tensor:
    """Sum ``t`` over the dims a tensor of ``shape`` is broadcast along (``Tensor.sum_to_size``)."""
    return t.sum_to_size(shape) if tuple(t.shape) != tuple(shape) else t


def blend_ref(fresh, cached, mask, grad=None):
    """out = cached + mask * (fresh - cached) in float64, and the closed-form gradients."""
    f, c = fresh.double(), cached.double()
    hard = mask.dtype in (torch.bool, torch.uint8)
    m = (mask != 0).double() if hard else mask.double()
    out = torch.where(mask != 0, f, c) if hard else c + m * (f - c)
    if grad is None:
        return out, None
    g = grad.double()
    shape = f.shape
    gf = (m * g).expand(shape)
    gc = ((1 - m) * g).expand(shape)
    gm = None if hard else sum_to((f - c) * g, mask.shape).reshape(mask.shape)
    return out, (gf, gc, gm)


def softmax_ref(scores, alpha, scale=1.0, renormalize=True, grad=None):
    """amplified_softmax in float64 and its closed-form gradients (the formulas of the docstring).

    Rows with no key left (every alpha 0 or every score -inf) give zeros and zero gradients."""
    s, a = scores.double(), alpha.double().expand(scores.shape)
    x = scale * s
    if renormalize:
        t = torch.where(a > 0, x, float("-inf"))
        m = t.amax(-1, keepdim=True)
    else:
        m = x.amax(-1, keepdim=True)
    dead = torch.isneginf(m)
    m = torch.where(dead, 0.0, m)
    e = torch.exp(x - m)  # q up to normalisation
    if renormalize:
        z = (a * e).sum(-1, keepdim=True)
        z = torch.where(dead, 1.0, z)
        q = e / z
        p = a * q
    else:
        z = torch.where(dead, 1.0, e.sum(-1, keepdim=True))
        q = e / z
        p = a * q
    p = torch.where(dead, 0.0, p)
    q = torch.where(dead, 0.0, q)
    if grad is None:
        return p, None
    g = grad.double()
    if renormalize:
        dot = (g * p).sum(-1, keepdim=True)
        ds = scale * p * (g - dot)
        da = q * (g - dot)
    else:
        dot = (g * a * q).sum(-1, keepdim=True)
        ds = scale * q * (g * a - dot)
        da = g * q
    return p, (ds, sum_to(da, alpha.shape).reshape(alpha.shape))


def softmax_multiplicative(scores, alpha, scale=1.0, renormalize=True):
    """Differentiable float64 form without logs (autograd gives the exact gradient at alpha = 0)."""
    x = scale * scores
    e = torch.exp(x - x.amax(-1, keepdim=True).detach())
    if renormalize:
        w = alpha * e
        return w / w.sum(-1, keepdim=True)
    return alpha * e / e.sum(-1, keepdim=True)


# ----------------------------------------------------------------------------------------------
# Assertions


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.numel() == 0:
        return 0.0
    return float((a.double() - b.double()).abs().max())


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, name: str = "") -> None:
    """Compare a kernel result in ``dtype`` with a float64 reference."""
    atol, rtol = TOL[dtype]
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    torch.testing.assert_close(
        actual.double(), expected.double(), atol=atol * scale, rtol=rtol, msg=lambda m: f"{name}: {m}"
    )


def assert_lowp_rule(kernel: torch.Tensor, ref64: torch.Tensor, torch_lowp: torch.Tensor, name: str) -> None:
    """max |kernel - ref64| <= 2 * max |pytorch in the same dtype - ref64| + a tiny atol."""
    assert torch.isfinite(kernel).all(), name
    k_err, t_err = max_err(kernel, ref64), max_err(torch_lowp, ref64)
    atol = 1e-6 * max(1.0, float(ref64.abs().max()))
    assert k_err <= 2 * t_err + atol, f"{name}: kernel error {k_err:.3g} vs pytorch {t_err:.3g}"


def leaves(*ts, requires_grad=True):
    return [t.detach().clone().requires_grad_(requires_grad and t.is_floating_point()) for t in ts]
