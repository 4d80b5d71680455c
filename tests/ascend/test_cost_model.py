"""The Atlas A2 cost model (npu_ops.bench.ascend_cost_model) and the MSDA cost-model benchmark
(bench/bench_ascend_msda.py): arithmetic on hand-computed counters, monotonicity, chip-level
composition, the report's labels and a smoke run of ``--quick``."""

from __future__ import annotations

import csv
import dataclasses
import math

import npu_ops
import npu_ops.ascend_sim as sim
import pytest
import torch
from npu_ops.bench import ascend_cost_model as cm
from npu_ops.bench import ascend_msda

# Round figures so that the expected times below can be computed by hand.
FIG = cm.A2Figures(
    clock_hz=1e9,
    vector_cores=4,
    gm_to_ub_bytes_per_s=1e9,
    ub_to_gm_bytes_per_s=2e9,
    atomic_to_gm_bytes_per_s=0.5e9,
    dma_issue_cycles=100.0,
    dma_burst_cycles=2.0,
    vector_head_cycles=10.0,
    vector_repeat_cycles=1.0,
    gather_head_cycles=6.0,
    ub_gather_bytes_per_s=4e9,
    scalar_ub_cycles=5.0,
    sync_cycles=1.0,
    chip_gm_bytes_per_s=2e9,
)


def counters(**kw: float) -> dict[str, float]:
    c = dict.fromkeys(cm.COUNTERS, 0.0)
    c.update(kw)
    return c


def test_pure_dma_launch():
    # 10 loads of 1 KiB, one burst each: 10 * (100 + 2) cycles + 10240 B at 1 B/ns.
    t = cm.core_time(counters(dma_in_ops=10, dma_bursts=10, gm_read_bytes=10240), FIG)
    assert t.mte2 == pytest.approx((10 * 102 + 10240) * 1e-9)
    assert t.mte3 == t.vector == t.scalar == 0
    assert t.overlap == t.serial == t.mte2 and t.bound == "MTE2"


def test_stores_atomics_and_bursts_split_between_the_mtes():
    # 3 loads (4 bursts, 3000 B) and 1 store + 1 atomic store (4 bursts, 1000 B of which 400 atomic).
    c = counters(dma_in_ops=3, dma_out_ops=2, atomic_dma_ops=1, dma_bursts=8, gm_read_bytes=3000, gm_write_bytes=1000)
    c["atomic_bytes"] = 400
    t = cm.core_time(c, FIG)
    burst_ns = 8 * 2
    assert t.mte2 == pytest.approx((3 * 100 + burst_ns * 3 / 5 + 3000) * 1e-9)
    assert t.mte3 == pytest.approx((2 * 100 + burst_ns * 2 / 5 + 600 / 2 + 400 / 0.5) * 1e-9)


def test_vector_gather_and_scalar():
    # 5 vector instructions, 1 of them a Gather of 512 B (2 repeats of the 12 counted).
    c = counters(vector_ops=5, vector_repeats=12, gather_ops=1, gather_bytes=512, scalar_ub_ops=7, sync_ops=3)
    t = cm.core_time(c, FIG)
    assert t.vector == pytest.approx((4 * 10 + 10 * 1 + 6) * 1e-9 + 512 / 4e9)
    assert t.scalar == pytest.approx((7 * 5 + 3 * 1) * 1e-9)
    assert t.serial == pytest.approx(t.vector + t.scalar) and t.overlap == t.vector


@pytest.mark.parametrize("key", cm.COUNTERS)
def test_more_work_never_takes_less_time(key):
    base = counters(
        dma_in_ops=4,
        dma_out_ops=2,
        dma_bursts=9,
        gm_read_bytes=4096,
        gm_write_bytes=1024,
        vector_ops=6,
        vector_repeats=20,
        scalar_ub_ops=3,
        sync_ops=5,
    )
    more = dict(base)
    more[key] += 1000
    a, b = cm.core_time(base, FIG), cm.core_time(more, FIG)
    assert b.serial >= a.serial and b.overlap >= a.overlap
    if key not in ("atomic_bytes", "atomic_dma_ops", "gather_ops"):  # re-priced parts of other counters
        assert b.serial > a.serial, key


def test_slower_figures_never_take_less_time():
    c = counters(dma_in_ops=8, dma_bursts=8, gm_read_bytes=8192, vector_ops=4, vector_repeats=32)
    t = cm.core_time(c, FIG).serial
    for field, value in (("dma_issue_cycles", 200.0), ("gm_to_ub_bytes_per_s", 0.5e9), ("vector_head_cycles", 20.0)):
        assert cm.core_time(c, dataclasses.replace(FIG, **{field: value})).serial > t, field


