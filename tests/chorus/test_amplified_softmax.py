"""npu_ops.amplified_softmax: forward and backward against float64 closed forms, edge rows, autograd tooling."""

from __future__ import annotations

import npu_ops
import pytest
import torch
from chorus_utils import (
    DTYPE_IDS,
    FLOATS,
    LOWP,
    assert_close,
    assert_lowp_rule,
    leaves,
    make_alpha,
    randn,
    softmax_multiplicative,
    softmax_ref,
)

# (scores shape, alpha shape): L in {1, 7, 33, 4097} and tails that are not multiples of 8 / 16;
# alpha per key shared by heads and queries, per head, per row, full, and the expanded fallbacks.
CASES = [
    ((2, 3, 5, 7), (2, 1, 1, 7)),  # [B, H, Nq, L] with [B, 1, 1, L]
    ((1, 2, 3, 33), (1, 2, 1, 33)),  # per head
    ((2, 4097), (4097,)),  # one alpha row for every row
    ((3, 4, 1), (3, 1, 1)),  # L = 1
    ((2, 3, 4, 16), (1, 3, 1, 16)),  # heads only: the batch dim is expanded
    ((2, 3, 4, 7), (2, 3, 4, 1)),  # one alpha per row: the key dim is expanded
    ((2, 3, 9), (2, 3, 9)),  # full
    ((17,), (17,)),  # a single row
]


def _case_id(case):
    return "x".join(map(str, case[0])) + "-a" + "x".join(map(str, case[1]))


def _inputs(case, dtype, seed, zeros=0.2):
    shape, ashape = case
    scores = randn(shape, seed, dtype, scale=2.0)
    alpha = make_alpha(ashape, seed + 1, zeros=zeros if ashape[-1] > 1 else 0.0).to(dtype)
    grad = randn(shape, seed + 2, dtype)
    return scores, alpha, grad


def _run(fn, scores, alpha, grad):
    s, a = leaves(scores, alpha)
    out = fn(s, a)
    gs, ga = torch.autograd.grad(out, (s, a), grad)
    return out.detach(), (gs, ga)


@pytest.mark.parametrize("renormalize", [True, False], ids=["renorm", "p2p"])
@pytest.mark.parametrize("dtype", FLOATS, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_reference(case, dtype, renormalize):
    scores, alpha, grad = _inputs(case, dtype, seed=sum(case[0]))
    scale = 0.7

    def fn(s, a):
        return npu_ops.amplified_softmax(s, a, scale=scale, renormalize=renormalize)

    out, (gs, ga) = _run(fn, scores, alpha, grad)
    ref, (rs, ra) = softmax_ref(scores, alpha, scale, renormalize, grad)
    assert out.dtype == dtype and out.shape == scores.shape and out.is_contiguous()
    assert ga.dtype == dtype and ga.shape == alpha.shape
    assert_close(out, ref, dtype, "out")
    assert_close(gs, rs, dtype, "grad_scores")
    assert_close(ga, ra, dtype, "grad_alpha")


def test_reference_matches_autograd():
    """The closed-form reference gradients equal autograd of the log-free form, also at alpha = 0."""
    scores, alpha, grad = _inputs(((2, 3, 11), (2, 1, 11)), torch.float64, seed=5, zeros=0.3)
    assert (alpha == 0).any()
    for renormalize in (True, False):
        out, grads = _run(lambda s, a, r=renormalize: softmax_multiplicative(s, a, 0.9, r), scores, alpha, grad)
        ref, ref_grads = softmax_ref(scores, alpha, 0.9, renormalize, grad)
        torch.testing.assert_close(out, ref)
        for g, r in zip(grads, ref_grads):
            torch.testing.assert_close(g, r)


@pytest.mark.parametrize("renormalize", [True, False], ids=["renorm", "p2p"])
@pytest.mark.parametrize("dtype", LOWP, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[6]], ids=_case_id)
def test_low_precision_rule(case, dtype, renormalize):
    """fp16 / bf16: at most 2x the error of the unfused PyTorch composition in the same dtype."""
    scores, alpha, grad = _inputs(case, dtype, seed=9, zeros=0.0)  # alpha > 0: log(alpha) has a gradient

    def unfused(s, a):
        if renormalize:
            return (0.5 * s + a.log()).softmax(-1)
        return (0.5 * s).softmax(-1) * a

    def fused(s, a):
        return npu_ops.amplified_softmax(s, a, scale=0.5, renormalize=renormalize)

    out, grads = _run(fused, scores, alpha, grad)
    low_out, low_grads = _run(unfused, scores, alpha, grad)
    ref, ref_grads = softmax_ref(scores, alpha, 0.5, renormalize, grad)
    assert out.dtype == dtype and grads[1].dtype == dtype
    for name, k, lo, r in zip(
        ("out", "grad_scores", "grad_alpha"), (out, *grads), (low_out, *low_grads), (ref, *ref_grads)
    ):
        assert_lowp_rule(k, r, lo, name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=DTYPE_IDS.get)
