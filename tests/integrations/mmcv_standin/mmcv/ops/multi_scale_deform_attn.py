"""Stand-in for mmcv.ops.multi_scale_deform_attn: same names and dispatch, no compiled ops."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import nn
from torch.autograd.function import Function, once_differentiable

IS_CUDA_AVAILABLE = torch.cuda.is_available()
IS_MLU_AVAILABLE = False
IS_NPU_AVAILABLE = False  # mmcv: torch_npu importable


class _NoCpuKernel:
    """mmcv's _ext ms_deform_attn ops are registered for CUDA / MLU / NPU only."""

    @staticmethod
    def ms_deform_attn_forward(value, *args, **kwargs):
        raise NotImplementedError(f"ms_deform_attn_forward: no {value.device.type} implementation")

    @staticmethod
    def ms_deform_attn_backward(value, *args, **kwargs):
        raise NotImplementedError(f"ms_deform_attn_backward: no {value.device.type} implementation")


ext_module = _NoCpuKernel()


class MultiScaleDeformableAttnFunction(Function):
    @staticmethod
    def forward(
        ctx, value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights, im2col_step
    ):
        ctx.im2col_step = im2col_step
        sampling_locations = sampling_locations.type_as(value)
        attention_weights = attention_weights.type_as(value)
        out = ext_module.ms_deform_attn_forward(
            value,
            value_spatial_shapes,
            value_level_start_index,
            sampling_locations,
            attention_weights,
            im2col_step=im2col_step,
        )
        ctx.save_for_backward(
            value, value_spatial_shapes, value_level_start_index, sampling_locations, attention_weights
        )
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        value, shapes, starts, loc, attn = ctx.saved_tensors
        grads = [torch.zeros_like(t) for t in (value, loc, attn)]
        ext_module.ms_deform_attn_backward(
            value, shapes, starts, loc, attn, grad_output.contiguous(), *grads, im2col_step=ctx.im2col_step
        )
        return grads[0], None, None, grads[1], grads[2], None


def multi_scale_deformable_attn_pytorch(value, value_spatial_shapes, sampling_locations, attention_weights):
    """grid_sample formulation (the path mmcv takes on CPU)."""
    bs, _, heads, dim = value.shape
    _, nq, _, levels, points, _ = sampling_locations.shape
    sizes = [(int(h), int(w)) for h, w in value_spatial_shapes]
    maps = value.split([h * w for h, w in sizes], dim=1)
    grids = 2 * sampling_locations - 1
    sampled = []
    for lvl, (h, w) in enumerate(sizes):
        v = maps[lvl].flatten(2).transpose(1, 2).reshape(bs * heads, dim, h, w)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = attention_weights.transpose(1, 2).reshape(bs * heads, 1, nq, levels * points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(bs, heads * dim, nq)
    return out.transpose(1, 2).contiguous()


@MODELS.register_module()
class MultiScaleDeformableAttention(BaseModule):
    def __init__(
        self,
        embed_dims=256,
        num_heads=8,
        num_levels=4,
        num_points=4,
        im2col_step=64,
        dropout=0.1,
        batch_first=False,
        norm_cfg=None,
        init_cfg=None,
        value_proj_ratio=1.0,
    ):
        super().__init__(init_cfg)
        self.norm_cfg = norm_cfg
        self.dropout = nn.Dropout(dropout)
        self.batch_first = batch_first
        self.im2col_step = im2col_step
        self.embed_dims = embed_dims
        self.num_levels = num_levels
        self.num_heads = num_heads
        self.num_points = num_points
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        value_proj_size = int(embed_dims * value_proj_ratio)
        self.value_proj = nn.Linear(embed_dims, value_proj_size)
        self.output_proj = nn.Linear(value_proj_size, embed_dims)

    def forward(
        self,
        query,
        key=None,
        value=None,
        identity=None,
        query_pos=None,
        key_padding_mask=None,
        reference_points=None,
        spatial_shapes=None,
        level_start_index=None,
        **kwargs,
    ):
        value = query if value is None else value
        identity = query if identity is None else identity
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query, value = query.permute(1, 0, 2), value.permute(1, 0, 2)
        bs, nq, _ = query.shape
        _, nv, _ = value.shape
        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(bs, nv, self.num_heads, -1)
        off = self.sampling_offsets(query).view(bs, nq, self.num_heads, self.num_levels, self.num_points, 2)
        attn = self.attention_weights(query).view(bs, nq, self.num_heads, self.num_levels * self.num_points)
        attn = attn.softmax(-1).view(bs, nq, self.num_heads, self.num_levels, self.num_points)
        if reference_points.shape[-1] == 2:
            norm = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1)
            loc = reference_points[:, :, None, :, None, :] + off / norm[None, None, None, :, None, :]
        else:
            loc = (
                reference_points[:, :, None, :, None, :2]
                + off / self.num_points * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        if (IS_CUDA_AVAILABLE and value.is_cuda) or (IS_NPU_AVAILABLE and value.device.type == "npu"):
            out = MultiScaleDeformableAttnFunction.apply(
                value, spatial_shapes, level_start_index, loc, attn, self.im2col_step
            )
        else:
            out = multi_scale_deformable_attn_pytorch(value, spatial_shapes, loc, attn)
        out = self.output_proj(out)
        if not self.batch_first:
            out = out.permute(1, 0, 2)
        return self.dropout(out) + identity
