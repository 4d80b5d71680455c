"""The MSDA backward AscendC kernels (co-designed and naive) under the emulator, against the CPU op
(torch.ops.npu_ops._msda_backward) and the float64 transcription of mmcv's kernel (tests/utils.py):
shape families, channel counts, L*P > 64, Nq below the core count, tiles across batches, scatter
contention, NaN/Inf and one-ulp coordinates, fp16/bf16, block counts and orders, the
deterministic mode, the UB peak and the host tiling."""

from __future__ import annotations

import math

import npu_ops.ascend_sim as sim
import pytest
import torch
from utils import (
    LEVELS_4,
    LEVELS_5,
    LEVELS_1x1,
    LEVELS_1xW,
    LEVELS_HxW,
    MsdaInputs,
    exact_fwd_bwd,
    make_grad_output,
    make_msda_inputs,
    shapes_and_starts,
)

DESIGNS = ["codesign", "naive"]
# (rtol, atol) against float64 maths on the same inputs; atol scales with the result's magnitude.
TOL = {torch.float32: (1e-4, 1e-5), torch.float16: (4e-3, 2e-3), torch.bfloat16: (3e-2, 1.6e-2)}
NAN, INF = float("nan"), float("inf")


def _run(inp: MsdaInputs, grad_out: torch.Tensor, **kw):
    grads = sim.msda_backward(grad_out, *inp.args(), **kw)
    stats = sim.last_stats()
    assert 0 < stats["ub_peak_bytes"] <= sim.UB_CAPACITY_BYTES == 188160
    return grads


def _cpu(inp: MsdaInputs, grad_out: torch.Tensor):
    return torch.ops.npu_ops._msda_backward(grad_out, *inp.args())


def _close(actual, expected, dtype, name):
    rtol, atol = TOL[dtype]
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    assert actual.dtype == dtype and actual.shape == expected.shape, name
    torch.testing.assert_close(
        actual.double(), expected.double(), rtol=rtol, atol=atol * scale, msg=lambda m: f"{name}: {m}"
    )


def _check(inp, grad_out, grads, dtype=torch.float32):
    """Against the float64 reference (exact mmcv semantics) and the CPU op."""
    _, ref = exact_fwd_bwd(inp, grad_out)
    cpu = _cpu(inp, grad_out)
    for g, r, c, n in zip(grads, ref, cpu, ("grad_value", "grad_loc", "grad_attn")):
        _close(g, r, dtype, n)
        _close(g, c, dtype, n + " (cpu op)")


# (bs, nq, heads, channels, levels, points): the foundation suite's families, small.
CASES = [
    (1, 1, 1, 1, LEVELS_1x1, 1),
    (2, 31, 3, 3, LEVELS_4, 4),
    (1, 33, 8, 8, LEVELS_5, 8),
    (3, 9, 1, 32, LEVELS_4, 8),
    (2, 1, 3, 37, LEVELS_5, 1),
    (1, 13, 8, 64, LEVELS_1xW, 4),
    (2, 11, 3, 256, LEVELS_HxW, 1),
    (3, 7, 3, 37, LEVELS_4, 4),
]


def _id(c):
    bs, nq, h, ch, lv, p = c
    return f"bs{bs}-nq{nq}-h{h}-c{ch}-L{len(lv)}-p{p}"


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_shape_families(case, design):
    bs, nq, heads, channels, levels, points = case
    inp = make_msda_inputs(bs, nq, heads, channels, levels, points, dtype=torch.float32, seed=nq + channels)
    grad_out = make_grad_output(inp, seed=5)
    for i, block_num in enumerate((1, 7, None)):
        _check(inp, grad_out, _run(inp, grad_out, design=design, block_num=block_num, seed=i))


@pytest.mark.parametrize("channels", [1, 3, 16, 32, 37, 64, 128, 256, 1025])
def test_channels(channels):
    inp = make_msda_inputs(2, 3, 2, channels, [(3, 4), (2, 1)], 2, dtype=torch.float32, seed=channels)
    grad_out = make_grad_output(inp, seed=6)
    for design in DESIGNS:
        _check(inp, grad_out, _run(inp, grad_out, design=design, block_num=5, seed=1))


def test_many_points_per_head():
    """L * P = 80 > 64 (beyond DrivingSDK's limit), several transpose units per row."""
    inp = make_msda_inputs(1, 5, 2, 8, LEVELS_5, 16, dtype=torch.float32, seed=7)
    grad_out = make_grad_output(inp, seed=8)
    for design in DESIGNS:
        _check(inp, grad_out, _run(inp, grad_out, design=design, block_num=3))


