"""The generic / AVX2 / AVX-512 builds of the Chorus kernels agree (each run in a fresh process)."""

from __future__ import annotations

import textwrap

import npu_ops
import pytest
import torch
from utils import run_pythons, supported_capabilities

_SCRIPT = textwrap.dedent(
    """
    import torch, npu_ops
    res = {"cap": npu_ops.cpu_capability()}
    for dt in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        g = torch.Generator().manual_seed(0)
        f, c = (torch.randn(2, 5, 3, 37, generator=g).to(dt).requires_grad_() for _ in range(2))
        m = torch.rand(2, 1, 3, 37, generator=g).to(dt).requires_grad_()
        out = npu_ops.masked_blend(f, c, m)
        res[f"blend-{dt}"] = (out, *torch.autograd.grad(out, (f, c, m), torch.randn(out.shape, generator=g).to(dt)))
        res[f"hard-{dt}"] = (npu_ops.masked_blend(f, c, m > 0.5),)
        s = (4 * torch.randn(2, 3, 5, 37, generator=g)).to(dt).requires_grad_()
        a = (2 * torch.rand(2, 1, 1, 37, generator=g)).to(dt)
        a[..., :3] = 0
        a.requires_grad_()
        for rn in (True, False):
            p = npu_ops.amplified_softmax(s, a, scale=0.7, renormalize=rn)
            res[f"softmax-{dt}-{rn}"] = (p, *torch.autograd.grad(p, (s, a), torch.randn(p.shape, generator=g).to(dt)))
    torch.save({k: tuple(t.detach() for t in v) if isinstance(v, tuple) else v for k, v in res.items()}, OUT)
    """
)


def test_cpu_variants_agree(tmp_path):
    """Each lower variant, in its own process, against this process's (the best) variant."""
    caps = supported_capabilities()
    if len(caps) < 2:
        pytest.fail(f"this CPU supports only {caps}: nothing to compare")
    assert npu_ops.cpu_capability() == caps[-1]
    paths = {cap: tmp_path / f"{cap}.pt" for cap in caps}
    jobs = [(f"OUT = {str(paths[cap])!r}\n" + _SCRIPT, {"NPU_OPS_CPU_CAPABILITY": cap}) for cap in caps[:-1]]
    exec(_SCRIPT, {"OUT": str(paths[caps[-1]])})
    for cap, proc in zip(caps, run_pythons(jobs)):
        assert proc.returncode == 0, f"{cap}: {proc.stderr[-2000:]}"
    results = {cap: torch.load(paths[cap]) for cap in caps}
    assert [results[c]["cap"] for c in caps] == caps
    best = results[caps[-1]]
    for cap in caps[:-1]:
        for key, tensors in best.items():
            if key == "cap":
                continue
            for i, (a, b) in enumerate(zip(results[cap][key], tensors)):
                # Only the fusing of multiply-adds differs: a few ulp of the compute dtype, at most
                # one rounding step of a float16 / bfloat16 result.
                tol = {torch.float64: 1e-13, torch.float32: 2e-6}.get(a.dtype, 1e-2)
                torch.testing.assert_close(
                    a, b, atol=tol, rtol=tol, msg=lambda m, c=cap, k=key, j=i: f"{c} {k}[{j}]: {m}"
                )
