"""Benchmarks of the npu_ops operators: ``python -m npu_ops.bench --help``.

Modules:

- :mod:`~npu_ops.bench.harness`: op-independent timing, peak-memory subprocess probes, progress bar,
  environment capture, CSV and markdown writers.
- :mod:`~npu_ops.bench.probe`: entry point of the peak-memory subprocesses.
- :mod:`~npu_ops.bench.msda_cases`: named MSDA workloads from real models and the seeded input factory.
- :mod:`~npu_ops.bench.msda`: MSDA providers (``npu_ops``, ``grid_sample``), modes, correctness
  checks, the run loop and the memory probe.
- :mod:`~npu_ops.bench.msda_report`: markdown tables and CSV rows.
- :mod:`~npu_ops.bench.cli`: the command line (also behind ``bench/bench_msda.py``).
- :mod:`~npu_ops.bench.ascend_cost_model`: the Atlas A2 vector-core cost model over emulator counters
  (cited per-core figures).
- :mod:`~npu_ops.bench.ascend_msda`: MSDA AscendC kernels, co-designed vs naive, under the emulator
  through that model (``bench/bench_ascend_msda.py``, ``--op ascend_msda``).
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Runs the MSDA benchmark command line; returns the exit status."""
    from .cli import main as _main

    return _main(argv)
