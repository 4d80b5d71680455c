"""mmcv-compatible MultiScaleDeformableAttnFunction and MultiScaleDeformableAttention."""

from __future__ import annotations

import math
import sys

import npu_ops
import pytest
import torch
from npu_ops.msda import (
    MultiScaleDeformableAttention,
    MultiScaleDeformableAttnFunction,
    multi_scale_deformable_attn_pytorch,
)
from utils import LEVELS_4, LEVELS_MMCV, assert_equal_tuple, make_grad_output, make_msda_inputs, shapes_and_starts

# ---------------------------------------------------------------------------------------------- Function


def _function_fwd_bwd(inp, grad_out, im2col_step=64):
    v, loc, attn = (t.detach().clone().requires_grad_() for t in inp.float_tensors)
    out = MultiScaleDeformableAttnFunction.apply(v, inp.spatial_shapes, inp.level_start_index, loc, attn, im2col_step)
    grads = torch.autograd.grad(out, (v, loc, attn), grad_out)
    return out.detach(), grads


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_function_matches_msda(dtype):
    inp = make_msda_inputs(2, 9, 3, 6, LEVELS_4, 3, dtype=dtype, seed=71)
    grad_out = make_grad_output(inp)
    out, grads = _function_fwd_bwd(inp, grad_out, im2col_step=2)
    v, loc, attn = (t.detach().clone().requires_grad_() for t in inp.float_tensors)
    ref = npu_ops.msda(v, inp.spatial_shapes, inp.level_start_index, loc, attn)
    ref_grads = torch.autograd.grad(ref, (v, loc, attn), grad_out)
    assert torch.equal(out, ref.detach())
    assert_equal_tuple(grads, ref_grads, "Function vs msda grads")


def test_function_backward_matches_raw_backward_op():
    inp = make_msda_inputs(1, 5, 2, 4, LEVELS_MMCV, 2, dtype=torch.float32, seed=72)
    grad_out = make_grad_output(inp)
    _, grads = _function_fwd_bwd(inp, grad_out)
    raw = torch.ops.npu_ops._msda_backward.default(grad_out, *inp.args())
    assert_equal_tuple(grads, raw, "Function backward vs _msda_backward")


def test_function_mixed_dtypes_amp():
    """value fp16, locations / weights fp32 (mmcv casts with type_as): grads come back in the inputs' dtypes."""
    inp = make_msda_inputs(1, 5, 2, 8, LEVELS_MMCV, 2, dtype=torch.float32, seed=73)
    v = inp.value.half().requires_grad_()
    loc = inp.sampling_locations.clone().requires_grad_()
    attn = inp.attention_weights.clone().requires_grad_()
    out = MultiScaleDeformableAttnFunction.apply(v, inp.spatial_shapes, inp.level_start_index, loc, attn, 64)
    assert out.dtype == torch.float16
    out.backward(torch.ones_like(out))
    assert v.grad.dtype == torch.float16
    assert loc.grad.dtype == torch.float32 and attn.grad.dtype == torch.float32
    v2, loc2, attn2 = (t.detach().clone().requires_grad_() for t in (v, loc, attn))
    npu_ops.msda(v2, inp.spatial_shapes, inp.level_start_index, loc2, attn2).backward(torch.ones_like(out))
    assert_equal_tuple((v.grad, loc.grad, attn.grad), (v2.grad, loc2.grad, attn2.grad), "mixed dtypes")


def test_function_no_double_backward():
    """@once_differentiable, as in mmcv: differentiating the gradients raises."""
    inp = make_msda_inputs(1, 3, 2, 4, LEVELS_MMCV, 2, seed=74, requires_grad=True)
    out = MultiScaleDeformableAttnFunction.apply(*inp.args(), 64)
    grads = torch.autograd.grad(out.square().sum(), inp.float_tensors, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        sum(g.sum() for g in grads).backward()


def test_function_rejects_bad_im2col_step():
    inp = make_msda_inputs(1, 3, 2, 4, LEVELS_MMCV, 2, seed=75)
    with pytest.raises(ValueError, match="im2col_step"):
        MultiScaleDeformableAttnFunction.apply(*inp.args(), 0)


# ---------------------------------------------------------------------------------------------- Module

EMBED, HEADS, LEVELS, POINTS = 32, 4, 2, 2
MODULE_LEVELS = [(6, 5), (3, 3)]


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Random parameters (the default init makes offsets independent of the query)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) * 0.3)


def _reference_msda(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step=64):
    return multi_scale_deformable_attn_pytorch(value, spatial_shapes, sampling_locations, attention_weights)


