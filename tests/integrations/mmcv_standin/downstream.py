"""Plays a downstream project (BEVFormer style) that imports mmcv's fallback function by name."""

from mmcv.ops.multi_scale_deform_attn import MultiScaleDeformableAttnFunction, multi_scale_deformable_attn_pytorch


def sample(value, shapes, starts, loc, attn, use_function=False):
    if use_function:
        return MultiScaleDeformableAttnFunction.apply(value, shapes, starts, loc, attn, 64)
    return multi_scale_deformable_attn_pytorch(value, shapes, loc, attn)
