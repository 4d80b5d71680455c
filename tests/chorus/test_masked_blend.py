"""npu_ops.masked_blend: forward and backward against float64 closed forms, dtypes, layouts, autograd tooling."""

from __future__ import annotations

import npu_ops
import pytest
import torch
from chorus_utils import (
    DTYPE_IDS,
    FLOATS,
    LOWP,
    assert_close,
    assert_lowp_rule,
    blend_ref,
    leaves,
    make_mask,
    randn,
)

# (data shape, mask shape): the Chorus layouts, the canonical-form corner cases and fallbacks.
CASES = [
    ((2, 4, 3, 5, 6), (2, 1, 3, 5, 6)),  # latents [B, C, T, H, W], mask [B, 1, T, H, W]
    ((2, 9, 33), (2, 9, 1)),  # tokens [B, N, D], mask [B, N, 1]
    ((3, 37), (3, 37)),  # full mask, tail of 5
    ((2, 3, 4), ()),  # one mask value for everything
    ((2, 4, 3, 5, 6), (1, 4, 1, 1, 1)),  # per channel: broadcast twice, the smaller run is expanded
    ((2, 4, 3, 5, 6), (3, 5, 6)),  # lower-rank mask
    ((2, 3, 5, 7), (2, 1, 5, 1)),  # alternating broadcast dims
    ((1, 3, 4097), (1, 1, 4097)),  # long rows, tail of 1
    ((2, 1, 3, 1, 17), (1, 1, 3, 1, 1)),  # size-1 data dims around the broadcast
]


def _case_id(case):
    shape, mshape = case
    return "x".join(map(str, shape)) + "-m" + ("x".join(map(str, mshape)) or "scalar")


def _inputs(case, dtype, kind, seed):
    shape, mshape = case
    fresh = randn(shape, seed, dtype)
    cached = randn(shape, seed + 1, dtype)
    mask = make_mask(mshape, seed + 2, kind)
    if kind == "soft":
        mask = mask.to(dtype)
    grad = randn(shape, seed + 3, dtype)
    return fresh, cached, mask, grad


def _run(fn, fresh, cached, mask, grad):
    f, c, m = leaves(fresh, cached, mask)
    out = fn(f, c, m)
    wrt = [f, c] + ([m] if m.requires_grad else [])
    grads = torch.autograd.grad(out, wrt, grad)
    return out.detach(), (*grads, None) if len(grads) == 2 else grads


@pytest.mark.parametrize("kind", ["soft", "bool", "uint8"])
@pytest.mark.parametrize("dtype", FLOATS, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_reference(case, dtype, kind):
    fresh, cached, mask, grad = _inputs(case, dtype, kind, seed=len(case[0]) * 10 + len(case[1]))
    out, grads = _run(npu_ops.masked_blend, fresh, cached, mask, grad)
    ref, ref_grads = blend_ref(fresh, cached, mask, grad)
    assert out.dtype == dtype and out.shape == fresh.shape and out.is_contiguous()
    assert_close(out, ref, dtype, "out")
    for name, g, r in zip(("grad_fresh", "grad_cached", "grad_mask"), grads, ref_grads):
        if r is None:
            assert g is None, name
            continue
        assert g.dtype == (mask.dtype if name == "grad_mask" else dtype), name
        assert_close(g, r, dtype, name)
    if kind != "soft":  # hard masks select exactly
        assert torch.equal(out, torch.where(mask.bool(), fresh, cached))


@pytest.mark.parametrize("dtype", LOWP, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("case", CASES[:3] + CASES[6:8], ids=_case_id)
def test_low_precision_rule(case, dtype):
    """fp16 / bf16: at most 2x the error of the plain PyTorch expression in the same dtype."""
    fresh, cached, mask, grad = _inputs(case, dtype, "soft", seed=7)
    out, grads = _run(npu_ops.masked_blend, fresh, cached, mask, grad)
    low_out, low_grads = _run(lambda f, c, m: c + m * (f - c), fresh, cached, mask, grad)
    ref, ref_grads = blend_ref(fresh, cached, mask, grad)
    assert out.dtype == dtype and grads[2].dtype == dtype
    for name, k, lo, r in zip(
        ("out", "grad_fresh", "grad_cached", "grad_mask"), (out, *grads), (low_out, *low_grads), (ref, *ref_grads)
    ):
        assert_lowp_rule(k, r, lo, name)


@pytest.mark.parametrize("dtype", [*FLOATS, *LOWP], ids=DTYPE_IDS.get)
@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.uint8])
def test_hard_mask_equals_where(dtype, mask_dtype):
    """Bit-exact torch.where, even with inf / NaN in the values not taken; exact zero gradients."""
    shape = (2, 3, 5, 19)
    fresh, cached = randn(shape, 1, dtype), randn(shape, 2, dtype)
    fresh[0, 0, 0, :3] = float("nan")
    cached[0, 0, 1, :3] = float("inf")
    mask = make_mask((2, 1, 5, 19), 3, "uint8" if mask_dtype == torch.uint8 else "bool")
    mask[0, 0, 0, :3] = 0
    mask[0, 0, 1, :3] = 1
    out = npu_ops.masked_blend(fresh, cached, mask)
    assert torch.equal(out, torch.where(mask.bool(), fresh, cached))
    f, c = leaves(fresh, cached)
    grad = randn(shape, 4, dtype)
    gf, gc = torch.autograd.grad(npu_ops.masked_blend(f, c, mask), (f, c), grad)
    sel = mask.bool().expand(shape)
    assert torch.equal(gf, torch.where(sel, grad, 0.0)) and torch.equal(gc, torch.where(sel, 0.0, grad))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=DTYPE_IDS.get)
