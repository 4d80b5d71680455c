"""Multi-scale deformable attention.

This subpackage is also callable: ``npu_ops.msda(value, spatial_shapes, level_start_index,
sampling_locations, attention_weights, im2col_step=64)`` is :func:`npu_ops.msda.ops.msda`.

- :func:`msda`: the op (autograd, ``torch.compile`` and ``opcheck`` ready).
- :class:`MultiScaleDeformableAttnFunction`: mmcv's ``autograd.Function`` interface.
- :func:`multi_scale_deformable_attn_pytorch`: pure-PyTorch ``grid_sample`` reference.
- :class:`MultiScaleDeformableAttention`: mmcv's ``nn.Module``.
"""

from __future__ import annotations

import sys
import types

from .function import MultiScaleDeformableAttnFunction
from .module import MultiScaleDeformableAttention
from .ops import msda
from .reference import multi_scale_deformable_attn_pytorch

__all__ = [
    "msda",
    "MultiScaleDeformableAttnFunction",
    "MultiScaleDeformableAttention",
    "multi_scale_deformable_attn_pytorch",
]


class _CallableModule(types.ModuleType):
    """Lets ``npu_ops.msda(...)`` call the op while ``npu_ops.msda`` stays a subpackage."""

    def __call__(self, *args, **kwargs):
        return msda(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
