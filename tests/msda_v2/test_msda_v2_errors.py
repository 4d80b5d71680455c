"""Invalid msda_v2 inputs raise a clean exception naming the argument, the expected and the actual value."""

from __future__ import annotations

import random

import npu_ops
import pytest
import torch
from v2_utils import LEVELS_SQ, make_inputs

ERRORS = (RuntimeError, ValueError, TypeError)


def _inp():
    return make_inputs(2, 5, 3, 4, LEVELS_SQ, [2, 3, 1], dtype=torch.float32, seed=3)


def _call(value=None, shapes=None, loc=None, attn=None, npl=None, method="default", **kw):
    inp = _inp()
    return npu_ops.msda_v2(
        inp.value if value is None else value,
        inp.levels if shapes is None else shapes,
        inp.loc if loc is None else loc,
        inp.attn if attn is None else attn,
        inp.npl if npl is None else npl,
        method,
        **kw,
    )


CASES = {
    "value_ndim": (dict(value=_inp().value[0]), r"value must be 4-D .*got 3-D"),
    "loc_ndim": (dict(loc=_inp().loc[..., 0]), r"sampling_locations must be 5-D .*got 4-D"),
    "attn_ndim": (dict(attn=_inp().attn[..., None]), r"attention_weights must be 4-D .*got 5-D"),
    "npl_sum": (dict(npl=[2, 3, 2]), r"sampling_locations must have shape .*\[2, 5, 3, 7, 2\], got \[2, 5, 3, 6, 2\]"),
    "npl_len": (dict(npl=[3, 3]), r"num_points_list must have one entry per level \(num_levels = 3\), got 2"),
    "npl_zero": (dict(npl=[0, 5, 1]), r"num_points_list must be a non-empty list of ints >= 1.*entry 0 is 0"),
    "npl_float": (dict(npl=[2.0, 3, 1]), r"entry 0 is 2.0"),
    "npl_tensor": (dict(npl=torch.tensor([2, 3, 1])), r"num_points_list must be a list of ints, got Tensor"),
    "method": (dict(method="nearest"), r"method must be \"default\" or \"discrete\", got 'nearest'"),
    "keys": (dict(shapes=[(6, 6), (3, 3), (1, 2)]), r"value.shape\[1\] \(num_keys\) must equal .* = 47, got 46"),
    "bad_shape_entry": (dict(shapes=[(6, 6), (3, 0), (1, 1)]), r"msda_v2: spatial_shapes .*entry 1 is \(3, 0\)"),
    "int_value": (dict(value=_inp().value.long()), r"value must be float32, float64, float16 or bfloat16"),
    "int_loc": (dict(loc=_inp().loc.long()), r"sampling_locations must be a floating-point tensor"),
    "loc_not_tensor": (dict(loc=[1.0]), r"sampling_locations must be a torch.Tensor, got list"),
    "starts": (dict(level_start_index=torch.tensor([0, 36, 44])), r"level_start_index\[2\] must be 45"),
    "starts_dtype": (dict(level_start_index=torch.tensor([0.0, 36, 45])), r"level_start_index must have dtype int32"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_message(case):
    kw, pattern = CASES[case]
    with pytest.raises(ERRORS, match=pattern):
        _call(**kw)


def test_grad_output_checked():
    inp = _inp()
    starts = torch.tensor([0, 36, 45])
    with pytest.raises(RuntimeError, match=r"grad_output must have shape \[bs, num_queries, num_heads\*channels\]"):
        torch.ops.npu_ops._msda_v2_backward.default(
            torch.zeros(2, 5, 11), inp.value, inp.shapes, starts, inp.loc, inp.attn, inp.npl, "default"
        )


def test_dispatcher_op_checks_method_and_list():
    inp = _inp()
    starts = torch.tensor([0, 36, 45])
    with pytest.raises(RuntimeError, match=r"method must be \"default\" or \"discrete\", got \"bilinear\""):
        torch.ops.npu_ops.msda_v2.default(inp.value, inp.shapes, starts, inp.loc, inp.attn, inp.npl, "bilinear")
    with pytest.raises(RuntimeError, match=r"num_points_list\[1\] must be >= 1, got -1"):
        torch.ops.npu_ops.msda_v2.default(inp.value, inp.shapes, starts, inp.loc, inp.attn, [2, -1, 5], "default")


def test_fuzz_shapes_never_crash():
    """Random perturbations of every shape: either a clean error or a result equal in shape to the contract."""
    rng = random.Random(0)
    for _ in range(150):
        bs, nq, heads, ch = rng.randint(0, 2), rng.randint(0, 3), rng.randint(1, 3), rng.randint(1, 4)
        levels = [(rng.randint(1, 3), rng.randint(1, 3)) for _ in range(rng.randint(1, 3))]
        npl = [rng.randint(1, 3) for _ in levels]
        nk = sum(h * w for h, w in levels)
        shape_v = [bs, nk, heads, ch]
        shape_l = [bs, nq, heads, sum(npl), 2]
        for shp in (shape_v, shape_l):
            if rng.random() < 0.3:
                i = rng.randrange(len(shp))
                shp[i] = max(0, shp[i] + rng.choice([-1, 1]))
        npl_call = list(npl) if rng.random() < 0.8 else [rng.randint(-1, 3) for _ in range(rng.randint(0, 4))]
        method = rng.choice(["default", "discrete", "bogus"]) if rng.random() < 0.2 else "default"
        try:
            out = npu_ops.msda_v2(
                torch.randn(shape_v), levels, torch.rand(shape_l), torch.rand(shape_l[:4]), npl_call, method
            )
        except ERRORS as e:
            assert "npu_ops.msda_v2" in str(e)
            continue
        assert out.shape == (shape_v[0], shape_l[1], shape_v[2] * shape_v[3])
