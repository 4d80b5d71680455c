"""Multi-scale deformable attention v2 (RT-DETRv2, D-FINE, DEIM).

``npu_ops.msda_v2(value, spatial_shapes, sampling_locations, attention_weights, num_points_list,
method="default")`` calls :func:`msda_v2` (in the parent package the name stands for both this
subpackage and the op, see ``npu_ops._callable_package``).

- :func:`msda_v2`: the op (autograd, ``torch.compile`` and ``opcheck`` ready).
- :func:`multi_scale_deformable_attention_v2_pytorch`: pure-PyTorch reference / baseline.
"""

from __future__ import annotations

from .ops import msda_v2
from .reference import multi_scale_deformable_attention_v2_pytorch

__all__ = ["msda_v2", "multi_scale_deformable_attention_v2_pytorch"]