def _module_inputs(batch_first: bool, bs: int = 2, nq: int = 7, ref_dim: int = 2, seed: int = 0, mask: bool = False):
    gen = torch.Generator().manual_seed(seed)
    shapes, starts = shapes_and_starts(MODULE_LEVELS)
    nk = sum(h * w for h, w in MODULE_LEVELS)
    query = torch.randn(bs, nq, EMBED, generator=gen, dtype=torch.float64)
    value = torch.randn(bs, nk, EMBED, generator=gen, dtype=torch.float64)
    if ref_dim == 2:
        ref = torch.rand(bs, nq, LEVELS, 2, generator=gen, dtype=torch.float64)
    else:
        ref = torch.cat(
            [
                torch.rand(bs, nq, LEVELS, 2, generator=gen, dtype=torch.float64),
                0.05 + 0.5 * torch.rand(bs, nq, LEVELS, 2, generator=gen, dtype=torch.float64),
            ],
            -1,
        )
    kwargs = dict(reference_points=ref, spatial_shapes=shapes, level_start_index=starts)
    if mask:
        kwargs["key_padding_mask"] = torch.rand(bs, nk, generator=gen) < 0.3
    if not batch_first:
        query, value = query.transpose(0, 1), value.transpose(0, 1)
    return query, value, kwargs


def _run_module(module, query, value, kwargs, grad_seed=1):
    query = query.detach().clone().requires_grad_()
    value = value.detach().clone().requires_grad_()
    module.zero_grad()
    out = module(query, value=value, **kwargs)
    gen = torch.Generator().manual_seed(grad_seed)
    grad_out = torch.randn(out.shape, generator=gen, dtype=out.dtype)
    out.backward(grad_out)
    grads = {n: p.grad.clone() for n, p in module.named_parameters()}
    return out.detach(), query.grad, value.grad, grads


