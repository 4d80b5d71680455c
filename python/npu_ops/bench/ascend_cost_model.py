"""A first-order cost model of one Atlas A2 (Ascend 910B, dav-2201) vector core, driven by the
emulator's counters (:func:`npu_ops.ascend_sim.last_stats`).

MODEL, not a measurement. Every figure below is cited; figures that are assumptions say so. The
model is meant for *ratios* between kernel designs run on the same input (co-designed vs naive),
not for absolute claims. It charges, per vector core (one AscendC block):

- MTE2 (GM -> UB): ``dma_issue_cycles`` per DMA instruction + ``dma_burst_cycles`` per contiguous GM
  segment + bytes at the per-core GM->UB bandwidth;
- MTE3 (UB -> GM): the same issue and burst costs + plain bytes at the UB->GM bandwidth + atomic-add
  bytes at the (assumed) atomic bandwidth;
- V (vector): ``vector_head_cycles`` per instruction + ``vector_repeat_cycles`` per 256-byte repeat;
  ``Gather`` from UB instead at the UB-gather throughput;
- S (scalar): ``scalar_ub_cycles`` per GetValue/SetValue on UB + ``sync_cycles`` per sync instruction.

A core's time is ``max`` of the four pipes when they overlap perfectly (double buffering; the
``overlap`` estimate, used for the headline numbers) and their ``sum`` when nothing overlaps (the
``serial`` bound). The chip's time is the slowest core's, but at least the launch's GM traffic over the
chip's aggregate GM bandwidth. Not modelled: scalar arithmetic in registers (address and coordinate
math the emulator cannot see; the naive design does more of it, so leaving it out favours the naive
design), L2 hits, UB bank conflicts, atomic contention between cores (xMSDA reports that scatter slows
down as more cores are active), launch overhead.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "A2_FIGURES",
    "COUNTERS",
    "A2Figures",
    "ChipTime",
    "CoreTime",
    "FIGURE_SOURCES",
    "chip_time",
    "core_time",
    "scaled",
    "with_figures",
]

GIB = float(1 << 30)

# Counters the model reads from last_stats() (per block, or summed).
COUNTERS = (
    "gm_read_bytes",
    "gm_write_bytes",
    "atomic_bytes",
    "dma_in_ops",
    "dma_out_ops",
    "atomic_dma_ops",
    "dma_bursts",
    "vector_ops",
    "vector_repeats",
    "gather_ops",
    "gather_bytes",
    "scalar_ub_ops",
    "sync_ops",
)

# xMSDA (Huang et al., "Towards Efficient Multi-Scale Deformable Attention on NPU", arXiv 2505.14022,
# section on micro-benchmarks): gathers from the Unified Buffer reach up to 845 GB/s, gathers of
# pixels straight from GM 106 GB/s. 845 GB/s is more than one vector core can read at all
# (256 B/cycle x 1.85 GHz = 474 GB/s), so both figures are read here as whole-chip rates over the
# 48 vector cores (ASSUMPTION: the paper's scope is not stated in the text available to us).
XMSDA_UB_GATHER_BYTES_PER_S = 845e9
XMSDA_GM_GATHER_BYTES_PER_S = 106e9
# ASSUMPTION: xMSDA's GM gather moves one fp32 row of C = 32 channels (128 B) per DMA, the
# Deformable-DETR row. Used only to derive dma_issue_cycles below.
XMSDA_GM_GATHER_ROW_BYTES = 128


@dataclass(frozen=True)
class A2Figures:
    """Per-core figures of an Atlas A2 vector core (defaults: :data:`A2_FIGURES`; sources:
    :data:`FIGURE_SOURCES`)."""

    clock_hz: float
    vector_cores: int
    gm_to_ub_bytes_per_s: float
    ub_to_gm_bytes_per_s: float
    atomic_to_gm_bytes_per_s: float
    dma_issue_cycles: float
    dma_burst_cycles: float
    vector_head_cycles: float
    vector_repeat_cycles: float
    gather_head_cycles: float
    ub_gather_bytes_per_s: float
    scalar_ub_cycles: float
    sync_cycles: float
    chip_gm_bytes_per_s: float

    def bytes_per_cycle(self, bytes_per_s: float) -> float:
        return bytes_per_s / self.clock_hz


def _derived_dma_issue_cycles(clock_hz: float, cores: int, gm_to_ub: float) -> float:
    """Fixed cost of one small DMA such that one-row-per-DMA gathers on every core reproduce
    xMSDA's 106 GB/s: per core a 128 B row takes 128 / (106e9 / 48) s, of which
    128 / gm_to_ub is the transfer itself."""
    per_row_s = XMSDA_GM_GATHER_ROW_BYTES / (XMSDA_GM_GATHER_BYTES_PER_S / cores)
    return (per_row_s - XMSDA_GM_GATHER_ROW_BYTES / gm_to_ub) * clock_hz


_CLOCK = 1.85e9
_CORES = 48
_GM_TO_UB = 100.9 * GIB
_UB_TO_GM = 188.46 * GIB

A2_FIGURES = A2Figures(
    clock_hz=_CLOCK,
    vector_cores=_CORES,
    gm_to_ub_bytes_per_s=_GM_TO_UB,
    ub_to_gm_bytes_per_s=_UB_TO_GM,
    atomic_to_gm_bytes_per_s=_UB_TO_GM / 2,
    dma_issue_cycles=_derived_dma_issue_cycles(_CLOCK, _CORES, _GM_TO_UB),
    dma_burst_cycles=2.0,
    vector_head_cycles=14.0,
    vector_repeat_cycles=1.0,
    gather_head_cycles=6.0,
    ub_gather_bytes_per_s=XMSDA_UB_GATHER_BYTES_PER_S / _CORES,
    scalar_ub_cycles=10.0,
    sync_cycles=1.0,
    chip_gm_bytes_per_s=32 * 24 * _CLOCK,
)

FIGURE_SOURCES: dict[str, str] = {
    "clock_hz": "1.85 GHz: CANN platform config A2A3.ini, Ascend910B1 cube_freq=1850 (MHz); pto-isa "
    "include/pto/costmodel arch_config.hpp kMainFrequencyHz = 1.85e9",
    "vector_cores": "48: A2A3.ini Ascend910B1 vector_core_cnt=48 (910B3/B4: 40)",
    "gm_to_ub_bytes_per_s": "100.9 GiB/s per core: pto-isa arch_config.hpp kA2A3ArchConfig, GM_TO_UB",
    "ub_to_gm_bytes_per_s": "188.46 GiB/s per core: pto-isa arch_config.hpp kA2A3ArchConfig, UB_TO_GM",
    "atomic_to_gm_bytes_per_s": "ASSUMPTION: half the UB->GM bandwidth (an atomic add reads and writes GM); "
    "no public figure found",
    "dma_issue_cycles": "DERIVED (ASSUMPTION on scope and row size): xMSDA arXiv 2505.14022 GM gather "
    "106 GB/s read as whole-chip over 48 cores with one 128 B row per DMA -> ~105 cycles per DMA beyond "
    "the transfer itself",
    "dma_burst_cycles": "2 cycles per burst: pto-isa costmodel (mocker) BurstLenRule copy_gm_to_ubuf_align_b32 "
    "(startup 8, per burst 2, per 32 B 1 cycle)",
    "vector_head_cycles": "14 cycles: pto-isa cce_costmodel_vector_compute.hpp, vadd head (EstimateLinearCycles)",
    "vector_repeat_cycles": "1 cycle per 256 B repeat: pto-isa cce_costmodel_vector_compute.hpp, vadd slope",
    "gather_head_cycles": "6 cycles: pto-isa cce_costmodel_vector_compute.hpp, vgather head",
    "ub_gather_bytes_per_s": "845 GB/s / 48 cores per core: xMSDA arXiv 2505.14022 UB gather (ASSUMPTION: "
    "whole-chip figure)",
    "scalar_ub_cycles": "ASSUMPTION: 10 cycles per scalar GetValue/SetValue on UB; no public figure found",
    "sync_cycles": "1 cycle: pto-isa costmodel (mocker) FixedRule set_flag / wait_flag / pipe_barrier",
    "chip_gm_bytes_per_s": "32 B/cycle x 24 AI cores x 1.85 GHz = 1.42 TB/s: A2A3.ini AICoreMemoryRates "
    "ddr_rate=32 (ASSUMPTION: bytes per cycle per AI core)",
}


@dataclass(frozen=True)
class CoreTime:
    """Seconds per pipe of one vector core, and the two ways of combining them."""

    mte2: float
    mte3: float
    vector: float
    scalar: float

    @property
    def overlap(self) -> float:
        """Pipes overlap perfectly (double buffering): the slowest pipe."""
        return max(self.mte2, self.mte3, self.vector, self.scalar)

    @property
    def serial(self) -> float:
        """Nothing overlaps: the sum of the pipes."""
        return self.mte2 + self.mte3 + self.vector + self.scalar

    @property
    def bound(self) -> str:
        """The pipe that sets the ``overlap`` time."""
        pipes = {"MTE2": self.mte2, "MTE3": self.mte3, "V": self.vector, "S": self.scalar}
        return max(pipes, key=pipes.__getitem__)


def _get(counters: Mapping[str, float], key: str) -> float:
    if key not in counters:
        raise KeyError(f"cost model: counter {key!r} missing from the emulator stats (rebuild _ascend_sim?)")
    value = float(counters[key])
    if value < 0 or math.isnan(value):
        raise ValueError(f"cost model: counter {key!r} must be >= 0, got {value}")
    return value


def core_time(counters: Mapping[str, float], fig: A2Figures = A2_FIGURES) -> CoreTime:
    """Time of one vector core that executed ``counters`` (one block's counters from
    ``last_stats()["per_block"]``, or counters scaled to one core's share)."""
    c = {k: _get(counters, k) for k in COUNTERS}
    f = fig.clock_hz
    atomic = min(c["atomic_bytes"], c["gm_write_bytes"])
    mte2 = (c["dma_in_ops"] * fig.dma_issue_cycles) / f + c["gm_read_bytes"] / fig.gm_to_ub_bytes_per_s
    mte3 = (
        c["dma_out_ops"] * fig.dma_issue_cycles / f
        + (c["gm_write_bytes"] - atomic) / fig.ub_to_gm_bytes_per_s
        + atomic / fig.atomic_to_gm_bytes_per_s
    )
    # Bursts: split between the two MTEs in proportion to their instructions (the counter is shared).
    dma_ops = c["dma_in_ops"] + c["dma_out_ops"]
    if dma_ops > 0:
        burst_s = c["dma_bursts"] * fig.dma_burst_cycles / f
        mte2 += burst_s * c["dma_in_ops"] / dma_ops
        mte3 += burst_s * c["dma_out_ops"] / dma_ops
    # Gather is counted among the vector instructions and repeats too; charge it at its own rate.
    gather_repeats = min(c["gather_bytes"] / 256.0, c["vector_repeats"])
    plain_ops = max(c["vector_ops"] - c["gather_ops"], 0.0)
    vector = (
        plain_ops * fig.vector_head_cycles
        + (c["vector_repeats"] - gather_repeats) * fig.vector_repeat_cycles
        + c["gather_ops"] * fig.gather_head_cycles
    ) / f + c["gather_bytes"] / fig.ub_gather_bytes_per_s
    scalar = (c["scalar_ub_ops"] * fig.scalar_ub_cycles + c["sync_ops"] * fig.sync_cycles) / f
    return CoreTime(mte2=mte2, mte3=mte3, vector=vector, scalar=scalar)


@dataclass(frozen=True)
class ChipTime:
    """Estimated time of a launch on the whole chip."""

    core: CoreTime  # the slowest core
    gm_bytes: float  # GM traffic of the whole launch
    overlap: float
    serial: float
    gm_bound: bool  # the aggregate GM bandwidth, not the slowest core, sets ``overlap``


def chip_time(per_core: Sequence[Mapping[str, float]], fig: A2Figures = A2_FIGURES, replicas: float = 1.0) -> ChipTime:
    """Time of a launch whose cores executed ``per_core`` (e.g. ``last_stats()["per_block"]``).

    ``replicas``: how many times the listed cores' work repeats across the chip at the same time
    (emulating one core's share of a launch of ``fig.vector_cores`` cores: ``replicas = 48``). Blocks
    beyond ``fig.vector_cores`` run in later waves: each core's time is the sum over its blocks,
    assigned round-robin (AscendC gives block i to a free core; round-robin is the balanced case).
    """
    if not per_core:
        raise ValueError("cost model: no cores to time")
    waves: list[CoreTime] = []
    for i, counters in enumerate(per_core):
        t = core_time(counters, fig)
        slot = i % fig.vector_cores
        if slot < len(waves):
            w = waves[slot]
            waves[slot] = CoreTime(w.mte2 + t.mte2, w.mte3 + t.mte3, w.vector + t.vector, w.scalar + t.scalar)
        else:
            waves.append(t)
    slowest = max(waves, key=lambda t: t.overlap)
    gm_bytes = replicas * sum(_get(c, "gm_read_bytes") + _get(c, "gm_write_bytes") for c in per_core)
    gm_time = gm_bytes / fig.chip_gm_bytes_per_s
    overlap = max(slowest.overlap, gm_time)
    serial = max(max(t.serial for t in waves), gm_time)
    return ChipTime(core=slowest, gm_bytes=gm_bytes, overlap=overlap, serial=serial, gm_bound=gm_time > slowest.overlap)


def scaled(counters: Mapping[str, float], factor: float) -> dict[str, float]:
    """``counters`` times ``factor`` (linear extrapolation from an emulated part of a core's work)."""
    if not factor > 0:
        raise ValueError(f"cost model: scale factor must be > 0, got {factor}")
    return {k: _get(counters, k) * factor for k in COUNTERS}


def with_figures(**overrides: float) -> A2Figures:
    """:data:`A2_FIGURES` with some figures replaced (sensitivity runs)."""
    return dataclasses.replace(A2_FIGURES, **overrides)
