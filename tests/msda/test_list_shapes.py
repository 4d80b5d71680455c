"""``npu_ops.msda`` takes ``spatial_shapes`` as a list of (h, w) and ``level_start_index=None`` (issue 15 item 3)."""

from __future__ import annotations

import npu_ops
import pytest
import torch
from npu_ops.msda import multi_scale_deformable_attn_pytorch
from utils import LEVELS_4, make_msda_inputs


def _inp():
    return make_msda_inputs(2, 5, 3, 4, LEVELS_4, 2, dtype=torch.float64, seed=151)


def _expected(inp):
    return npu_ops.msda(*inp.args())


@pytest.mark.parametrize("form", ["list", "tuple", "list_of_lists", "tensor"])
def test_shapes_forms_with_derived_starts(form):
    inp = _inp()
    shapes = {
        "list": list(LEVELS_4),
        "tuple": tuple(LEVELS_4),
        "list_of_lists": [list(hw) for hw in LEVELS_4],
        "tensor": inp.spatial_shapes,
    }[form]
    out = npu_ops.msda(inp.value, shapes, None, inp.sampling_locations, inp.attention_weights)
    torch.testing.assert_close(out, _expected(inp), rtol=0, atol=0)
    kw = npu_ops.msda(
        inp.value, shapes, sampling_locations=inp.sampling_locations, attention_weights=inp.attention_weights
    )
    torch.testing.assert_close(kw, out, rtol=0, atol=0)


def test_list_with_explicit_starts():
    inp = _inp()
    out = npu_ops.msda(inp.value, list(LEVELS_4), inp.level_start_index, inp.sampling_locations, inp.attention_weights)
    torch.testing.assert_close(out, _expected(inp), rtol=0, atol=0)


def test_function_form_order_matches_reference():
    """msda(value, shapes, sampling_locations, attention_weights): the multi_scale_deformable_attn_pytorch order."""
    inp = _inp()
    out = npu_ops.msda(inp.value, list(LEVELS_4), inp.sampling_locations, inp.attention_weights)
    torch.testing.assert_close(out, _expected(inp), rtol=0, atol=0)
    ref = multi_scale_deformable_attn_pytorch(
        inp.value, inp.spatial_shapes, inp.sampling_locations, inp.attention_weights
    )
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_list_form_gradients():
    inp = _inp().requires_grad_()
    go = torch.randn(inp.out_shape(), dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    a = torch.autograd.grad(npu_ops.msda(*inp.args()), inp.float_tensors, go)
    b = torch.autograd.grad(
        npu_ops.msda(inp.value, list(LEVELS_4), inp.sampling_locations, inp.attention_weights), inp.float_tensors, go
    )
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_list_form_compiles_fullgraph(dynamic):
    torch._dynamo.reset()
    inp = _inp()
    levels = list(LEVELS_4)

    def f(v, loc, attn):
        return npu_ops.msda(v, levels, None, loc, attn)

    out = torch.compile(f, fullgraph=True, dynamic=dynamic, backend="aot_eager")(
        inp.value, inp.sampling_locations, inp.attention_weights
    )
    torch.testing.assert_close(out, _expected(inp), rtol=0, atol=0)


def test_tensor_shapes_derived_starts_compiles_fullgraph():
    torch._dynamo.reset()
    inp = _inp()

    def f(v, shapes, loc, attn):
        return npu_ops.msda(v, shapes, None, loc, attn)

    out = torch.compile(f, fullgraph=True, backend="aot_eager")(
        inp.value, inp.spatial_shapes, inp.sampling_locations, inp.attention_weights
    )
    torch.testing.assert_close(out, _expected(inp), rtol=0, atol=0)


BAD_LISTS = {
    "empty": ([], r"spatial_shapes.*empty"),
    "triple": ([(6, 4, 1), (3, 2), (1, 1), (1, 5)], r"spatial_shapes.*entry 0 is \(6, 4, 1\).*pair"),
    "float": ([(6, 4), (3.0, 2), (1, 1), (1, 5)], r"entry 1 is \(3.0, 2\).*expected ints, got float, int"),
    "zero": ([(6, 4), (3, 2), (0, 1), (1, 5)], r"entry 2 is \(0, 1\).*h >= 1 and w >= 1"),
    "bool": ([(6, 4), (3, 2), (1, True), (1, 5)], r"entry 2 .*expected ints, got int, bool"),
    "scalar": ([6, (3, 2), (1, 1), (1, 5)], r"entry 0 is 6 .*pair"),
    "tensor_entry": ([torch.tensor([6, 4]), (3, 2), (1, 1), (1, 5)], r"entry 0 is tensor.*pair"),
    "two_bad": ([(6, 4), (3, -2), (1, 1), (1.5, 5)], r"entry 1 is \(3, -2\).*; entry 3 is \(1.5, 5\)"),
}


@pytest.mark.parametrize("case", list(BAD_LISTS), ids=list(BAD_LISTS))
def test_bad_lists_name_every_problem(case):
    shapes, pattern = BAD_LISTS[case]
    inp = _inp()
    with pytest.raises(ValueError, match=pattern):
        npu_ops.msda(inp.value, shapes, None, inp.sampling_locations, inp.attention_weights)


def test_list_not_matching_value_names_keys():
    inp = _inp()
    with pytest.raises(RuntimeError, match="spatial_shapes|num_keys|value"):
        npu_ops.msda(inp.value, [(6, 4), (3, 2), (1, 1), (1, 6)], None, inp.sampling_locations, inp.attention_weights)


def test_wrong_level_count_names_levels():
    inp = _inp()
    with pytest.raises(RuntimeError, match=r"sampling_locations .*num_levels.*expected 3"):
        npu_ops.msda(inp.value, [(6, 4), (3, 2), (1, 1)], None, inp.sampling_locations, inp.attention_weights)


@pytest.mark.parametrize("bad", ["6x4", 3, None], ids=["str", "int", "none"])
def test_bad_shapes_type(bad):
    inp = _inp()
    with pytest.raises(TypeError, match="spatial_shapes must be a torch.Tensor .* or a list/tuple of \\(h, w\\)"):
        npu_ops.msda(inp.value, bad, None, inp.sampling_locations, inp.attention_weights)


def test_derived_starts_need_2d_shapes():
    inp = _inp()
    with pytest.raises(ValueError, match=r"spatial_shapes must be 2-D \[num_levels, 2\].*got \(8,\)"):
        npu_ops.msda(inp.value, inp.spatial_shapes.flatten(), None, inp.sampling_locations, inp.attention_weights)


def test_missing_attention_weights_is_clear():
    inp = _inp()
    with pytest.raises(TypeError, match="attention_weights must be a torch.Tensor, got NoneType"):
        npu_ops.msda(inp.value, list(LEVELS_4), inp.level_start_index, inp.sampling_locations)
