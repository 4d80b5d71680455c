"""Loads the emulator library and turns its rule errors into :class:`AscendRuleError`."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch

_PKG = Path(__file__).resolve().parent.parent
_loaded = False

F = TypeVar("F", bound=Callable[..., Any])


class AscendRuleError(RuntimeError):
    """An AscendC kernel broke a documented dav-2201 hardware rule under the emulator.

    The message names the API, the block and the offending value, e.g.
    ``AscendRuleError: DataCopy(GM->UB) (block 3 of 48, kernel ...): count 7 x 4 B = 28 bytes is
    not a multiple of 32 ...``.
    """


def load() -> None:
    """Load ``_ascend_sim`` (built with the package; it needs no CANN) into the dispatcher."""
    global _loaded
    if _loaded:
        return
    hits = sorted(_PKG.glob("_ascend_sim.*.so")) + sorted(_PKG.glob("_ascend_sim.so"))
    if not hits:
        raise ImportError(
            f"npu_ops.ascend_sim: library _ascend_sim not found in {_PKG}; rebuild the package with "
            "'pip install --no-build-isolation -e .'"
        )
    torch.ops.load_library(str(hits[0]))
    _loaded = True


def translate_errors(fn: F) -> F:
    """Re-raise the emulator's rule violations as :class:`AscendRuleError`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RuntimeError as e:
            msg = str(e)
            if "AscendRuleError:" in msg and not isinstance(e, AscendRuleError):
                start = msg.index("AscendRuleError:")
                raise AscendRuleError(msg[start:].split("\nException raised from")[0].strip()) from None
            raise

    return wrapper  # type: ignore[return-value]


def limits() -> tuple[int, int, int]:
    usable, total, blocks = torch.ops.npu_ops_sim.limits()
    return int(usable), int(total), int(blocks)


def resolve_block_num(block_num: int | None) -> int:
    """``None`` means the dav-2201 vector core count (48, an Ascend910B1/B2)."""
    if block_num is None:
        return limits()[2]
    if isinstance(block_num, bool) or not isinstance(block_num, int):
        raise TypeError(f"block_num: expected an int or None, got {type(block_num).__name__}")
    if not 1 <= block_num <= 65535:
        raise ValueError(f"block_num: expected 1 <= block_num <= 65535, got {block_num}")
    return block_num


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    return seed


def last_stats() -> dict[str, Any]:
    """Counters of the last emulated launch.

    Keys (ints): ``ub_peak_bytes`` (largest UB plan of any block), ``ub_capacity_bytes`` (188160),
    ``blocks``, and the additive counters ``gm_read_bytes``, ``gm_write_bytes``, ``atomic_bytes``
    (UB->GM bytes moved while ``SetAtomicAdd`` was on), ``dma_ops`` (DataCopy/DataCopyPad
    instructions), ``dma_in_ops`` (GM->UB, MTE2), ``dma_out_ops`` (UB->GM, MTE3, atomic ones
    included), ``atomic_dma_ops``, ``dma_bursts`` (contiguous GM segments those copies moved:
    ``blockCount`` of a strided copy, else 1), ``vector_ops`` (vector instructions),
    ``vector_repeats`` (256-byte repeats), ``gather_ops`` / ``gather_elements`` / ``gather_bytes``
    (vector ``Gather`` from UB; also counted as vector instructions), ``scalar_ub_ops``
    (GetValue/SetValue on UB) and ``sync_ops`` (EnQue, SetFlag, WaitFlag, barriers).
    ``per_block`` lists the additive counters of each block (index = block id); they sum to the
    launch's. The cost model :mod:`npu_ops.bench.ascend_cost_model` reads them.
    """
    return json.loads(torch.ops.npu_ops_sim.last_stats())
