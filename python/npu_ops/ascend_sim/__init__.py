"""Run the AscendC kernels on CPU tensors under the project's emulator of the AscendC API.

The kernels in ``csrc/ascend/kernels/`` are the sources CANN compiles for the NPU; here they are
compiled with g++ against ``csrc/ascend/emu/``, which enforces the documented dav-2201 rules (UB
capacity, 32-byte alignment, queue discipline, pipeline synchronisation, multi-core write
conflicts). A broken rule raises :class:`AscendRuleError`. Every function takes ``block_num``
(default: 48, the dav-2201 vector core count) and ``seed`` (the shuffled block order). See
``docs/ascend.md``.

Example::

    >>> import torch, npu_ops.ascend_sim as sim
    >>> fresh, cached = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    >>> out = sim.masked_blend(fresh, cached, torch.rand(2, 4, 1), block_num=3)
    >>> sim.last_stats()["ub_peak_bytes"] <= sim.UB_CAPACITY_BYTES
    True
"""

from __future__ import annotations

from ._lib import AscendRuleError, last_stats, limits, load

load()

UB_CAPACITY_BYTES, UB_TOTAL_BYTES, DEFAULT_BLOCK_NUM = limits()

from .chorus import (  # noqa: E402  (after the library is loaded)
    amplified_softmax,
    amplified_softmax_backward,
    masked_blend,
    masked_blend_backward,
)
from .msda_backward import msda_backward, msda_backward_tiling  # noqa: E402
from .msda_forward import msda_forward, msda_forward_tiling  # noqa: E402

__all__ = [
    "AscendRuleError",
    "DEFAULT_BLOCK_NUM",
    "UB_CAPACITY_BYTES",
    "UB_TOTAL_BYTES",
    "amplified_softmax",
    "amplified_softmax_backward",
    "last_stats",
    "masked_blend",
    "masked_blend_backward",
    "msda_backward",
    "msda_backward_tiling",
    "msda_forward",
    "msda_forward_tiling",
]
