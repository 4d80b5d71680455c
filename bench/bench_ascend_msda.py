"""Cost MODEL of the MSDA AscendC kernels on Atlas A2: co-designed vs naive design, forward and backward,
fp32 and fp16, from emulator counters (not a measurement). Same as
``python -m npu_ops.bench --op ascend_msda``.

Usage: ``python bench/bench_ascend_msda.py --help`` (``--quick`` for a CI smoke run under 30 s).
The model and the cited hardware figures: ``python/npu_ops/bench/ascend_cost_model.py``.
"""

from __future__ import annotations

from npu_ops.bench.ascend_msda import main

if __name__ == "__main__":
    raise SystemExit(main())
