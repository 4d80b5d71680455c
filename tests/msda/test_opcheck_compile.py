"""torch.library.opcheck, FakeTensorMode and torch.compile(fullgraph, dynamic) for the msda ops."""

from __future__ import annotations

import npu_ops
import npu_ops.msda.ops
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from utils import LEVELS_4, LEVELS_5, LEVELS_MMCV, make_grad_output, make_msda_inputs

OPCHECK_SAMPLES = [
    # (bs, nq, heads, channels, levels, points, dtype, seed)
    (1, 3, 2, 4, LEVELS_MMCV, 2, torch.float64, 0),
    (2, 5, 3, 5, LEVELS_4, 3, torch.float32, 1),
]


def _sample_id(s):
    return f"{str(s[6]).split('.')[-1]}-bs{s[0]}-nq{s[1]}"


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("sample", OPCHECK_SAMPLES, ids=[_sample_id(s) for s in OPCHECK_SAMPLES])
def test_opcheck_msda(sample, requires_grad):
    bs, nq, heads, channels, levels, points, dtype, seed = sample
    inp = make_msda_inputs(bs, nq, heads, channels, levels, points, dtype=dtype, seed=seed)
    if requires_grad:
        inp = inp.requires_grad_()
    torch.library.opcheck(torch.ops.npu_ops.msda.default, inp.args())


@pytest.mark.parametrize("sample", OPCHECK_SAMPLES, ids=[_sample_id(s) for s in OPCHECK_SAMPLES])
def test_opcheck_msda_backward(sample):
    bs, nq, heads, channels, levels, points, dtype, seed = sample
    inp = make_msda_inputs(bs, nq, heads, channels, levels, points, dtype=dtype, seed=seed)
    grad_out = make_grad_output(inp)
    torch.library.opcheck(torch.ops.npu_ops._msda_backward.default, (grad_out, *inp.args()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_fake_tensor_mode_shapes(dtype):
    inp = make_msda_inputs(2, 7, 3, 5, LEVELS_4, 2, dtype=dtype, seed=2)
    grad_out = make_grad_output(inp)
    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(t) for t in inp.args()]
        fake_go = mode.from_tensor(grad_out)
        out = torch.ops.npu_ops.msda.default(*fake)
        gv, gl, ga = torch.ops.npu_ops._msda_backward.default(fake_go, *fake)
    assert out.shape == (2, 7, 15) and out.dtype == dtype
    assert gv.shape == inp.value.shape and gv.dtype == dtype
    assert gl.shape == inp.sampling_locations.shape and gl.dtype == dtype
    assert ga.shape == inp.attention_weights.shape and ga.dtype == dtype


def test_fake_tensor_mode_rejects_bad_shapes():
    inp = make_msda_inputs(2, 7, 3, 5, LEVELS_4, 2, seed=3)
    with FakeTensorMode() as mode:
        v, shapes, starts, loc, attn = (mode.from_tensor(t) for t in inp.args())
        with pytest.raises((RuntimeError, ValueError), match="attention_weights"):
            torch.ops.npu_ops.msda.default(v, shapes, starts, loc, attn[:, :, :2])
        with pytest.raises((RuntimeError, ValueError), match="sampling_locations"):
            torch.ops.npu_ops.msda.default(v, shapes, starts, loc[..., :1], attn)
        with pytest.raises((RuntimeError, ValueError), match="value"):
            torch.ops.npu_ops.msda.default(v[0], shapes, starts, loc, attn)


def _eager_and_compiled(fn, compiled, inp, grad_out):
    results = []
    for f in (fn, compiled):
        v, loc, attn = (t.detach().clone().requires_grad_() for t in inp.float_tensors)
        out = f(v, inp.spatial_shapes, inp.level_start_index, loc, attn)
        grads = torch.autograd.grad(out, (v, loc, attn), grad_out)
        results.append((out.detach(), grads))
    return results


MSDA_CALLABLES = {
    # ``npu_ops.msda(...)``: the documented spelling (the subpackage is callable).
    "npu_ops.msda": lambda *a: npu_ops.msda(*a),
    "npu_ops.msda.ops.msda": lambda *a: npu_ops.msda.ops.msda(*a),
}


@pytest.mark.parametrize("spelling", list(MSDA_CALLABLES))
def test_torch_compile_dynamic_fullgraph(spelling, dynamo_reset):
    from torch._dynamo.testing import CompileCounterWithBackend

    call = MSDA_CALLABLES[spelling]

    def fn(value, shapes, starts, loc, attn):
        return call(value, shapes, starts, loc * 1.0, attn.softmax(-1)) * 2.0

    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(fn, backend=counter, fullgraph=True, dynamic=True)
    # All sizes distinct on the first call (bs 3, nq 11, heads 4, C 6, L 5, P 7, keys 55): duck shaping
    # would otherwise tie equal sizes together (and tie a size 2 to loc's last dim, which is static).
    for bs, nq, seed in ((3, 11, 0), (6, 13, 1)):
        inp = make_msda_inputs(bs, nq, 4, 6, LEVELS_5, 7, dtype=torch.float32, seed=seed)
        grad_out = make_grad_output(inp)
        (eo, eg), (co, cg) = _eager_and_compiled(fn, compiled, inp, grad_out)
        torch.testing.assert_close(co, eo, atol=1e-6, rtol=1e-6)
        for a, b in zip(cg, eg):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    # dynamic=True: the second shape reuses the first graph.
    assert counter.frame_count == 1, counter.frame_count


def test_torch_compile_autograd_function(dynamo_reset):
    """mmcv's autograd.Function traced by dynamo (fullgraph)."""
    from npu_ops.msda import MultiScaleDeformableAttnFunction

    def fn(value, shapes, starts, loc, attn):
        return MultiScaleDeformableAttnFunction.apply(value, shapes, starts, loc, attn, 64)

    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True, dynamic=True)
    inp = make_msda_inputs(2, 5, 2, 4, LEVELS_MMCV, 2, dtype=torch.float64, seed=4)
    grad_out = make_grad_output(inp)
    (eo, eg), (co, cg) = _eager_and_compiled(fn, compiled, inp, grad_out)
    torch.testing.assert_close(co, eo, atol=1e-12, rtol=1e-12)
    for a, b in zip(cg, eg):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


