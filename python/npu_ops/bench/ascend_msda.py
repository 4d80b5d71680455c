"""MSDA on Atlas A2, co-designed vs naive AscendC kernels: emulator counters -> cost MODEL.

``python bench/bench_ascend_msda.py`` (or ``python -m npu_ops.bench --op ascend_msda``). MODEL, not
a measurement: each kernel design runs under the AscendC emulator (``npu_ops.ascend_sim``), and its
counters (DMA instructions and bursts, GM bytes, atomic bytes, vector instructions and repeats, UB
gathers, scalar UB accesses, syncs) are turned into time on one Atlas A2 vector core by
:mod:`npu_ops.bench.ascend_cost_model`, whose figures are cited there.

What is emulated (the scaling): the benchmark cases of :mod:`npu_ops.bench.msda_cases` with their
level shapes unchanged (which levels fit the UB decides the co-designed kernel's path, so shrinking
them would change what is measured). Only one vector core's share of the queries runs: ``q_core =
ceil(bs * Nq / 48)`` queries of batch 0, on one block, taken as ``SHARE_CHUNKS`` contiguous runs
spread over the case's queries: a core's real share is a contiguous range of rows (so its tiles see
the locality of neighbouring queries), and the runs cover every level's queries. If
``q_core`` exceeds ``--max-queries``, fewer queries run and the counters are extrapolated linearly
(stated per row). The backward kernels also do launch-wide work that the 48 blocks share at full
scale (zeroing the fp32 ``grad_value`` accumulator, the final fp16/bf16 cast): a one-block run does
all of it, so it is measured separately (one block with one query, minus the busiest block of a
48-block launch with one query each), taken out, and added back as one core's share of the full
batch. The chip estimate assumes the 48 cores get equal shares (the kernels balance their tails) and
caps it by the chip's aggregate GM bandwidth. ``--quick`` (CI) shrinks the level sides of two cases
by 4 and runs at most 48 queries.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from . import harness
from .ascend_cost_model import (
    A2_FIGURES,
    COUNTERS,
    FIGURE_SOURCES,
    A2Figures,
    ChipTime,
    chip_time,
    scaled,
    with_figures,
)
from .msda_cases import CASES, Case, MsdaInputs, make_inputs, resolve_case

__all__ = ["Run", "emulate", "main", "model_rows"]

DESIGNS = ("codesign", "naive")
DIRECTIONS = ("forward", "backward")
DTYPES = {"float32": torch.float32, "float16": torch.float16}
DEFAULT_CASES = ("detr_enc", "detr_dec", "bevformer_sca", "rtdetr_dec")
QUICK_CASES = ("detr_enc", "detr_dec")
QUICK_SCALE = 4
GOAL_CASE = "detr_enc"
GOALS = {"forward": 5.0, "backward": 8.0}  # issue 5: estimated speedup of codesign over naive
LABEL = "MODEL, not a measurement"


@dataclass
class Run:
    """One emulated launch and what the model makes of it."""

    case: Case
    dtype: str
    design: str
    direction: str
    q_core: int  # queries of one vector core's share of the full launch
    q_emul: int  # queries actually emulated
    points: int  # sampling points emulated (q_emul * H * L * P)
    stats: dict[str, Any]  # last_stats() of the launch (one block)
    emu_s: float  # wall time of the emulation
    error: str = ""
    cores: int = 48
    # Launch-wide work of a batch-1 launch (all of it done by the one emulated block): shared by
    # all cores at full scale. Empty: none.
    launch_wide: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def extrapolation(self) -> float:
        return self.q_core / self.q_emul

    def core_counters(self) -> dict[str, float]:
        """One vector core's counters at full share: the emulated block's own work extrapolated to
        ``q_core`` queries, plus its share of the launch-wide work of the full batch."""
        own = scaled(self.stats, self.extrapolation)
        if not self.launch_wide:
            return own
        f = self.extrapolation
        return {
            k: max(self.stats[k] - self.launch_wide[k], 0.0) * f + self.launch_wide[k] * self.case.bs / self.cores
            for k in own
        }

    def chip(self, fig: A2Figures = A2_FIGURES) -> ChipTime:
        return chip_time([self.core_counters()], fig, replicas=fig.vector_cores)

    def per_point(self, key: str) -> float:
        """Counter per sampling point of one core's share (launch-wide work included)."""
        c = self.core_counters()
        value = c["dma_in_ops"] + c["dma_out_ops"] if key == "dma_ops" else c[key]
        return value / (self.points * self.extrapolation)