def test_fewer_queries_than_cores_and_batch_straddling_tiles():
    inp = make_msda_inputs(1, 3, 2, 16, LEVELS_4, 2, dtype=torch.float32, seed=9)  # 6 rows, 48 blocks
    grad_out = make_grad_output(inp, seed=10)
    _check(inp, grad_out, _run(inp, grad_out))
    inp = make_msda_inputs(3, 5, 3, 8, LEVELS_4, 3, dtype=torch.float32, seed=11)  # 45 rows over 7 blocks
    grad_out = make_grad_output(inp, seed=12)
    for design in DESIGNS:
        _check(inp, grad_out, _run(inp, grad_out, design=design, block_num=7, seed=2))


@pytest.mark.parametrize("design", DESIGNS)
def test_contention_tiny_level(design):
    """A 6x4 map sampled by a thousand queries: every pixel is hit by hundreds of points."""
    inp = make_msda_inputs(1, 1000, 2, 8, [(6, 4)], 2, dtype=torch.float32, seed=13, loc_mode="valid")
    grad_out = make_grad_output(inp, seed=14)
    grads = _run(inp, grad_out, design=design, seed=3)
    _check(inp, grad_out, grads)


def test_contention_one_pixel():
    """Every point of every query on the same pixel (plus its neighbours' bilinear share)."""
    levels = [(5, 7), (2, 3)]
    inp = make_msda_inputs(2, 300, 2, 16, levels, 3, dtype=torch.float32, seed=15)
    inp.sampling_locations[..., 0] = 0.41
    inp.sampling_locations[..., 1] = 0.63
    grad_out = make_grad_output(inp, seed=16)
    for design in DESIGNS:
        _check(inp, grad_out, _run(inp, grad_out, design=design, block_num=11, seed=4))


