"""msda_v2 forward and gradients against the float64 reference (fp64 exact, fp32, fp16/bf16 2x rule)."""

from __future__ import annotations

import npu_ops
import pytest
import torch
from v2_utils import LEVELS_RECT, LEVELS_SQ, exact_msda_v2, fwd_bwd, make_inputs

CASES = [
    # (bs, nq, heads, C, levels, num_points_list)
    (2, 7, 3, 5, LEVELS_SQ, [4, 4, 4]),
    (1, 9, 2, 8, LEVELS_SQ, [3, 1, 2]),
    (2, 5, 4, 3, LEVELS_RECT, [2, 5, 1, 3]),
]
METHODS = ["default", "discrete"]


def _kernel(inp, method):
    return lambda v, loc, attn: npu_ops.msda_v2(v, inp.levels, loc, attn, inp.npl, method)


def _exact(inp, method):
    return lambda v, loc, attn: exact_msda_v2(v, inp.levels, loc, attn, inp.npl, method)


def _grad_out(inp, seed=5):
    bs, nq, heads = inp.loc.shape[:3]
    g = torch.Generator().manual_seed(seed)
    return torch.randn(bs, nq, heads * inp.value.shape[-1], generator=g, dtype=torch.float64)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_fp64_matches_exact(case, method):
    inp = make_inputs(*CASES[case], seed=10 + case)
    go = _grad_out(inp)
    out, grads = fwd_bwd(_kernel(inp, method), inp, go, torch.float64)
    ref, ref_grads = fwd_bwd(_exact(inp, method), inp, go, torch.float64)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for name, g, r in zip(("value", "loc", "attn"), grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10, msg=lambda m, name=name: f"grad_{name}: {m}")
    if method == "discrete":
        assert torch.count_nonzero(grads[1]) == 0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_within_twice_the_reference_error(dtype, method):
    """The kernel's error vs fp64 is at most 2x (plus a tiny floor) that of the pure-PyTorch path in the same dtype."""
    inp = make_inputs(2, 11, 3, 16, LEVELS_SQ, [4, 2, 3], seed=21)
    if dtype != torch.float32:
        # Locations representable in the low dtype, so both paths and fp64 see the same points.
        inp.loc = inp.loc.to(dtype).double()
        inp.value = inp.value.to(dtype).double()
        inp.attn = inp.attn.to(dtype).double()
    go = _grad_out(inp).to(dtype).double()
    exact, exact_grads = fwd_bwd(_exact(inp, method), inp, go, torch.float64)
    out, grads = fwd_bwd(_kernel(inp, method), inp, go, dtype)
    ref_fn = lambda v, loc, attn: npu_ops.msda_v2.multi_scale_deformable_attention_v2_pytorch(  # noqa: E731
        v, inp.levels, loc, attn, inp.npl, method
    )
    base, base_grads = fwd_bwd(ref_fn, inp, go, dtype)
    assert out.dtype == dtype
    floor = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    pairs = [("out", out, base, exact)] + [
        (n, g, b, e) for n, g, b, e in zip(("value", "loc", "attn"), grads, base_grads, exact_grads)
    ]
    for name, got, b, e in pairs:
        if method == "discrete" and name == "loc":
            continue
        err = (got.double() - e).abs().max().item()
        base_err = (b.double() - e).abs().max().item()
        scale = e.abs().max().item() + 1
        assert err <= 2 * base_err + floor * scale, f"{name}: kernel err {err:.3g}, pytorch err {base_err:.3g}"


@pytest.mark.parametrize("method", METHODS)
def test_matches_package_reference_fp64(method):
    inp = make_inputs(2, 6, 2, 4, LEVELS_RECT, [1, 2, 3, 4], seed=31)
    ref = npu_ops.msda_v2.multi_scale_deformable_attention_v2_pytorch(
        inp.value, inp.levels, inp.loc, inp.attn, inp.npl, method
    )
    out = npu_ops.msda_v2(inp.value, inp.levels, inp.loc, inp.attn, inp.npl, method)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_matches_transformers_rt_detr_v2(method):
    """The function RT-DETRv2 / D-FINE models in transformers call (square maps: its discrete clamp uses h for x)."""
    mod = pytest.importorskip("transformers.models.rt_detr_v2.modeling_rt_detr_v2")
    inp = make_inputs(2, 13, 8, 8, [(8, 8), (4, 4), (2, 2)], [4, 2, 3], seed=41)
    go = _grad_out(inp)
    for dtype in (torch.float64, torch.float32):
        tol = 1e-12 if dtype == torch.float64 else 2e-5

        def hf(v, loc, attn):
            return mod.multi_scale_deformable_attention_v2(v, inp.shapes, loc, attn, inp.npl, method)

        ref, ref_grads = fwd_bwd(hf, inp, go, dtype)
        out, grads = fwd_bwd(_kernel(inp, method), inp, go, dtype)
        torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=tol * 10, atol=tol * 10)


