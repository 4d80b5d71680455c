"""The MSDA benchmark's noise handling: interleaved rounds, the round-spread flag, the traffic floor."""

from __future__ import annotations

import itertools
import time

import torch
from npu_ops.bench import harness, msda_report
from npu_ops.bench.msda import Measurement, Results
from npu_ops.bench.msda_cases import resolve_case
from npu_ops.bench.msda_steps import traffic_bytes


def test_interleaved_rounds_alternate_paths() -> None:
    calls: list[str] = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    t = harness.time_interleaved(fns, warmup=1, repeats=4, budget_s=0)
    assert calls == ["a", "b"] * 5  # one warm-up round, four recorded rounds, each path once per round
    assert t["a"]["wall"].repeats == t["b"]["wall"].repeats == 4


def _timing(xs: list[float]) -> harness.Timing:
    return harness.Timing(xs, 0)


def test_round_spread_of_ratios_ignores_common_noise() -> None:
    # Both paths slowed 3x in round 2 (a neighbour's burst): the per-round ratio is steady.
    npu, gs = _timing([1.0, 3.0, 1.0]), _timing([10.0, 30.0, 10.0])
    assert abs(harness.round_spread(npu, gs) - 1.0) < 1e-12
    assert abs(harness.round_spread(npu) - 3.0) < 1e-12
    # The baseline slowed 6x in round 2, npu_ops only 3x: the ratios disagree by 2x.
    assert abs(harness.round_spread(npu, _timing([10.0, 60.0, 10.0])) - 2.0) < 1e-12


def test_noisy_row_is_flagged_and_floor_column_filled() -> None:
    case = resolve_case("detr_enc", None, 8)
    res = Results(cases={case.name: case}, bandwidth=10e9)
    res.measurements[(case.name, "float32", "npu_ops", "forward")] = Measurement(_timing([1e-3, 1e-3, 1e-3]))
    res.measurements[(case.name, "float32", "grid_sample", "forward")] = Measurement(_timing([1e-2, 2e-2, 1e-2]))
    res.measurements[(case.name, "float32", "npu_ops", "backward")] = Measurement(_timing([2e-3, 2.1e-3, 2e-3]))
    res.measurements[(case.name, "float32", "grid_sample", "backward")] = Measurement(_timing([2e-2, 2.1e-2, 2e-2]))
    table = msda_report.summary_table(res, ["forward", "backward"])
    fwd, bwd = [line for line in table.splitlines() if line.startswith(f"| {case.name}")]
    assert "2.00x !" in fwd and "!" not in bwd
    floor_ms = 1e3 * traffic_bytes(case, torch.float32, "forward") / 10e9
    assert f"{floor_ms:.3f}" in fwd
    assert f"{1.0 / floor_ms:.1f}x" in fwd  # npu_ops min / floor


def test_traffic_bytes_counts_inputs_and_outputs_once() -> None:
    case = resolve_case("rtdetr_dec", None, None)
    n_val = case.bs * case.num_keys * case.heads * case.channels
    n_pts = case.bs * case.nq * case.heads * len(case.levels) * case.points
    n_out = case.bs * case.nq * case.heads * case.channels
    assert traffic_bytes(case, torch.float32, "forward") == 4 * (n_val + 3 * n_pts + n_out)
    assert traffic_bytes(case, torch.float16, "backward") == 2 * (2 * (n_val + 3 * n_pts) + n_out)
    f, b = (traffic_bytes(case, torch.float32, m) for m in ("forward", "backward"))
    assert traffic_bytes(case, torch.float32, "full") == f + b


def test_stream_bandwidth_is_plausible() -> None:
    bw = harness.stream_bandwidth(16, 3)
    assert 1e8 < bw < 1e13


def test_noisy_real_timing_fires_the_flag() -> None:
    # A path made noisy on purpose (every other round sleeps) against a steady one.
    counter = itertools.count()
    fns = {"npu_ops": lambda: time.sleep(0.002), "grid_sample": lambda: time.sleep(0.002 + 0.006 * (next(counter) % 2))}
    t = harness.time_interleaved(fns, warmup=0, repeats=4, budget_s=0)
    assert harness.round_spread(t["npu_ops"]["wall"], t["grid_sample"]["wall"]) > msda_report.NOISY
