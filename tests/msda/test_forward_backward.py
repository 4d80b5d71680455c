"""Forward and backward of npu_ops.msda against float64 references (fp64 and fp32 kernels)."""

from __future__ import annotations

import npu_ops
import pytest
import torch
from utils import (
    LEVELS_4,
    LEVELS_5,
    LEVELS_MMCV,
    LEVELS_1x1,
    LEVELS_1xW,
    LEVELS_HxW,
    MsdaInputs,
    assert_all_close_to_ref,
    assert_close_to_ref,
    exact_fwd_bwd,
    kernel_fwd_bwd,
    make_grad_output,
    make_msda_inputs,
    reference_fwd_bwd,
    shapes_and_starts,
)

# (bs, nq, heads, channels, levels, points): every value of every axis appears at least once, pairs
# spread out (C in {1,3,8,32,37,64,256}, H in {1,3,8}, L in {1,4,5} with 1x1 / 1xW / Hx1 levels,
# P in {1,4,8}, Nq in {1,31,33}, bs in {1,2,3}).
CASES = [
    (1, 1, 1, 1, LEVELS_1x1, 1),
    (2, 31, 3, 3, LEVELS_4, 4),
    (1, 33, 8, 8, LEVELS_5, 8),
    (3, 33, 1, 32, LEVELS_4, 8),
    (2, 1, 3, 37, LEVELS_5, 1),
    (1, 31, 8, 64, LEVELS_1xW, 4),
    (2, 33, 3, 256, LEVELS_HxW, 1),
    (1, 31, 1, 37, LEVELS_5, 4),
    (2, 31, 8, 1, LEVELS_4, 8),
    (1, 1, 8, 256, LEVELS_4, 4),
    (2, 33, 1, 3, LEVELS_1xW, 8),
    (3, 31, 3, 8, LEVELS_1x1, 4),
    (1, 31, 3, 32, LEVELS_HxW, 1),
    (2, 33, 8, 64, LEVELS_5, 8),  # combined: everything large at once
    (3, 33, 3, 37, LEVELS_4, 4),  # combined: bs 3, unaligned C
]


def _case_id(case):
    bs, nq, heads, channels, levels, points = case
    return f"bs{bs}-nq{nq}-h{heads}-c{channels}-L{len(levels)}x{levels[0][0]}x{levels[0][1]}-p{points}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_matches_reference(case, dtype):
    bs, nq, heads, channels, levels, points = case
    seed = hash((bs, nq, heads, channels, len(levels), points)) % 1000
    inp = make_msda_inputs(bs, nq, heads, channels, levels, points, dtype=dtype, seed=seed)
    grad_out = make_grad_output(inp, seed=seed + 1)
    out, grads = kernel_fwd_bwd(inp, grad_out)
    ref_out, ref_grads = reference_fwd_bwd(inp, grad_out)  # float64 from the (rounded) inputs
    assert out.shape == (bs, nq, heads * channels)
    assert_all_close_to_ref(out, grads, ref_out, ref_grads, dtype)
    # The outputs are not trivially zero: most points fall on the maps.
    assert out.abs().sum() > 0 and grads[1].abs().sum() > 0


def test_generated_locations_cover_bands_and_outside():
    """The "wide" location generator really produces border-band and out-of-[0, 1] points."""
    inp = make_msda_inputs(2, 31, 3, 4, LEVELS_4, 4, seed=3)
    loc = inp.sampling_locations
    for lvl, (h, w) in enumerate(LEVELS_4):
        x = loc[:, :, :, lvl, :, 0] * w - 0.5
        y = loc[:, :, :, lvl, :, 1] * h - 0.5
        for c, size in ((x, w), (y, h)):
            assert ((c > -1) & (c < 0)).any()
            assert ((c > size - 1) & (c < size)).any()
            assert (c <= -1).any() and (c >= size).any()
            assert ((c - c.round()).abs() >= 1e-3).all()  # no point next to a kink or x == -1
    assert (loc < 0).any() and (loc > 1).any()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
