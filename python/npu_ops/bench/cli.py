"""Command line of the MSDA benchmark: ``python -m npu_ops.bench`` or ``python bench/bench_msda.py``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from . import harness, msda_report
from .cli_common import DTYPE_ALIASES, add_timing_args, split_choices, timing_knobs
from .msda import Options, run
from .msda_cases import CASES, QUICK_CASES, QUICK_SCALE
from .msda_steps import DTYPES, MODES, PROVIDERS

__all__ = ["main", "parse_args"]

_MODE_ALIASES = {"fwd": "forward", "bwd": "backward", "forward+backward": "full", "fwd+bwd": "full"}
# Defaults of a normal run and of --quick; the options default to None so --quick can fill them in.
_DEFAULTS = {"repeats": 50, "warmup": 10, "max_time": 5.0, "min_repeats": 3}
_QUICK = {"repeats": 2, "warmup": 1, "max_time": 0.0, "min_repeats": 1}


def _case_list() -> str:
    lines = []
    for c in CASES.values():
        levels = ", ".join(f"{h}x{w}" for h, w in c.levels)
        lines.append(
            f"  {c.name:14s} {c.title}: bs {c.bs}, Nq {c.nq}, Nk {c.num_keys}, "
            f"H {c.heads}, C {c.channels}, P {c.points}, levels {levels}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> tuple[Options, argparse.Namespace]:
    """Parses the command line into :class:`Options` (plus the namespace for the output options)."""
    p = argparse.ArgumentParser(
        prog="python -m npu_ops.bench",
        description="Benchmark npu_ops.msda (fused CPU kernel) against the grid_sample formulation: "
        "time (median, p20, p80) and peak extra memory per case, provider and mode. Prints a markdown "
        "table and writes a CSV.",
        epilog="cases:\n" + _case_list() + "\n\nmodes: forward (no_grad), backward (autograd.grad after a forward "
        "outside the timed region), full (forward with grad + backward).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cases", default="all", help="comma list of case names, or 'all' (default)")
    p.add_argument("--modes", default="all", help="comma list of forward, backward, full; default all")
    p.add_argument("--dtype", default="float32", help="float32 (default), float16, bfloat16, float64; comma list ok")
    add_timing_args(p, _DEFAULTS, "calls")
    p.add_argument("--bs", type=int, help="batch size for every case (default: each case's own, see below)")
    p.add_argument("--seed", type=int, default=0, help="input seed (default 0)")
    p.add_argument("--csv", default="bench_results/msda.csv", help="CSV output path (default %(default)s)")
    p.add_argument("--append", action="store_true", help="append to the CSV instead of overwriting it")
    p.add_argument("--no-baseline", action="store_true", help="skip the grid_sample provider")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"CI smoke run: {', '.join(QUICK_CASES)} (or --cases) scaled down {QUICK_SCALE}x, "
        f"{_QUICK['repeats']} repeats, {_QUICK['warmup']} warm-up",
    )
    ns = p.parse_args(argv)
    try:
        cases = (
            list(QUICK_CASES) if ns.quick and ns.cases == "all" else split_choices(ns.cases, list(CASES), {}, "case")
        )
        modes = split_choices(ns.modes, MODES, _MODE_ALIASES, "mode")
        dtypes = split_choices(ns.dtype, list(DTYPES), DTYPE_ALIASES, "dtype")
    except argparse.ArgumentTypeError as exc:
        p.error(str(exc))
    knobs = timing_knobs(ns, _QUICK if ns.quick else _DEFAULTS)
    if knobs["repeats"] < 1 or knobs["warmup"] < 0 or ns.threads < 1 or (ns.bs is not None and ns.bs < 1):
        p.error("--repeats, --threads and --bs must be >= 1 and --warmup >= 0")
    if not ns.no_memory and not harness.peak_rss_supported():
        print("peak memory needs Linux /proc/self/clear_refs; running with --no-memory", file=sys.stderr)
        ns.no_memory = True
    opts = Options(
        cases=cases,
        modes=modes,
        dtypes=dtypes,
        providers=[p_ for p_ in PROVIDERS if not (ns.no_baseline and p_ == "grid_sample")],
        threads=ns.threads,
        bs=ns.bs,
        scale=QUICK_SCALE if ns.quick else None,
        seed=ns.seed,
        memory=not ns.no_memory,
        progress=not ns.no_progress,
        **knobs,
    )
    return opts, ns


# Measured on the 2-core dev VM (shared, noisy) for the up-front note of a default run; see the README.
_DEFAULT_RUN_NOTE = (
    "default run: 6 cases x forward/backward/full, npu_ops and grid_sample interleaved; about {minutes} min on "
    "2 cores and up to {gb} GB resident (the grid_sample baseline's intermediates on the big cases). "
    "--quick: under a minute, 0.4 GB; --cases / --no-baseline / --no-memory shorten it."
)
_DEFAULT_MINUTES, _DEFAULT_PEAK_GB = "8 (quiet) to 17 (busy)", "7.2"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark; returns the exit status (1 if a correctness check failed)."""
    opts, ns = parse_args(argv)
    if not ns.quick and ns.cases == "all" and not ns.no_baseline:
        print(_DEFAULT_RUN_NOTE.format(minutes=_DEFAULT_MINUTES, gb=_DEFAULT_PEAK_GB), file=sys.stderr, flush=True)
    start = time.perf_counter()
    res = run(opts)
    path = harness.write_csv(msda_report.csv_rows(res), ns.csv, append=ns.append)
    print(msda_report.header(res.bandwidth))
    print()
    print(msda_report.summary_table(res, opts.modes))
    print()
    print(msda_report.check_table(res))
    print()
    print(f"CSV: {path} ({time.perf_counter() - start:.1f} s)")
    if not res.ok:
        print("FAILED: npu_ops and grid_sample disagree (see the correctness table)", file=sys.stderr)
        return 1
    return 0