@pytest.mark.parametrize("ref_dim", [2, 4])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("ratio", [1.0, 0.5])
@pytest.mark.parametrize("mask", [False, True], ids=["nomask", "mask"])
def test_module_matches_pytorch_reference(ref_dim, batch_first, ratio, mask, monkeypatch):
    module = MultiScaleDeformableAttention(
        embed_dims=EMBED,
        num_heads=HEADS,
        num_levels=LEVELS,
        num_points=POINTS,
        batch_first=batch_first,
        value_proj_ratio=ratio,
        dropout=0.0,
    ).double()
    _randomize(module, seed=ref_dim + 10 * batch_first)
    query, value, kwargs = _module_inputs(batch_first, ref_dim=ref_dim, mask=mask, seed=3)
    out, gq, gv, gp = _run_module(module, query, value, kwargs)
    assert out.shape == query.shape
    msda_module = sys.modules["npu_ops.msda.module"]
    monkeypatch.setattr(msda_module, "msda", _reference_msda)
    r_out, r_gq, r_gv, r_gp = _run_module(module, query, value, kwargs)
    torch.testing.assert_close(out, r_out, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(gq, r_gq, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(gv, r_gv, atol=1e-10, rtol=1e-10)
    for name in gp:
        torch.testing.assert_close(gp[name], r_gp[name], atol=1e-10, rtol=1e-10, msg=lambda m, n=name: f"{n}: {m}")


def test_module_batch_first_equivalence():
    mods = []
    for bf in (False, True):
        m = MultiScaleDeformableAttention(EMBED, HEADS, LEVELS, POINTS, batch_first=bf, dropout=0.0).double()
        _randomize(m, seed=5)
        mods.append(m)
    q, v, kw = _module_inputs(batch_first=True, seed=6)
    out_bf = mods[1](q, value=v, **kw)
    out_sf = mods[0](q.transpose(0, 1), value=v.transpose(0, 1), **kw)
    torch.testing.assert_close(out_sf.transpose(0, 1), out_bf, atol=1e-12, rtol=1e-12)


def test_module_identity_query_pos_and_default_value():
    m = MultiScaleDeformableAttention(EMBED, HEADS, LEVELS, POINTS, batch_first=True, dropout=0.0).double()
    _randomize(m, seed=7)
    gen = torch.Generator().manual_seed(8)
    nk = sum(h * w for h, w in MODULE_LEVELS)
    q, _, kw = _module_inputs(batch_first=True, nq=nk, seed=9)
    pos = torch.randn(q.shape, generator=gen, dtype=torch.float64)
    ident = torch.randn(q.shape, generator=gen, dtype=torch.float64)
    out = m(q, query_pos=pos, identity=ident, **kw)  # value defaults to query (before query_pos)
    expected = m(q + pos, value=q, identity=ident, **kw)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    out_res = m(q, **kw)
    torch.testing.assert_close(out_res - q, m(q, identity=torch.zeros_like(q), **kw), atol=1e-12, rtol=0)
    with pytest.warns(DeprecationWarning, match="residual"):
        out_dep = m(q, residual=ident, **kw)
    torch.testing.assert_close(out_dep, m(q, identity=ident, **kw), atol=0, rtol=0)


def test_module_key_padding_mask_zeroes_value_rows():
    """Masked keys do not influence the output (their value rows are zeroed)."""
    m = MultiScaleDeformableAttention(EMBED, HEADS, LEVELS, POINTS, batch_first=True, dropout=0.0).double()
    _randomize(m, seed=11)
    q, v, kw = _module_inputs(batch_first=True, seed=12, mask=True)
    out = m(q, value=v, **kw)
    v2 = v.clone()
    v2[kw["key_padding_mask"]] = 1e3  # changing masked rows changes nothing
    torch.testing.assert_close(m(q, value=v2, **kw), out, atol=0, rtol=0)


def test_module_mmcv_parameter_names_and_init():
    m = MultiScaleDeformableAttention(embed_dims=32, num_heads=4, num_levels=2, num_points=2, value_proj_ratio=0.5)
    shapes = {n: tuple(p.shape) for n, p in m.state_dict().items()}
    assert shapes == {
        "sampling_offsets.weight": (4 * 2 * 2 * 2, 32),
        "sampling_offsets.bias": (4 * 2 * 2 * 2,),
        "attention_weights.weight": (4 * 2 * 2, 32),
        "attention_weights.bias": (4 * 2 * 2,),
        "value_proj.weight": (16, 32),
        "value_proj.bias": (16,),
        "output_proj.weight": (32, 16),
        "output_proj.bias": (32,),
    }
    # Deformable-DETR init: zero offset weights, ring of directions scaled by point index, uniform attention.
    assert torch.all(m.sampling_offsets.weight == 0)
    bias = m.sampling_offsets.bias.view(4, 2, 2, 2)
    for h in range(4):
        theta = 2 * math.pi * h / 4
        d = torch.tensor([math.cos(theta), math.sin(theta)])
        d = d / d.abs().max()
        for p in range(2):
            torch.testing.assert_close(bias[h, :, p], (p + 1) * d.expand(2, 2).float(), atol=1e-6, rtol=0)
    assert torch.all(m.attention_weights.weight == 0) and torch.all(m.attention_weights.bias == 0)
    assert "embed_dims=32" in repr(m) and "num_heads=4" in repr(m)


def test_module_invalid_configs():
    with pytest.raises(ValueError, match=r"embed_dims must be divisible by num_heads.*256.*7"):
        MultiScaleDeformableAttention(embed_dims=256, num_heads=7)
    with pytest.raises(ValueError, match="value_proj_ratio"):
        MultiScaleDeformableAttention(embed_dims=32, num_heads=4, value_proj_ratio=0.3)
    m = MultiScaleDeformableAttention(EMBED, HEADS, LEVELS, POINTS, batch_first=True)
    q, v, kw = _module_inputs(batch_first=True)
    q, v = q.float(), v.float()
    bad = dict(kw, reference_points=torch.rand(2, 7, LEVELS, 3))
    with pytest.raises(ValueError, match=r"reference_points must end in 2 \(points\) or 4 \(boxes\)"):
        m(q, value=v, **bad)
    with pytest.raises(ValueError, match="reference_points, spatial_shapes and level_start_index are required"):
        m(q, value=v)


def test_module_mmcv_test_config_channels_1():
    """mmcv's own module test: embed_dims=3, num_heads=3 (C = 1), levels [[2, 2], [1, 1]]."""
    m = MultiScaleDeformableAttention(embed_dims=3, num_heads=3, num_levels=2, num_points=2, batch_first=True)
    shapes, starts = shapes_and_starts([(2, 2), (1, 1)])
    q = torch.rand(1, 5, 3)
    v = torch.rand(1, 5, 3)
    ref = torch.rand(1, 5, 2, 2)
    out = m(q, value=v, reference_points=ref, spatial_shapes=shapes, level_start_index=starts)
    assert out.shape == (1, 5, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_module_train_step_changes_loss_and_is_deterministic():
    def step():
        torch.manual_seed(0)
        m = MultiScaleDeformableAttention(EMBED, HEADS, LEVELS, POINTS, batch_first=True, dropout=0.0)
        _randomize(m, seed=13)
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        q, v, kw = _module_inputs(batch_first=True, seed=14)
        q, v = q.float(), v.float()
        kw["reference_points"] = kw["reference_points"].float()
        losses = []
        for _ in range(3):
            opt.zero_grad()
            loss = m(q, value=v, **kw).square().mean()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses, [p.detach().clone() for p in m.parameters()]

    l1, p1 = step()
    l2, p2 = step()
    assert l1 == l2 and l1[-1] < l1[0]
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