@pytest.mark.parametrize("bad", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
def test_nonfinite_locations(bad):
    inp = make_msda_inputs(2, 9, 3, 5, LEVELS_4, 3, dtype=torch.float32, seed=21)
    mask = torch.rand(inp.attention_weights.shape, generator=torch.Generator().manual_seed(22)) < 0.3
    inp.sampling_locations[..., 0][mask] = bad
    inp.sampling_locations[..., 1][mask.roll(1, 0)] = bad
    dropped = mask | mask.roll(1, 0)
    grad_out = make_grad_output(inp)
    cpu = _cpu(inp, grad_out)
    for design in DESIGNS:
        gv, gl, ga = _run(inp, grad_out, design=design, block_num=4)
        assert torch.isfinite(gv).all()
        assert torch.all(gl[dropped] == 0) and torch.all(ga[dropped] == 0)
        for g, c, n in zip((gv, gl, ga), cpu, ("grad_value", "grad_loc", "grad_attn")):
            _close(g, c, torch.float32, n)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_all_inputs_nonfinite(dtype):
    """DrivingSDK's test_nan: every input NaN. Every point is dropped: all gradients are 0."""
    inp = make_msda_inputs(2, 6, 2, 8, LEVELS_4, 2, dtype=dtype, seed=24)
    for t in inp.float_tensors:
        t.fill_(NAN)
    grad_out = torch.full(inp.out_shape(), NAN, dtype=dtype)
    for design in DESIGNS:
        for g in _run(inp, grad_out, design=design, block_num=3):
            assert g.dtype == dtype and torch.all(g == 0)


def test_coordinates_one_ulp_from_integers():
    """x = k - 1 ulp (floor must give k - 1), x = k exactly, and x = -1 exactly (dropped)."""
    W = H = 8  # a power of 2: loc * W is exact, so every implementation sees the same x
    inp = make_msda_inputs(1, 16, 2, 8, [(H, W)], 4, dtype=torch.float32, seed=30)
    loc = inp.sampling_locations
    k = torch.randint(0, W, loc.shape[:-1], generator=torch.Generator().manual_seed(31)).float()
    exact = (k + 0.5) / W
    below = torch.nextafter(exact, torch.zeros_like(exact))  # x = k - ulp
    kind = torch.arange(loc[..., 0].numel()).view(loc.shape[:-1]) % 4
    x = torch.where(kind == 0, below, torch.where(kind == 1, exact, torch.full_like(exact, 0.3)))
    y = torch.where(kind == 2, below, torch.where(kind == 3, torch.zeros_like(exact) - 0.5 / H, exact))
    loc[..., 0], loc[..., 1] = x, y  # kind 3: y == -1 exactly
    xs = loc[..., 0] * W - 0.5
    assert (xs[kind == 0] < k[kind == 0]).all() and (xs[kind == 0] > k[kind == 0] - 1e-5).all()
    grad_out = make_grad_output(inp, seed=32)
    for design in DESIGNS:
        gv, gl, ga = _run(inp, grad_out, design=design, block_num=3)
        assert torch.all(gl[kind == 3] == 0) and torch.all(ga[kind == 3] == 0)
        _check(inp, grad_out, (gv, gl, ga))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("design", DESIGNS)
def test_low_precision(dtype, design):
    inp = make_msda_inputs(2, 9, 3, 37, LEVELS_4, 4, dtype=dtype, seed=40)
    grad_out = make_grad_output(inp, seed=41)
    for block_num in (1, None):
        grads = _run(inp, grad_out, design=design, block_num=block_num, seed=5)
        _check(inp, grad_out, grads, dtype)
        stats = sim.last_stats()
        assert stats["atomic_bytes"] > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("deterministic", [False, True], ids=["atomic", "deterministic"])
def test_gm_and_ub_scatter_paths(dtype, deterministic):
    """A level too big (or too rarely hit) to privatise next to one that is privatised: the
    co-designed kernel's GM atomic (x0, x1) pairs and its UB accumulation in one launch."""
    levels, nq = [(24, 31), (3, 5)], 12
    t = sim.msda_backward_tiling(
        bs=2, num_queries=nq, heads=2, channels=24, points=3, levels=levels, dtype=dtype,
        deterministic=deterministic, block_num=4,
    )  # fmt: skip
    assert t["priv_levels"] == [0, 1]
    inp = make_msda_inputs(2, nq, 2, 24, levels, 3, dtype=dtype, seed=45)
    grad_out = make_grad_output(inp, seed=46)
    _check(inp, grad_out, _run(inp, grad_out, block_num=4, deterministic=deterministic), dtype)


@pytest.mark.parametrize(
    "dtype,design", [(torch.float32, "codesign"), (torch.bfloat16, "codesign"), (torch.float32, "naive")], ids=str
)
def test_deterministic_bit_identical(dtype, design):
    levels = [(24, 31), (6, 4), (3, 2)]  # GM atomics for the first level, UB for the others
    assert sim.msda_backward_tiling(
        bs=2, num_queries=40, heads=3, channels=16, points=4, levels=levels, dtype=dtype, deterministic=True
    )["priv_levels"] == [0, 1, 1]
    inp = make_msda_inputs(2, 40, 3, 16, levels, 4, dtype=dtype, seed=50)
    grad_out = make_grad_output(inp, seed=51)
    first = _run(inp, grad_out, deterministic=True, block_num=1, design=design)
    _check(inp, grad_out, first, dtype)
    for block_num, seed in ((5, 0), (5, 3), (None, 1), (31, 2)):
        again = _run(inp, grad_out, deterministic=True, block_num=block_num, seed=seed, design=design)
        for a, b in zip(first, again):
            assert torch.equal(a, b), f"block_num={block_num} seed={seed}: not bit-identical"


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_ub_plan_matches_kernel(design, dtype):
    """The host's UB plan (msda_backward_ub_bytes) is exactly what the kernel allocates."""
    levels = [(24, 31), (3, 5)]
    inp = make_msda_inputs(2, 12, 2, 24, levels, 3, dtype=dtype, seed=47)
    _run(inp, make_grad_output(inp), design=design, block_num=4)
    t = sim.msda_backward_tiling(
        bs=2, num_queries=12, heads=2, channels=24, points=3, levels=levels, dtype=dtype, design=design, block_num=4
    )
    assert sim.last_stats()["ub_peak_bytes"] == t["ub_bytes"]


def test_codesign_moves_less_than_naive():
    """The co-designed kernel reads and scatters with fewer DMA instructions (merged x0/x1 rows,
    UB privatisation of the small levels)."""
    inp = make_msda_inputs(1, 40, 2, 32, [(10, 12), (5, 6), (3, 3)], 4, dtype=torch.float32, seed=60)
    grad_out = make_grad_output(inp, seed=61)
    stats = {}
    for design in DESIGNS:
        _run(inp, grad_out, design=design, block_num=8)
        stats[design] = sim.last_stats()
    assert stats["codesign"]["dma_ops"] < 0.6 * stats["naive"]["dma_ops"]
    assert stats["codesign"]["atomic_bytes"] < stats["naive"]["atomic_bytes"]


def test_bad_inputs():
    inp = make_msda_inputs(1, 2, 2, 4, LEVELS_4, 2, dtype=torch.float32, seed=70)
    g = make_grad_output(inp)
    with pytest.raises(ValueError, match="design"):
        sim.msda_backward(g, *inp.args(), design="fast")
    with pytest.raises(TypeError, match="grad_output must have value's dtype"):
        sim.msda_backward(g.double(), *inp.args())
    with pytest.raises(TypeError, match="value must be float32"):
        sim.msda_backward(g.double(), *inp.to(torch.float64).args())
    with pytest.raises(RuntimeError, match=r"grad_output must have shape"):
        sim.msda_backward(g[:, :1], *inp.args())
    shapes, starts = shapes_and_starts(LEVELS_4)
    bad_starts = starts.clone()
    bad_starts[1] += 1
    with pytest.raises(RuntimeError, match=r"level_start_index\[1\] must be 24"):
        sim.msda_backward(g, inp.value, shapes, bad_starts, inp.sampling_locations, inp.attention_weights)
    with pytest.raises(ValueError, match="block_num"):
        sim.msda_backward(g, *inp.args(), block_num=0)


def test_empty_problem():
    inp = make_msda_inputs(1, 2, 2, 4, LEVELS_4, 2, dtype=torch.float32, seed=71)
    v, s, st, loc, attn = inp.args()
    gv, gl, ga = sim.msda_backward(torch.zeros(1, 0, 8), v, s, st, loc[:, :0], attn[:, :0])
    assert gv.shape == v.shape and torch.all(gv == 0) and gl.numel() == 0 and ga.numel() == 0


# ---------------------------------------------------------------------------------------------
# Host tiling


def _tiling_sweep():
    levels_sets = [[(1, 1)], [(6, 4), (3, 2)], LEVELS_5, [(100, 167), (50, 84), (25, 42), (13, 21)], [(200, 200)]]
    for levels in levels_sets:
        for channels in (1, 3, 16, 37, 256, 1025):
            for heads, points in ((1, 1), (8, 4), (3, 21)):
                for dtype in (torch.float32, torch.float16, torch.bfloat16):
                    yield levels, channels, heads, points, dtype


def test_tiling_property_sweep():
    """UB budget respected and every copy 32-byte legal for a sweep of shapes, both designs and modes."""
    n = 0
    for levels, channels, heads, points, dtype in _tiling_sweep():
        sz = 4 if dtype == torch.float32 else 2
        for design in DESIGNS:
            for det in (False, True):
                for ub in (188160, 120000):
                    try:
                        t = sim.msda_backward_tiling(
                            bs=2, num_queries=50, heads=heads, channels=channels, points=points, levels=levels,
                            dtype=dtype, design=design, deterministic=det, block_num=48, ub_bytes=ub,
                        )  # fmt: skip
                    except RuntimeError as e:  # only a reduced budget may be too small, with a clear error
                        assert ub < 188160 and "does not fit the 120000-byte UB" in str(e)
                        continue
                    n += 1
                    assert t["ub_bytes"] <= ub
                    lp = len(levels) * points
                    assert t["cs"] >= channels and t["cs"] * sz % 32 == 0 and (t["cs"] - channels) * sz < 32
                    assert t["lps"] >= lp and t["lps"] % 16 == 0 and t["lps"] * sz % 32 == 0
                    assert t["np"] % 64 == 0 and t["np"] >= t["tile_rows"] * t["lps"]
                    assert 1 <= t["tile_rows"] <= 4095 and t["group"] in (2, 4, 8, 16)
                    assert t["workspace_bytes"] == (
                        0 if sz == 4 else 2 * sum(h * w for h, w in levels) * heads * channels * 4
                    )
                    if design == "codesign":
                        assert t["cs"] // 8 <= 255  # repeat strides are 8-bit 32-byte units
                        rows = [h * w for h, w in levels]
                        assert t["priv_rows"] == sum(r for r, p in zip(rows, t["priv_levels"]) if p)
                        per_block = 50 if det else min(50, math.ceil(2 * 50 * heads / 48))
                        assert all(r <= 4 * points * per_block for r, p in zip(rows, t["priv_levels"]) if p)
                    chunks = t["slice_chunks"]
                    assert chunks == 1 if det else 1 <= chunks <= 50
                    assert t["tile_rows"] <= math.ceil(50 / chunks)
    assert n > 500


def test_tiling_privatises_small_levels_only():
    """Deformable-DETR levels: only 13x21 fits UB per head (value + fp32 grad = 52 KB); a level
    is privatised only when a block hits it with more corner rows than it has pixels."""
    detr = [(100, 167), (50, 84), (25, 42), (13, 21)]
    for det in (False, True):
        t = sim.msda_backward_tiling(bs=2, num_queries=1000, heads=8, channels=32, points=4, levels=detr,
                                     deterministic=det)  # fmt: skip
        assert t["priv_levels"] == [0, 0, 0, 1] and t["priv_rows"] == 13 * 21
    t = sim.msda_backward_tiling(bs=2, num_queries=10, heads=8, channels=32, points=4, levels=detr)
    assert t["priv_levels"] == [0, 0, 0, 0]  # 10 queries hit 13x21 = 273 pixels too rarely


def test_tiling_rejects_too_many_channels():
    with pytest.raises(RuntimeError, match="channels=4096 exceeds"):
        sim.msda_backward_tiling(bs=1, num_queries=1, heads=1, channels=4096, points=1, levels=[(2, 2)])
