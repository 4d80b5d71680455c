"""Numerical gradient checks (float64) of npu_ops.msda and the mmcv-style autograd.Function."""

from __future__ import annotations

import npu_ops
import pytest
import torch
from npu_ops.msda import MultiScaleDeformableAttnFunction
from utils import LEVELS_MMCV, make_msda_inputs

# (bs, nq, heads, channels, points, seed); levels [(6, 4), (3, 2)] as in mmcv's tests.
GRADCHECK_CASES = [
    (1, 2, 2, 2, 2, 0),
    (2, 3, 2, 4, 2, 1),
    (1, 3, 2, 1, 2, 2),
    (2, 1, 2, 3, 2, 3),
    (1, 2, 1, 4, 1, 4),
]


@pytest.mark.parametrize("case", GRADCHECK_CASES, ids=lambda c: "bs{}-nq{}-h{}-c{}-p{}-seed{}".format(*c))
def test_gradcheck_msda(case):
    bs, nq, heads, channels, points, seed = case
    # Pixel coordinates with fractional part in [0.1, 0.9], inside (-1, size): away from kinks.
    inp = make_msda_inputs(
        bs, nq, heads, channels, LEVELS_MMCV, points, seed=seed, loc_mode="valid", requires_grad=True
    )
    shapes, starts = inp.spatial_shapes, inp.level_start_index

    def fn(value, loc, attn):
        return npu_ops.msda(value, shapes, starts, loc, attn)

    assert torch.autograd.gradcheck(fn, inp.float_tensors, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradcheck_points_outside_and_in_bands():
    """Points outside the map (zero grads) and in the border bands, still away from kinks."""
    inp = make_msda_inputs(1, 3, 2, 3, LEVELS_MMCV, 2, seed=7, loc_mode="wide", margin=0.05, requires_grad=True)
    shapes, starts = inp.spatial_shapes, inp.level_start_index

    def fn(value, loc, attn):
        return npu_ops.msda(value, shapes, starts, loc, attn)

    assert torch.autograd.gradcheck(fn, inp.float_tensors, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradcheck_autograd_function():
    inp = make_msda_inputs(1, 2, 2, 4, LEVELS_MMCV, 2, seed=5, loc_mode="valid", requires_grad=True)
    shapes, starts = inp.spatial_shapes, inp.level_start_index

    def fn(value, loc, attn):
        return MultiScaleDeformableAttnFunction.apply(value, shapes, starts, loc, attn, 2)

    assert torch.autograd.gradcheck(fn, inp.float_tensors, eps=1e-6, atol=1e-5, rtol=1e-4)