def test_soft_mask_endpoints_are_exact(dtype):
    """Soft masks of exactly 0 / 1 return cached / fresh bit for bit (torch.lerp's two-sided form)."""
    fresh = torch.tensor([1.0, -3.0e4, 1e-3, 2.5] * 5, dtype=dtype)
    cached = torch.tensor([3.0e4, 7.0, -1e-3, 2.5] * 5, dtype=dtype)
    ones, zeros = torch.ones(20, dtype=dtype), torch.zeros(20, dtype=dtype)
    assert torch.equal(npu_ops.masked_blend(fresh, cached, ones), fresh)
    assert torch.equal(npu_ops.masked_blend(fresh, cached, zeros), cached)
    half = torch.full((20,), 0.5, dtype=dtype)
    torch.testing.assert_close(npu_ops.masked_blend(fresh, cached, half), torch.lerp(cached, fresh, half))


@pytest.mark.parametrize(
    "dtype, mask_dtype",
    [
        (torch.float32, torch.float64),
        (torch.float32, torch.bfloat16),
        (torch.float16, torch.float32),
        (torch.float64, torch.float16),
    ],
    ids=["fp32-m64", "fp32-mbf16", "fp16-m32", "fp64-m16"],
)
def test_mask_dtype_may_differ(dtype, mask_dtype):
    """The mask is converted to the compute dtype; out keeps the data dtype, grad_mask the mask's."""
    shape = (2, 3, 40)
    fresh, cached, grad = randn(shape, 11, dtype), randn(shape, 12, dtype), randn(shape, 13, dtype)
    mask = make_mask((2, 1, 40), 14, "soft").to(mask_dtype)
    out, (gf, gc, gm) = _run(npu_ops.masked_blend, fresh, cached, mask, grad)
    assert out.dtype == dtype and gf.dtype == dtype and gm.dtype == mask_dtype and gm.shape == mask.shape
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    m = mask.to(compute)  # what the kernel computes with
    ref, (rf, rc, rm) = blend_ref(fresh, cached, m, grad)
    tol = dict(atol=1e-2, rtol=1e-2) if torch.float16 in (dtype, mask_dtype) else dict(atol=1e-5, rtol=1e-5)
    if mask_dtype == torch.bfloat16:
        tol = dict(atol=5e-2, rtol=1e-2)
    torch.testing.assert_close(out.double(), ref, **tol)
    torch.testing.assert_close(gf.double(), rf, **tol)
    torch.testing.assert_close(gc.double(), rc, **tol)
    torch.testing.assert_close(gm.double(), rm, **tol)


def test_noncontiguous_inputs():
    base = randn((3, 6, 5, 8), 21, torch.float32)
    fresh = base.transpose(1, 3)  # [3, 8, 5, 6], strided
    cached = randn((3, 8, 5, 12), 22, torch.float32)[..., ::2]
    mask = make_mask((3, 1, 5, 12), 23, "soft").float()[..., 1::2]
    grad = randn((3, 6, 5, 8), 24, torch.float32).transpose(1, 3)
    assert not (fresh.is_contiguous() or cached.is_contiguous() or mask.is_contiguous() or grad.is_contiguous())
    out, grads = _run(npu_ops.masked_blend, fresh, cached, mask, grad)
    ref, ref_grads = blend_ref(fresh, cached, mask, grad)
    assert_close(out, ref, torch.float32, "out")
    for g, r, n in zip(grads, ref_grads, ("grad_fresh", "grad_cached", "grad_mask")):
        assert_close(g, r, torch.float32, n)
    expanded = torch.rand(3, 1, 5, 1).expand(3, 8, 5, 1)  # stride-0 mask
    ref, _ = blend_ref(fresh, cached, expanded)
    assert_close(npu_ops.masked_blend(fresh, cached, expanded), ref, torch.float32, "expanded mask")


