"""The Chorus AscendC kernels (masked_blend, amplified_softmax) under the emulator, against the
CPU ops (torch.ops.npu_ops.*) and float64 closed forms: dtypes, block counts, odd tails, both
mask layouts, hard and soft masks, removed keys, and the UB peak."""

from __future__ import annotations

import npu_ops.ascend_sim as sim
import pytest
import torch

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
BLOCKS = [1, 3, None]  # None: the default (dav-2201 vector core count)
# (rtol, atol) of a kernel result against float64 maths on the same (rounded) inputs: fp32
# arithmetic inside, one rounding to the output dtype.
TOL = {torch.float32: (2e-5, 2e-6), torch.float16: (2e-3, 1e-3), torch.bfloat16: (1.6e-2, 8e-3)}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _cpu_op(name: str):
    """torch.ops.npu_ops.<name> (the CPU kernels), or None where this build lacks it."""
    try:
        return getattr(torch.ops.npu_ops, name)
    except (AttributeError, RuntimeError):
        return None


def _check_ub() -> None:
    stats = sim.last_stats()
    assert 0 < stats["ub_peak_bytes"] <= sim.UB_CAPACITY_BYTES == 188160


def _close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, scale: float = 1.0) -> None:
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol * scale)


# ---------------------------------------------------------------------------------------------
# masked_blend

# (data shape, mask shape): latents with a shared-channel mask, tokens with one value per token
# (row mode), full-size masks, odd tails, a scalar mask and a pattern the host must expand.
BLEND_CASES = [
    ((2, 3, 4, 5, 7), (2, 1, 4, 5, 7)),  # latent [B, C, T, H, W], mask [B, 1, T, H, W]
    ((2, 9, 33), (2, 9, 1)),  # tokens [B, N, D], mask [B, N, 1]
    ((3, 5, 7), (3, 5, 7)),  # full-size mask
    ((4097,), (4097,)),  # one long row, tail of 1
    ((3, 4, 17), (1, 4, 1)),  # broadcast on both sides of a varying dim: expanded by the host
    ((5, 300), (1,)),  # one mask value for everything
    ((1, 2, 1, 9), (1, 1, 1, 9)),
]