def _sim():
    import npu_ops.ascend_sim as sim

    missing = [f for f in ("msda_forward", "msda_backward") if not hasattr(sim, f)]
    if missing:
        raise RuntimeError(
            f"npu_ops.ascend_sim has no {', '.join(missing)}: this build lacks the MSDA AscendC kernels "
            "(csrc/ascend/kernels/msda_*); rebuild _ascend_sim"
        )
    return sim


def _core_share(case: Case, cores: int) -> int:
    return max(1, math.ceil(case.bs * case.nq / cores))


@functools.lru_cache(maxsize=4)
def _inputs(case: Case, dtype: torch.dtype, seed: int) -> MsdaInputs:
    return make_inputs(dataclasses.replace(case, bs=1), dtype, seed=seed)


SHARE_CHUNKS = 4  # contiguous runs of queries that stand for one core's share


def _subset(
    case: Case, dtype: torch.dtype, q: int, seed: int, chunks: int = 0
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Inputs of batch 0 restricted to ``q`` queries, and a grad_output for them.

    ``chunks == 0``: ``q`` evenly spaced queries (one per block of a spread launch). Otherwise
    ``chunks`` contiguous runs of about ``q / chunks`` queries whose starts are evenly spread.
    """
    inp = _inputs(case, dtype, seed)
    if chunks and q >= chunks:
        runs = [q // chunks + (i < q % chunks) for i in range(chunks)]
        starts = torch.linspace(0, case.nq - runs[0], chunks).round().long().tolist()
        starts = [min(max(s0, prev), case.nq - n) for s0, n, prev in zip(starts, runs, [0, *starts[:-1]])]
        idx = torch.cat([torch.arange(s0, s0 + n) for s0, n in zip(starts, runs)]).unique()
    else:
        idx = torch.linspace(0, case.nq - 1, q).round().long().unique()
    loc = inp.sampling_locations[:, idx].contiguous()
    attn = inp.attention_weights[:, idx].contiguous()
    g = torch.Generator().manual_seed(seed + 1)
    grad = torch.randn(1, idx.numel(), case.heads * case.channels, generator=g).to(dtype)
    return [inp.value, inp.spatial_shapes, inp.level_start_index, loc, attn], grad


def _launch(sim, direction: str, design: str, args: list[torch.Tensor], grad: torch.Tensor, blocks: int, seed: int):
    if direction == "forward":
        sim.msda_forward(*args, block_num=blocks, seed=seed, design=design)
    else:
        sim.msda_backward(grad, *args, block_num=blocks, seed=seed, design=design)
    return sim.last_stats()


def _launch_wide(sim, case: Case, dtype: str, design: str, cores: int, seed: int) -> dict[str, float]:
    """Counters of the backward's launch-wide phases for a batch-1 launch (see module doc)."""
    one, grad1 = _subset(case, DTYPES[dtype], 1, seed)
    alone = _launch(sim, "backward", design, one, grad1, 1, seed)
    spread, grad48 = _subset(case, DTYPES[dtype], min(cores, case.nq), seed)
    shared = _launch(sim, "backward", design, spread, grad48, cores, seed)
    busiest = {k: max(float(b[k]) for b in shared["per_block"]) for k in COUNTERS}
    # alone = Z + own(1 query); busiest = Z / cores + own(<= one tile): Z ~ (alone - busiest) * cores / (cores - 1).
    return {k: max(float(alone[k]) - busiest[k], 0.0) * cores / (cores - 1) for k in COUNTERS}


def emulate(case: Case, dtype: str, max_queries: int, cores: int = 48, seed: int = 0) -> list[Run]:
    """Both designs, forward and backward, on one core's share of ``case`` (see module doc)."""
    sim = _sim()
    q_core = _core_share(case, cores)
    q = min(q_core, max_queries, case.nq)
    args, grad = _subset(case, DTYPES[dtype], q, seed, chunks=SHARE_CHUNKS)
    q = args[3].shape[1]
    points = q * case.heads * len(case.levels) * case.points
    runs = []
    for direction in DIRECTIONS:
        for design in DESIGNS:
            t0 = time.perf_counter()
            err, stats, wide = "", {}, {}
            try:
                stats = _launch(sim, direction, design, args, grad, 1, seed)
                if direction == "backward":
                    wide = _launch_wide(sim, case, dtype, design, cores, seed)
            except Exception as e:  # reported in the table, the other runs go on
                err = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            emu_s = time.perf_counter() - t0
            runs.append(Run(case, dtype, design, direction, q_core, q, points, stats, emu_s, err, cores, wide))
    return runs


def _speedup(runs: Sequence[Run], case: str, dtype: str, direction: str, fig: A2Figures, serial: bool = False):
    pick = {r.design: r for r in runs if r.case.name == case and r.dtype == dtype and r.direction == direction}
    if any(d not in pick or pick[d].error for d in DESIGNS):
        return None
    t = {d: (pick[d].chip(fig).serial if serial else pick[d].chip(fig).overlap) for d in DESIGNS}
    return t["naive"] / t["codesign"]


def model_rows(runs: Sequence[Run], fig: A2Figures = A2_FIGURES) -> list[dict[str, Any]]:
    """One row per run: counters per sampling point, per-pipe core time and chip time (CSV)."""
    rows = []
    for r in runs:
        row: dict[str, Any] = {
            "label": LABEL,
            "case": r.case.name,
            "dtype": r.dtype,
            "direction": r.direction,
            "design": r.design,
            "q_core": r.q_core,
            "q_emulated": r.q_emul,
            "extrapolation": round(r.extrapolation, 4),
            "emulation_s": round(r.emu_s, 2),
            "error": r.error,
        }
        if not r.error:
            chip = r.chip(fig)
            row.update(
                launch_wide_gm_bytes=round(
                    r.launch_wide.get("gm_read_bytes", 0.0) + r.launch_wide.get("gm_write_bytes", 0.0)
                ),
                dma_ops_per_point=round(r.per_point("dma_ops"), 3),
                gm_bytes_per_point=round(r.per_point("gm_read_bytes") + r.per_point("gm_write_bytes"), 1),
                atomic_bytes_per_point=round(r.per_point("atomic_bytes"), 1),
                gather_bytes_per_point=round(r.per_point("gather_bytes"), 1),
                vector_ops_per_point=round(r.per_point("vector_ops"), 3),
                ub_peak_bytes=r.stats["ub_peak_bytes"],
                core_mte2_us=round(1e6 * chip.core.mte2, 2),
                core_mte3_us=round(1e6 * chip.core.mte3, 2),
                core_vector_us=round(1e6 * chip.core.vector, 2),
                core_scalar_us=round(1e6 * chip.core.scalar, 2),
                bound=("GM" if chip.gm_bound else chip.core.bound),
                chip_us=round(1e6 * chip.overlap, 2),
                chip_serial_us=round(1e6 * chip.serial, 2),
            )
        rows.append(row)
    return rows


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def report(runs: Sequence[Run], fig: A2Figures, scale: int | None) -> str:
    out = [f"# MSDA on Atlas A2 (910B): co-designed vs naive AscendC kernels: {LABEL}", ""]
    out.append(
        f"Estimated from emulator counters with the cost model of npu_ops.bench.ascend_cost_model "
        f"({fig.vector_cores} vector cores at {fig.clock_hz / 1e9:.2f} GHz). Scaling: each row emulates ONE "
        f"vector core's share of the case's queries (batch 0, {SHARE_CHUNKS} contiguous runs of queries, 1 block)"
        + (
            "; level shapes unscaled."
            if not scale
            else f"; level sides AND query counts scaled down {scale}x (--quick: shapes are NOT the real ones)."
        )
        + " Where a share exceeds --max-queries, fewer queries ran and the counters were extrapolated "
        "linearly (column 'extrap')."
    )
    out.append("")
    headers = [
        "case",
        "dtype",
        "dir",
        "design",
        "q/core (emul.)",
        "extrap",
        "DMA ops/pt",
        "GM B/pt",
        "atomic B/pt",
        "gather B/pt",
        "bound",
        "core us",
        "chip us",
    ]
    rows = []
    for row in model_rows(runs, fig):
        if row["error"]:
            rows.append([row["case"], row["dtype"], row["direction"], row["design"], "", "", row["error"]] + [""] * 6)
            continue
        rows.append(
            [
                row["case"],
                row["dtype"],
                row["direction"][:3],
                row["design"],
                f"{row['q_core']} ({row['q_emulated']})",
                f"{row['extrapolation']:.2f}",
                f"{row['dma_ops_per_point']:.2f}",
                f"{row['gm_bytes_per_point']:.0f}",
                f"{row['atomic_bytes_per_point']:.0f}",
                f"{row['gather_bytes_per_point']:.0f}",
                row["bound"],
                f"{max(row['core_mte2_us'], row['core_mte3_us'], row['core_vector_us'], row['core_scalar_us']):.1f}",
                f"{row['chip_us']:.1f}",
            ]
        )
    out.append(harness.markdown_table(headers, rows))
    out.append("")
    out.append(f"## Estimated speedup of codesign over naive ({LABEL})")
    out.append("")
    cases = list(dict.fromkeys(r.case.name for r in runs))
    srows = []
    for case in cases:
        for dtype in DTYPES:
            if not any(r.case.name == case and r.dtype == dtype for r in runs):
                continue
            srows.append(
                [case, dtype]
                + [_fmt(_speedup(runs, case, dtype, d, fig)) for d in DIRECTIONS]
                + [_fmt(_speedup(runs, case, dtype, d, fig, serial=True)) for d in DIRECTIONS]
            )
    out.append(
        harness.markdown_table(
            ["case", "dtype", "forward", "backward", "forward (no overlap)", "backward (no overlap)"], srows
        )
    )
    out.append("")
    goal = [r for r in runs if r.case.name.split("/")[0] == GOAL_CASE]
    if goal:
        name = goal[0].case.name
        lines = []
        for dtype in DTYPES:
            for d in DIRECTIONS:
                s = _speedup(runs, name, dtype, d, fig)
                if s is not None:
                    verdict = "meets" if s >= GOALS[d] else "MISSES"
                    lines.append(f"- {name} {dtype} {d}: {s:.2f}x ({verdict} the goal of >= {GOALS[d]:.0f}x)")
        caveat = f" (on {name}, a SCALED-DOWN stand-in: run without --quick for the real case)" if scale else ""
        out.append(f"Goal of issue 5 (Deformable-DETR encoder; forward >= 5x, backward >= 8x), {LABEL}{caveat}:")
        out += lines or ["- no complete pair of runs"]
        out.append("")
        out.append("Sensitivity of the goal case to the least certain figure, the fixed cost of a DMA (overlap model):")
        out.append("")
        srows = []
        choices = ((8.0, "pto-isa mocker startup"), (fig.dma_issue_cycles, "default, from xMSDA"), (300.0, ""))
        for cycles, why in choices:
            f2 = dataclasses.replace(fig, dma_issue_cycles=cycles)
            srows.append(
                [f"{cycles:.0f}" + (f" ({why})" if why else "")]
                + [_fmt(_speedup(runs, name, dt, d, f2)) for dt in DTYPES for d in DIRECTIONS]
            )
        out.append(
            harness.markdown_table(
                ["DMA issue cycles"] + [f"{dt} {d}" for dt in DTYPES for d in DIRECTIONS],
                srows,
            )
        )
        out.append("")
    out.append("Figures (ascend_cost_model.FIGURE_SOURCES; ASSUMPTION marks the ones without a public source):")
    for key, src in FIGURE_SOURCES.items():
        out.append(f"- {key} = {getattr(fig, key):.4g}: {src}")
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python bench/bench_ascend_msda.py",
        description=__doc__.split("\n\n")[0],
        epilog="cases: " + ", ".join(CASES) + f" (default: {', '.join(DEFAULT_CASES)})",
    )
    p.add_argument("--cases", default=None, help="comma list of case names")
    p.add_argument("--dtype", default="float32,float16", help="comma list of float32, float16")
    p.add_argument("--max-queries", type=int, default=None, help="queries emulated per run (default 512; quick 48)")
    p.add_argument("--scale", type=int, default=None, help="divide level sides and queries by this (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dma-issue-cycles", type=float, default=None, help="override the model's DMA issue cost")
    p.add_argument("--csv", default="bench_results/ascend_msda.csv", help="CSV output (default %(default)s)")
    quick = f"CI smoke run: {', '.join(QUICK_CASES)}, shapes / {QUICK_SCALE}"
    p.add_argument("--quick", action="store_true", help=quick)
    p.add_argument(
        "--npu",
        action="store_true",
        help="MEASURE instead of modelling: time npu_ops.msda with the co-designed and the naive kernels and "
        "the grid_sample formulation on a real NPU at the cases' full shapes (needs torch_npu, CANN and the "
        "NPU build)",
    )
    p.add_argument("--repeats", type=int, default=20, help="--npu: recorded calls per measurement (default 20)")
    ns = p.parse_args(argv)
    names = ns.cases.split(",") if ns.cases else list(QUICK_CASES if ns.quick else DEFAULT_CASES)
    for n in names:
        if n not in CASES:
            p.error(f"--cases: unknown case {n!r}; choose from {', '.join(CASES)}")
    ns.case_names = names
    ns.dtypes = [d.strip() for d in ns.dtype.split(",")]
    for d in ns.dtypes:
        if d not in DTYPES:
            p.error(f"--dtype: {d!r} is not one of {', '.join(DTYPES)}")
    ns.max_queries = ns.max_queries or (48 if ns.quick else 512)
    ns.scale = ns.scale or (QUICK_SCALE if ns.quick else None)
    if ns.max_queries < 1 or (ns.scale is not None and ns.scale < 1):
        p.error("--max-queries and --scale must be >= 1")
    return ns


