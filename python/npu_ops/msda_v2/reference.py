"""Pure-PyTorch MSDA v2 in the RT-DETRv2 / D-FINE formulation (``grid_sample`` and gather).

Written from the reference implementations' math (not copied): the benchmark baseline and a
second check of the kernel. Differences from the originals, both on inputs they mishandle:
``discrete`` clamps x to ``w - 1`` and y to ``h - 1`` (RT-DETRv2 clamps both to ``h - 1``, wrong
only for non-square maps), and computes the index in the float domain with ``floor``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["multi_scale_deformable_attention_v2_pytorch"]


def multi_scale_deformable_attention_v2_pytorch(
    value: Tensor,
    value_spatial_shapes: Tensor | Sequence[tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
    num_points_list: Sequence[int],
    method: str = "default",
) -> Tensor:
    """Reference MSDA v2, the signature of D-FINE's ``multi_scale_deformable_attention_v2``.

    Args:
        value (Tensor[bs, num_keys, num_heads, C])
        value_spatial_shapes (Tensor[num_levels, 2] | list[tuple[int, int]]): (h, w) per level.
        sampling_locations (Tensor[bs, num_queries, num_heads, sum(num_points_list), 2]): (x, y).
        attention_weights (Tensor[bs, num_queries, num_heads, sum(num_points_list)])
        num_points_list (list[int]): points per level.
        method (str): "default" (bilinear) or "discrete" (nearest pixel).

    Returns:
        Tensor[bs, num_queries, num_heads * C]
    """
    bs, _, heads, channels = value.shape
    nq = sampling_locations.shape[1]
    sizes = [
        (int(h), int(w))
        for h, w in (
            value_spatial_shapes.tolist() if isinstance(value_spatial_shapes, Tensor) else value_spatial_shapes
        )
    ]
    # [bs*heads, C, num_keys] split per level.
    per_level = value.permute(0, 2, 3, 1).flatten(0, 1).split([h * w for h, w in sizes], dim=-1)
    # [bs*heads, Nq, sumP, 2] split per level.
    locs = sampling_locations.permute(0, 2, 1, 3, 4).flatten(0, 1).split(list(num_points_list), dim=-2)
    samples = []
    for level, (h, w) in enumerate(sizes):
        v = per_level[level].reshape(bs * heads, channels, h, w)
        if method == "default":
            samples.append(
                F.grid_sample(v, 2 * locs[level] - 1, mode="bilinear", padding_mode="zeros", align_corners=False)
            )
        elif method == "discrete":
            x = torch.floor(locs[level][..., 0] * w + 0.5).clamp(0, w - 1).long()
            y = torch.floor(locs[level][..., 1] * h + 0.5).clamp(0, h - 1).long()
            flat = v.flatten(2)  # [bs*heads, C, h*w]
            idx = (y * w + x).flatten(1)  # [bs*heads, Nq*P_l]
            got = flat.gather(2, idx[:, None, :].expand(-1, channels, -1))
            samples.append(got.view(bs * heads, channels, nq, num_points_list[level]))
        else:
            raise ValueError(f"method must be 'default' or 'discrete', got {method!r}")
    weights = attention_weights.permute(0, 2, 1, 3).reshape(bs * heads, 1, nq, sum(num_points_list))
    out = (torch.cat(samples, dim=-1) * weights).sum(-1)
    return out.reshape(bs, heads * channels, nq).permute(0, 2, 1).contiguous()