FAKE_METADATA_ERRORS = {
    # name: (corruption of [value, shapes, starts, loc, attn], argument named in the message)
    "value_int": (lambda a: [a[0].long(), *a[1:]], "value"),
    "loc_dtype": (lambda a: [*a[:3], a[3].double(), a[4]], "sampling_locations"),
    "shapes_float": (lambda a: [a[0], a[1].float(), *a[2:]], "spatial_shapes"),
    "starts_2d": (lambda a: [*a[:2], a[2][None], *a[3:]], "level_start_index"),
    "starts_length": (lambda a: [*a[:2], a[2][:-1], *a[3:]], "level_start_index"),
    "shapes_3_cols": (lambda a: [a[0], torch.cat([a[1], a[1][:, :1]], 1), *a[2:]], "spatial_shapes"),
}


@pytest.mark.parametrize("case", list(FAKE_METADATA_ERRORS))
def test_fake_rejects_what_eager_rejects_without_data(case):
    """Errors decidable from metadata alone (ndim, sizes, dtypes) must come from the fake kernel too,
    or meta-device shape inference and torch.compile tracing accept inputs the real op rejects."""
    corrupt, name = FAKE_METADATA_ERRORS[case]
    inp = make_msda_inputs(2, 5, 3, 4, LEVELS_4, 2, dtype=torch.float32, seed=5)
    with pytest.raises((RuntimeError, ValueError, TypeError), match=name):
        torch.ops.npu_ops.msda.default(*corrupt(list(inp.args())))  # eager rejects
    with FakeTensorMode() as mode:
        args = corrupt([mode.from_tensor(t) for t in inp.args()])
        with pytest.raises((RuntimeError, ValueError, TypeError), match=name):
            torch.ops.npu_ops.msda.default(*args)


@pytest.mark.parametrize("case", ["shape", "dtype"])
def test_fake_backward_checks_grad_output(case):
    inp = make_msda_inputs(2, 5, 3, 4, LEVELS_4, 2, dtype=torch.float32, seed=6)
    grad_out = make_grad_output(inp)
    bad = grad_out[:, :-1] if case == "shape" else grad_out.double()
    with pytest.raises(RuntimeError, match="grad_output"):
        torch.ops.npu_ops._msda_backward.default(bad, *inp.args())  # eager rejects
    with FakeTensorMode() as mode:
        args = [mode.from_tensor(t) for t in inp.args()]
        with pytest.raises((RuntimeError, ValueError), match="grad_output"):
            torch.ops.npu_ops._msda_backward.default(mode.from_tensor(bad), *args)