def test_chip_time_slowest_core_waves_and_gm_cap():
    small = counters(dma_in_ops=1, dma_bursts=1, gm_read_bytes=100)  # 202 ns
    big = counters(dma_in_ops=1, dma_bursts=1, gm_read_bytes=900)  # 1002 ns
    chip = cm.chip_time([small, big, small], FIG)
    assert chip.overlap == pytest.approx(1002e-9) and not chip.gm_bound
    # 6 blocks on 4 cores: cores 0 and 1 run two blocks each.
    chip = cm.chip_time([big, big, small, small, big, small], FIG)
    assert chip.overlap == pytest.approx(2 * 1002e-9)
    # One core's share replicated on the whole chip: 4 x 900 B at 2 GB/s = 1.8 us > 1 us per core.
    chip = cm.chip_time([big], FIG, replicas=4)
    assert chip.gm_bytes == 3600 and chip.gm_bound and chip.overlap == pytest.approx(1.8e-6)


def test_bad_counters_are_named():
    c = counters()
    del c["dma_bursts"]
    with pytest.raises(KeyError, match="dma_bursts"):
        cm.core_time(c)
    with pytest.raises(ValueError, match="gm_read_bytes"):
        cm.core_time(counters(gm_read_bytes=-1))
    with pytest.raises(ValueError, match="scale factor"):
        cm.scaled(counters(), 0)


def test_a2_figures_are_the_cited_ones():
    f = cm.A2_FIGURES
    assert f.clock_hz == 1.85e9 and f.vector_cores == 48
    assert f.gm_to_ub_bytes_per_s == pytest.approx(100.9 * 2**30)
    assert f.ub_to_gm_bytes_per_s == pytest.approx(188.46 * 2**30)
    assert f.ub_gather_bytes_per_s * 48 == pytest.approx(845e9)
    # Derived from xMSDA's 106 GB/s: 128 B rows on 48 cores -> ~107 cycles per row in total.
    per_row = f.dma_issue_cycles + 128 / f.bytes_per_cycle(f.gm_to_ub_bytes_per_s)
    assert per_row == pytest.approx(128 / (106e9 / 48) * 1.85e9)
    assert set(cm.FIGURE_SOURCES) == {fl.name for fl in dataclasses.fields(cm.A2Figures)}


def test_model_of_an_emulated_chorus_launch_scales_with_the_data():
    # Real counters: a masked_blend twice as large costs about twice as much on the chip.
    times = []
    for n in (1 << 18, 1 << 19):
        g = torch.Generator().manual_seed(0)
        fresh, cached, mask = (torch.rand(n, generator=g) for _ in range(3))
        sim.masked_blend(fresh, cached, mask, block_num=8)
        stats = sim.last_stats()
        times.append(cm.chip_time(stats["per_block"]).overlap)
    assert 1.6 < times[1] / times[0] < 2.4


# --------------------------------------------------------------------------- the benchmark script


class _FakeSim:
    """Stands in for npu_ops.ascend_sim: the naive design issues 4 DMAs per sampling point; the
    backward also zero-fills a 64 KiB accumulator, split over the blocks (launch-wide work)."""

    ZERO_BYTES = 65536

    def __init__(self) -> None:
        self.stats: dict = {}

    def _set(self, points: int, naive: bool, backward: bool, blocks: int) -> None:
        dmas = points * (4 if naive else 1)
        c = counters(dma_in_ops=dmas, dma_bursts=dmas, gm_read_bytes=128 * dmas, vector_ops=20, vector_repeats=40)
        if backward:
            c.update(dma_out_ops=dmas, atomic_dma_ops=dmas, gm_write_bytes=128 * dmas, atomic_bytes=128 * dmas)
        c["dma_ops"] = c["dma_in_ops"] + c["dma_out_ops"]
        # The blocks share the points evenly; every block zeroes its slice (one DMA each).
        per_block = [{k: v / blocks for k, v in c.items()} for _ in range(blocks)]
        if backward:
            for b in per_block:
                b["gm_write_bytes"] += self.ZERO_BYTES / blocks
                b["dma_out_ops"] += self.ZERO_BYTES / 1024 / blocks  # 1 KiB per DMA
                b["dma_ops"] += self.ZERO_BYTES / 1024 / blocks
        total = {k: sum(b[k] for b in per_block) for k in c}
        self.stats = {**total, "ub_peak_bytes": 1024, "blocks": blocks, "per_block": per_block}

    def msda_forward(self, value, shapes, starts, loc, attn, *, block_num, seed, design):
        assert block_num == 1
        self._set(loc.shape[1] * loc.shape[2] * loc.shape[3] * loc.shape[4], design == "naive", False, block_num)

    def msda_backward(self, grad, value, shapes, starts, loc, attn, *, block_num, seed, design):
        self._set(loc.shape[1] * loc.shape[2] * loc.shape[3] * loc.shape[4], design == "naive", True, block_num)
        assert grad.shape == (1, loc.shape[1], value.shape[2] * value.shape[3])

    def last_stats(self) -> dict:
        return self.stats


