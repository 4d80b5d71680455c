"""Per-tile windows of the co-designed MSDA backward kernel (csrc/ascend/kernels/msda_backward.h):
encoder-like tiles whose points cluster around neighbouring reference pixels take the window path
(value rows loaded and fp32 grads flushed once per window row), tiles whose points spread over a
level fall back to the paired corner DMAs; both against the float64 reference and the CPU op, with
the DMA counters showing which path ran."""

from __future__ import annotations

import npu_ops.ascend_sim as sim
import pytest
import torch
from utils import MsdaInputs, _move_points_off_kinks, exact_fwd_bwd, make_grad_output, make_msda_inputs

LEVELS = [(20, 40), (16, 32), (3, 4)]  # two levels left to windows, the 3 x 4 one privatised
NQ, HEADS, CH, PTS = 48, 2, 16, 4
# (rtol, atol) against float64 maths on the same inputs; atol scales with the result's magnitude.
TOL = {torch.float32: (1e-4, 1e-5), torch.float16: (4e-3, 2e-3), torch.bfloat16: (3e-2, 1.6e-2)}


def _run(inp: MsdaInputs, grad_out: torch.Tensor, **kw):
    grads = sim.msda_backward(grad_out, *inp.args(), **kw)
    assert 0 < sim.last_stats()["ub_peak_bytes"] <= sim.UB_CAPACITY_BYTES
    return grads


def _check(inp, grad_out, grads, dtype):
    """Against the float64 reference (exact mmcv semantics) and the CPU op."""
    _, ref = exact_fwd_bwd(inp, grad_out)
    cpu = torch.ops.npu_ops._msda_backward(grad_out, *inp.args())
    rtol, atol = TOL[dtype]
    for g, r, c, name in zip(grads, ref, cpu, ("grad_value", "grad_loc", "grad_attn")):
        for e, what in ((r, name), (c, name + " (cpu op)")):
            scale = max(1.0, float(e.abs().max()))
            assert g.dtype == dtype and g.shape == e.shape, what
            torch.testing.assert_close(
                g.double(), e.double(), rtol=rtol, atol=atol * scale, msg=lambda m, w=what: f"{w}: {m}"
            )


def _encoder_inputs(dtype, spread_levels=(), jitter=0.8, q0=0, seed=80, levels=LEVELS, nq=NQ) -> MsdaInputs:
    """Queries at consecutive pixel centres of level 0 from pixel q0 (q0 = 0: the top-left corner,
    so some corners fall off the map), points `jitter` pixels (normal) around the reference point
    at every level, or uniform over the level for `spread_levels`."""
    inp = make_msda_inputs(1, nq, HEADS, CH, levels, PTS, dtype=torch.float64, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    h0, w0 = levels[0]
    q = torch.arange(q0, q0 + nq, dtype=torch.float64) % (h0 * w0)
    ref = torch.stack([(q % w0 + 0.5) / w0, (q // w0 + 0.5) / h0], -1).view(1, nq, 1, 1, 2)
    loc = inp.sampling_locations
    for lvl, (h, w) in enumerate(levels):
        shape = (1, nq, HEADS, PTS, 2)
        if lvl in spread_levels:
            loc[:, :, :, lvl] = torch.rand(shape, generator=gen, dtype=torch.float64) * 1.1 - 0.05
        else:
            noise = torch.randn(shape, generator=gen, dtype=torch.float64) * jitter
            loc[:, :, :, lvl] = ref + noise / torch.tensor([w, h], dtype=torch.float64)
    _move_points_off_kinks(inp, 5e-4)
    return inp.to(dtype)


def _tiling(dtype, deterministic=False):
    return sim.msda_backward_tiling(
        bs=1, num_queries=NQ, heads=HEADS, channels=CH, points=PTS, levels=LEVELS, dtype=dtype,
        deterministic=deterministic, block_num=4,
    )  # fmt: skip


def _atomic_dmas_per_point(inp, grad_out, dtype, **kw):
    grads = _run(inp, grad_out, block_num=4, **kw)
    _check(inp, grad_out, grads, dtype)
    return sim.last_stats()["dma_out_ops"] / (NQ * HEADS * 2 * PTS)  # per point of the two large levels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_window_taken_and_fallback(dtype):
    t = _tiling(dtype)
    assert t["win_rows"] > 0 and t["priv_levels"] == [0, 0, 1]
    clustered = _encoder_inputs(dtype)
    grad_out = make_grad_output(clustered, seed=81)
    window = _atomic_dmas_per_point(clustered, grad_out, dtype)
    # Same tiles, points spread over the two large levels: their boxes do not fit, paired DMAs
    # (up to 2 atomic DMAs per point of those levels).
    spread = _encoder_inputs(dtype, spread_levels=(0, 1))
    paired = _atomic_dmas_per_point(spread, grad_out, dtype)
    assert paired > 1.3 and 3 * window < paired, (window, paired)
    # One large level clustered, the other spread: both paths in the same tiles.
    mixed = _atomic_dmas_per_point(_encoder_inputs(dtype, spread_levels=(1,)), grad_out, dtype)
    assert window < mixed < paired, (window, mixed, paired)


def test_window_inside_the_map():
    """Queries in the middle of level 0 (no corner off the map), and a wider spread: bigger boxes,
    some (tile, level) pairs over the budget fall back (paired DMAs: about 2 per point here)."""
    for q0, jitter, most in ((250, 0.8, 0.6), (250, 2.5, 1.3)):
        inp = _encoder_inputs(torch.float32, q0=q0, jitter=jitter, seed=82)
        grad_out = make_grad_output(inp, seed=83)
        assert _atomic_dmas_per_point(inp, grad_out, torch.float32) < most


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_window_deterministic_bit_identical(dtype):
    assert _tiling(dtype, deterministic=True)["win_rows"] > 0
    inp = _encoder_inputs(dtype, spread_levels=(1,), seed=84)
    grad_out = make_grad_output(inp, seed=85)
    first = _run(inp, grad_out, deterministic=True, block_num=1)
    _check(inp, grad_out, first, dtype)
    for block_num, seed in ((5, 0), (None, 1), (2, 3)):
        again = _run(inp, grad_out, deterministic=True, block_num=block_num, seed=seed)
        for a, b in zip(first, again):
            assert torch.equal(a, b), f"block_num={block_num} seed={seed}: not bit-identical"


def test_encoder_self_attention_windows_every_level():
    """As many queries as keys (an encoder): no level privatised, windows for all of them."""
    levels = [(8, 12), (4, 6), (2, 3)]
    nq = sum(h * w for h, w in levels)
    for det in (False, True):
        t = sim.msda_backward_tiling(
            bs=1, num_queries=nq, heads=HEADS, channels=CH, points=PTS, levels=levels, deterministic=det
        )
        assert t["priv_levels"] == [0, 0, 0] and t["win_rows"] > 0
    inp = _encoder_inputs(torch.float32, levels=levels, nq=nq, seed=86)
    grad_out = make_grad_output(inp, seed=87)
    _check(inp, grad_out, _run(inp, grad_out, block_num=4), torch.float32)
    assert sim.last_stats()["dma_out_ops"] < 0.5 * nq * HEADS * len(levels) * PTS
