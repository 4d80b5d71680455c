"""NaN / +Inf / -Inf (and huge) sampling locations: the point is dropped with zero gradients."""

from __future__ import annotations

import npu_ops
import pytest
import torch
from utils import (
    LEVELS_4,
    assert_close_to_ref,
    kernel_fwd_bwd,
    make_grad_output,
    make_msda_inputs,
    reference_fwd_bwd,
)

NAN, INF = float("nan"), float("inf")


def _poison(inp, mask, bad_value, coord):
    """Set the (x / y / both) location of the points in ``mask`` to ``bad_value``.

    Returns the reference inputs: those points' weights zeroed and locations replaced by 0.5.
    """
    loc = inp.sampling_locations
    if coord in ("x", "xy"):
        loc[..., 0][mask] = bad_value
    if coord in ("y", "xy"):
        loc[..., 1][mask] = bad_value
    ref = inp.to(torch.float64)
    ref.sampling_locations[mask] = 0.5
    ref.attention_weights[mask] = 0.0
    return ref


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("bad", [NAN, INF, -INF, 1e30, -3e38], ids=["nan", "inf", "-inf", "1e30", "-3e38"])
@pytest.mark.parametrize("coord", ["x", "y", "xy"])
def test_some_points_nonfinite(bad, coord, dtype):
    inp = make_msda_inputs(2, 9, 3, 5, LEVELS_4, 3, dtype=dtype, seed=21)
    gen = torch.Generator().manual_seed(22)
    mask = torch.rand(inp.attention_weights.shape, generator=gen) < 0.3
    ref_inp = _poison(inp, mask, bad, coord)
    grad_out = make_grad_output(inp)

    out, (gv, gl, ga) = kernel_fwd_bwd(inp, grad_out)
    ref_out, (rgv, rgl, rga) = reference_fwd_bwd(ref_inp, grad_out)

    assert torch.isfinite(out).all() and torch.isfinite(gv).all()
    assert_close_to_ref(out, ref_out, dtype, "output")
    assert_close_to_ref(gv, rgv, dtype, "grad_value")
    # Gradients of the dropped points are exactly zero ...
    assert torch.all(gl[mask] == 0), gl[mask]
    assert torch.all(ga[mask] == 0), ga[mask]
    # ... and the other points' gradients are the reference's.
    keep = ~mask
    assert_close_to_ref(gl[keep], rgl[keep], dtype, "grad_sampling_locations")
    assert_close_to_ref(ga[keep], rga[keep], dtype, "grad_attention_weights")


@pytest.mark.parametrize("bad", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
def test_all_points_nonfinite(bad):
    inp = make_msda_inputs(2, 5, 2, 4, LEVELS_4, 2, dtype=torch.float32, seed=23)
    inp.sampling_locations.fill_(bad)
    grad_out = make_grad_output(inp)
    out, (gv, gl, ga) = kernel_fwd_bwd(inp, grad_out)
    for name, t in (("output", out), ("grad_value", gv), ("grad_loc", gl), ("grad_attn", ga)):
        assert torch.all(t == 0), f"{name} not all zero: {t}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("bad", [NAN, INF], ids=["nan", "inf"])
def test_all_inputs_nonfinite_drivingsdk(bad, dtype):
    """DrivingSDK's test_nan / test_inf: value, locations, weights and grad_out all NaN (or Inf).

    Every location is non-finite, so every point is dropped: output and all three grads are 0."""
    inp = make_msda_inputs(2, 6, 2, 8, LEVELS_4, 2, dtype=dtype, seed=24)
    for t in inp.float_tensors:
        t.fill_(bad)
    grad_out = torch.full(inp.out_shape(), bad, dtype=dtype)
    out, grads = kernel_fwd_bwd(inp, grad_out)
    assert out.dtype == dtype
    assert torch.all(out == 0), out
    for name, g in zip(("grad_value", "grad_loc", "grad_attn"), grads):
        assert g.dtype == dtype
        assert torch.all(g == 0), f"{name}: {g}"


def test_nan_point_on_every_level_and_head():
    """A query whose every point is NaN gets an exactly zero output row; its neighbours are unaffected."""
    inp = make_msda_inputs(1, 4, 2, 3, LEVELS_4, 2, seed=25)
    clean = npu_ops.msda(*inp.args())
    inp.sampling_locations[0, 2] = NAN
    out = npu_ops.msda(*inp.args())
    assert torch.all(out[0, 2] == 0)
    torch.testing.assert_close(out[0, [0, 1, 3]], clean[0, [0, 1, 3]], atol=0, rtol=0)
