"""mmcv-compatible ``MultiScaleDeformableAttnFunction``."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["MultiScaleDeformableAttnFunction"]


class MultiScaleDeformableAttnFunction(torch.autograd.Function):
    """Drop-in for ``mmcv.ops.MultiScaleDeformableAttnFunction``.

    ``MultiScaleDeformableAttnFunction.apply(value, spatial_shapes, level_start_index,
    sampling_locations, attention_weights, im2col_step)`` returns ``Tensor[bs, num_queries,
    num_heads * C]``; see :func:`npu_ops.msda` for shapes and semantics. First-order gradients
    only, as in mmcv. New code can call :func:`npu_ops.msda` directly, which also works under
    ``torch.compile``.
    """

    @staticmethod
    def forward(
        ctx,
        value: Tensor,
        value_spatial_shapes: Tensor,
        value_level_start_index: Tensor,
        sampling_locations: Tensor,
        attention_weights: Tensor,
        im2col_step: int = 64,
    ) -> Tensor:
        from .ops import msda

        out = msda(
            value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights, im2col_step
        )
        # Saved after the same dtype cast msda() applies, as mmcv does.
        ctx.save_for_backward(
            value,
            value_spatial_shapes,
            value_level_start_index,
            sampling_locations.to(value.dtype),
            attention_weights.to(value.dtype),
        )
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor):
        value, shapes, starts, loc, attn = ctx.saved_tensors
        grad_value, grad_loc, grad_attn = torch.ops.npu_ops._msda_backward.default(
            grad_output, value, shapes, starts, loc, attn
        )
        return grad_value, None, None, grad_loc, grad_attn, None
