"""Empty batches / queries, index dtypes, non-contiguous inputs, im2col_step, CPU shapes."""

from __future__ import annotations

import npu_ops
import pytest
import torch
from utils import (
    LEVELS_4,
    LEVELS_MMCV,
    MsdaInputs,
    assert_all_close_to_ref,
    assert_equal_tuple,
    kernel_fwd_bwd,
    make_grad_output,
    make_msda_inputs,
    reference_fwd_bwd,
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bs,nq", [(0, 4), (2, 0), (0, 0)])
def test_empty_batch_or_queries(bs, nq, dtype):
    inp = make_msda_inputs(bs, nq, 3, 5, LEVELS_4, 2, dtype=dtype, seed=51, requires_grad=True)
    out = npu_ops.msda(*inp.args())
    assert out.shape == (bs, nq, 15) and out.dtype == dtype
    grad_out = torch.ones_like(out)
    out.backward(grad_out)
    assert inp.value.grad.shape == inp.value.shape
    assert inp.sampling_locations.grad.shape == inp.sampling_locations.shape
    assert inp.attention_weights.grad.shape == inp.attention_weights.shape
    assert torch.all(inp.value.grad == 0)  # no query: nothing is scattered into value
    raw = torch.ops.npu_ops._msda_backward.default(grad_out.detach(), *[t.detach() for t in inp.args()])
    assert [tuple(g.shape) for g in raw] == [tuple(t.shape) for t in inp.float_tensors]


def test_empty_channels():
    inp = make_msda_inputs(2, 3, 2, 0, LEVELS_MMCV, 2, seed=52, requires_grad=True)
    out = npu_ops.msda(*inp.args())
    assert out.shape == (2, 3, 0)
    out.backward(torch.ones_like(out))
    assert torch.all(inp.sampling_locations.grad == 0) and torch.all(inp.attention_weights.grad == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_int32_and_int64_index_tensors_identical(dtype):
    inp = make_msda_inputs(2, 9, 3, 7, LEVELS_4, 3, dtype=dtype, seed=53)
    grad_out = make_grad_output(inp)
    results = []
    for shapes_dtype in (torch.int64, torch.int32):
        for starts_dtype in (torch.int64, torch.int32):
            variant = MsdaInputs(
                inp.value,
                inp.spatial_shapes.to(shapes_dtype),
                inp.level_start_index.to(starts_dtype),
                inp.sampling_locations,
                inp.attention_weights,
            )
            out, grads = kernel_fwd_bwd(variant, grad_out)
            results.append((out, *grads))
    for r in results[1:]:
        assert_equal_tuple(r, results[0], "int32/int64 index tensors")


def _noncontiguous(t: torch.Tensor, kind: str) -> torch.Tensor:
    """A non-contiguous view equal to ``t``."""
    if kind == "slice":  # every other element of a larger buffer along the last dim
        big = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
        big[..., ::2] = t
        view = big[..., ::2]
    elif kind == "permute":  # stored with the first two dims swapped
        view = t.transpose(0, 1).contiguous().transpose(0, 1)
    elif kind == "offset":  # a slice with a storage offset along dim 1
        big = torch.zeros(t.shape[0], t.shape[1] + 3, *t.shape[2:], dtype=t.dtype).transpose(0, 1).contiguous()
        big = big.transpose(0, 1)
        big[:, 3:] = t
        view = big[:, 3:]
    else:
        raise ValueError(kind)
    assert torch.equal(view, t)
    return view


@pytest.mark.parametrize("kind", ["slice", "permute", "offset"])
@pytest.mark.parametrize("which", ["value", "sampling_locations", "attention_weights", "grad_output", "all"])
def test_non_contiguous_inputs_match_contiguous_exactly(which, kind):
    inp = make_msda_inputs(2, 7, 3, 6, LEVELS_4, 3, dtype=torch.float32, seed=54)
    grad_out = make_grad_output(inp)
    expected_out, expected_grads = kernel_fwd_bwd(inp, grad_out)
    nc = MsdaInputs(*inp.args())
    go = grad_out
    for name in ("value", "sampling_locations", "attention_weights"):
        if which in (name, "all"):
            setattr(nc, name, _noncontiguous(getattr(inp, name), kind))
    if which in ("grad_output", "all"):
        go = _noncontiguous(grad_out, kind)
    assert which == "grad_output" or not all(t.is_contiguous() for t in nc.float_tensors)
    # Keep the non-contiguous leaves (kernel_fwd_bwd would clone them into contiguous tensors).
    leaves = [t.detach().requires_grad_() for t in nc.float_tensors]
    out = npu_ops.msda(leaves[0], nc.spatial_shapes, nc.level_start_index, leaves[1], leaves[2])
    grads = torch.autograd.grad(out, leaves, go)
    assert torch.equal(out, expected_out)
    assert_equal_tuple(grads, expected_grads, f"non-contiguous {which}")
    raw = torch.ops.npu_ops._msda_backward.default(go, *nc.args())
    assert_equal_tuple(raw, expected_grads, f"raw backward, non-contiguous {which}")


def test_non_contiguous_head_slice_of_value():
    """value taken as a head slice of a wider tensor (channels contiguous, pixel stride larger)."""
    inp = make_msda_inputs(2, 7, 3, 6, LEVELS_4, 3, dtype=torch.float32, seed=55)
    wide = torch.randn(2, inp.value.shape[1], 5, 6)
    wide[:, :, 1:4] = inp.value
    view = wide[:, :, 1:4]
    assert not view.is_contiguous()
    grad_out = make_grad_output(inp)
    expected = kernel_fwd_bwd(inp, grad_out)
    nc = MsdaInputs(view, *inp.args()[1:])
    leaves = [t.detach().requires_grad_() for t in nc.float_tensors]
    out = npu_ops.msda(leaves[0], nc.spatial_shapes, nc.level_start_index, leaves[1], leaves[2])
    grads = torch.autograd.grad(out, leaves, grad_out)
    assert torch.equal(out, expected[0])
    assert_equal_tuple(grads, expected[1], "head-sliced value")


def test_non_contiguous_index_tensors():
    inp = make_msda_inputs(1, 5, 2, 4, LEVELS_4, 2, seed=56)
    shapes_nc = inp.spatial_shapes.t().contiguous().t()
    starts_nc = torch.stack([inp.level_start_index, inp.level_start_index], 1)[:, 0]
    assert not shapes_nc.is_contiguous() and not starts_nc.is_contiguous()
    out = npu_ops.msda(inp.value, shapes_nc, starts_nc, inp.sampling_locations, inp.attention_weights)
    assert torch.equal(out, npu_ops.msda(*inp.args()))


@pytest.mark.parametrize("bs", [1, 3, 100])
def test_im2col_step_has_no_effect(bs):
    """Any positive im2col_step, divisor of bs or not (mmcv CUDA would assert bs % step == 0)."""
    inp = make_msda_inputs(bs, 3, 2, 4, LEVELS_MMCV, 2, dtype=torch.float32, seed=57)
    grad_out = make_grad_output(inp)
    results = [kernel_fwd_bwd(inp, grad_out, im2col_step=step) for step in (1, 3, 64, 1000)]
    for out, grads in results[1:]:
        assert torch.equal(out, results[0][0])
        assert_equal_tuple(grads, results[0][1], "im2col_step")
    out_default, _ = kernel_fwd_bwd(inp)
    assert torch.equal(out_default, results[0][0])


def test_spatial_shapes_on_cpu_and_python_ints_unaffected():
    inp = make_msda_inputs(1, 4, 2, 4, LEVELS_4, 2, seed=58)
    assert inp.spatial_shapes.device.type == "cpu" and inp.level_start_index.device.type == "cpu"
    out = npu_ops.msda(*inp.args())
    assert out.device.type == "cpu"
    # The index tensors are not modified.
    shapes0, starts0 = inp.spatial_shapes.clone(), inp.level_start_index.clone()
    npu_ops.msda(*inp.args())
    assert torch.equal(inp.spatial_shapes, shapes0) and torch.equal(inp.level_start_index, starts0)


def test_inputs_not_modified_by_forward_backward():
    inp = make_msda_inputs(2, 5, 2, 4, LEVELS_4, 2, dtype=torch.float32, seed=59)
    before = [t.clone() for t in inp.args()]
    grad_out = make_grad_output(inp)
    go_before = grad_out.clone()
    kernel_fwd_bwd(inp, grad_out)
    torch.ops.npu_ops._msda_backward.default(grad_out, *inp.args())
    for a, b in zip(inp.args(), before):
        assert torch.equal(a, b)
    assert torch.equal(grad_out, go_before)


def test_large_level_count_and_many_points():
    """L * P > 64 and 16 levels (beyond DrivingSDK's fast path)."""
    levels = [(1 + i % 3, 1 + (i * 5) % 4) for i in range(16)]
    inp = make_msda_inputs(1, 5, 2, 3, levels, 5, seed=60)
    grad_out = make_grad_output(inp)
    out, grads = kernel_fwd_bwd(inp, grad_out)
    ref_out, ref_grads = reference_fwd_bwd(inp, grad_out)
    assert_all_close_to_ref(out, grads, ref_out, ref_grads, torch.float64)


@pytest.mark.parametrize("layout", ["expand_batch", "channels_last", "expand_channels", "expand_heads"])
def test_strided_value_layouts(layout):
    """Stride-0 (expanded) and channels_last value tensors give exactly the contiguous results."""
    inp = make_msda_inputs(3, 7, 3, 6, LEVELS_4, 3, dtype=torch.float32, seed=61)
    v = inp.value
    if layout == "expand_batch":
        v = v[:1].expand(3, -1, -1, -1)
    elif layout == "channels_last":
        v = v.contiguous(memory_format=torch.channels_last)
    elif layout == "expand_channels":
        v = v[..., :1].expand(-1, -1, -1, 6)
    else:
        v = v[:, :, :1].expand(-1, -1, 3, -1)
    grad_out = make_grad_output(inp)
    strided = MsdaInputs(v, *inp.args()[1:])
    dense = MsdaInputs(v.contiguous(), *inp.args()[1:])
    assert torch.equal(npu_ops.msda(*strided.args()), npu_ops.msda(*dense.args()))
    assert_equal_tuple(
        torch.ops.npu_ops._msda_backward.default(grad_out, *strided.args()),
        torch.ops.npu_ops._msda_backward.default(grad_out, *dense.args()),
        layout,
    )
    # Expanded locations / weights / grad_output too.
    loc = inp.sampling_locations[:1].expand(3, -1, -1, -1, -1, -1)
    attn = inp.attention_weights[:1].expand(3, -1, -1, -1, -1)
    go = grad_out[:1].expand(3, -1, -1)
    a = MsdaInputs(inp.value, inp.spatial_shapes, inp.level_start_index, loc, attn)
    b = MsdaInputs(inp.value, inp.spatial_shapes, inp.level_start_index, loc.contiguous(), attn.contiguous())
    assert torch.equal(npu_ops.msda(*a.args()), npu_ops.msda(*b.args()))
    assert_equal_tuple(
        torch.ops.npu_ops._msda_backward.default(go, *a.args()),
        torch.ops.npu_ops._msda_backward.default(go.contiguous(), *b.args()),
        "expanded loc/attn/grad_output",
    )