def _main_npu(ns: argparse.Namespace) -> int:
    from .ascend_msda_npu import measure, table

    try:
        rows = measure(ns.case_names, ns.dtypes, repeats=ns.repeats)
    except RuntimeError as e:
        print(str(e), file=sys.stderr)
        return 2
    print(f"# MSDA on {rows[0]['device'] if rows else 'NPU'}: MEASURED (p50 of {ns.repeats} calls, full shapes)")
    print()
    print(table(rows))
    path = harness.write_csv(rows, ns.csv.replace(".csv", "_npu.csv"))
    print(f"\nCSV: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ns = parse_args(argv)
    if ns.npu:
        return _main_npu(ns)
    fig = A2_FIGURES if ns.dma_issue_cycles is None else with_figures(dma_issue_cycles=ns.dma_issue_cycles)
    start = time.perf_counter()
    runs: list[Run] = []
    for name in ns.case_names:
        case = resolve_case(name, scale=ns.scale)
        if ns.scale:  # resolve_case caps bs at 2 when scaling; keep the real batch for the core share
            case = dataclasses.replace(case, bs=CASES[name].bs)
        for dtype in ns.dtypes:
            t0 = time.perf_counter()
            runs += emulate(case, dtype, ns.max_queries, fig.vector_cores, ns.seed)
            print(f"[{case.name} {dtype}: emulated in {time.perf_counter() - t0:.1f} s]", file=sys.stderr)
    print(report(runs, fig, ns.scale))
    path = harness.write_csv(model_rows(runs, fig), ns.csv)
    print(f"\nCSV: {path} ({time.perf_counter() - start:.1f} s)")
    failed = [r for r in runs if r.error]
    for r in failed:
        print(f"FAILED: {r.case.name} {r.dtype} {r.direction} {r.design}: {r.error}", file=sys.stderr)
    return 1 if failed else 0
