"""gradcheck, torch.library.opcheck, FakeTensorMode and torch.compile(fullgraph) for msda_v2."""

from __future__ import annotations

import npu_ops
import npu_ops.msda_v2.ops  # noqa: F401
import pytest
import torch
from v2_utils import LEVELS_RECT, LEVELS_SQ, make_inputs

METHODS = ["default", "discrete"]


def _args(inp, method):
    starts = torch.tensor([0] + [h * w for h, w in inp.levels][:-1]).cumsum(0)
    return (inp.value, inp.shapes, starts, inp.loc, inp.attn, inp.npl, method)


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck(method):
    # Points away from pixel-grid kinks (bilinear) / rounding ties (discrete), where finite differences lie.
    inp = make_inputs(1, 3, 2, 3, LEVELS_RECT, [2, 1, 1, 2], seed=7, spread=0.05)
    inp.loc = ((inp.loc * 40).round() + 0.37) / 40
    v, loc, attn = (t.detach().requires_grad_(method == "default" or i != 1) for i, t in enumerate(inp.tensors()))

    def f(v, loc, attn):
        return npu_ops.msda_v2(v, inp.levels, loc, attn, inp.npl, method)

    inputs = (v, loc, attn) if method == "default" else (v, loc.detach(), attn)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("requires_grad", [False, True], ids=["nograd", "grad"])
@pytest.mark.parametrize("method", METHODS)
def test_opcheck(method, requires_grad):
    inp = make_inputs(2, 4, 2, 3, LEVELS_SQ, [2, 1, 3], dtype=torch.float32, seed=8)
    if requires_grad:
        inp = inp.to(torch.float32, requires_grad=True)
    torch.library.opcheck(torch.ops.npu_ops.msda_v2.default, _args(inp, method))


@pytest.mark.parametrize("method", METHODS)
def test_opcheck_backward(method):
    inp = make_inputs(2, 4, 2, 3, LEVELS_SQ, [2, 1, 3], dtype=torch.float64, seed=9)
    go = torch.randn(2, 4, 6, dtype=torch.float64)
    torch.library.opcheck(torch.ops.npu_ops._msda_v2_backward.default, (go, *_args(inp, method)))


def test_fake_tensor_mode():
    from torch._subclasses.fake_tensor import FakeTensorMode

    inp = make_inputs(2, 7, 3, 5, LEVELS_SQ, [4, 4, 4], dtype=torch.bfloat16, seed=10)
    with FakeTensorMode() as mode:
        args = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in _args(inp, "default")]
        out = torch.ops.npu_ops.msda_v2.default(*args)
        assert out.shape == (2, 7, 15) and out.dtype == torch.bfloat16
        bad = list(args)
        bad[5] = [4, 4, 3]
        with pytest.raises(RuntimeError, match="sampling_locations must have shape"):
            torch.ops.npu_ops.msda_v2.default(*bad)


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize("method", METHODS)
def test_compile_fullgraph_forward_backward(method, dynamic):
    torch._dynamo.reset()
    inp = make_inputs(2, 6, 2, 4, LEVELS_SQ, [3, 2, 1], dtype=torch.float32, seed=11)
    levels, npl = inp.levels, inp.npl

    def f(v, loc, attn):
        return npu_ops.msda_v2(v, levels, loc, attn, npl, method)

    compiled = torch.compile(f, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    a = [t.detach().requires_grad_() for t in inp.tensors()]
    b = [t.detach().requires_grad_() for t in inp.tensors()]
    out_c, out_e = compiled(*a), f(*b)
    torch.testing.assert_close(out_c, out_e, rtol=0, atol=0)
    out_c.square().sum().backward()
    out_e.square().sum().backward()
    for x, y in zip(a, b):
        torch.testing.assert_close(x.grad, y.grad, rtol=0, atol=0)


def test_double_backward_raises():
    inp = make_inputs(1, 2, 1, 2, LEVELS_SQ, [1, 1, 1], seed=12).to(torch.float64, requires_grad=True)
    out = npu_ops.msda_v2(inp.value, inp.levels, inp.loc, inp.attn, inp.npl)
    (g,) = torch.autograd.grad(out.sum(), inp.value, create_graph=True)
    with pytest.raises(RuntimeError, match="first-order gradients only"):
        g.sum().backward()


@pytest.mark.parametrize("method", METHODS)
def test_backward_deterministic_across_threads(method):
    """Heavy scatter contention (tiny maps, many queries): bitwise-equal grads over repeats and thread counts."""
    inp = make_inputs(2, 300, 4, 16, [(2, 3), (1, 1)], [4, 3], dtype=torch.float32, seed=13)
    go = torch.randn(2, 300, 64)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 1, 2):
            torch.set_num_threads(n)
            t = [x.detach().requires_grad_() for x in inp.tensors()]
            torch.autograd.backward(npu_ops.msda_v2(t[0], inp.levels, t[1], t[2], inp.npl, method), go)
            results.append([x.grad.clone() for x in t])
    finally:
        torch.set_num_threads(threads)
    for r in results[1:]:
        for x, y in zip(r, results[0]):
            assert torch.equal(x, y)