def test_nonfinite_locations_dropped():
    inp = make_inputs(1, 4, 2, 3, LEVELS_SQ, [2, 2, 2], seed=51)
    inp.loc[0, 0, 0, 0, 0] = float("nan")
    inp.loc[0, 1, 1, 3, 1] = float("inf")
    inp.loc[0, 2, 0, 5, 0] = -float("inf")
    inp.loc[0, 3, 1, 1, 0] = 1e30
    go = _grad_out(inp)
    for method in METHODS:
        out, grads = fwd_bwd(_kernel(inp, method), inp, go, torch.float64)
        ref, ref_grads = fwd_bwd(_exact(inp, method), inp, go, torch.float64)
        assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)
        assert grads[2][0, 0, 0, 0] == 0 and grads[2][0, 1, 1, 3] == 0


def test_boundaries_and_discrete_rounding():
    """Exact integers, half-pixels, the (-1, size) band edges and rounding ties of the discrete index."""
    levels, npl = [(4, 5)], [8]
    inp = make_inputs(1, 3, 1, 2, levels, npl, seed=61)
    xs = torch.tensor([0.0, 0.1, 0.5 / 5, 1.5 / 5, -0.5 / 5, 1.0, 1.0 + 0.5 / 5, 1.0 / 5 - 1e-12], dtype=torch.float64)
    inp.loc[0, :, 0, :, 0] = xs
    inp.loc[0, :, 0, :, 1] = torch.tensor([0.5, 0.0, 1.0])[:, None]
    go = _grad_out(inp)
    for method in METHODS:
        out, grads = fwd_bwd(_kernel(inp, method), inp, go, torch.float64)
        ref, ref_grads = fwd_bwd(_exact(inp, method), inp, go, torch.float64)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


def test_empty_batch_and_queries():
    for bs, nq in ((0, 3), (2, 0)):
        inp = make_inputs(max(bs, 1), max(nq, 1), 2, 3, LEVELS_SQ, [1, 2, 1], seed=71)
        v = inp.value[:bs] if bs == 0 else inp.value
        loc = inp.loc[:bs, :nq]
        attn = inp.attn[:bs, :nq]
        out = npu_ops.msda_v2(v.requires_grad_(), inp.levels, loc.requires_grad_(), attn, inp.npl)
        assert out.shape == (bs, nq, 6)
        out.sum().backward()
        assert v.grad.shape == v.shape and torch.count_nonzero(v.grad) == 0


def test_noncontiguous_inputs():
    inp = make_inputs(2, 5, 3, 4, LEVELS_SQ, [2, 3, 1], seed=81)
    v = inp.value.transpose(0, 1).contiguous().transpose(0, 1)
    loc = inp.loc.permute(1, 0, 2, 3, 4).contiguous().permute(1, 0, 2, 3, 4)
    assert not v.is_contiguous() and not loc.is_contiguous()
    for method in METHODS:
        out = npu_ops.msda_v2(v, inp.levels, loc, inp.attn, inp.npl, method)
        torch.testing.assert_close(
            out, exact_msda_v2(*inp.tensors()[:1], inp.levels, inp.loc, inp.attn, inp.npl, method)
        )


def test_mixed_dtype_inputs_cast_to_value():
    inp = make_inputs(1, 4, 2, 8, LEVELS_SQ, [2, 2, 2], seed=91)
    v = inp.value.half()
    out = npu_ops.msda_v2(v, inp.levels, inp.loc.float(), inp.attn.float(), inp.npl)
    assert out.dtype == torch.float16
    ref = exact_msda_v2(v.double(), inp.levels, inp.loc.half().double(), inp.attn.half().double(), inp.npl, "default")
    torch.testing.assert_close(out.double(), ref, rtol=2e-3, atol=2e-3)
