"""The generic / AVX2 / AVX-512 builds of the Chorus kernels (each forced through NPU_OPS_CPU_CAPABILITY in a
fresh process) against the float64 closed forms and against each other, on inputs that reach every kernel
path: vector bodies and tails, soft and hard masks, removed keys, tiny alpha (the two-exp backward), huge
scores (the general exp), rows with no key left, a NaN row."""

from __future__ import annotations

import textwrap

import npu_ops
import pytest
import torch
from chorus_utils import assert_close, blend_ref, softmax_ref
from utils import run_pythons, supported_capabilities

# Defines inputs(dt) -> {key: (op, args, kwargs, grad or None)}; run by the children and the parent.
_INPUTS = textwrap.dedent(
    """
    import torch

    def inputs(dt):
        g = torch.Generator().manual_seed(0)

        def rn(*shape, s=1.0):
            return (s * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dt)

        def ru(*shape, s=1.0):
            return (s * torch.rand(*shape, generator=g, dtype=torch.float64)).to(dt)

        cases = {}
        f, c = rn(2, 5, 3, 37), rn(2, 5, 3, 37)
        m = ru(2, 1, 3, 37)
        cases["blend"] = ("masked_blend", (f, c, m), {}, rn(2, 5, 3, 37))
        cases["blend-rows"] = ("masked_blend", (rn(3, 70), rn(3, 70), ru(3, 1)), {}, rn(3, 70))
        cases["hard"] = ("masked_blend", (f, c, m > 0.5), {}, rn(2, 5, 3, 37))
        s = rn(2, 3, 5, 37, s=4.0)
        a = ru(2, 1, 1, 37, s=2.0)
        a[..., :3] = 0
        s[0, 0, 0, 1] = 6.0  # a removed key with a large score
        for rn_ in (True, False):
            cases[f"softmax-{rn_}"] = ("amplified_softmax", (s, a), dict(scale=0.7, renormalize=rn_), rn(*s.shape))
        # tiny positive alpha: the backward's second exp; huge scores: the forward's general exp;
        # a row with every score -inf: zeros
        s2 = rn(3, 4, 24, s=3.0)
        s2[1, 0] += 1e7 if dt != torch.float16 else 0.0
        s2[2, 1] = float("-inf")
        a2 = ru(3, 1, 24, s=2.0) + 0.1
        a2[0, 0, 5] = 1e-30 if dt != torch.float16 else 0.0
        a2[0, 0, 6] = 0.0
        for rn_ in (True, False):
            cases[f"edge-{rn_}"] = ("amplified_softmax", (s2, a2), dict(scale=1.0, renormalize=rn_), rn(*s2.shape))
        return cases
    """
)

_SCRIPT = _INPUTS + textwrap.dedent(
    """
    import npu_ops

    res = {"cap": npu_ops.cpu_capability()}
    for dt in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        for key, (op, args, kw, grad) in inputs(dt).items():
            leaves = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in args]
            out = getattr(npu_ops, op)(*leaves, **kw)
            diff = [x for x in leaves if x.requires_grad]
            res[f"{key}-{dt}"] = (out.detach(), *torch.autograd.grad(out, diff, grad))
        # NaN rows: among finite logits, among -inf ones, at a removed key; then a regular row
        s = torch.zeros(4, 40, dtype=dt)
        s[0, 3] = float("nan")
        s[1] = float("-inf")
        s[1, 5] = float("nan")
        s[2, 0] = float("nan")
        a = torch.ones(40, dtype=dt)
        a[0] = 0
        s.requires_grad_()
        a.requires_grad_()
        out = npu_ops.amplified_softmax(s, a)
        res[f"nan-{dt}"] = (out.detach(), *torch.autograd.grad(out, (s, a), torch.ones_like(out)))
    torch.save(res, OUT)
    """
)

# vs the float64 closed form: fp32 / fp64 with the op tests' tolerances (chorus_utils.TOL); fp16 / bf16
# within a few roundings of the result (their inputs are exact in float64).
_LOWP_TOL = {torch.float16: 4e-3, torch.bfloat16: 3e-2}


def _reference(key: str, op: str, args, kw, grad):
    if op == "masked_blend":
        out, grads = blend_ref(*args, grad=grad)
        return (out, *(g for g in grads if g is not None))
    out, grads = softmax_ref(*args, kw["scale"], kw["renormalize"], grad)
    return (out, *grads)


@pytest.fixture(scope="module")
def variant_results(tmp_path_factory):
    caps = supported_capabilities()
    if len(caps) < 2:
        pytest.fail(f"this CPU supports only {caps}: nothing to compare")
    assert npu_ops.cpu_capability() == caps[-1]
    tmp = tmp_path_factory.mktemp("variants")
    paths = {cap: tmp / f"{cap}.pt" for cap in caps}
    jobs = [(f"OUT = {str(paths[cap])!r}\n" + _SCRIPT, {"NPU_OPS_CPU_CAPABILITY": cap}) for cap in caps[:-1]]
    exec(_SCRIPT, {"OUT": str(paths[caps[-1]])})
    for cap, proc in zip(caps, run_pythons(jobs)):
        assert proc.returncode == 0, f"{cap}: {proc.stderr[-2000:]}"
    results = {cap: torch.load(paths[cap]) for cap in caps}
    assert [results[c]["cap"] for c in caps] == caps
    return caps, results


def test_cpu_variants_agree(variant_results):
    """Each lower variant against this process's (the best) variant."""
    caps, results = variant_results
    best = results[caps[-1]]
    for cap in caps[:-1]:
        for key, tensors in best.items():
            if key == "cap":
                continue
            for i, (a, b) in enumerate(zip(results[cap][key], tensors)):
                # Only the fusing of multiply-adds and the lane count (summation order) differ: a few
                # ulp of the compute dtype, at most one rounding step of a float16 / bfloat16 result.
                tol = {torch.float64: 1e-13, torch.float32: 2e-6}.get(a.dtype, 1e-2)
                torch.testing.assert_close(
                    a, b, atol=tol, rtol=tol, equal_nan=True, msg=lambda m, c=cap, k=key, j=i: f"{c} {k}[{j}]: {m}"
                )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
def test_each_variant_matches_reference(variant_results, dtype):
    """Every variant against the float64 closed forms (outputs and every gradient)."""
    caps, results = variant_results
    ns: dict = {}
    exec(_INPUTS, ns)
    for key, (op, args, kw, grad) in ns["inputs"](dtype).items():
        refs = _reference(key, op, args, kw, grad)
        for cap in caps:
            got = results[cap][f"{key}-{dtype}"]
            assert len(got) == len(refs), f"{cap} {key}"
            for i, (a, r) in enumerate(zip(got, refs)):
                name = f"{cap} {key}-{dtype}[{i}]"
                assert a.dtype == dtype and a.shape == r.shape, name
                if dtype in _LOWP_TOL:
                    tol = _LOWP_TOL[dtype] * max(1.0, float(r.abs().max()))
                    torch.testing.assert_close(a.double(), r, atol=tol, rtol=_LOWP_TOL[dtype], msg=name)
                else:
                    assert_close(a, r, dtype, name)
    row = torch.full((40,), 1 / 39, dtype=torch.float64)
    row[0] = 0
    for cap in caps:
        out, gs, ga = results[cap][f"nan-{dtype}"]
        assert out[:3].isnan().all() and gs[:3].isnan().all() and ga.isnan().all(), cap
        torch.testing.assert_close(out[3].double(), row, atol=1e-3, rtol=0, msg=cap)
        assert torch.isfinite(gs[3]).all(), cap
