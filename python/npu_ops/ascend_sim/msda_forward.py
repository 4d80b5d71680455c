"""The MSDA forward AscendC kernels run on CPU tensors under the emulator.

:func:`msda_forward` lays its inputs out exactly as the NPU launcher does (the same C++ tiling),
launches ``npu_ops_msda_fwd_<dtype>`` (``design="codesign"``) or ``npu_ops_msda_fwd_naive_<dtype>``
(``design="naive"``) with ``block_num`` blocks in a ``seed``-shuffled order and returns a CPU
tensor. Semantics are mmcv's (see :func:`npu_ops.msda`); a broken hardware rule raises
:class:`~npu_ops.ascend_sim.AscendRuleError`, bad input a ``RuntimeError``/``ValueError`` naming
the argument.
"""

from __future__ import annotations

import torch

from ._lib import check_seed, resolve_block_num, translate_errors

__all__ = ["msda_forward", "msda_forward_tiling"]

_DESIGNS = ("codesign", "naive")
_DTYPES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
_TILING_FIELDS = (
    "tile_q",
    "point_group",
    "tile_n",
    "chunk_elems",
    "c_pad",
    "loc_row_bytes",
    "attn_row_bytes",
    "resident_bytes",
    "num_resident",
    "has_dma_levels",
    "buffer_num",
    "ub_bytes",
    "block_num",
    "window_pixels",
    "window_ub_offset",
)


def _check_design(design: str) -> str:
    if design not in _DESIGNS:
        raise ValueError(f"design: expected 'codesign' or 'naive', got {design!r}")
    return design


@translate_errors
def msda_forward(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    block_num: int | None = None,
    seed: int = 0,
    design: str = "codesign",
) -> torch.Tensor:
    """Multi-scale deformable attention forward by the AscendC kernel.

    Args:
        value (Tensor[B, S, H, C]): float32, float16 or bfloat16 (fp32 accumulation inside).
        spatial_shapes (Tensor[L, 2]): ``(h, w)`` per level, int32/int64.
        level_start_index (Tensor[L]): first key of each level, int32/int64.
        sampling_locations (Tensor[B, Nq, H, L, P, 2]): normalised ``(x, y)``; cast to value's dtype.
        attention_weights (Tensor[B, Nq, H, L, P]): cast to value's dtype.
        block_num: AscendC blocks (default: the dav-2201 vector core count, 48).
        seed: order in which the emulator runs the blocks.
        design: ``"codesign"`` (vectorised point maths, UB-resident gathers for small levels,
            per-tile windows or paired corner DMAs for large ones) or ``"naive"`` (scalar maths, one DMA per corner).

    Returns:
        Tensor[B, Nq, H*C] in value's dtype.

    Limits: L <= 64 and h*w <= 2^24 per level (both designs); the co-designed tile must fit the UB
    (the error names the sizes; roughly C <= 4100 fp32 / 4500 16-bit at L*P = 16), the naive row
    needs H*(C + 4*L*P) fp32 values in UB.
    """
    _check_design(design)
    for name, t in (
        ("value", value),
        ("spatial_shapes", spatial_shapes),
        ("level_start_index", level_start_index),
        ("sampling_locations", sampling_locations),
        ("attention_weights", attention_weights),
    ):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if value.dtype not in _DTYPES:
        raise TypeError(f"value: expected dtype float32, float16 or bfloat16 for the AscendC kernel, got {value.dtype}")
    for name, t in (("sampling_locations", sampling_locations), ("attention_weights", attention_weights)):
        if not t.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got dtype {t.dtype}")
    # mmcv casts locations and weights to the value dtype (AMP keeps them fp32).
    sampling_locations = sampling_locations.to(value.dtype)
    attention_weights = attention_weights.to(value.dtype)
    return torch.ops.npu_ops_sim.msda_forward(
        value,
        spatial_shapes,
        level_start_index,
        sampling_locations,
        attention_weights,
        resolve_block_num(block_num),
        check_seed(seed),
        design,
    )


@translate_errors
def msda_forward_tiling(
    batch: int,
    num_queries: int,
    heads: int,
    channels: int,
    points: int,
    levels: list[tuple[int, int]],
    dtype: torch.dtype = torch.float32,
    design: str = "codesign",
    block_num: int | None = None,
    ub_bytes: int | None = None,
) -> dict[str, object]:
    """The host tiling the launcher computes for a shape (no launch), as a dict.

    Keys: ``tile_q``, ``point_group``, ``tile_n``, ``chunk_elems``, ``c_pad``, ``loc_row_bytes``,
    ``attn_row_bytes``, ``resident_bytes``, ``num_resident``, ``has_dma_levels``, ``buffer_num``,
    ``ub_bytes`` (UB the kernel allocates), ``block_num``, ``window_pixels`` / ``window_ub_offset``
    (the per-tile window for DMA levels; 0 pixels: none) and ``level_ub_offset`` (per level: byte
    offset in the gather region, or -1 for a level fetched by window or DMA).
    """
    if dtype not in _DTYPES:
        raise TypeError(f"dtype: expected float32, float16 or bfloat16, got {dtype}")
    from . import UB_CAPACITY_BYTES

    hw = [int(v) for lv in levels for v in lv]
    raw = torch.ops.npu_ops_sim.msda_forward_tiling(
        batch,
        num_queries,
        heads,
        channels,
        points,
        hw,
        _DTYPES[dtype],
        _check_design(design),
        resolve_block_num(block_num),
        UB_CAPACITY_BYTES if ub_bytes is None else int(ub_bytes),
    )
    out: dict[str, object] = dict(zip(_TILING_FIELDS, raw[: len(_TILING_FIELDS)]))
    out["level_ub_offset"] = list(raw[len(_TILING_FIELDS) :])
    return out
