"""The MSDA forward AscendC kernels (co-designed and naive) under the emulator, against the CPU op
(torch.ops.npu_ops.msda), the float64 grid_sample reference and the float64 transcription of mmcv's
CUDA kernel: the shape families of tests/msda, many C, L*P > 64, few queries, batch-straddling
blocks, contention, non-finite and near-integer coordinates, fp16/bf16, block counts and seeds,
the UB peak, and a property test of the host tiling."""

from __future__ import annotations

import npu_ops  # noqa: F401  (registers torch.ops.npu_ops)
import npu_ops.ascend_sim as sim
import pytest
import torch
from utils import (
    LEVELS_4,
    LEVELS_5,
    LEVELS_MMCV,
    LEVELS_1x1,
    LEVELS_1xW,
    LEVELS_HxW,
    MsdaInputs,
    exact_msda,
    make_msda_inputs,
    reference_fwd_bwd,
)

DESIGNS = ["codesign", "naive"]
# (rtol, atol relative to the reference's magnitude) against float64 maths on the same rounded
# inputs: fp32 maths inside, one rounding to the output dtype.
TOL = {torch.float32: (2e-5, 2e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}
DTYPE_BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2}


def _run(inp: MsdaInputs, design: str, **kwargs) -> torch.Tensor:
    out = sim.msda_forward(*inp.args(), design=design, **kwargs)
    stats = sim.last_stats()
    assert 0 < stats["ub_peak_bytes"] <= sim.UB_CAPACITY_BYTES == 188160
    return out


def _tiling(inp: MsdaInputs, design: str, block_num=None) -> dict:
    bs, _, heads, channels = inp.value.shape
    nq, points = inp.sampling_locations.shape[1], inp.sampling_locations.shape[4]
    return sim.msda_forward_tiling(
        bs, nq, heads, channels, points, inp.levels, inp.value.dtype, design, block_num=block_num
    )


def _close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    rtol, atol = TOL[dtype]
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    assert actual.dtype == dtype and actual.shape == expected.shape
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol * scale)


def _check(inp: MsdaInputs, design: str, **kwargs) -> torch.Tensor:
    """Kernel vs float64 reference (on the rounded inputs) and vs the CPU op."""
    dtype = inp.value.dtype
    out = _run(inp, design, **kwargs)
    ref, _ = reference_fwd_bwd(inp)
    _close(out, ref, dtype)
    cpu = torch.ops.npu_ops.msda(*inp.args())
    _close(out, cpu.double(), dtype)
    return out


# ---------------------------------------------------------------------------------------------
# The shape families of tests/msda/test_forward_backward.py (bs, nq, heads, C, levels, points).
FAMILIES = [
    (1, 1, 1, 1, LEVELS_1x1, 1),
    (2, 31, 3, 3, LEVELS_4, 4),
    (1, 33, 8, 8, LEVELS_5, 8),
    (3, 33, 1, 32, LEVELS_4, 8),
    (2, 1, 3, 37, LEVELS_5, 1),
    (1, 31, 8, 64, LEVELS_1xW, 4),
    (2, 33, 3, 256, LEVELS_HxW, 1),
    (2, 31, 8, 1, LEVELS_4, 8),
    (2, 33, 1, 3, LEVELS_1xW, 8),
    (3, 31, 3, 8, LEVELS_1x1, 4),
    (3, 33, 3, 37, LEVELS_4, 4),
]


def _fid(c) -> str:
    bs, nq, heads, channels, levels, points = c
    return f"bs{bs}-nq{nq}-h{heads}-c{channels}-L{len(levels)}-p{points}"


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("case", FAMILIES, ids=[_fid(c) for c in FAMILIES])
def test_shape_families(case, design):
    bs, nq, heads, channels, levels, points = case
    inp = make_msda_inputs(bs, nq, heads, channels, levels, points, dtype=torch.float32, seed=len(levels) + nq)
    out = _check(inp, design, block_num=7, seed=1)
    assert out.abs().sum() > 0


@pytest.mark.parametrize("design", DESIGNS)
# 128, 256, 1025: the row-broadcast ops take several 64-column segments; 2049 (fp32): more than 255
# blocks a row, so they fall back to one row per instruction.
@pytest.mark.parametrize("channels", [1, 3, 16, 32, 37, 64, 128, 256, 1025, 2049])
def test_channels(channels, design):
    dtype = torch.float16 if channels in (3, 37, 1025) else torch.float32
    inp = make_msda_inputs(2, 5, 2, channels, LEVELS_MMCV, 2, dtype=dtype, seed=channels)
    _check(inp, design, block_num=3, seed=channels)