def test_alpha_one_is_plain_softmax(dtype):
    scores = randn((3, 5, 37), 11, dtype, scale=3.0)
    ones = torch.ones(37, dtype=dtype)
    expected = (
        torch.softmax(scores.float() * 0.3, -1).to(dtype) if dtype != torch.float64 else (0.3 * scores).softmax(-1)
    )
    for renormalize in (True, False):
        out = npu_ops.amplified_softmax(scores, ones, scale=0.3, renormalize=renormalize)
        tol = {torch.float64: 1e-14, torch.float32: 2e-7, torch.bfloat16: 8e-3}[dtype]
        torch.testing.assert_close(out, expected, atol=tol, rtol=0)


@pytest.mark.parametrize("renormalize", [True, False], ids=["renorm", "p2p"])
def test_zero_alpha_columns_get_zero_attention(renormalize):
    scores = randn((2, 4, 6, 21), 13, torch.float32, scale=4.0)
    alpha = torch.ones(2, 1, 1, 21)
    alpha[0, 0, 0, [0, 5, 20]] = 0.0
    alpha[1, 0, 0, 7] = 0.0
    scores[0, ..., 5] = 80.0  # a removed key with a dominant score
    out = npu_ops.amplified_softmax(scores, alpha, renormalize=renormalize)
    removed = (alpha == 0).expand_as(out)
    assert torch.equal(out[removed], torch.zeros_like(out[removed]))
    if renormalize:  # the removed dominant key does not take the mass of the others
        assert (out[~removed] > 0).all()
        torch.testing.assert_close(out.sum(-1), torch.ones(2, 4, 6))
    ref, _ = softmax_ref(scores, alpha, 1.0, renormalize)
    assert_close(out, ref, torch.float32, "out")


@pytest.mark.parametrize("renormalize", [True, False], ids=["renorm", "p2p"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64], ids=DTYPE_IDS.get)
def test_rows_with_no_key_left_give_zeros(dtype, renormalize):
    """Every key removed (alpha 0) or every score -inf: zeros and zero gradients, never NaN."""
    scores, alpha, grad = _inputs(((2, 3, 4, 19), (2, 3, 1, 19)), dtype, seed=15)
    alpha[0, 1] = 0.0  # all keys of 4 rows removed
    scores[1, 2, 3] = float("-inf")  # a fully masked row
    out, (gs, ga) = _run(
        lambda s, a, r=renormalize: npu_ops.amplified_softmax(s, a, renormalize=r), scores, alpha, grad
    )
    for t in (out, gs, ga):
        assert torch.isfinite(t).all()
    assert torch.equal(out[1, 2, 3], torch.zeros(19, dtype=dtype))
    assert torch.equal(gs[1, 2, 3], torch.zeros(19, dtype=dtype))
    if renormalize:
        assert torch.equal(out[0, 1], torch.zeros(4, 19, dtype=dtype))
        assert torch.equal(gs[0, 1], torch.zeros(4, 19, dtype=dtype))
    ref, (rs, ra) = softmax_ref(scores, alpha, 1.0, renormalize, grad)
    tol = dict(atol=2e-3, rtol=2e-3) if dtype == torch.float16 else dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.double(), ref, **tol)
    torch.testing.assert_close(gs.double(), rs, **tol)
    torch.testing.assert_close(ga.double(), ra, **tol)


