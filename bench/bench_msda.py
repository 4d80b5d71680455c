"""Benchmark npu_ops.msda against the grid_sample baseline; same as ``python -m npu_ops.bench``.

Usage: ``python bench/bench_msda.py --help`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

from npu_ops.bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
