"""The emulator's launch counters (``npu_ops.ascend_sim.last_stats()``), which the Ascend cost model
(``npu_ops.bench.ascend_cost_model``) turns into time: exact values on a kernel whose instruction
mix is known, and per-block counters that add up to the launch's."""

from __future__ import annotations

import subprocess

import npu_ops.ascend_sim as sim
import torch

ADDITIVE = (
    "gm_read_bytes",
    "gm_write_bytes",
    "atomic_bytes",
    "dma_ops",
    "dma_in_ops",
    "dma_out_ops",
    "atomic_dma_ops",
    "dma_bursts",
    "vector_ops",
    "vector_repeats",
    "gather_ops",
    "gather_elements",
    "gather_bytes",
    "scalar_ub_ops",
    "sync_ops",
)


def test_counters_of_a_known_instruction_mix(counters_driver):
    # Per block: loads, strided and padded loads (bursts), Gather, plain and atomic stores.
    res = subprocess.run([str(counters_driver)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "counters: 0 wrong values" in res.stdout
    assert "dma_bursts 1 11" in res.stdout  # 2 loads + 4 + 2 bursts + 1 store + 2 atomic bursts


def test_per_block_counters_sum_to_the_launch():
    g = torch.Generator().manual_seed(0)
    grad, fresh, cached = (torch.randn(4, 3, 1000, generator=g) for _ in range(3))
    mask = torch.rand(4, 1, 1000, generator=g)
    sim.masked_blend_backward(grad, fresh, cached, mask, block_num=5)
    stats = sim.last_stats()
    blocks = stats["per_block"]
    assert stats["blocks"] == len(blocks) == 5
    for key in ADDITIVE:
        assert stats[key] == sum(b[key] for b in blocks), key
    assert stats["dma_ops"] == stats["dma_in_ops"] + stats["dma_out_ops"] > 0
    # The mask gradient is accumulated atomically by every block that works.
    assert 0 < stats["atomic_dma_ops"] <= stats["dma_out_ops"]
    assert stats["atomic_bytes"] > 0 and stats["gather_ops"] == 0
    assert stats["dma_bursts"] >= stats["dma_ops"]
