"""mmcv-compatible ``MultiScaleDeformableAttention`` layer backed by :func:`npu_ops.msda`."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from .ops import msda

__all__ = ["MultiScaleDeformableAttention"]


class MultiScaleDeformableAttention(nn.Module):
    """Deformable-DETR attention layer with mmcv's constructor and forward signature.

    Swap it in for ``mmcv.ops.MultiScaleDeformableAttention`` (same parameter names, so
    checkpoints load). Unlike mmcv it runs the fused kernel on every device, CPU included.

    Args:
        embed_dims: embedding dimension; must be divisible by ``num_heads``.
        num_heads: attention heads.
        num_levels: feature levels.
        num_points: sampling points per query, head and level.
        im2col_step: accepted for compatibility (no effect).
        dropout: dropout on the output before the residual.
        batch_first: inputs are ``[bs, n, embed_dims]`` if True, else ``[n, bs, embed_dims]``.
        norm_cfg, init_cfg: accepted for mmcv config compatibility (unused, as in mmcv).
        value_proj_ratio: expansion ratio of ``value_proj``.
    """

    def __init__(
        self,
        embed_dims: int = 256,
        num_heads: int = 8,
        num_levels: int = 4,
        num_points: int = 4,
        im2col_step: int = 64,
        dropout: float = 0.1,
        batch_first: bool = False,
        norm_cfg: dict | None = None,
        init_cfg: Any | None = None,
        value_proj_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        if embed_dims % num_heads != 0:
            raise ValueError(
                f"embed_dims must be divisible by num_heads, but got embed_dims={embed_dims} and num_heads={num_heads}"
            )
        value_proj_size = int(embed_dims * value_proj_ratio)
        if value_proj_size % num_heads != 0:
            raise ValueError(
                f"embed_dims * value_proj_ratio must be divisible by num_heads, got {value_proj_size} and {num_heads}"
            )
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.im2col_step = im2col_step
        self.batch_first = batch_first
        self.norm_cfg = norm_cfg
        self.init_cfg = init_cfg
        self.dropout = nn.Dropout(dropout)
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, value_proj_size)
        self.output_proj = nn.Linear(value_proj_size, embed_dims)
        self.init_weights()

    def init_weights(self) -> None:
        """Deformable-DETR's initialisation: offsets start on a ring of directions per head."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True).values
        grid = grid.view(self.num_heads, 1, 1, 2).repeat(1, self.num_levels, self.num_points, 1)
        grid = grid * torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        identity: Tensor | None = None,
        query_pos: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        reference_points: Tensor | None = None,
        spatial_shapes: Tensor | None = None,
        level_start_index: Tensor | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """mmcv's forward.

        Args:
            query: ``[num_queries, bs, embed_dims]`` (``[bs, num_queries, embed_dims]`` if batch_first).
            key: unused (mmcv signature).
            value: like query, with num_keys rows; defaults to ``query``.
            identity: residual added to the output; defaults to ``query``.
            query_pos: positional encoding added to ``query``.
            key_padding_mask: ``[bs, num_keys]`` bool, True rows of value are zeroed.
            reference_points: ``[bs, num_queries, num_levels, 2]`` points or ``[..., 4]`` boxes (cx, cy, w, h).
            spatial_shapes: ``[num_levels, 2]`` (h, w).
            level_start_index: ``[num_levels]``.

        Returns:
            Tensor shaped like ``query``.
        """
        if "residual" in kwargs:  # mmcv's deprecated name
            warnings.warn("'residual' is deprecated, use 'identity'", DeprecationWarning, stacklevel=2)
            identity = kwargs.pop("residual")
        if reference_points is None or spatial_shapes is None or level_start_index is None:
            raise ValueError("reference_points, spatial_shapes and level_start_index are required")
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query = query.permute(1, 0, 2)
            value = value.permute(1, 0, 2)
        bs, num_queries, _ = query.shape
        _, num_keys, _ = value.shape
        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(bs, num_keys, self.num_heads, -1)
        offsets = self.sampling_offsets(query).view(
            bs, num_queries, self.num_heads, self.num_levels, self.num_points, 2
        )
        weights = self.attention_weights(query).view(bs, num_queries, self.num_heads, -1).softmax(-1)
        weights = weights.view(bs, num_queries, self.num_heads, self.num_levels, self.num_points)
        # Points: addcdiv computes the location in one pass over the offsets, bit-identical to ref + offsets / wh,
        # with no temporary the size of the offsets. Boxes keep mmcv's expression (addcmul would fuse a
        # multiply-add and round differently).
        if reference_points.shape[-1] == 2:
            normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(offsets.dtype)
            locations = torch.addcdiv(
                reference_points[:, :, None, :, None, :], offsets, normalizer[None, None, None, :, None, :]
            )
        elif reference_points.shape[-1] == 4:
            locations = (
                reference_points[:, :, None, :, None, :2]
                + offsets / self.num_points * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        else:
            raise ValueError(
                f"reference_points must end in 2 (points) or 4 (boxes), got shape {tuple(reference_points.shape)}"
            )
        output = self._sample(value, spatial_shapes, level_start_index, locations, weights)
        output = self.output_proj(output)
        if not self.batch_first:
            output = output.permute(1, 0, 2)
        return self.dropout(output) + identity

    def _sample(
        self, value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, locations: Tensor, weights: Tensor
    ) -> Tensor:
        """The sampling step, ``Tensor[bs, Nq, H*C]``: :func:`npu_ops.msda` (a subclass may swap in another)."""
        return msda(value, spatial_shapes, level_start_index, locations, weights, self.im2col_step)

    def extra_repr(self) -> str:
        return (
            f"embed_dims={self.embed_dims}, num_heads={self.num_heads}, num_levels={self.num_levels}, "
            f"num_points={self.num_points}, batch_first={self.batch_first}"
        )