def _blend_inputs(shape, mshape, dtype, hard: bool, seed: int = 0):
    g = _gen(seed)
    fresh = torch.randn(shape, generator=g).to(dtype)
    cached = torch.randn(shape, generator=g).to(dtype)
    if hard:
        mask = torch.rand(mshape, generator=g) > 0.5
    else:
        mask = torch.rand(mshape, generator=g).to(dtype)
        mask.view(-1)[0] = 1.0  # soft masks include the hard values too
        if mask.numel() > 1:
            mask.view(-1)[1] = 0.0
    return fresh, cached, mask


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", BLEND_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
@pytest.mark.parametrize("hard", [False, True], ids=["soft", "hard"])
def test_masked_blend_forward(dtype, case, hard):
    shape, mshape = case
    fresh, cached, mask = _blend_inputs(shape, mshape, dtype, hard)
    m = mask.double()
    expected = cached.double() + m * (fresh.double() - cached.double())
    cpu = _cpu_op("masked_blend")
    for block_num in BLOCKS:
        out = sim.masked_blend(fresh, cached, mask, block_num=block_num, seed=block_num or 7)
        assert out.dtype == dtype and out.shape == fresh.shape
        _check_ub()
        if hard:  # exact, like torch.where
            assert torch.equal(out, torch.where(mask, fresh, cached))
        else:
            _close(out, expected, dtype)
            # Exact where the soft mask holds 0 or 1.
            assert torch.equal(out[(mask == 1).expand(shape)], fresh[(mask == 1).expand(shape)])
            assert torch.equal(out[(mask == 0).expand(shape)], cached[(mask == 0).expand(shape)])
        if cpu is not None:
            _close(out, cpu(fresh, cached, mask), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", BLEND_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
@pytest.mark.parametrize("hard", [False, True], ids=["soft", "hard"])
def test_masked_blend_backward(dtype, case, hard):
    shape, mshape = case
    fresh, cached, mask = _blend_inputs(shape, mshape, dtype, hard, seed=1)
    grad = torch.randn(shape, generator=_gen(2)).to(dtype)
    m, g = mask.double(), grad.double()
    exp_fresh = m * g
    exp_cached = g - m * g
    prod = (fresh.double() - cached.double()) * g
    exp_mask = prod.sum_to_size(mshape) if len(mshape) == len(shape) else prod.sum().reshape(mshape)
    cpu = _cpu_op("_masked_blend_backward")
    for block_num in BLOCKS:
        gf, gc, gm = sim.masked_blend_backward(grad, fresh, cached, mask, block_num=block_num)
        _check_ub()
        if hard:
            assert gm is None
            assert torch.equal(gf, torch.where(mask, grad, torch.zeros_like(grad)))
            assert torch.equal(gc, torch.where(mask, torch.zeros_like(grad), grad))
        else:
            _close(gf, exp_fresh, dtype)
            _close(gc, exp_cached, dtype)
            assert gm.dtype == dtype and gm.shape == mask.shape
            # fp32 partial sums in a block- and tile-dependent order, then one rounding.
            _close(gm, exp_mask, dtype, scale=max(1.0, float(prod.abs().sum_to_size(mshape).max())) * 10)
        if cpu is not None:
            cgf, cgc, _ = cpu(grad, fresh, cached, mask, [True, True, False])
            _close(gf, cgf, dtype)
            _close(gc, cgc, dtype)


def test_masked_blend_uint8_mask_and_expand_pattern():
    fresh, cached, _ = _blend_inputs((2, 3, 6), (2, 1, 6), torch.float32, hard=True)
    mask = (torch.rand(2, 1, 6, generator=_gen(5)) > 0.5).to(torch.uint8)
    out = sim.masked_blend(fresh, cached, mask, block_num=3)
    assert torch.equal(out, torch.where(mask.bool(), fresh, cached))
    # A float mask of another dtype is converted to the data dtype for the fmask kernels.
    soft = torch.rand(2, 1, 6, generator=_gen(6), dtype=torch.float64)
    out = sim.masked_blend(fresh, cached, soft, block_num=3)
    _close(out, cached.double() + soft.float().double() * (fresh.double() - cached.double()), torch.float32)


def test_masked_blend_latent_slice_default_blocks():
    # A slice of the Wan-2.1 480p latent [1, 16, 21, 60, 104]: mask shared over channels.
    fresh, cached, mask = _blend_inputs((1, 16, 2, 60, 104), (1, 1, 2, 60, 104), torch.bfloat16, hard=False)
    out = sim.masked_blend(fresh, cached, mask)
    _close(out, cached.double() + mask.double() * (fresh.double() - cached.double()), torch.bfloat16)
    stats = sim.last_stats()
    assert stats["blocks"] == sim.DEFAULT_BLOCK_NUM
    assert stats["gm_write_bytes"] == out.numel() * out.element_size()
    _check_ub()


def test_masked_blend_bad_input():
    x = torch.randn(2, 3, 4)
    with pytest.raises(RuntimeError, match="does not broadcast"):
        sim.masked_blend(x, x, torch.rand(2, 2, 4))
    with pytest.raises(RuntimeError, match="float32, float16 or bfloat16"):
        sim.masked_blend(x.double(), x.double(), torch.rand(2, 1, 4))
    with pytest.raises(ValueError, match="block_num"):
        sim.masked_blend(x, x, torch.rand(2, 1, 4), block_num=0)


# ---------------------------------------------------------------------------------------------
# amplified_softmax


def _softmax_inputs(shape, ashape, dtype, seed: int = 0, remove_row: bool = True):
    g = _gen(seed)
    scores = (torch.randn(shape, generator=g) * 3).to(dtype)
    alpha = torch.rand(ashape, generator=g) * 2
    alpha[..., 1::3] = 0.0  # removed keys
    if remove_row and shape[-1] > 1 and alpha.numel() // shape[-1] > 1:
        alpha.reshape(-1, shape[-1])[-1] = 0.0  # a group whose keys are all removed
    return scores, alpha


def _softmax_ref(scores, alpha, scale: float, renormalize: bool, grad=None):
    """float64 forward and (with grad) backward, rows whose keys are all removed -> 0."""
    s = scores.double()
    a = torch.broadcast_to(alpha.double(), s.shape)
    if renormalize:
        x = scale * s + torch.where(a > 0, a.log(), torch.full_like(a, -torch.inf))
        m = x.amax(-1, keepdim=True)
        valid = torch.isfinite(m)
        m = torch.where(valid, m, torch.zeros_like(m))
        e = (x - m).exp()
        z = e.sum(-1, keepdim=True).clamp_min(1e-300)
        p = torch.where(valid, e / z, torch.zeros_like(e))
        q = torch.where(valid, (scale * s - m).exp() / z, torch.zeros_like(e))
    else:
        q = torch.softmax(scale * s, -1)
        p = q * a
    if grad is None:
        return p
    g = grad.double()
    if renormalize:
        t = g - (g * p).sum(-1, keepdim=True)
        ds, da = scale * p * t, q * t
    else:
        ga = g * a
        ds, da = scale * q * (ga - (ga * q).sum(-1, keepdim=True)), g * q
    return ds, da.sum_to_size(alpha.shape)


# (scores shape, alpha shape): L in {1, 7, 33, 4097}; per-key alpha shared over heads and
# queries, per-(batch, head) alpha the host expands, a 2-D case.
SOFTMAX_CASES = [
    ((2, 3, 5, 7), (2, 1, 1, 7)),
    ((2, 3, 4, 33), (1, 3, 1, 33)),
    ((3, 2, 1), (3, 1, 1)),
    ((5, 33), (33,)),
    ((2, 2, 4097), (2, 1, 4097)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", SOFTMAX_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
@pytest.mark.parametrize("renormalize", [True, False], ids=["renorm", "plain"])
def test_amplified_softmax_forward(dtype, case, renormalize):
    shape, ashape = case
    scores, alpha = _softmax_inputs(shape, ashape, dtype)
    expected = _softmax_ref(scores, alpha, 0.7, renormalize)
    cpu = _cpu_op("amplified_softmax")
    blocks = [3] if shape[-1] > 1000 else BLOCKS
    for block_num in blocks:
        out = sim.amplified_softmax(scores, alpha, scale=0.7, renormalize=renormalize, block_num=block_num)
        assert out.dtype == dtype and out.shape == scores.shape
        assert torch.isfinite(out).all()
        _check_ub()
        _close(out, expected, dtype)
        removed = (torch.broadcast_to(alpha, shape) == 0).to(torch.bool)
        assert (out[removed] == 0).all()  # alpha = 0: no attention
        if cpu is not None:
            _close(out, cpu(scores, alpha, scale=0.7, renormalize=renormalize), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", SOFTMAX_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
@pytest.mark.parametrize("renormalize", [True, False], ids=["renorm", "plain"])
def test_amplified_softmax_backward(dtype, case, renormalize):
    shape, ashape = case
    scores, alpha = _softmax_inputs(shape, ashape, dtype, seed=3)
    grad = torch.randn(shape, generator=_gen(4)).to(dtype)
    exp_ds, exp_da = _softmax_ref(scores, alpha, 0.7, renormalize, grad)
    cpu = _cpu_op("_amplified_softmax_backward")
    blocks = [3] if shape[-1] > 1000 else BLOCKS
    for block_num in blocks:
        ds, da = sim.amplified_softmax_backward(
            grad, scores, alpha, scale=0.7, renormalize=renormalize, block_num=block_num, seed=1
        )
        _check_ub()
        assert ds.dtype == dtype and ds.shape == scores.shape
        assert da.dtype == alpha.dtype and da.shape == alpha.shape
        _close(ds, exp_ds, dtype)
        # grad_alpha: fp32 sums over rows, accumulated atomically across blocks.
        rows = scores.numel() // shape[-1] // max(1, alpha.numel() // shape[-1])
        _close(da, exp_da, dtype, scale=4.0 * rows)
        if cpu is not None:
            cds, cda = cpu(grad, None, scores, alpha, 0.7, renormalize, [True, True])
            _close(ds, cds, dtype)
            _close(da, cda, dtype, scale=4.0 * rows)


def test_amplified_softmax_backward_matches_autograd():
    # Strictly positive alpha: the closed forms agree with autograd of the float64 composition.
    scores = torch.randn(2, 3, 6, 9, generator=_gen(8), dtype=torch.float64)
    alpha = (torch.rand(2, 1, 1, 9, generator=_gen(9), dtype=torch.float64) + 0.1).requires_grad_()
    s = scores.clone().requires_grad_()
    grad = torch.randn(2, 3, 6, 9, generator=_gen(10), dtype=torch.float64)
    for renormalize in (True, False):
        out = (0.5 * s + alpha.log()).softmax(-1) if renormalize else (0.5 * s).softmax(-1) * alpha
        ds_ref, da_ref = torch.autograd.grad(out, (s, alpha), grad)
        ds, da = sim.amplified_softmax_backward(
            grad.float(), scores.float(), alpha.detach().float(), scale=0.5, renormalize=renormalize
        )
        torch.testing.assert_close(ds.double(), ds_ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(da.double(), da_ref, rtol=1e-4, atol=1e-5)


def test_amplified_softmax_alpha_one_is_softmax_and_huge_scores_stay_finite():
    scores = torch.randn(4, 3, 40, generator=_gen(11)) * 1e4
    out = sim.amplified_softmax(scores, torch.ones(40), block_num=3)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, scores.softmax(-1), rtol=1e-5, atol=1e-6)
    plain = sim.amplified_softmax(scores, torch.ones(40), renormalize=False, block_num=3)
    torch.testing.assert_close(plain, scores.softmax(-1), rtol=1e-5, atol=1e-6)


def test_amplified_softmax_all_removed_rows_are_zero():
    scores = torch.randn(3, 4, 8, generator=_gen(12))
    alpha = torch.zeros(3, 1, 8)
    alpha[1] = 1.0
    out = sim.amplified_softmax(scores, alpha, block_num=3)
    assert torch.equal(out[0], torch.zeros_like(out[0])) and torch.equal(out[2], torch.zeros_like(out[2]))
    torch.testing.assert_close(out[1], scores[1].softmax(-1))
    ds, da = sim.amplified_softmax_backward(torch.ones_like(scores), scores, alpha, block_num=3)
    assert torch.isfinite(ds).all() and torch.isfinite(da).all()
    assert torch.equal(da[0], torch.zeros_like(da[0])) and torch.equal(ds[2], torch.zeros_like(ds[2]))


def test_amplified_softmax_row_too_long_names_the_limit():
    scores = torch.randn(1, 200_000)
    with pytest.raises(RuntimeError, match=r"supports L <= \d+"):
        sim.amplified_softmax(scores, torch.ones(200_000), block_num=1)


def test_amplified_softmax_bad_alpha():
    scores = torch.randn(2, 5)
    with pytest.raises(RuntimeError, match="finite and >= 0"):
        sim.amplified_softmax(scores, -torch.ones(5))
    with pytest.raises(RuntimeError, match="finite and >= 0"):
        sim.amplified_softmax(scores, torch.full((5,), float("nan")))
    with pytest.raises(RuntimeError, match="does not broadcast"):
        sim.amplified_softmax(scores, torch.ones(4))