def test_matches_exact_mmcv_transcription(dtype):
    """Second, independent reference: a transcription of mmcv's CUDA kernel that uses level_start_index."""
    inp = make_msda_inputs(2, 33, 3, 37, LEVELS_5, 4, dtype=dtype, seed=11)
    grad_out = make_grad_output(inp)
    out, grads = kernel_fwd_bwd(inp, grad_out)
    ref_out, ref_grads = exact_fwd_bwd(inp, grad_out)
    assert_all_close_to_ref(out, grads, ref_out, ref_grads, dtype)


def _handmade_inputs(pixel_xy, levels=((4, 8),), dtype=torch.float64, channels=5):
    """One query, one head, the given (x, y) pixel coordinates as the points of every level."""
    shapes, starts = shapes_and_starts(levels)
    gen = torch.Generator().manual_seed(5)
    num_keys = sum(h * w for h, w in levels)
    value = torch.randn(1, num_keys, 1, channels, generator=gen, dtype=torch.float64)
    pts = torch.tensor(pixel_xy, dtype=torch.float64)  # [P, 2] pixel coordinates
    locs = []
    for h, w in levels:
        locs.append(torch.stack([(pts[:, 0] + 0.5) / w, (pts[:, 1] + 0.5) / h], -1))
    loc = torch.stack(locs, 0).view(1, 1, 1, len(levels), len(pixel_xy), 2)
    attn = torch.rand(1, 1, 1, len(levels), len(pixel_xy), generator=gen, dtype=torch.float64) + 0.5
    return MsdaInputs(value, shapes, starts, loc, attn).to(dtype)


