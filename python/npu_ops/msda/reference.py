"""Pure-PyTorch multi-scale deformable attention, written from the math.

This is the spec the kernels are tested against and the baseline the benchmark
times: the ``F.grid_sample`` formulation that mmcv and transformers use on CPU.
``grid_sample`` with ``align_corners=False`` maps a normalised coordinate u in
[0, 1] to the pixel coordinate ``u * size - 0.5`` and pads with zeros, which is
exactly the kernel's convention. (It differs only on a measure-zero set, e.g.
gradients at exactly ``x == -1``, and for NaN locations, where it may return NaN
while the kernel drops the point.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["multi_scale_deformable_attn_pytorch"]


def multi_scale_deformable_attn_pytorch(
    value: Tensor,
    value_spatial_shapes: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Reference MSDA, same signature as mmcv's (no ``level_start_index``: levels are split by size).

    Args:
        value (Tensor[bs, num_keys, num_heads, C])
        value_spatial_shapes (Tensor[num_levels, 2]): (h, w) per level.
        sampling_locations (Tensor[bs, num_queries, num_heads, num_levels, num_points, 2]): (x, y) in [0, 1].
        attention_weights (Tensor[bs, num_queries, num_heads, num_levels, num_points])

    Returns:
        Tensor[bs, num_queries, num_heads * C]
    """
    bs, _, heads, channels = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    sizes = [(int(h), int(w)) for h, w in value_spatial_shapes.tolist()]
    per_level = value.split([h * w for h, w in sizes], dim=1)
    # grid_sample wants coordinates in [-1, 1].
    grid = sampling_locations * 2 - 1
    samples = []
    for level, (h, w) in enumerate(sizes):
        # [bs, h*w, heads, C] -> [bs*heads, C, h, w]
        v = per_level[level].permute(0, 2, 3, 1).reshape(bs * heads, channels, h, w)
        # [bs, Nq, heads, P, 2] -> [bs*heads, Nq, P, 2]
        g = grid[:, :, :, level].transpose(1, 2).reshape(bs * heads, num_queries, num_points, 2)
        samples.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    # [bs*heads, C, Nq, L*P] weighted by [bs*heads, 1, Nq, L*P]
    stacked = torch.stack(samples, dim=-2).flatten(-2)
    weights = attention_weights.transpose(1, 2).reshape(bs * heads, 1, num_queries, num_levels * num_points)
    out = (stacked * weights).sum(-1)  # [bs*heads, C, Nq]
    return out.view(bs, heads * channels, num_queries).transpose(1, 2).contiguous()
