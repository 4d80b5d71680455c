"""Which devices :func:`npu_ops.msda` has kernels for (decided once, at import)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._loader import has_npu_backend

__all__ = ["NPU_DEVICE_TYPE", "SUPPORTED_DEVICE_TYPES", "runs_on_npu_ops"]

# torch_npu renames the PrivateUse1 backend to "npu"; npu_ops imports torch_npu (when present) before this runs.
NPU_DEVICE_TYPE: str = torch._C._get_privateuse1_backend_name()
# A frozen constant rather than a call per forward: torch.compile then specialises on it without a graph break.
SUPPORTED_DEVICE_TYPES: frozenset[str] = frozenset({"cpu", NPU_DEVICE_TYPE} if has_npu_backend() else {"cpu"})


def runs_on_npu_ops(value: Tensor) -> bool:
    """True when npu_ops has an MSDA kernel for ``value``'s device (CPU always, the NPU when built for it)."""
    return value.device.type in SUPPORTED_DEVICE_TYPES
