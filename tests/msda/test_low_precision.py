"""float16 / bfloat16: the flash-attention accuracy rule, and AMP-style mixed dtypes."""

from __future__ import annotations

import npu_ops
import pytest
import torch
from utils import (
    GRAD_NAMES,
    LEVELS_4,
    LEVELS_5,
    LEVELS_MMCV,
    LEVELS_1xW,
    LEVELS_HxW,
    grid_sample_lowp_supported,
    kernel_fwd_bwd,
    make_grad_output,
    make_msda_inputs,
    max_abs_err,
    reference_fwd_bwd,
)

LOWP = [torch.float16, torch.bfloat16]
LOWP_CASES = [
    # (bs, nq, heads, channels, levels, points)
    (2, 33, 3, 37, LEVELS_4, 4),
    (1, 31, 8, 64, LEVELS_5, 8),
    (2, 31, 1, 256, LEVELS_HxW, 1),
    (1, 33, 3, 8, LEVELS_1xW, 4),
]


@pytest.mark.parametrize("dtype", LOWP, ids=["fp16", "bf16"])
@pytest.mark.parametrize("case", LOWP_CASES, ids=lambda c: f"c{c[3]}-h{c[2]}-L{len(c[4])}-p{c[5]}")
def test_flash_attention_rule(case, dtype):
    """max |kernel - ref64| <= 2 * max |pytorch_lowp - ref64| + tiny atol, for the output and all grads.

    ref64: the grid_sample reference in float64 on the same (rounded) inputs; pytorch_lowp: the same
    reference run in the low dtype."""
    if not grid_sample_lowp_supported(dtype):
        pytest.fail(f"grid_sample does not support {dtype} on CPU in this torch build")
    bs, nq, heads, channels, levels, points = case
    inp = make_msda_inputs(bs, nq, heads, channels, levels, points, dtype=dtype, seed=31)
    grad_out = make_grad_output(inp, seed=32, dtype=dtype)

    out, grads = kernel_fwd_bwd(inp, grad_out)
    ref_out, ref_grads = reference_fwd_bwd(inp, grad_out)  # float64
    low_out, low_grads = reference_fwd_bwd(inp, grad_out, dtype=dtype)

    names = ("output", *GRAD_NAMES)
    for name, k, r, lo in zip(names, (out, *grads), (ref_out, *ref_grads), (low_out, *low_grads)):
        assert k.dtype == dtype, name
        assert torch.isfinite(k).all(), name
        kernel_err = max_abs_err(k, r)
        ref_err = max_abs_err(lo, r)
        atol = 1e-5 * max(1.0, float(r.abs().max()))
        assert kernel_err <= 2 * ref_err + atol, f"{name}: kernel err {kernel_err:.3g} vs pytorch {dtype} {ref_err:.3g}"


@pytest.mark.parametrize("dtype", LOWP, ids=["fp16", "bf16"])
def test_low_precision_accumulates_in_fp32(dtype):
    """The output is the fp32 kernel's result rounded once: fp32 accumulation, not a low-dtype sum."""
    inp = make_msda_inputs(1, 17, 2, 40, LEVELS_4, 8, dtype=dtype, seed=33)
    grad_out = make_grad_output(inp, dtype=dtype)
    out, grads = kernel_fwd_bwd(inp, grad_out)
    out32, grads32 = kernel_fwd_bwd(inp.to(torch.float32), grad_out.float())
    # One rounding of an fp32 result: within one low-precision ulp (2 ** -10 fp16, 2 ** -7 bf16) of it.
    ulp = 2.0**-10 if dtype == torch.float16 else 2.0**-7
    for name, a, b in zip(("output", *GRAD_NAMES), (out, *grads), (out32, *grads32)):
        torch.testing.assert_close(a.float(), b, atol=1e-6, rtol=ulp, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("dtype", LOWP, ids=["fp16", "bf16"])
def test_mixed_dtype_inputs_amp_style(dtype):
    """value in low precision with fp32 locations/weights (AMP): output in value's dtype, grads of
    locations/weights come back in fp32 and equal the low-precision run's."""
    inp = make_msda_inputs(2, 9, 2, 8, LEVELS_MMCV, 2, dtype=torch.float32, seed=34)
    v = inp.value.to(dtype).requires_grad_()
    loc = inp.sampling_locations.clone().requires_grad_()
    attn = inp.attention_weights.clone().requires_grad_()
    out = npu_ops.msda(v, inp.spatial_shapes, inp.level_start_index, loc, attn)
    assert out.dtype == dtype
    grad_out = make_grad_output(inp, dtype=dtype)
    out.backward(grad_out)
    assert v.grad.dtype == dtype
    assert loc.grad.dtype == torch.float32 and attn.grad.dtype == torch.float32
    # Same as running everything in the low dtype.
    low = inp.to(dtype)
    low.value = v.detach()
    low_out, low_grads = kernel_fwd_bwd(low, grad_out)
    torch.testing.assert_close(out.detach(), low_out, atol=0, rtol=0)
    torch.testing.assert_close(v.grad, low_grads[0], atol=0, rtol=0)
    torch.testing.assert_close(loc.grad, low_grads[1].float(), atol=0, rtol=0)
    torch.testing.assert_close(attn.grad, low_grads[2].float(), atol=0, rtol=0)


def test_under_cpu_autocast():
    inp = make_msda_inputs(1, 5, 2, 8, LEVELS_MMCV, 2, dtype=torch.float32, seed=35)
    v = inp.value.to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = npu_ops.msda(v, inp.spatial_shapes, inp.level_start_index, inp.sampling_locations, inp.attention_weights)
    assert out.dtype == torch.bfloat16
    ref, _ = reference_fwd_bwd(inp.to(torch.bfloat16))
    torch.testing.assert_close(out.double(), ref, atol=0.05, rtol=0.02)
