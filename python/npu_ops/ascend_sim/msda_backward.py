"""The MSDA backward AscendC kernels run on CPU tensors under the emulator.

``msda_backward`` lays its inputs out exactly as the NPU launcher does (the same C++ tiling,
``csrc/ascend/host/tiling/msda_backward_tiling.h``), launches the kernel entries of
``csrc/ascend/kernels/msda_backward.cpp`` with ``block_num`` blocks in a ``seed``-shuffled order
and returns CPU tensors. A broken hardware rule raises
:class:`~npu_ops.ascend_sim.AscendRuleError`; bad input raises ``TypeError``, ``ValueError`` or
``RuntimeError`` naming the argument.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._lib import check_seed, resolve_block_num, translate_errors

__all__ = ["msda_backward", "msda_backward_tiling"]

_DESIGNS = ("codesign", "naive")
_DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


@translate_errors
def msda_backward(
    grad_output: Tensor,
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    *,
    block_num: int | None = None,
    seed: int = 0,
    design: str = "codesign",
    deterministic: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of multi-scale deformable attention (mmcv semantics) by the AscendC kernel.

    Args:
        grad_output (Tensor[bs, num_queries, num_heads * C]): gradient of the forward output.
        value (Tensor[bs, num_keys, num_heads, C]): float32, float16 or bfloat16.
        spatial_shapes (Tensor[num_levels, 2]): ``(h, w)`` per level, int32 or int64.
        level_start_index (Tensor[num_levels]): first key of each level, int32 or int64.
        sampling_locations (Tensor[bs, num_queries, num_heads, num_levels, num_points, 2]):
            normalised ``(x, y)``; points outside the map and NaN/Inf get zero gradients.
        attention_weights (Tensor[bs, num_queries, num_heads, num_levels, num_points]).
            ``grad_output``, locations and weights must have value's dtype.
        block_num: AscendC blocks (default: the dav-2201 vector core count, 48).
        seed: order in which the emulator runs the blocks.
        design: ``"codesign"`` (the NPU-co-designed kernel) or ``"naive"`` (baseline: scalar
            coordinate math, one DMA per corner read and one atomic DMA per corner written).
        deterministic: every ``grad_value`` element is accumulated by a single block in an order
            fixed by the data, so the result is bit-identical for any ``block_num`` and ``seed``
            (either design). Work is then split by (batch, head) slice: at most
            ``bs * num_heads`` blocks are busy, the cost of the mode.

    Returns:
        ``(grad_value, grad_sampling_locations, grad_attention_weights)`` in value's dtype and the
        shapes of value, sampling_locations and attention_weights. Accumulation is fp32 (an fp32
        workspace for fp16/bf16 ``grad_value``, rounded once at the end).
    """
    args = {
        "grad_output": grad_output,
        "value": value,
        "spatial_shapes": spatial_shapes,
        "level_start_index": level_start_index,
        "sampling_locations": sampling_locations,
        "attention_weights": attention_weights,
    }
    for name, t in args.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"msda_backward: {name} must be a torch.Tensor, got {type(t).__name__}")
    if design not in _DESIGNS:
        raise ValueError(f"msda_backward: design must be one of {_DESIGNS}, got {design!r}")
    if not isinstance(deterministic, bool):
        raise TypeError(f"msda_backward: deterministic must be a bool, got {type(deterministic).__name__}")
    if value.dtype not in _DTYPE_CODES:
        raise TypeError(f"msda_backward: value must be float32, float16 or bfloat16, got {value.dtype}")
    for name in ("grad_output", "sampling_locations", "attention_weights"):
        if args[name].dtype != value.dtype:
            raise TypeError(f"msda_backward: {name} must have value's dtype {value.dtype}, got {args[name].dtype}")
    return tuple(
        torch.ops.npu_ops_sim.msda_backward(
            grad_output,
            value,
            spatial_shapes,
            level_start_index,
            sampling_locations,
            attention_weights,
            resolve_block_num(block_num),
            check_seed(seed),
            design,
            deterministic,
        )
    )


def msda_backward_tiling(
    *,
    bs: int,
    num_queries: int,
    heads: int,
    channels: int,
    points: int,
    levels: list[tuple[int, int]],
    dtype: torch.dtype = torch.float32,
    design: str = "codesign",
    deterministic: bool = False,
    block_num: int = 48,
    ub_bytes: int = 188160,
) -> dict:
    """The host tiling the kernel would get (for tests and the cost model).

    Returns ``ub_bytes``, ``tile_rows``, ``group``, ``priv_rows``, ``cs``, ``lps``, ``np``,
    ``slice_chunks``, ``block_num``, ``workspace_bytes``, ``win_rows`` (channel rows of the per-tile
    window buffers, 0 for none) and ``priv_levels`` (1 per privatised level).
    """
    hw = [int(v) for hw in levels for v in hw]
    r = torch.ops.npu_ops_sim.msda_backward_tiling(
        [bs, 0, num_queries, heads, channels, points],
        hw,
        _DTYPE_CODES[dtype],
        design,
        deterministic,
        block_num,
        ub_bytes,
    )
    keys = ("ub_bytes", "tile_rows", "group", "priv_rows", "cs", "lps", "np", "slice_chunks", "block_num")
    out = dict(zip(keys, r[:9]))
    out["workspace_bytes"] = r[9]
    out["win_rows"] = r[10]
    out["priv_levels"] = list(r[11:])
    return out