@pytest.mark.parametrize(
    "dtype, big",
    [(torch.float32, 1e30), (torch.float16, 6e4), (torch.bfloat16, 1e36), (torch.float64, 1e300)],
    ids=["fp32", "fp16", "bf16", "fp64"],
)
def test_huge_scores_stay_finite(dtype, big):
    scores = torch.zeros(3, 40, dtype=dtype)
    scores[0, 3] = big
    scores[1, :] = big
    scores[1, 7] = -big
    scores[2, 11] = -big
    alpha = torch.ones(40, dtype=dtype)
    alpha[5] = 2.0
    for renormalize in (True, False):
        out = npu_ops.amplified_softmax(scores, alpha, renormalize=renormalize)
        assert torch.isfinite(out).all()
        assert out[0, 3] == 1 and out[0].sum() == 1
        ref, _ = softmax_ref(scores, alpha, 1.0, renormalize)
        torch.testing.assert_close(out.double(), ref, atol=1e-2 if dtype in LOWP else 1e-6, rtol=0)


def test_exact_alpha_gradient_at_zero():
    """Removed keys (alpha = 0) still get the exact alpha gradient q_j * (g_j - <g, p>)."""
    scores, alpha, grad = _inputs(((2, 3, 13), (2, 1, 13)), torch.float64, seed=17, zeros=0.5)
    assert (alpha == 0).sum() >= 4
    for renormalize in (True, False):
        _, (_, ga) = _run(
            lambda s, a, r=renormalize: npu_ops.amplified_softmax(s, a, renormalize=r), scores, alpha, grad
        )
        _, (_, ra) = _run(lambda s, a, r=renormalize: softmax_multiplicative(s, a, 1.0, r), scores, alpha, grad)
        zero = (alpha == 0).expand_as(ga)
        assert (ra[zero].abs() > 1e-6).all()  # the gradient is really nonzero there
        torch.testing.assert_close(ga, ra, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize(
    "scores_dtype, alpha_dtype",
    [(torch.float32, torch.float64), (torch.bfloat16, torch.float32), (torch.float64, torch.float16)],
    ids=["fp32-a64", "bf16-a32", "fp64-a16"],
)
def test_alpha_dtype_may_differ(scores_dtype, alpha_dtype):
    scores, _, grad = _inputs(((2, 3, 29), (2, 1, 29)), scores_dtype, seed=19)
    alpha = make_alpha((2, 1, 29), 20).to(alpha_dtype)
    out, (gs, ga) = _run(lambda s, a: npu_ops.amplified_softmax(s, a), scores, alpha, grad)
    assert out.dtype == scores_dtype and gs.dtype == scores_dtype and ga.dtype == alpha_dtype
    compute = torch.float64 if scores_dtype == torch.float64 else torch.float32
    ref, (rs, ra) = softmax_ref(scores, alpha.to(compute), 1.0, True, grad)
    tol = dict(atol=2e-2, rtol=2e-2) if torch.bfloat16 in (scores_dtype,) or alpha_dtype == torch.float16 else {}
    torch.testing.assert_close(out.double(), ref, **tol)
    torch.testing.assert_close(gs.double(), rs, **tol)
    torch.testing.assert_close(ga.double(), ra, **tol)


def test_noncontiguous_inputs():
    scores = randn((2, 3, 33, 6), 23, torch.float32).transpose(-1, -2)  # [2, 3, 6, 33], strided rows
    alpha = make_alpha((2, 1, 1, 66), 24).float()[..., ::2]
    grad = randn((2, 3, 33, 6), 25, torch.float32).transpose(-1, -2)
    assert not (scores.is_contiguous() or alpha.is_contiguous() or grad.is_contiguous())
    for renormalize in (True, False):
        out, (gs, ga) = _run(
            lambda s, a, r=renormalize: npu_ops.amplified_softmax(s, a, renormalize=r), scores, alpha, grad
        )
        ref, (rs, ra) = softmax_ref(scores, alpha, 1.0, renormalize, grad)
        assert_close(out, ref, torch.float32, "out")
        assert_close(gs, rs, torch.float32, "grad_scores")
        assert_close(ga, ra, torch.float32, "grad_alpha")


def test_alpha_gradient_blocking(num_threads):
    """Many rows per alpha row: chunked reduction, exact and independent of the thread count."""
    scores, alpha, grad = _inputs(((4, 300, 40), (40,)), torch.float64, seed=27)
    results = []
    for threads in (1, 2):
        num_threads(threads)
        results.append(_run(lambda s, a: npu_ops.amplified_softmax(s, a, scale=0.5), scores, alpha, grad))
    (out, grads), (out2, grads2) = results
    _, ref_grads = softmax_ref(scores, alpha, 0.5, True, grad)
    assert_close(grads[1], ref_grads[1], torch.float64, "grad_alpha")
    assert torch.equal(out, out2) and all(torch.equal(a, b) for a, b in zip(grads, grads2))


def test_scores_only_backward_uses_the_output():
    """Without an alpha gradient the renormalised backward matches the one recomputed from scores."""
    scores, alpha, grad = _inputs(CASES[0], torch.float64, seed=29)
    _, (gs_full, _) = _run(npu_ops.amplified_softmax, scores, alpha, grad)
    s = scores.clone().requires_grad_()
    (gs,) = torch.autograd.grad(npu_ops.amplified_softmax(s, alpha), (s,), grad)
    torch.testing.assert_close(gs, gs_full, atol=1e-14, rtol=1e-12)


def test_empty_tensors():
    s = torch.randn(2, 0, 5, requires_grad=True)
    a = torch.rand(5, requires_grad=True)
    out = npu_ops.amplified_softmax(s, a)
    assert out.shape == (2, 0, 5)
    gs, ga = torch.autograd.grad(out.sum(), (s, a))
    assert gs.shape == (2, 0, 5) and torch.equal(ga, torch.zeros(5))


@pytest.mark.parametrize("renormalize", [True, False], ids=["renorm", "p2p"])
@pytest.mark.parametrize("ashape", [(1, 3, 1, 5), (2, 1, 1, 5), (2, 3, 2, 1), (5,)], ids=str)
def test_gradcheck(ashape, renormalize):
    s = leaves(randn((2, 3, 2, 5), 31))[0]
    a = (
        0.2 + 2 * torch.rand(ashape, generator=torch.Generator().manual_seed(32), dtype=torch.float64)
    ).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda s, a: npu_ops.amplified_softmax(s, a, scale=0.8, renormalize=renormalize), (s, a)
    )