@pytest.mark.parametrize("design", DESIGNS)
def test_many_levels_and_points(design):
    """L*P = 80 > 64 (DrivingSDK's limit), points split into groups by the co-designed tiling."""
    levels = [(5, 4), (3, 3), (2, 5), (1, 1), (4, 2)]
    inp = make_msda_inputs(1, 6, 2, 8, levels, 16, dtype=torch.float32, seed=5)
    _check(inp, design, block_num=2)


@pytest.mark.parametrize("design", DESIGNS)
def test_beyond_vendor_limits(design):
    """H = 17, L = 17, P = 5 (vendor kernels: H, L, P <= 16, L*P <= 64), C = 40 (not a multiple of 16)."""
    levels = [(1 + i % 3, 2 + i % 4) for i in range(17)]
    inp = make_msda_inputs(1, 3, 17, 40, levels, 5, dtype=torch.float16, seed=17)
    _check(inp, design, block_num=2)


@pytest.mark.parametrize("design", DESIGNS)
def test_fewer_queries_than_cores(design):
    inp = make_msda_inputs(1, 3, 2, 16, LEVELS_4, 4, dtype=torch.float32, seed=6)
    _check(inp, design)  # default block_num 48: 45 blocks own no row


@pytest.mark.parametrize("design", DESIGNS)
def test_blocks_straddle_batches(design):
    """15 rows of 3 batches over 2 blocks: block 0 owns rows 0..6 (batches 0 and 1)."""
    inp = make_msda_inputs(3, 5, 2, 8, LEVELS_4, 2, dtype=torch.float32, seed=7)
    _check(inp, design, block_num=2)
    _check(inp, design, block_num=4, seed=3)


@pytest.mark.parametrize("design", DESIGNS)
def test_tiny_level_many_queries(design):
    """Contention: 1024 queries on one 6x4 map."""
    inp = make_msda_inputs(1, 1024, 1, 8, [(6, 4)], 4, dtype=torch.float32, seed=8)
    _check(inp, design, block_num=7)


@pytest.mark.parametrize("design", DESIGNS)
def test_all_points_on_one_pixel(design):
    inp = make_msda_inputs(2, 40, 2, 16, LEVELS_4, 3, dtype=torch.float32, seed=9)
    for lvl, (h, w) in enumerate(inp.levels):
        inp.sampling_locations[:, :, :, lvl, :, 0] = 0.5 / w  # pixel centre (0, 0) of every level
        inp.sampling_locations[:, :, :, lvl, :, 1] = 0.5 / h
    out = _check(inp, design, block_num=5)
    v = inp.value.double()
    expect = torch.zeros_like(out, dtype=torch.float64).view(2, 40, 2, 16)
    for lvl in range(len(inp.levels)):
        a = inp.attention_weights[:, :, :, lvl].double().sum(-1)  # [bs, nq, heads]
        expect += a[..., None] * v[:, int(inp.level_start_index[lvl])][:, None]
    _close(out, expect.view(2, 40, 32), torch.float32)


@pytest.mark.parametrize("design", DESIGNS)
def test_large_levels_take_the_dma_path(design):
    """Levels too large to be UB-resident (co-design: paired corner DMAs) next to small ones."""
    levels = [(40, 50), (20, 25), (6, 4)]
    for dtype in (torch.float32, torch.bfloat16):
        inp = make_msda_inputs(2, 9, 2, 37, levels, 4, dtype=dtype, seed=10)
        if design == "codesign":  # 3 blocks of 6 rows: block 1 straddles the batch boundary at row 9
            t = _tiling(inp, design, block_num=3)
            assert t["has_dma_levels"] == 1 and t["num_resident"] >= 1 and t["level_ub_offset"][0] == -1
        _check(inp, design, block_num=3, seed=2)


