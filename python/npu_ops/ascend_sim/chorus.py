"""The Chorus AscendC kernels (masked_blend, amplified_softmax) run on CPU tensors under the emulator.

Each function lays its inputs out exactly as the NPU launcher does (the same C++ tiling code),
launches the kernel entries of ``csrc/ascend/kernels/`` with ``block_num`` blocks in a
``seed``-shuffled order, and returns CPU tensors. A broken hardware rule raises
:class:`~npu_ops.ascend_sim.AscendRuleError`; bad input raises ``RuntimeError``.

Supported: ``float32``, ``float16`` and ``bfloat16`` data (fp32 arithmetic inside, results in
the input dtype; ``float64`` is a CPU-only dtype of ``npu_ops`` and has no AscendC kernel).
"""

from __future__ import annotations

import torch

from ._lib import check_seed, resolve_block_num, translate_errors

__all__ = [
    "amplified_softmax",
    "amplified_softmax_backward",
    "masked_blend",
    "masked_blend_backward",
]


@translate_errors
def masked_blend(
    fresh: torch.Tensor,
    cached: torch.Tensor,
    mask: torch.Tensor,
    *,
    block_num: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """``cached + mask * (fresh - cached)`` by the AscendC kernel (exact for 0/1 masks).

    Args:
        fresh, cached: same shape and dtype (float32/float16/bfloat16), any rank.
        mask: broadcasts to ``fresh``; bool/uint8 (hard, the ``u8mask`` kernels) or floating
            (soft, converted to the data dtype for the ``fmask`` kernels).
        block_num: AscendC blocks (default: the dav-2201 vector core count).
        seed: order in which the emulator runs the blocks.
    """
    return torch.ops.npu_ops_sim.masked_blend(fresh, cached, mask, resolve_block_num(block_num), check_seed(seed))


@translate_errors
def masked_blend_backward(
    grad: torch.Tensor,
    fresh: torch.Tensor,
    cached: torch.Tensor,
    mask: torch.Tensor,
    *,
    block_num: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Gradients of :func:`masked_blend`: ``(mask * g, g - mask * g, grad_mask)``.

    ``grad_mask`` (the sum over the broadcast dims of ``(fresh - cached) * g``, in the mask's
    shape and dtype) is ``None`` for bool/uint8 masks.
    """
    grad_fresh, grad_cached, grad_mask = torch.ops.npu_ops_sim.masked_blend_backward(
        grad, fresh, cached, mask, resolve_block_num(block_num), check_seed(seed)
    )
    if mask.dtype in (torch.bool, torch.uint8):
        return grad_fresh, grad_cached, None
    return grad_fresh, grad_cached, grad_mask


@translate_errors
def amplified_softmax(
    scores: torch.Tensor,
    alpha: torch.Tensor,
    *,
    scale: float = 1.0,
    renormalize: bool = True,
    block_num: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Softmax over the last dim with the attention to key j amplified by ``alpha_j``.

    ``renormalize=True``: ``softmax(scale * scores + log(alpha))`` (rows whose keys all have
    alpha 0 give zeros); ``False``: ``softmax(scale * scores) * alpha``. ``alpha`` (finite,
    >= 0) broadcasts to ``scores``; it is handed to the kernel as float32 ``[groups, L]``.
    The row length L is limited by the AI core's UB (the error names the maximum).
    """
    return torch.ops.npu_ops_sim.amplified_softmax(
        scores,
        alpha,
        float(scale),
        bool(renormalize),
        resolve_block_num(block_num),
        check_seed(seed),
    )


@translate_errors
def amplified_softmax_backward(
    grad: torch.Tensor,
    scores: torch.Tensor,
    alpha: torch.Tensor,
    *,
    scale: float = 1.0,
    renormalize: bool = True,
    block_num: int | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of :func:`amplified_softmax`: ``(grad_scores, grad_alpha)``.

    ``grad_alpha`` has alpha's shape and dtype; rows whose keys are all removed contribute
    nothing.
    """
    grad_scores, grad_alpha = torch.ops.npu_ops_sim.amplified_softmax_backward(
        grad,
        scores,
        alpha,
        float(scale),
        bool(renormalize),
        resolve_block_num(block_num),
        check_seed(seed),
    )
    return grad_scores, grad_alpha