def test_pixel_convention_and_bounds_exact():
    """x = loc_x * W - 0.5; corners zero-padded; points with x <= -1 or x >= W (same for y) dropped.

    Power-of-two sizes keep loc * size - 0.5 exact, so integer coordinates are really integers."""
    h, w = 4, 8
    points = [
        (0.0, 0.0),  # pixel centre (0, 0): exactly value[0]
        (2.0, 1.0),  # exact integer coordinates
        (1.5, 0.5),  # centre of four pixels
        (-0.5, 1.0),  # left band: half of the left column
        (w - 0.5, 1.0),  # right band
        (1.0, -0.25),  # top band
        (1.0, h - 0.75),  # bottom band
        (-1.0, 1.0),  # x == -1 exactly: dropped (strict >)
        (1.0, -1.0),  # y == -1 exactly: dropped
        (float(w), 1.0),  # x == W: dropped
        (1.0, float(h)),  # y == H: dropped
        (-3.0, 1.0),  # far outside
        (-0.999, -0.999),  # only the (0, 0) corner, tiny weight
    ]
    inp = _handmade_inputs(points)
    grad_out = make_grad_output(inp)
    out, grads = kernel_fwd_bwd(inp, grad_out)
    ref_out, ref_grads = exact_fwd_bwd(inp, grad_out)
    assert_all_close_to_ref(out, grads, ref_out, ref_grads, torch.float64)
    # Dropped points: all their gradients exactly zero.
    for p in (7, 8, 9, 10, 11):
        assert torch.all(grads[1][0, 0, 0, 0, p] == 0), p
        assert grads[2][0, 0, 0, 0, p] == 0, p
    # Single point at a pixel centre returns that pixel exactly.
    one = _handmade_inputs([(2.0, 1.0)])
    one.attention_weights.fill_(1.0)
    o = npu_ops.msda(*one.args())
    torch.testing.assert_close(o[0, 0], one.value[0, 1 * w + 2, 0], atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_coordinates_one_ulp_from_integers(dtype):
    """Coordinates within one ulp of an integer (the NPU floor-precision bug): forward and the
    value / weight gradients are continuous there and must match; no out-of-bounds reads."""
    h, w = 4, 6
    base = []
    for x in (-1.0, 0.0, 1.0, 3.0, 5.0, 6.0):
        for y in (0.0, 2.0, 3.0):
            base.append((x, y))
    loc = []
    for x, y in base:
        lx = torch.tensor((x + 0.5) / w, dtype=dtype)
        ly = torch.tensor((y + 0.5) / h, dtype=dtype)
        for dx in (-1, 0, 1):
            loc.append(
                (
                    float(torch.nextafter(lx, lx + dx) if dx else lx),
                    float(torch.nextafter(ly, ly - dx) if dx else ly),
                )
            )
    shapes, starts = shapes_and_starts([(h, w)])
    gen = torch.Generator().manual_seed(2)
    P = len(loc)
    value = torch.randn(1, h * w, 1, 3, generator=gen, dtype=torch.float64).to(dtype)
    sl = torch.tensor(loc, dtype=torch.float64).to(dtype).view(1, 1, 1, 1, P, 2)
    attn = torch.rand(1, 1, 1, 1, P, generator=gen, dtype=torch.float64).to(dtype)
    inp = MsdaInputs(value, shapes, starts, sl, attn)
    grad_out = make_grad_output(inp)
    out, grads = kernel_fwd_bwd(inp, grad_out)
    ref_out, ref_grads = exact_fwd_bwd(inp, grad_out)
    # At an integer the point may legitimately fall on either side of the x == -1 / x == W edge,
    # where the output jumps by at most (weight * tiny bilinear coefficient) -> still close.
    assert_close_to_ref(out, ref_out, dtype, "output")
    assert_close_to_ref(grads[0], ref_grads[0], dtype, "grad_value")
    assert_close_to_ref(grads[2], ref_grads[2], dtype, "grad_attention_weights")
    assert torch.isfinite(grads[1]).all()


def test_zero_and_negative_weights():
    """Weights enter linearly: zero weights give zero value/location grads but a non-zero weight grad."""
    inp = make_msda_inputs(1, 9, 2, 6, LEVELS_MMCV, 3, loc_mode="valid", seed=4)
    inp.attention_weights[:, :, :, 0] = 0.0
    inp.attention_weights[:, :, :, 1] *= -1.0
    grad_out = make_grad_output(inp)
    out, (gv, gl, ga) = kernel_fwd_bwd(inp, grad_out)
    ref_out, ref_grads = exact_fwd_bwd(inp, grad_out)
    assert_all_close_to_ref(out, (gv, gl, ga), ref_out, ref_grads, torch.float64)
    assert torch.all(gl[:, :, :, 0] == 0)
    assert torch.all(ga[:, :, :, 0] != 0)
    # Linearity in the weights.
    inp2 = inp.to(torch.float64)
    inp2.attention_weights.mul_(2.5)
    torch.testing.assert_close(npu_ops.msda(*inp2.args()), 2.5 * out, atol=1e-12, rtol=1e-12)


def test_heavy_scatter_contention():
    """All points of many queries hit the same few pixels: grad_value must not lose updates."""
    inp = make_msda_inputs(1, 300, 2, 8, [(2, 3), (1, 1)], 4, loc_mode="valid", seed=6)
    grad_out = make_grad_output(inp)
    out, grads = kernel_fwd_bwd(inp, grad_out)
    ref_out, ref_grads = reference_fwd_bwd(inp, grad_out)
    assert_all_close_to_ref(out, grads, ref_out, ref_grads, torch.float64)


def test_raw_backward_op_matches_autograd():
    inp = make_msda_inputs(2, 7, 3, 5, LEVELS_4, 2, seed=8)
    grad_out = make_grad_output(inp)
    _, grads = kernel_fwd_bwd(inp, grad_out)
    raw = torch.ops.npu_ops._msda_backward.default(grad_out, *inp.args())
    assert len(raw) == 3
    for a, b in zip(raw, grads):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    fwd = torch.ops.npu_ops.msda.default(*inp.args())
    torch.testing.assert_close(fwd, npu_ops.msda(*inp.args()), atol=0, rtol=0)


def test_needs_input_grad_subsets():
    """Only some inputs require grad: the others get None and the requested ones are unchanged."""
    inp = make_msda_inputs(1, 5, 2, 4, LEVELS_MMCV, 2, seed=9)
    grad_out = make_grad_output(inp)
    _, full = kernel_fwd_bwd(inp, grad_out)
    for which in range(3):
        tensors = [t.detach().clone() for t in inp.float_tensors]
        tensors[which].requires_grad_(True)
        v, loc, attn = tensors
        out = npu_ops.msda(v, inp.spatial_shapes, inp.level_start_index, loc, attn)
        out.backward(grad_out)
        for i, t in enumerate(tensors):
            if i == which:
                torch.testing.assert_close(t.grad, full[i], atol=0, rtol=0)
            else:
                assert t.grad is None