def _local_locations(inp: MsdaInputs, spread: float, seed: int) -> None:
    """Encoder-like locations: query q's reference is pixel q of the flattened first level, the
    points scatter a few pixels around it (some off the map)."""
    gen = torch.Generator().manual_seed(seed)
    h0, w0 = inp.levels[0]
    bs, nq, heads, L, P, _ = inp.sampling_locations.shape
    q = torch.arange(nq, dtype=torch.float64)
    ref_x, ref_y = ((q % w0) + 0.5) / w0, ((q // w0) % h0 + 0.5) / h0
    for lvl, (h, w) in enumerate(inp.levels):
        noise = torch.randn(bs, nq, heads, P, 2, generator=gen, dtype=torch.float64) * spread
        x = ref_x.view(1, nq, 1, 1) + noise[..., 0] / w
        y = ref_y.view(1, nq, 1, 1) + noise[..., 1] / h
        inp.sampling_locations[:, :, :, lvl, :, 0] = x.to(inp.sampling_locations.dtype)
        inp.sampling_locations[:, :, :, lvl, :, 1] = y.to(inp.sampling_locations.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_large_level_windows(dtype):
    """Co-design: a large level whose tile corners stay local is gathered from a per-tile window
    (one DMA per window row) instead of paired corner DMAs; same result as the naive design."""
    levels = [(30, 200), (15, 100), (4, 4)]
    inp = make_msda_inputs(2, 48, 2, 16, levels, 4, dtype=torch.float64, seed=18)
    _local_locations(inp, spread=1.5, seed=18)
    inp = inp.to(dtype)
    t = _tiling(inp, "codesign", block_num=4)
    assert t["window_pixels"] > 0 and t["level_ub_offset"][0] == -1
    out = _check(inp, "codesign", block_num=4, seed=1)
    windowed = sim.last_stats()["dma_ops"]
    naive = _check(inp, "naive", block_num=4)
    torch.testing.assert_close(out.float(), naive.float(), rtol=TOL[dtype][0], atol=TOL[dtype][1] * 8)
    # Paired DMAs alone would issue 2 per valid point of the two large levels: 2 * 2*48 rows * 2 heads * 2 * 4.
    assert windowed < 2 * 96 * 2 * 2 * 4 / 4


@pytest.mark.parametrize("width, band", [(24, True), (600, False)])
def test_window_widened_to_whole_rows(width, band):
    """Co-design: a window box spanning most of a narrow level is widened to whole rows and loaded
    by one DMA (consecutive pixels); on a wide level the extra bytes are not worth it and the box
    is loaded row by row. Both match the float64 reference and the CPU op."""
    levels = [(40, width), (4, 4)]
    inp = make_msda_inputs(1, 8, 1, 16, levels, 4, dtype=torch.float64, seed=21)
    gen = torch.Generator().manual_seed(21)
    # Level 0 pixel coordinates: x in [1.2, 20.8] (columns 1..21), y in [10.2, 11.8] (rows 10..12).
    px = 1.2 + 19.6 * torch.rand(1, 8, 1, 4, generator=gen, dtype=torch.float64)
    py = 10.2 + 1.6 * torch.rand(1, 8, 1, 4, generator=gen, dtype=torch.float64)
    inp.sampling_locations[:, :, :, 0, :, 0] = (px + 0.5) / width
    inp.sampling_locations[:, :, :, 0, :, 1] = (py + 0.5) / 40
    inp = inp.to(torch.float32)
    t = _tiling(inp, "codesign", block_num=1)
    assert t["tile_q"] >= 8 and t["window_pixels"] >= 3 * 24 and t["level_ub_offset"][0] == -1
    assert t["level_ub_offset"][1] != -1
    _check(inp, "codesign", block_num=1, seed=3)
    dma_in = sim.last_stats()["per_block"][0]["dma_in_ops"]
    # loc + attn + the resident 4x4 level, then the window: 1 DMA as a band, 3 as rows 10..12.
    assert dma_in == 3 + (1 if band else 3)


# ---------------------------------------------------------------------------------------------
# Exact semantics: non-finite and near-integer coordinates, weights on dropped points.

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("design", DESIGNS)
def test_nonfinite_locations_and_weights(design):
    """NaN/Inf locations drop the point; a NaN/Inf weight on a dropped point has no effect."""
    levels = [(20, 30), (6, 4), (3, 2)]
    inp = make_msda_inputs(2, 6, 2, 8, levels, 4, dtype=torch.float32, seed=11)
    loc, attn = inp.sampling_locations, inp.attention_weights
    loc[0, 0, 0, :, 0, 0] = NAN
    loc[0, 1, 1, :, 1, 1] = INF
    loc[1, 2, 0, :, 2, 0] = -INF
    loc[1, 3, 1, :, :, :] = NAN  # every point of (1, 3, head 1) dropped
    attn[0, 0, 0, :, 0] = NAN
    loc[1, 4, 0, :, 0, 0] = -5.0  # far outside
    attn[1, 4, 0, :, 0] = INF
    out = _run(inp, design, block_num=3)
    exact = exact_msda(*[t.double() if t.is_floating_point() else t for t in inp.args()])
    torch.testing.assert_close(out.double(), exact, rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(out, torch.ops.npu_ops.msda(*inp.args()), rtol=2e-5, atol=2e-5)
    assert torch.equal(out[1, 3, 8:], torch.zeros(8))


@pytest.mark.parametrize("design", DESIGNS)
def test_off_map_corners_do_not_read_value(design):
    """value = Inf at pixel (0, 0) of every level: only corners really on that pixel see it (mmcv
    reads no off-map corner), so the NaN/Inf pattern and the finite values match the CPU op."""
    levels = [(20, 30), (6, 4), (3, 2)]
    inp = make_msda_inputs(2, 6, 2, 8, levels, 4, dtype=torch.float32, seed=11)
    for start in inp.level_start_index.tolist():
        inp.value[:, start] = INF
    inp.sampling_locations[1, 3, 1] = NAN  # all dropped: exactly zero, not 0 * Inf
    inp.sampling_locations[0, 2] = 0.99  # bottom-right corners only: finite
    out = _run(inp, design, block_num=3)
    cpu = torch.ops.npu_ops.msda(*inp.args())
    assert (~torch.isfinite(cpu)).any()
    torch.testing.assert_close(out, cpu, rtol=2e-5, atol=2e-5, equal_nan=True)
    assert torch.equal(out[1, 3, 8:], torch.zeros(8)) and torch.isfinite(out[0, 2]).all()


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_coordinates_one_ulp_from_integers(design, dtype):
    """x = loc * W - 0.5 within one ulp of an integer (floor must not round them up), x = -1, W."""
    levels = [(8, 16), (4, 4)]
    bs, nq, heads, points = 1, 8, 1, 12
    inp = make_msda_inputs(bs, nq, heads, 4, levels, points, dtype=torch.float32, seed=12)
    gen = torch.Generator().manual_seed(0)
    for lvl, (h, w) in enumerate(levels):
        k = torch.randint(-1, w + 1, (bs, nq, heads, points), generator=gen).float()
        side = torch.randint(-1, 2, k.shape, generator=gen).float()  # -1 ulp, exact, +1 ulp
        px = torch.nextafter(k, k + side)
        py = torch.randint(-1, h + 1, k.shape, generator=gen).float()
        py = torch.nextafter(py, py - side)
        inp.sampling_locations[:, :, :, lvl, :, 0] = (px + 0.5) / w
        inp.sampling_locations[:, :, :, lvl, :, 1] = (py + 0.5) / h
    inp = inp.to(dtype)
    out = _run(inp, design, block_num=2)
    cpu = torch.ops.npu_ops.msda(*inp.args())
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(out.double(), cpu.double(), rtol=rtol, atol=atol * 4)
    exact = exact_msda(*[t.double() if t.is_floating_point() else t for t in inp.args()])
    torch.testing.assert_close(out.double(), exact, rtol=rtol, atol=atol * 4)


# ---------------------------------------------------------------------------------------------
# Low precision, block counts and seeds.


@pytest.mark.parametrize("design", DESIGNS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_low_precision(design, dtype):
    inp = make_msda_inputs(2, 13, 3, 37, LEVELS_5, 4, dtype=dtype, seed=13, attn_mode="softmax")
    _check(inp, design, block_num=5, seed=4)


def test_mixed_dtype_inputs_are_cast_like_mmcv():
    inp = make_msda_inputs(1, 4, 2, 16, LEVELS_MMCV, 2, dtype=torch.float16, seed=14)
    loc32, attn32 = inp.sampling_locations.float(), inp.attention_weights.float()
    out = sim.msda_forward(inp.value, inp.spatial_shapes, inp.level_start_index, loc32, attn32, block_num=2)
    assert out.dtype == torch.float16
    assert torch.equal(out, sim.msda_forward(*inp.args(), block_num=2))


@pytest.mark.parametrize("design", DESIGNS)
def test_block_counts_and_seeds_give_identical_bits(design):
    inp = make_msda_inputs(2, 37, 2, 24, LEVELS_4, 3, dtype=torch.float32, seed=15)
    base = _check(inp, design, block_num=1)
    for block_num, seed in [(7, 0), (7, 5), (None, 1), (None, 2), (100, 3)]:
        assert torch.equal(_run(inp, design, block_num=block_num, seed=seed), base)


def test_designs_agree_and_codesign_issues_fewer_dmas():
    inp = make_msda_inputs(2, 64, 4, 32, [(12, 16), (6, 8), (3, 4), (2, 2)], 4, dtype=torch.float16, seed=16)
    outs, stats = {}, {}
    for design in DESIGNS:
        outs[design] = _run(inp, design, block_num=4)
        stats[design] = sim.last_stats()
        t = _tiling(inp, design, block_num=4)
        assert stats[design]["ub_peak_bytes"] == t["ub_bytes"]  # the tiling plans what the kernel allocates
    torch.testing.assert_close(outs["codesign"].float(), outs["naive"].float(), rtol=2e-3, atol=2e-3)
    assert stats["codesign"]["dma_ops"] * 10 < stats["naive"]["dma_ops"]
    assert stats["codesign"]["scalar_ub_ops"] < stats["naive"]["scalar_ub_ops"]


def test_empty_inputs():
    inp = make_msda_inputs(1, 1, 2, 4, LEVELS_MMCV, 2, dtype=torch.float32)
    loc = inp.sampling_locations[:, :0]
    attn = inp.attention_weights[:, :0]
    out = sim.msda_forward(inp.value, inp.spatial_shapes, inp.level_start_index, loc, attn)
    assert out.shape == (1, 0, 8)


def test_bad_input_errors_name_the_argument():
    inp = make_msda_inputs(1, 2, 2, 4, LEVELS_MMCV, 2, dtype=torch.float32)
    with pytest.raises(ValueError, match="design"):
        sim.msda_forward(*inp.args(), design="fast")
    with pytest.raises(TypeError, match="value"):
        sim.msda_forward(*inp.to(torch.float64).args())
    with pytest.raises(RuntimeError, match="level_start_index"):
        sim.msda_forward(inp.value, inp.spatial_shapes, inp.level_start_index + 1, *inp.args()[3:])
    with pytest.raises(RuntimeError, match="attention_weights"):
        sim.msda_forward(*inp.args()[:4], inp.attention_weights[:, :, :1])
    with pytest.raises(ValueError, match="block_num"):
        sim.msda_forward(*inp.args(), block_num=0)
    big = make_msda_inputs(1, 1, 1, 6000, [(1, 1)], 1, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="UB"):
        sim.msda_forward(*big.args())


# ---------------------------------------------------------------------------------------------
# Host tiling: UB budget and 32-byte-legal copies over a sweep of shapes.


def _ub_plan(t: dict, design: str, heads: int, levels: int, points: int, sz: int) -> int:
    """The UB plan written independently from the kernel's InitBuffer list (msda_forward.h)."""
    cp, bufs = t["c_pad"], t["buffer_num"]

    def up(n: int) -> int:
        return (n + 31) // 32 * 32

    if design == "naive":
        m = heads * levels * points
        total = bufs * (up(2 * m * sz) + up(m * sz) + cp * sz + heads * cp * sz)
        total += up(2 * m * 4) + up(m * 4) + heads * cp * 4 + (cp * 4 if sz == 2 else 0)
        return total
    q, tn, ce = t["tile_q"], t["tile_n"], t["chunk_elems"]
    win = t["window_pixels"] > 0
    res, dma = t["num_resident"] > 0 or win, t["has_dma_levels"] == 1
    slack = 256  # the row-broadcast repeats span a whole repeat past the last row
    total = bufs * (q * t["loc_row_bytes"] + q * t["attn_row_bytes"] + ce * sz + q * cp * sz)
    total += bufs * slack if sz == 4 else 0
    total += tn * sz if sz == 2 else 0
    total += (22 + 5 * res + 5 * win + 2 * dma) * tn * 4 + 6 * up(tn // 8)
    rows = ce // cp
    total += 2 * rows * 32  # point table and weight / offset blocks: 32 B per chunk row
    total += ((cp + 63) // 64 * 64 * 4 + ce * 4 + slack) if res else 0  # channel ramp, element offsets
    total += ce * 4 + slack if sz == 2 else 0  # fp32 copy of a 16-bit chunk
    total += q * cp * 4
    total += t["resident_bytes"] + t["window_pixels"] * cp * sz
    return total


SWEEP = [
    # (batch, nq, heads, channels, points, levels)
    (2, 22223, 8, 32, 4, [(100, 167), (50, 84), (25, 42), (13, 21)]),  # Deformable-DETR encoder
    (2, 300, 8, 32, 4, [(100, 167), (50, 84), (25, 42), (13, 21)]),  # decoder
    (1, 89023, 8, 32, 4, [(200, 334), (100, 167), (50, 84), (25, 42), (13, 21)]),  # DINO
    (6, 9680, 8, 32, 8, [(116, 200), (58, 100), (29, 50), (15, 25)]),  # BEVFormer SCA
    (1, 1450, 8, 256, 8, [(60, 40)] * 8),  # large C
    (6, 9680, 4, 37, 3, [(60, 40)] * 5),  # unaligned
    (1, 7, 1, 1, 1, [(1, 1)]),
    (3, 5, 3, 1025, 2, [(6, 4), (3, 2)]),
    (1, 1, 16, 8, 16, [(2, 3)] * 16),
    (1, 100, 2, 3, 21, [(7, 5), (1, 9)]),
    (1, 4096, 1, 64, 4, [(4096, 4096)]),
]


@pytest.mark.parametrize("case", SWEEP, ids=lambda c: f"b{c[0]}-q{c[1]}-h{c[2]}-c{c[3]}-p{c[4]}-L{len(c[5])}")
def test_tiling_budget_and_copy_legality(case):
    batch, nq, heads, channels, points, levels = case
    for dtype, sz in DTYPE_BYTES.items():
        for design in DESIGNS:
            for block_num in (1, 7, 48):
                t = sim.msda_forward_tiling(batch, nq, heads, channels, points, levels, dtype, design, block_num)
                assert t["ub_bytes"] <= sim.UB_CAPACITY_BYTES
                assert t["ub_bytes"] == _ub_plan(t, design, heads, len(levels), points, sz)
                assert t["c_pad"] >= channels and t["c_pad"] * sz % 32 == 0 and (t["c_pad"] - channels) * sz < 32
                assert t["loc_row_bytes"] % 32 == 0 and t["attn_row_bytes"] % 32 == 0
                assert t["block_num"] == block_num
                if design == "naive":
                    continue
                q, pg = t["tile_q"], t["point_group"]
                assert 1 <= q <= 4095 and 1 <= pg <= points
                assert t["tile_n"] % 64 == 0 and t["tile_n"] >= q * len(levels) * points  # Compare: 256 B
                assert t["chunk_elems"] == pg * 4 * q * t["c_pad"] and t["chunk_elems"] * sz % 32 == 0
                # Resident levels: 32-byte aligned rows after the zero row, disjoint, inside the region.
                spans = sorted(
                    (off, off + h * w * t["c_pad"] * sz)
                    for off, (h, w) in zip(t["level_ub_offset"], levels)
                    if off >= 0
                )
                assert len(spans) == t["num_resident"]
                assert t["has_dma_levels"] == int(t["num_resident"] < len(levels))
                end = t["c_pad"] * sz if spans or t["window_pixels"] else 0  # the zero row
                for lo, hi in spans:
                    assert lo % 32 == 0 and lo >= end
                    end = hi
                assert end == t["resident_bytes"]
                # The window (DMA levels only): after the resident levels, block counts <= 4095.
                assert t["window_pixels"] <= 4095 and (t["window_pixels"] == 0 or t["has_dma_levels"] == 1)
                assert t["window_pixels"] == 0 or t["window_ub_offset"] == t["resident_bytes"]


def test_tiling_reports_unsupported_shapes():
    with pytest.raises(RuntimeError, match="num_levels"):
        sim.msda_forward_tiling(1, 1, 1, 8, 1, [(1, 1)] * 65)
    with pytest.raises(RuntimeError, match="2\\^24"):
        sim.msda_forward_tiling(1, 1, 1, 8, 1, [(4097, 4097)])
    with pytest.raises(RuntimeError, match="smallest co-designed tile"):
        sim.msda_forward_tiling(1, 1, 1, 6000, 4, [(2, 2)])
    with pytest.raises(RuntimeError, match="budget"):
        sim.msda_forward_tiling(1, 1, 1, 64, 4, [(2, 2)], ub_bytes=4096)
