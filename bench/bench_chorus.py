"""Benchmark npu_ops.masked_blend and npu_ops.amplified_softmax against their PyTorch baselines.

Same as ``python -m npu_ops.bench.chorus``. Usage: ``python bench/bench_chorus.py --help``
(``--quick`` for a smoke run).
"""

from __future__ import annotations

from npu_ops.bench.chorus import main

if __name__ == "__main__":
    raise SystemExit(main())