def test_report_labels_scaling_and_speedup(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(ascend_msda, "_sim", _FakeSim)
    rc = ascend_msda.main(["--quick", "--cases", "detr_enc", "--dtype", "float32", "--csv", str(tmp_path / "m.csv")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "MODEL, not a measurement" in out and "scaled down 4x" in out
    assert "detr_enc/4 float32 forward" in out and "Goal of issue 5" in out
    case = ascend_msda.resolve_case("detr_enc", scale=4)
    runs = ascend_msda.emulate(case, "float32", max_queries=48, cores=48)
    fwd = {r.design: r for r in runs if r.direction == "forward"}
    assert fwd["naive"].per_point("dma_ops") > 3.9 and fwd["codesign"].per_point("dma_ops") < 1.1
    # Share of one core: ceil(Nq / 48) queries, all emulated (no extrapolation) at this size.
    assert fwd["naive"].q_core == math.ceil(case.nq / 48) == fwd["naive"].q_emul
    speedup = ascend_msda._speedup(runs, case.name, "float32", "forward", cm.A2_FIGURES)
    expect = fwd["naive"].chip().overlap / fwd["codesign"].chip().overlap
    assert speedup == pytest.approx(expect) and 3.0 < speedup <= 4.0
    assert (tmp_path / "m.csv").read_text().count("MODEL, not a measurement") == 4


def test_extrapolation_beyond_max_queries(monkeypatch):
    monkeypatch.setattr(ascend_msda, "_sim", _FakeSim)
    case = ascend_msda.resolve_case("detr_enc", scale=4)
    (run, *_) = ascend_msda.emulate(case, "float32", max_queries=5, cores=48)
    assert run.q_emul == 5 and run.extrapolation == pytest.approx(run.q_core / 5)
    assert run.core_counters()["dma_in_ops"] == pytest.approx(run.stats["dma_in_ops"] * run.q_core / 5)


@pytest.mark.skipif(not hasattr(sim, "msda_forward"), reason="this build of _ascend_sim has no MSDA kernels")
def test_quick_run_of_the_real_kernels(capsys, tmp_path):
    rc = ascend_msda.main(["--quick", "--csv", str(tmp_path / "m.csv")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "MODEL, not a measurement" in out and "SCALED-DOWN" in out
    assert "n/a" not in out.split("Goal of issue 5")[1].split("Sensitivity")[0]
    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    assert len(rows) == 2 * 2 * 2 * 2  # cases x dtypes x directions x designs
    by = {(r["case"], r["dtype"], r["direction"], r["design"]): r for r in rows}
    for case, dtype, direction, design in by:
        if design != "codesign":
            continue
        co, na = by[(case, dtype, direction, "codesign")], by[(case, dtype, direction, "naive")]
        # What the co-design is for: fewer DMA instructions per sampling point, less estimated time.
        assert float(co["dma_ops_per_point"]) < float(na["dma_ops_per_point"]), (case, dtype, direction)
        assert float(co["chip_us"]) < float(na["chip_us"]), (case, dtype, direction)
        assert 0 < int(co["ub_peak_bytes"]) <= sim.UB_CAPACITY_BYTES


@pytest.mark.skipif(npu_ops.has_npu_backend(), reason="checks the message given where no NPU is present")
def test_npu_measurement_says_why_it_cannot_run(capsys):
    assert ascend_msda.main(["--npu", "--cases", "detr_dec"]) == 2
    assert "cannot measure on an NPU" in capsys.readouterr().err


def test_backward_launch_wide_work_is_shared_by_the_cores(monkeypatch):
    # The fake zero-fills 64 KiB per launch: one block does all of it, each of 48 cores 1/48.
    monkeypatch.setattr(ascend_msda, "_sim", _FakeSim)
    case = ascend_msda.resolve_case("detr_enc", scale=8)
    runs = ascend_msda.emulate(case, "float32", max_queries=48, cores=48)
    for r in runs:
        if r.direction == "forward":
            assert r.launch_wide == {}
            continue
        assert r.launch_wide["gm_write_bytes"] == pytest.approx(_FakeSim.ZERO_BYTES)
        assert r.launch_wide["dma_out_ops"] == pytest.approx(_FakeSim.ZERO_BYTES / 1024)
        own = r.stats["gm_write_bytes"] - _FakeSim.ZERO_BYTES
        share = _FakeSim.ZERO_BYTES * case.bs / 48
        assert r.core_counters()["gm_write_bytes"] == pytest.approx(own * r.extrapolation + share)
