"""The AscendC kernels on a real NPU against the CPU ops (needs CANN, torch_npu and an NPU).

These run only where ``npu_ops.has_npu_backend()`` is true; on machines without an NPU the same
kernel sources are tested under the emulator (test_chorus_sim.py).
"""

from __future__ import annotations

import npu_ops
import pytest
import torch

pytestmark = [
    pytest.mark.needs_npu,
    pytest.mark.skipif(not npu_ops.has_npu_backend(), reason="needs an Ascend NPU with torch_npu and CANN"),
]

TOL = {torch.float32: (1e-5, 1e-6), torch.float16: (2e-3, 2e-3), torch.bfloat16: (2e-2, 2e-2)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mask_shape", [(2, 1, 3, 8, 10), (2, 16, 3, 8, 10)])
def test_masked_blend_npu_matches_cpu(dtype, mask_shape):
    g = torch.Generator().manual_seed(0)
    fresh = torch.randn(2, 16, 3, 8, 10, generator=g).to(dtype)
    cached = torch.randn(2, 16, 3, 8, 10, generator=g).to(dtype)
    mask = torch.rand(mask_shape, generator=g).to(dtype).requires_grad_()
    f, c = fresh.clone().requires_grad_(), cached.clone().requires_grad_()
    out_cpu = npu_ops.masked_blend(f, c, mask)
    fn, cn, mn = (t.detach().npu().requires_grad_() for t in (fresh, cached, mask))
    out_npu = npu_ops.masked_blend(fn, cn, mn)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out_npu.cpu(), out_cpu, rtol=rtol, atol=atol)
    grad = torch.randn_like(out_cpu)
    out_cpu.backward(grad)
    out_npu.backward(grad.npu())
    for a, b in ((fn, f), (cn, c), (mn, mask)):
        torch.testing.assert_close(a.grad.cpu(), b.grad, rtol=rtol * 10, atol=atol * 10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("renormalize", [True, False])
@pytest.mark.parametrize("length", [1, 7, 33, 512, 4097])
def test_amplified_softmax_npu_matches_cpu(dtype, renormalize, length):
    g = torch.Generator().manual_seed(1)
    scores = (torch.randn(2, 3, 5, length, generator=g) * 3).to(dtype).requires_grad_()
    alpha = torch.rand(2, 1, 1, length, generator=g) * 2
    alpha[..., ::3] = 0
    alpha.requires_grad_()
    out_cpu = npu_ops.amplified_softmax(scores, alpha, scale=0.5, renormalize=renormalize)
    sn, an = scores.detach().npu().requires_grad_(), alpha.detach().npu().requires_grad_()
    out_npu = npu_ops.amplified_softmax(sn, an, scale=0.5, renormalize=renormalize)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out_npu.cpu(), out_cpu, rtol=rtol, atol=atol)
    grad = torch.randn_like(out_cpu)
    out_cpu.backward(grad)
    out_npu.backward(grad.npu())
    torch.testing.assert_close(sn.grad.cpu(), scores.grad, rtol=rtol * 10, atol=atol * 10)
    torch.testing.assert_close(an.grad.cpu(), alpha.grad, rtol=rtol * 10, atol=atol * 10)
