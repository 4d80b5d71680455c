"""npu_ops.msda's AscendC kernels on a real NPU against the CPU kernel (needs CANN, torch_npu and an
NPU; skipped elsewhere, where tests/ascend/test_msda_sim*.py run the same kernel sources under the
emulator).

Forward and backward (through autograd, as users call it) in float32, float16 and bfloat16, on the
shape families of the CPU suite plus the cases the NPU kernels handle specially: tiny levels with
many queries (atomic contention), all points on one pixel, C not a multiple of 8, L*P above 64,
fewer queries than cores, NaN/Inf locations, and the deterministic mode.
"""

from __future__ import annotations

import npu_ops
import pytest
import torch
from utils import (
    GRAD_NAMES,
    LEVELS_4,
    LEVELS_5,
    LEVELS_MMCV,
    LEVELS_1x1,
    LEVELS_1xW,
    LEVELS_HxW,
    kernel_fwd_bwd,
    make_grad_output,
    make_msda_inputs,
    max_abs_err,
)

pytestmark = [
    pytest.mark.needs_npu,
    pytest.mark.skipif(not npu_ops.has_npu_backend(), reason="needs an Ascend NPU with torch_npu and CANN"),
]

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# (bs, nq, heads, channels, levels, points)
CASES = [
    (2, 33, 3, 37, LEVELS_4, 4),
    (1, 31, 8, 64, LEVELS_5, 8),
    (2, 7, 2, 1, LEVELS_MMCV, 2),
    (2, 31, 1, 256, LEVELS_HxW, 1),
    (1, 33, 3, 8, LEVELS_1xW, 4),
    (3, 5, 2, 16, LEVELS_1x1, 3),
    (1, 20, 2, 1025, LEVELS_MMCV, 2),
    (1, 9, 2, 32, LEVELS_5, 16),  # L*P = 80 > 64
    (2, 3, 8, 32, LEVELS_4, 4),  # fewer queries than vector cores
]


def _npu(inp):
    return type(inp)(*(t.npu() for t in inp.args()))


def _compare(inp, grad_out, dtype, **kwargs):
    """NPU vs CPU kernel, forward and the three gradients: max error within 2x the CPU kernel's
    own distance to its float32 run, plus a small absolute slack (atomics reorder sums on NPU)."""
    out_c, grads_c = kernel_fwd_bwd(inp, grad_out)
    out_n, grads_n = kernel_fwd_bwd(_npu(inp), grad_out.npu(), **kwargs)
    out_32, grads_32 = kernel_fwd_bwd(inp.to(torch.float32), grad_out.float())
    for name, n, c, r in zip(("output", *GRAD_NAMES), (out_n, *grads_n), (out_c, *grads_c), (out_32, *grads_32)):
        n = n.cpu()
        assert n.dtype == c.dtype == dtype, name
        assert n.shape == c.shape, name
        assert torch.equal(torch.isfinite(n), torch.isfinite(c)), f"{name}: non-finite values differ"
        scale = max(1.0, float(r.abs().max()))
        slack = (1e-5 if dtype == torch.float32 else 2e-3) * scale
        assert max_abs_err(n.float(), r) <= 2 * max_abs_err(c.float(), r) + slack, name


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"b{c[0]}-q{c[1]}-h{c[2]}-c{c[3]}-L{len(c[4])}-p{c[5]}")
def test_msda_npu_matches_cpu(case, dtype):
    bs, nq, heads, channels, levels, points = case
    inp = make_msda_inputs(bs, nq, heads, channels, levels, points, dtype=dtype, seed=51)
    _compare(inp, make_grad_output(inp, seed=52, dtype=dtype), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_msda_npu_contention_tiny_level_many_queries(dtype):
    # A 6x4 level hit by thousands of queries: every core adds into the same few grad_value rows.
    inp = make_msda_inputs(2, 3000, 4, 32, [(6, 4)], 4, dtype=dtype, seed=53, loc_mode="valid")
    _compare(inp, make_grad_output(inp, seed=54, dtype=dtype), dtype)


def test_msda_npu_all_points_on_one_pixel():
    inp = make_msda_inputs(1, 500, 2, 16, LEVELS_MMCV, 4, dtype=torch.float32, seed=55)
    inp.sampling_locations[..., 0] = 0.3
    inp.sampling_locations[..., 1] = 0.6
    _compare(inp, make_grad_output(inp, seed=56), torch.float32)


def test_msda_npu_nonfinite_locations_contribute_nothing():
    inp = make_msda_inputs(2, 17, 2, 8, LEVELS_4, 4, dtype=torch.float32, seed=57)
    loc = inp.sampling_locations
    loc[0, 0, 0, 0, 0, 0] = float("nan")
    loc[0, 1, 1, 1, 1, 1] = float("inf")
    loc[1, 2, 0, 2, 3, 0] = float("-inf")
    _compare(inp, make_grad_output(inp, seed=58), torch.float32)


def test_msda_npu_deterministic_backward_is_bitwise_repeatable():
    inp = make_msda_inputs(2, 400, 4, 32, [(6, 4), (3, 2)], 4, dtype=torch.float32, seed=59).to(torch.float32)
    n = _npu(inp)
    g = make_grad_output(inp, seed=60).npu()
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        first = torch.ops.npu_ops._msda_backward(g, *n.args())
        again = torch.ops.npu_ops._msda_backward(g, *n.args())
    finally:
        torch.use_deterministic_algorithms(prev)
    for name, a, b in zip(GRAD_NAMES, first, again):
        assert torch.equal(a.cpu(), b.cpu()), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_msda_npu_naive_design_matches_cpu(dtype, monkeypatch):
    # NPU_OPS_MSDA_DESIGN=naive: the baseline kernels the benchmark compares against.
    monkeypatch.setenv("NPU_OPS_MSDA_DESIGN", "naive")
    inp = make_msda_inputs(2, 33, 3, 37, LEVELS_4, 4, dtype=dtype, seed=61)
    _compare(inp, make_grad_output(inp, seed=62, dtype=dtype), dtype)


def test_msda_npu_bad_design_variable_is_named(monkeypatch):
    monkeypatch.setenv("NPU_OPS_MSDA_DESIGN", "fast")
    inp = _npu(make_msda_inputs(1, 3, 2, 8, LEVELS_MMCV, 2, dtype=torch.float32, seed=63).to(torch.float32))
    with pytest.raises(RuntimeError, match="NPU_OPS_MSDA_DESIGN must be 'codesign' or 'naive', got 'fast'"):
        npu_ops.msda(*inp.args())