def test_double_backward_raises():
    s, a = leaves(randn((2, 5), 41), make_alpha((5,), 42))
    (gs,) = torch.autograd.grad(npu_ops.amplified_softmax(s, a).pow(2).sum(), (s,), create_graph=True)
    with pytest.raises(RuntimeError, match="first-order"):
        gs.sum().backward()


@pytest.mark.parametrize("renormalize", [True, False], ids=["renorm", "p2p"])
def test_opcheck(renormalize):
    scores, alpha, grad = _inputs(((2, 3, 4, 7), (2, 1, 1, 7)), torch.float64, seed=51)
    s, a = leaves(scores, alpha)
    kwargs = dict(scale=0.6, renormalize=renormalize)
    torch.library.opcheck(torch.ops.npu_ops.amplified_softmax.default, (s, a), kwargs)
    op = torch.ops.npu_ops._amplified_softmax_backward.default
    torch.library.opcheck(op, (grad, None, scores, alpha, 0.6, renormalize, [True, True]))
    if renormalize:
        out = npu_ops.amplified_softmax(scores, alpha, scale=0.6)
        torch.library.opcheck(op, (grad, out, None, alpha, 0.6, True, [True, False]))


def test_torch_compile_fullgraph(dynamo_reset):
    def fn(s, a):
        return npu_ops.amplified_softmax(s * 1.5, a.exp(), scale=0.5, renormalize=True) * 2.0

    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    scores, _, grad = _inputs(((2, 3, 4, 7), (2, 1, 1, 7)), torch.float32, seed=61)
    log_alpha = randn((2, 1, 1, 7), 62, torch.float32)
    results = []
    for func in (fn, compiled):
        s, la = leaves(scores, log_alpha)
        out = func(s, la)
        results.append((out.detach(), torch.autograd.grad(out, (s, la), grad)))
    (eo, eg), (co, cg) = results
    torch.testing.assert_close(co, eo, atol=0, rtol=0)
    for x, y in zip(cg, eg):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-6)
    # The alpha value check runs in the kernel, so compiled graphs still reject bad alpha at run time.
    with pytest.raises(RuntimeError, match="alpha must be finite and >= 0"):
        compiled(scores, torch.full((2, 1, 1, 7), float("inf")))
