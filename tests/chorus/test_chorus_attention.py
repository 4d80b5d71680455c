"""npu_ops.chorus.amplified_attention and token_attention_mass against float64 references."""

from __future__ import annotations

import math

import npu_ops
import pytest
import torch
from chorus_utils import leaves, make_alpha, randn, softmax_ref
from npu_ops.chorus import amplified_attention, token_attention_mass


def _qkv(b=2, h=3, nq=6, length=11, d=8, dv=5, dtype=torch.float32, seed=0):
    return (
        randn((b, h, nq, d), seed, dtype),
        randn((b, h, length, d), seed + 1, dtype),
        randn((b, h, length, dv), seed + 2, dtype),
    )


def _reference(q, k, v, alpha, scale, renormalize):
    scores = q.double() @ k.double().transpose(-2, -1)
    probs, _ = softmax_ref(scores, alpha.double(), scale, renormalize)
    return probs @ v.double()


@pytest.mark.parametrize("renormalize", [True, False], ids=["renorm", "p2p"])
@pytest.mark.parametrize("ashape", [(2, 1, 1, 11), (1, 3, 1, 11), (11,)], ids=str)
def test_matches_reference(ashape, renormalize):
    q, k, v = _qkv(seed=1)
    alpha = make_alpha(ashape, 4).float()
    out = amplified_attention(q, k, v, alpha, renormalize=renormalize)
    ref = _reference(q, k, v, alpha, 1 / math.sqrt(8), renormalize)
    assert out.shape == (2, 3, 6, 5) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
    out_scaled = amplified_attention(q, k, v, alpha, scale=0.3, renormalize=renormalize)
    torch.testing.assert_close(out_scaled.double(), _reference(q, k, v, alpha, 0.3, renormalize), atol=1e-5, rtol=1e-5)


def test_all_keys_removed_gives_zeros():
    q, k, v = _qkv(seed=5)
    alpha = torch.ones(2, 1, 1, 11)
    alpha[1] = 0.0
    out = amplified_attention(q, k, v, alpha)
    assert torch.isfinite(out).all()
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    torch.testing.assert_close(out.double(), _reference(q, k, v, alpha, 1 / math.sqrt(8), True), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("renormalize", [True, False], ids=["renorm", "p2p"])
def test_gradients_match_reference(renormalize):
    """alpha with a gradient takes the explicit path: exact gradients, also where alpha = 0."""
    q, k, v = _qkv(dtype=torch.float64, seed=7)
    alpha = make_alpha((2, 1, 1, 11), 8, zeros=0.3)
    grad = randn((2, 3, 6, 5), 9)
    grads = []
    for fn in (
        lambda q, k, v, a: amplified_attention(q, k, v, a, renormalize=renormalize),
        lambda q, k, v, a: _reference_multiplicative(q, k, v, a, renormalize),
    ):
        ins = leaves(q, k, v, alpha)
        grads.append(torch.autograd.grad(fn(*ins), ins, grad))
    for name, a, b in zip(("q", "k", "v", "alpha"), *grads):
        assert torch.isfinite(a).all(), name
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8, msg=lambda m, n=name: f"{n}: {m}")


def _reference_multiplicative(q, k, v, alpha, renormalize):
    x = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    e = torch.exp(x - x.amax(-1, keepdim=True).detach())
    p = alpha * e / ((alpha * e) if renormalize else e).sum(-1, keepdim=True)
    return p @ v


def test_sdpa_path_gradients_in_q_k_v():
    q, k, v = _qkv(dtype=torch.float64, seed=11)
    alpha = make_alpha((2, 1, 1, 11), 12)
    grad = randn((2, 3, 6, 5), 13)
    ins = leaves(q, k, v)
    got = torch.autograd.grad(amplified_attention(*ins, alpha), ins, grad)
    ins = leaves(q, k, v)
    want = torch.autograd.grad(_reference_multiplicative(*ins, alpha, True), ins, grad)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_bad_alpha_raises_in_eager():
    q, k, v = _qkv(seed=15)
    alpha = torch.ones(11)
    alpha[4] = -0.5
    with pytest.raises(RuntimeError, match=r"alpha must be finite and >= 0.*alpha\[4\] = -0.5"):
        amplified_attention(q, k, v, alpha)
    alpha[4] = float("nan")
    with pytest.raises(RuntimeError, match="alpha must be finite"):
        amplified_attention(q, k, v, alpha, renormalize=False)  # explicit path: the kernel checks
    with pytest.raises(RuntimeError, match="alpha must have dtype"):
        amplified_attention(q, k, v, torch.ones(11, dtype=torch.int64))


def test_torch_compile_fullgraph(dynamo_reset):
    q, k, v = _qkv(seed=17)
    alpha = make_alpha((2, 1, 1, 11), 18).float()
    for renormalize in (True, False):
        compiled = torch.compile(
            lambda q, k, v, a, r=renormalize: amplified_attention(q, k, v, a, renormalize=r),
            backend="aot_eager",
            fullgraph=True,
        )
        torch.testing.assert_close(
            compiled(q, k, v, alpha), amplified_attention(q, k, v, alpha, renormalize=renormalize)
        )


@pytest.mark.parametrize("mask_kind", ["bool-L", "bool-BL", "float-BL"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=["fp64", "fp32", "bf16"])
def test_token_attention_mass(dtype, mask_kind):
    b, h, nq, length = 2, 4, 7, 13
    probs = npu_ops.amplified_softmax(randn((b, h, nq, length), 21, dtype), torch.ones(length, dtype=dtype))
    u = torch.rand(b, length, generator=torch.Generator().manual_seed(22))
    token_mask = {"bool-L": u[0] > 0.6, "bool-BL": u > 0.6, "float-BL": u}[mask_kind]
    mass = token_attention_mass(probs, token_mask)
    weights = token_mask.double().expand(b, length)
    ref = torch.einsum("bhql,bl->bq", probs.double(), weights) / h
    assert mass.shape == (b, nq) and mass.dtype == dtype
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-6
    torch.testing.assert_close(mass.double(), ref, atol=tol, rtol=tol)
    if mask_kind != "float-BL":
        assert ((mass >= 0) & (mass <= 1.0 + tol)).all()
        everything = token_attention_mass(probs, torch.ones(length, dtype=torch.bool))
        torch.testing.assert_close(everything.double(), torch.ones(b, nq, dtype=torch.float64), atol=tol, rtol=0)


@pytest.mark.parametrize(
    "probs_shape, mask, match",
    [
        ((2, 3, 4), torch.ones(4, dtype=torch.bool), "probs must be 4-D"),
        ((2, 3, 4, 5), torch.ones(6, dtype=torch.bool), "token_mask must have L"),
        ((2, 3, 4, 5), torch.ones(3, 5, dtype=torch.bool), "must have B"),
        ((2, 3, 4, 5), torch.ones(2, 2, 5, dtype=torch.bool), r"token_mask must be \[L\] or \[B, L\]"),
        ((2, 3, 4, 5), torch.ones(5, dtype=torch.int32), "token_mask must be bool or floating"),
        ((2, 3, 4, 5), torch.ones(5, dtype=torch.bool, device="meta"), "token_mask is on meta"),
    ],
    ids=["probs-rank", "L", "B", "mask-rank", "mask-dtype", "device"],
)
def test_token_attention_mass_errors(probs_shape, mask, match):
    with pytest.raises(RuntimeError, match=match):
        token_attention_mass(torch.rand(probs_shape), mask)
