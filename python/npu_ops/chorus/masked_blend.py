"""``npu_ops.masked_blend``: the public function, its fake kernels and its autograd.

Schemas: ``csrc/registration.cpp``; CPU kernels: ``csrc/cpu_ref/masked_blend_cpu.cpp``. The fakes run
the checks of ``masked_blend_check`` (``csrc/common/chorus_checks.cpp``), so fake tensors, meta
tensors and ``torch.compile`` reject what eager rejects.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["masked_blend"]

_OP = "npu_ops.masked_blend"
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_HARD_DTYPES = (torch.bool, torch.uint8)


def masked_blend(fresh: Tensor, cached: Tensor, mask: Tensor) -> Tensor:
    """Blend freshly computed values into cached ones inside a region mask (Chorus Stage 2).

    ``out = cached + mask * (fresh - cached)``: mask 1 takes ``fresh``, mask 0 keeps ``cached``.

    Args:
        fresh (Tensor[*shape]): freshly computed values, e.g. latents ``Tensor[B, C, T, H, W]`` or
            tokens ``Tensor[B, N, D]``; any rank. float32, float16, bfloat16 (computed in float32)
            or float64 (CPU).
        cached (Tensor[*shape]): cached values, same shape, dtype and device as ``fresh``.
        mask (Tensor): broadcastable to ``fresh`` without changing its shape (at most ``fresh``'s
            rank; each dim equal or 1), typically ``Tensor[B, 1, T, H, W]`` or ``Tensor[B, N, 1]``.

            - bool or uint8: hard mask; nonzero selects ``fresh``. The result is an exact
              selection (``torch.where(mask, fresh, cached)``) and the mask gets no gradient.
            - float32 / float64 / float16 / bfloat16: soft mask, any floating dtype whatever
              ``fresh``'s. Its values are converted to the compute dtype (float32, or float64 for
              float64 data) and used as given (values in [0, 1] are the intended range; others
              extrapolate, as in ``torch.lerp``). The output keeps ``fresh``'s dtype. Computed as
              ``torch.lerp(cached, fresh, mask)`` does, so mask 0 and 1 give exactly ``cached``
              and ``fresh``.

    Returns:
        Tensor[*shape], contiguous, in ``fresh``'s dtype.

    Gradients (first order): ``grad_fresh = mask * g``, ``grad_cached = (1 - mask) * g`` and, for a
    floating mask, ``grad_mask = (fresh - cached) * g`` summed over the dims the mask is broadcast
    along, in the mask's dtype. The backward is the op ``torch.ops.npu_ops._masked_blend_backward``.

    Raises:
        RuntimeError naming the argument, the expected and the actual shape, dtype or device:
        mask that does not broadcast to ``fresh``, ``cached`` with another shape or dtype,
        integer data, tensors on different devices. TypeError for non-tensors.

    Example::

        >>> fresh, cached = torch.randn(1, 16, 3, 8, 8), torch.randn(1, 16, 3, 8, 8)
        >>> mask = torch.rand(1, 1, 3, 8, 8) > 0.5
        >>> npu_ops.masked_blend(fresh, cached, mask).shape
        torch.Size([1, 16, 3, 8, 8])
    """
    for name, t in (("fresh", fresh), ("cached", cached), ("mask", mask)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{_OP}: {name} must be a torch.Tensor, got {type(t).__name__}")
    return torch.ops.npu_ops.masked_blend.default(fresh, cached, mask)


def _fail_unless(cond, msg: str) -> None:
    torch._check(cond, lambda: f"{_OP}: {msg}")


def _shape(s) -> str:
    return "[" + ", ".join(str(x) for x in s) + "]"


def _check_inputs(fresh: Tensor, cached: Tensor, mask: Tensor) -> None:
    """``masked_blend_check`` from ``csrc/common/chorus_checks.cpp``, on shapes, dtypes and devices."""
    dt = fresh.dtype
    _fail_unless(dt in _FLOAT_DTYPES, f"fresh must have dtype float32, float64, float16 or bfloat16, got {dt}")
    _fail_unless(cached.dtype == dt, f"cached must have fresh's dtype {dt}, got {cached.dtype}")
    _fail_unless(
        mask.dtype in _HARD_DTYPES or mask.dtype in _FLOAT_DTYPES,
        f"mask must have dtype bool, uint8 (hard) or float32, float64, float16, bfloat16 (soft), got {mask.dtype}",
    )
    _fail_unless(cached.device == fresh.device, f"cached is on {cached.device} but fresh is on {fresh.device}")
    _fail_unless(mask.device == fresh.device, f"mask is on {mask.device} but fresh is on {fresh.device}")
    _fail_unless(
        cached.shape == fresh.shape,
        f"cached must have fresh's shape {_shape(fresh.shape)}, got {_shape(cached.shape)}",
    )
    _check_broadcast(_OP, "mask", mask, "fresh", fresh.shape)


def _check_broadcast(op: str, name: str, operand: Tensor, data_name: str, data: Sequence[int]) -> None:
    """``operand`` broadcasts to ``data`` without changing it (shared with amplified_softmax's alpha)."""
    n = len(data)
    head = f"{op}: {name} of shape {_shape(operand.shape)} does not broadcast to {data_name}'s shape {_shape(data)}"
    torch._check(operand.dim() <= n, lambda: f"{head}: it has {operand.dim()} dims, at most {n} allowed")
    lead = n - operand.dim()
    for i in range(operand.dim()):
        size, want = operand.shape[i], data[lead + i]
        msg = f"{head}: {data_name} dim {lead + i} has size {want}, {name} has {size} (expected {want} or 1)"
        torch._check(size == want or size == 1, lambda msg=msg: msg)


@torch.library.register_fake("npu_ops::masked_blend")
def _masked_blend_fake(fresh, cached, mask):
    _check_inputs(fresh, cached, mask)
    return fresh.new_empty(fresh.shape)


@torch.library.register_fake("npu_ops::_masked_blend_backward")
def _masked_blend_backward_fake(grad_output, fresh, cached, mask, output_mask):
    _check_inputs(fresh, cached, mask)
    _check_grad(grad_output, fresh)
    hard = mask.dtype in _HARD_DTYPES
    _fail_unless(
        not (output_mask[2] and hard), "backward: a bool / uint8 mask has no gradient (output_mask[2] must be false)"
    )
    return (
        fresh.new_empty(fresh.shape if output_mask[0] else (0,)),
        fresh.new_empty(fresh.shape if output_mask[1] else (0,)),
        mask.new_empty(mask.shape if output_mask[2] else (0,)),
    )


def _check_grad(grad_output: Tensor, fresh: Tensor) -> None:
    _fail_unless(
        grad_output.shape == fresh.shape,
        f"backward: grad_output must have fresh's shape {_shape(fresh.shape)}, got {_shape(grad_output.shape)}",
    )
    _fail_unless(
        grad_output.dtype == fresh.dtype,
        f"backward: grad_output must have fresh's dtype {fresh.dtype}, got {grad_output.dtype}",
    )
    _fail_unless(
        grad_output.device == fresh.device,
        f"backward: grad_output is on {grad_output.device} but fresh is on {fresh.device}",
    )


def _setup_context(ctx, inputs, output):
    fresh, cached, mask = inputs
    ctx.need_mask = bool(ctx.needs_input_grad[2]) and mask.dtype in _FLOAT_DTYPES
    # fresh and cached are only read for the mask gradient: keep them alive only then.
    if ctx.need_mask:
        ctx.save_for_backward(fresh, cached, mask)
    else:
        ctx.save_for_backward(None, None, mask)


def _backward(ctx, grad_output):
    fresh, cached, mask = ctx.saved_tensors
    need = ctx.needs_input_grad
    if fresh is None:
        # Not read without a mask gradient; grad_output has their shape, dtype and device.
        fresh = cached = grad_output
    grad_fresh, grad_cached, grad_mask = torch.ops.npu_ops._masked_blend_backward.default(
        grad_output, fresh, cached, mask, [bool(need[0]), bool(need[1]), ctx.need_mask]
    )
    return (
        grad_fresh if need[0] else None,
        grad_cached if need[1] else None,
        grad_mask if ctx.need_mask else None,
    )


def _double_backward(ctx, *grads):
    raise RuntimeError(f"{_OP} supports first-order gradients only (double backward is not implemented)")


def _setup_backward_context(ctx, inputs, output):
    pass


torch.library.register_autograd("npu_ops::masked_blend", _backward, setup_context=_setup_context)
torch.library.register_autograd(
    "npu_ops::_masked_blend_backward", _double_backward, setup_context=_setup_backward_context
)
