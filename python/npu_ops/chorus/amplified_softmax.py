"""``npu_ops.amplified_softmax``: the public function, its fake kernels and its autograd.

Schemas: ``csrc/registration.cpp``; CPU kernels: ``csrc/cpu_ref/amplified_softmax_cpu.cpp``. The fakes
run the checks of ``amplified_softmax_check`` (``csrc/common/chorus_checks.cpp``) that need no tensor
values; the alpha value check (>= 0, finite) runs in the kernel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .masked_blend import _check_broadcast, _shape

__all__ = ["amplified_softmax"]

_OP = "npu_ops.amplified_softmax"
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def amplified_softmax(scores: Tensor, alpha: Tensor, *, scale: float = 1.0, renormalize: bool = True) -> Tensor:
    """Softmax over the last dim with per-key amplification (Chorus token-guided attention amplification).

    - ``renormalize=True``: ``softmax(scale * scores + log(alpha))``, i.e. the attention to key ``j``
      is multiplied by ``alpha_j`` and the row renormalised; ``alpha_j = 0`` removes key ``j``.
      Rows whose keys are all removed (or all have score ``-inf``) give zeros, not NaN.
    - ``renormalize=False``: ``softmax(scale * scores) * alpha`` (Prompt-to-Prompt re-weighting;
      rows no longer sum to 1).

    Args:
        scores (Tensor[..., Nq, L]): attention logits, e.g. ``Tensor[B, H, Nq, L]``; any rank >= 1,
            softmax over the last dim. float32, float16, bfloat16 (computed in float32) or float64.
        alpha (Tensor): broadcastable to ``scores`` without changing its shape, typically
            ``Tensor[B, 1, 1, L]`` (per key token, shared by heads and queries) or ``Tensor[L]``.
            Any floating dtype (converted to the compute dtype). Must be >= 0 and finite: the CPU
            kernel checks the values as it reads them (in eager mode and inside compiled graphs);
            fake and meta tensors cannot, so tracing does not check them.
        scale (float): multiplies ``scores`` first (e.g. ``1 / sqrt(head_dim)``); finite.
        renormalize (bool): see above.

    Returns:
        Tensor[..., Nq, L], contiguous, in ``scores``' dtype. The row maximum is subtracted before
        ``exp``, so huge scores stay finite. NaN or ``+inf`` in a row's logits give a NaN row.

    Gradients (first order) in ``scores`` and ``alpha``, exact also where ``alpha = 0``. With
    ``q_j = exp(scale * s_j - m) / Z`` and ``p`` the output: renormalised,
    ``d scores_j = scale * p_j * (g_j - sum_k g_k p_k)``, ``d alpha_j = q_j * (g_j - sum_k g_k p_k)``
    (``Z = sum_k alpha_k exp(scale * s_k - m)``); not renormalised (``q = softmax(scale * s)``),
    ``d alpha_j = g_j q_j``, ``d scores_j = scale * q_j * (g_j alpha_j - sum_k g_k alpha_k q_k)``.
    The alpha gradient is summed over the dims alpha is broadcast along and returned in alpha's
    dtype. Rows with no key left get zero gradients. Without an alpha gradient the renormalised
    backward keeps only the output (like ``torch.softmax``); otherwise it keeps ``scores`` and
    recomputes the row statistics. The backward is ``torch.ops.npu_ops._amplified_softmax_backward``.

    Raises:
        RuntimeError naming the argument, the expected and the actual value: integer scores,
        non-floating alpha, alpha that does not broadcast, tensors on different devices,
        non-finite scale, alpha < 0 / NaN / inf (naming the first offending element). TypeError
        for non-tensors or a non-numeric scale.

    Example::

        >>> scores = torch.randn(2, 4, 100, 77)  # [B, H, Nq, L]
        >>> alpha = torch.ones(2, 1, 1, 77)
        >>> alpha[:, :, :, 5] = 2.0  # amplify key token 5
        >>> p = npu_ops.amplified_softmax(scores, alpha, scale=0.125)
        >>> p.sum(-1).allclose(torch.ones(2, 4, 100))
        True
    """
    for name, t in (("scores", scores), ("alpha", alpha)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{_OP}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"{_OP}: scale must be a float, got {type(scale).__name__}")
    return torch.ops.npu_ops.amplified_softmax.default(scores, alpha, scale=float(scale), renormalize=bool(renormalize))


def _fail_unless(cond, msg: str) -> None:
    torch._check(cond, lambda: f"{_OP}: {msg}")


def _check_inputs(scores: Tensor, alpha: Tensor, scale: float, what: str = "scores") -> None:
    """``amplified_softmax_check`` from ``csrc/common/chorus_checks.cpp`` (no value checks)."""
    dt = scores.dtype
    _fail_unless(dt in _FLOAT_DTYPES, f"{what} must have dtype float32, float64, float16 or bfloat16, got {dt}")
    _fail_unless(scores.dim() >= 1, f"{what} must have at least 1 dim [..., L], got a 0-D tensor")
    _fail_unless(
        alpha.dtype in _FLOAT_DTYPES,
        f"alpha must have dtype float32, float64, float16 or bfloat16, got {alpha.dtype}",
    )
    _fail_unless(alpha.device == scores.device, f"alpha is on {alpha.device} but {what} is on {scores.device}")
    _fail_unless(math.isfinite(scale), f"scale must be finite, got {scale}")
    _check_broadcast(_OP, "alpha", alpha, what, scores.shape)


@torch.library.register_fake("npu_ops::amplified_softmax")
def _amplified_softmax_fake(scores, alpha, *, scale=1.0, renormalize=True):
    _check_inputs(scores, alpha, scale)
    return scores.new_empty(scores.shape)


@torch.library.register_fake("npu_ops::_amplified_softmax_backward")
def _amplified_softmax_backward_fake(grad_output, output, scores, alpha, scale, renormalize, output_mask):
    _fail_unless(
        scores is not None or output is not None,
        "backward: needs scores (or, with renormalize=True, the output)",
    )
    _fail_unless(scores is not None or renormalize, "backward: renormalize=False needs scores")
    _fail_unless(scores is not None or not output_mask[1], "backward: the alpha gradient needs scores")
    ref, what = (scores, "scores") if scores is not None else (output, "output")
    _check_inputs(ref, alpha, scale, what)
    _fail_unless(
        grad_output.shape == ref.shape,
        f"backward: grad_output must have {what}'s shape {_shape(ref.shape)}, got {_shape(grad_output.shape)}",
    )
    _fail_unless(
        grad_output.dtype == ref.dtype,
        f"backward: grad_output must have {what}'s dtype {ref.dtype}, got {grad_output.dtype}",
    )
    _fail_unless(
        grad_output.device == ref.device,
        f"backward: grad_output is on {grad_output.device} but {what} is on {ref.device}",
    )
    if scores is not None and output is not None:
        _fail_unless(
            output.shape == scores.shape and output.dtype == scores.dtype,
            "backward: output must have scores' shape and dtype",
        )
    return (
        ref.new_empty(ref.shape if output_mask[0] else (0,)),
        alpha.new_empty(alpha.shape if output_mask[1] else (0,)),
    )


def _setup_context(ctx, inputs, keyword_only_inputs, output):
    scores, alpha = inputs
    ctx.scale = keyword_only_inputs["scale"]
    ctx.renormalize = keyword_only_inputs["renormalize"]
    ctx.need_alpha = bool(ctx.needs_input_grad[1])
    if ctx.renormalize and not ctx.need_alpha:
        ctx.save_for_backward(output, None, alpha)  # like softmax: the output suffices
    else:
        ctx.save_for_backward(None, scores, alpha)  # recompute (exact where alpha = 0)


def _backward(ctx, grad_output):
    output, scores, alpha = ctx.saved_tensors
    need = ctx.needs_input_grad
    grad_scores, grad_alpha = torch.ops.npu_ops._amplified_softmax_backward.default(
        grad_output, output, scores, alpha, ctx.scale, ctx.renormalize, [bool(need[0]), ctx.need_alpha]
    )
    return (grad_scores if need[0] else None, grad_alpha if ctx.need_alpha else None)


def _double_backward(ctx, *grads):
    raise RuntimeError(f"{_OP} supports first-order gradients only (double backward is not implemented)")


def _setup_backward_context(ctx, inputs, output):
    pass


torch.library.register_autograd("npu_ops::amplified_softmax", _backward, setup_context=_setup_context)
torch.library.register_autograd(
    "npu_ops::_amplified_softmax_backward", _double_backward, setup_context=_setup_backward_context
)
