"""Chorus benchmark command line: ``python -m npu_ops.bench.chorus``, ``python bench/bench_chorus.py``
or ``python -m npu_ops.bench --op chorus``.

``npu_ops.masked_blend`` vs ``mask * fresh + (1 - mask) * cached`` and ``torch.lerp`` (``torch.where``
for bool masks), ``npu_ops.amplified_softmax`` vs ``(scale * scores + alpha.log()).softmax(-1)``, at
Wan-2.1 480p shapes (:mod:`npu_ops.bench.chorus_cases`), after a correctness gate
(:mod:`npu_ops.bench.chorus_run`). Prints markdown tables, writes a CSV
(:mod:`npu_ops.bench.chorus_report`); exits with status 1 if a correctness check failed (a missed
performance target is reported, not an error).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from . import chorus_report, harness
from .chorus_cases import CASES, DEFAULT_CASES, DTYPES, QUICK_SHAPES
from .chorus_run import MODES, Options, run
from .cli_common import DTYPE_ALIASES, add_timing_args, split_choices, timing_knobs

__all__ = ["main", "parse_args"]

_MODE_ALIASES = {"fwd": "forward", "bwd": "backward"}
_DEFAULTS = {"repeats": 40, "warmup": 3, "max_time": 6.0, "min_repeats": 7}
_QUICK = {"repeats": 3, "warmup": 1, "max_time": 0.0, "min_repeats": 1}


def _case_list() -> str:
    lines = []
    for c in CASES.values():
        star = "" if c.name in DEFAULT_CASES else "  (only with --cases)"
        lines.append(f"  {c.name:13s} {c.op}: {c.title}; {c.shape_text(False)}{star}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> tuple[Options, argparse.Namespace]:
    """Parses the command line into :class:`Options` (plus the namespace for the output options)."""
    p = argparse.ArgumentParser(
        prog="python -m npu_ops.bench.chorus",
        description="Benchmark npu_ops.masked_blend and npu_ops.amplified_softmax (CPU) against their "
        "PyTorch baselines at Wan-2.1 480p shapes: median/p20/p80 time per case, dtype, mode and provider, "
        "ratios and targets. Checks correctness before timing. Prints markdown tables and writes a CSV.",
        epilog="cases:\n" + _case_list() + "\n\nNPU_OPS_CPU_CAPABILITY=avx2 (or generic) times the other CPU kernel "
        "variants (default: the best the CPU has, see npu_ops.cpu_capability()).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cases", default="default", help="comma list of case names, 'all', or 'default' (default)")
    p.add_argument("--dtype", default="float32,bfloat16", help="comma list: fp32, bf16, fp16, fp64 (default fp32,bf16)")
    p.add_argument("--modes", default="all", help="comma list of forward, backward; default both")
    add_timing_args(p, _DEFAULTS, "rounds")
    p.add_argument(
        "--malloc",
        choices=("warm", "default"),
        default="warm",
        help="warm (default): glibc keeps freed blocks resident (mmap off), like a caching allocator; "
        "default: glibc as is (big outputs page-faulted on every call)",
    )
    p.add_argument("--seed", type=int, default=0, help="input seed (default 0)")
    p.add_argument("--csv", default="bench_results/chorus.csv", help="CSV output path (default %(default)s)")
    p.add_argument("--append", action="store_true", help="append to the CSV instead of overwriting it")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"CI smoke run: small shapes ({QUICK_SHAPES}), {_QUICK['repeats']} rounds, {_QUICK['warmup']} warm-up",
    )
    ns = p.parse_args(argv)
    try:
        if ns.cases == "default":
            cases = list(DEFAULT_CASES)
        else:
            cases = split_choices(ns.cases, list(CASES), {}, "case")
        dtypes = split_choices(ns.dtype, list(DTYPES), DTYPE_ALIASES, "dtype")
        modes = split_choices(ns.modes, MODES, _MODE_ALIASES, "mode")
    except argparse.ArgumentTypeError as exc:
        p.error(str(exc))
    knobs = timing_knobs(ns, _QUICK if ns.quick else _DEFAULTS)
    if knobs["repeats"] < 1 or knobs["warmup"] < 0 or ns.threads < 1:
        p.error("--repeats and --threads must be >= 1 and --warmup >= 0")
    opts = Options(
        cases=cases,
        dtypes=dtypes,
        modes=modes,
        threads=ns.threads,
        quick=ns.quick,
        seed=ns.seed,
        malloc=ns.malloc,
        progress=not ns.no_progress,
        **knobs,
    )
    return opts, ns


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark; returns the exit status (1 if a correctness check failed)."""
    opts, ns = parse_args(argv)
    start = time.perf_counter()
    res = run(opts)
    path = harness.write_csv(chorus_report.csv_rows(res), ns.csv, append=ns.append)
    print(chorus_report.header(res))
    for title, table in (
        ("masked_blend", chorus_report.blend_table(res)),
        ("amplified_softmax", chorus_report.softmax_table(res)),
    ):
        if table.count("\n") > 1:
            print(f"\n### {title}\n\n{table}")
    print(f"\n### correctness gate\n\n{chorus_report.check_table(res)}\n")
    print(f"CSV: {path} ({time.perf_counter() - start:.1f} s)")
    if not res.ok:
        print("FAILED: npu_ops disagrees with the reference (see the correctness table)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
