"""The CPU kernels use no atomics: forward and backward are bit-identical from run to run."""

from __future__ import annotations

import npu_ops
import pytest
import torch
from utils import LEVELS_4, LEVELS_MMCV, assert_close_to_ref, assert_equal_tuple, make_grad_output, make_msda_inputs

RUNS = 4

DETERMINISM_CASES = {
    # bs * heads >= threads: one task per (batch, head) slice.
    "normal": dict(bs=2, nq=50, heads=4, channels=37, levels=LEVELS_4, points=4),
    # bs * heads == 1 < threads, many queries: queries are chunked, extra chunks go to private buffers.
    "chunked": dict(bs=1, nq=640, heads=1, channels=32, levels=[(2, 3), (1, 1)], points=4),
    "chunked_bs2": dict(bs=2, nq=300, heads=1, channels=5, levels=LEVELS_MMCV, points=2),
}


def _backward(inp, grad_out):
    return torch.ops.npu_ops._msda_backward.default(grad_out, *inp.args())


@pytest.mark.parametrize("threads", [None, 8], ids=["default_threads", "8_threads"])
@pytest.mark.parametrize("name", list(DETERMINISM_CASES))
def test_backward_bit_identical(name, threads, num_threads):
    if threads is not None:
        num_threads(threads)  # more threads than slices forces more query chunks
    inp = make_msda_inputs(**DETERMINISM_CASES[name], dtype=torch.float32, seed=41, loc_mode="valid")
    grad_out = make_grad_output(inp)
    first = _backward(inp, grad_out)
    for _ in range(RUNS - 1):
        assert_equal_tuple(_backward(inp, grad_out), first, "backward")
    # Through autograd too.
    v, loc, attn = (t.clone().requires_grad_() for t in inp.float_tensors)
    npu_ops.msda(v, inp.spatial_shapes, inp.level_start_index, loc, attn).backward(grad_out)
    assert_equal_tuple((v.grad, loc.grad, attn.grad), first, "autograd backward")


def test_backward_chunked_matches_single_thread(num_threads):
    """The chunked path (private buffers summed in chunk order) gives the single-task result
    within fp32 rounding, and the fp64 chunked result to 1e-10."""
    case = DETERMINISM_CASES["chunked"]
    for dtype in (torch.float32, torch.float64):
        inp = make_msda_inputs(**case, dtype=dtype, seed=42, loc_mode="valid")
        grad_out = make_grad_output(inp)
        num_threads(1)
        single = _backward(inp, grad_out)
        num_threads(8)
        chunked = _backward(inp, grad_out)
        for a, b, n in zip(chunked, single, ("grad_value", "grad_loc", "grad_attn")):
            assert_close_to_ref(a, b.double(), dtype, n)
        # grad_loc / grad_attn are computed per query: no reduction across chunks, so bit-identical.
        assert torch.equal(chunked[1], single[1]) and torch.equal(chunked[2], single[2])


@pytest.mark.parametrize("name", ["normal", "chunked"])
def test_forward_bit_identical(name, num_threads):
    num_threads(8)
    inp = make_msda_inputs(**DETERMINISM_CASES[name], dtype=torch.float32, seed=43)
    first = npu_ops.msda(*inp.args())
    for _ in range(RUNS - 1):
        assert torch.equal(npu_ops.msda(*inp.args()), first)
    num_threads(1)
    assert torch.equal(npu_ops.msda(*inp.args()), first)  # forward rows are independent of the split


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=["fp16", "bf16", "fp64"])
def test_backward_bit_identical_other_dtypes(dtype, num_threads):
    num_threads(8)
    inp = make_msda_inputs(**DETERMINISM_CASES["chunked_bs2"], dtype=dtype, seed=44)
    grad_out = make_grad_output(inp)
    first = _backward(inp, grad_out)
    for _ in range(RUNS - 1):
        assert_equal_tuple(_backward(inp, grad_out), first, "backward")