@pytest.mark.parametrize(
    "shape, mshape",
    [((64, 4096), ()), ((2, 3000, 5), (1, 1, 5)), ((3, 2100), (3, 2100)), ((1, 40, 2500), (1, 1, 2500))],
    ids=["scalar-mask", "mid-chunks", "full-slices", "inner-slices"],
)
def test_mask_gradient_blocking(shape, mshape, num_threads):
    """The mask-gradient reduction (mid chunks, inner slices) is exact and independent of the thread count."""
    fresh, cached, grad = randn(shape, 31), randn(shape, 32), randn(shape, 33)
    mask = make_mask(mshape, 34, "soft")
    results = []
    for threads in (1, 2):
        num_threads(threads)
        results.append(_run(npu_ops.masked_blend, fresh, cached, mask, grad))
    (out, grads), (out2, grads2) = results
    _, ref_grads = blend_ref(fresh, cached, mask, grad)
    assert_close(grads[2], ref_grads[2], torch.float64, "grad_mask")
    assert torch.equal(out, out2) and all(torch.equal(a, b) for a, b in zip(grads, grads2))


def test_empty_tensors():
    fresh, cached = torch.randn(2, 0, 4), torch.randn(2, 0, 4)
    mask = torch.rand(2, 1, 4, requires_grad=True)
    f, c = leaves(fresh, cached)
    out = npu_ops.masked_blend(f, c, mask)
    assert out.shape == (2, 0, 4)
    gf, gm = torch.autograd.grad(out.sum(), (f, mask))
    assert gf.shape == (2, 0, 4) and torch.equal(gm, torch.zeros(2, 1, 4))


def test_only_the_needed_gradients():
    """Mask-only and fresh-only backward passes give the same values as the full one."""
    fresh, cached, mask, grad = _inputs(CASES[0], torch.float64, "soft", seed=41)
    _, (gf, gc, gm) = _run(npu_ops.masked_blend, fresh, cached, mask, grad)
    m = mask.clone().requires_grad_()
    (gm_only,) = torch.autograd.grad(npu_ops.masked_blend(fresh, cached, m), (m,), grad)
    f = fresh.clone().requires_grad_()
    (gf_only,) = torch.autograd.grad(npu_ops.masked_blend(f, cached, mask), (f,), grad)
    assert torch.equal(gm_only, gm) and torch.equal(gf_only, gf)


@pytest.mark.parametrize("mshape", [(2, 1, 3, 4), (1, 3, 1, 1), (2, 3, 3, 1), ()], ids=str)
def test_gradcheck(mshape):
    shape = (2, 3, 3, 4)
    f, c = leaves(randn(shape, 51), randn(shape, 52))
    m = leaves(make_mask(mshape, 53, "soft"))[0]
    assert torch.autograd.gradcheck(npu_ops.masked_blend, (f, c, m))


def test_double_backward_raises():
    f, c, m = leaves(randn((2, 5), 61), randn((2, 5), 62), make_mask((2, 1), 63, "soft"))
    (gf,) = torch.autograd.grad(npu_ops.masked_blend(f, c, m).sum(), (f,), create_graph=True)
    with pytest.raises(RuntimeError, match="first-order"):
        gf.sum().backward()


@pytest.mark.parametrize("kind", ["soft", "bool"])
def test_opcheck(kind):
    fresh, cached, mask, grad = _inputs(((2, 3, 4, 5), (2, 1, 4, 5)), torch.float64, kind, seed=71)
    f, c, m = leaves(fresh, cached, mask)
    torch.library.opcheck(torch.ops.npu_ops.masked_blend.default, (f, c, m))
    torch.library.opcheck(
        torch.ops.npu_ops._masked_blend_backward.default, (grad, fresh, cached, mask, [True, True, kind == "soft"])
    )


def test_torch_compile_fullgraph(dynamo_reset):
    def fn(f, c, m):
        return npu_ops.masked_blend(f * 2.0, c, m.sigmoid()).sum(dim=1)

    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    shape, mshape = (2, 3, 4, 6), (2, 1, 4, 6)
    fresh, cached, mask, _ = _inputs((shape, mshape), torch.float32, "soft", seed=81)
    grad = randn((2, 4, 6), 82, torch.float32)
    results = []
    for func in (fn, compiled):
        f, c, m = leaves(fresh, cached, mask)
        out = func(f, c, m)
        results.append((out.detach(), torch.autograd.grad(out, (f, c, m), grad)))
    (eo, eg), (co, cg) = results
    torch.testing.assert_close(co, eo, atol=0, rtol=0)
    for a, b in zip(cg, eg):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
