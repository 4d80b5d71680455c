"""Multi-scale deformable attention.

``npu_ops.msda(value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
im2col_step=64)`` calls :func:`msda`: in the parent package the name stands for both this
subpackage and the op (see ``npu_ops._callable_package``).

- :func:`msda`: the op (autograd, ``torch.compile`` and ``opcheck`` ready).
- :class:`MultiScaleDeformableAttnFunction`: mmcv's ``autograd.Function`` interface.
- :func:`multi_scale_deformable_attn_pytorch`: pure-PyTorch ``grid_sample`` reference.
- :class:`MultiScaleDeformableAttention`: mmcv's ``nn.Module``.
"""

from __future__ import annotations

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
