"""``npu_ops.msda``: the public function, its fake (meta) kernels and its autograd.

The op schemas live in ``csrc/registration.cpp``; backends register kernels in
C++ (``csrc/cpu_ref/msda_cpu.cpp`` for CPU). Autograd is attached to the op
itself, so eager, ``torch.compile`` and ``opcheck`` all see the same gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["msda"]

_LOC = "[bs, num_queries, num_heads, num_levels, num_points, 2]"
_ATTN = "[bs, num_queries, num_heads, num_levels, num_points]"


def _is_int(x) -> bool:
    return isinstance(x, (int, torch.SymInt)) and not isinstance(x, bool)


def _shapes_tensor(spatial_shapes) -> Tensor:
    """A list/tuple of ``(h, w)`` pairs as the int64 ``[num_levels, 2]`` tensor the op takes."""
    bad = []
    for i, hw in enumerate(spatial_shapes):
        if isinstance(hw, Tensor) or not isinstance(hw, Sequence) or len(hw) != 2:
            bad.append(f"entry {i} is {hw!r} (expected a pair of ints (h, w))")
        elif not all(_is_int(x) for x in hw):
            bad.append(f"entry {i} is {tuple(hw)!r} (expected ints, got {', '.join(type(x).__name__ for x in hw)})")
        elif not all(x >= 1 for x in hw):
            bad.append(f"entry {i} is {tuple(hw)!r} (expected h >= 1 and w >= 1)")
    if not spatial_shapes:
        bad.append("the list is empty (expected at least one level)")
    if bad:
        raise ValueError("npu_ops.msda: spatial_shapes as a list must hold (h, w) int pairs: " + "; ".join(bad))
    return torch.tensor([[int(h), int(w)] for h, w in spatial_shapes], dtype=torch.int64)


def _level_starts(spatial_shapes: Tensor) -> Tensor:
    """``[0, h0*w0, h0*w0 + h1*w1, ...]`` from the shapes (the mmcv ``level_start_index``)."""
    sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])


def msda(
    value: Tensor,
    spatial_shapes: Tensor | Sequence[tuple[int, int]],
    level_start_index: Tensor | None = None,
    sampling_locations: Tensor | None = None,
    attention_weights: Tensor | None = None,
    im2col_step: int = 64,
) -> Tensor:
    """Multi-scale deformable attention (Deformable DETR), mmcv semantics.

    For every query, head and level, ``num_points`` bilinear samples of the
    level's value map are taken at ``sampling_locations`` and summed with
    ``attention_weights`` (used as given: no softmax inside).

    Args:
        value (Tensor[bs, num_keys, num_heads, C]): flattened multi-level features,
            ``num_keys = sum(h_l * w_l)``. float32, float64, float16 or bfloat16.
        spatial_shapes (Tensor[num_levels, 2] | list[tuple[int, int]]): ``(h_l, w_l)`` per level,
            an int32/int64 tensor or a list/tuple of int pairs (the form Mask2Former and OneFormer pass).
        level_start_index (Tensor[num_levels] | None): first key of each level,
            ``[0, h_0*w_0, h_0*w_0 + h_1*w_1, ...]``, int32 or int64; ``None`` derives it from
            ``spatial_shapes``. The function-form order of ``multi_scale_deformable_attn_pytorch``,
            ``msda(value, spatial_shapes, sampling_locations, attention_weights)``, is accepted too.
        sampling_locations (Tensor[bs, num_queries, num_heads, num_levels, num_points, 2]):
            normalised ``(x, y)``; ``(0, 0)`` is the top-left corner of the map, ``(1, 1)`` the
            bottom-right one. Any value is legal: points outside the map (and NaN/Inf) contribute
            zero and get zero gradients. Cast to ``value.dtype``.
        attention_weights (Tensor[bs, num_queries, num_heads, num_levels, num_points]):
            cast to ``value.dtype``.
        im2col_step (int): accepted for mmcv compatibility; no numerical effect and no
            divisibility requirement.

    Returns:
        Tensor[bs, num_queries, num_heads * C] in ``value.dtype``. float16/bfloat16
        inputs are accumulated in float32.

    Raises:
        RuntimeError / TypeError / ValueError naming the argument, the expected and the actual
        shape, dtype or device.

    Example::

        >>> value = torch.randn(2, 6 * 4 + 3 * 2, 8, 32)
        >>> shapes = torch.tensor([[6, 4], [3, 2]])
        >>> starts = torch.tensor([0, 24])
        >>> loc = torch.rand(2, 100, 8, 2, 4, 2)
        >>> attn = torch.rand(2, 100, 8, 2, 4).softmax(-1)
        >>> npu_ops.msda(value, shapes, starts, loc, attn).shape
        torch.Size([2, 100, 256])
    """
    if attention_weights is None and isinstance(level_start_index, Tensor) and level_start_index.is_floating_point():
        # Function-form call msda(value, shapes, sampling_locations, attention_weights): shift by one.
        level_start_index, sampling_locations, attention_weights = None, level_start_index, sampling_locations
    if not isinstance(spatial_shapes, Tensor):
        if not isinstance(spatial_shapes, Sequence) or isinstance(spatial_shapes, str):
            raise TypeError(
                "npu_ops.msda: spatial_shapes must be a torch.Tensor [num_levels, 2] or a list/tuple of (h, w), "
                f"got {type(spatial_shapes).__name__}"
            )
        spatial_shapes = _shapes_tensor(spatial_shapes)
    if level_start_index is None:
        if spatial_shapes.dim() != 2 or spatial_shapes.shape[-1] != 2:
            raise ValueError(
                "npu_ops.msda: spatial_shapes must be 2-D [num_levels, 2] to derive level_start_index, "
                f"got {tuple(spatial_shapes.shape)}"
            )
        level_start_index = _level_starts(spatial_shapes)
    args = {
        "value": value,
        "spatial_shapes": spatial_shapes,
        "level_start_index": level_start_index,
        "sampling_locations": sampling_locations,
        "attention_weights": attention_weights,
    }
    for name, t in args.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"npu_ops.msda: {name} must be a torch.Tensor, got {type(t).__name__}")
    if isinstance(im2col_step, bool) or not isinstance(im2col_step, int) or im2col_step < 1:
        raise ValueError(f"npu_ops.msda: im2col_step must be a positive int, got {im2col_step!r}")
    for name in ("sampling_locations", "attention_weights"):
        t = args[name]
        if not t.is_floating_point():
            raise TypeError(f"npu_ops.msda: {name} must be a floating-point tensor, got dtype {t.dtype}")
        if t.device != value.device:
            raise RuntimeError(f"npu_ops.msda: {name} is on {t.device} but value is on {value.device}")
    # mmcv casts locations and weights to the value dtype (AMP keeps them fp32).
    if value.is_floating_point():
        sampling_locations = sampling_locations.to(value.dtype)
        attention_weights = attention_weights.to(value.dtype)
    return torch.ops.npu_ops.msda.default(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights
    )


_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_INDEX_DTYPES = (torch.int32, torch.int64)


def _fail_unless(cond, msg: str) -> None:
    torch._check(cond, lambda: f"npu_ops.msda: {msg}")


def _check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights) -> None:
    """The checks the fake kernels can make from shapes, dtypes and devices alone.

    They mirror ``msda_check_shapes`` in ``csrc/common/msda_checks.cpp`` (which the real kernels
    run), so fake tensors, meta tensors and ``torch.compile`` reject what eager rejects.
    """
    layouts = (
        ("value", value, 4, "[bs, num_keys, num_heads, channels]"),
        ("spatial_shapes", spatial_shapes, 2, "[num_levels, 2]"),
        ("level_start_index", level_start_index, 1, "[num_levels]"),
        ("sampling_locations", sampling_locations, 6, _LOC),
        ("attention_weights", attention_weights, 5, _ATTN),
    )
    for name, t, ndim, layout in layouts:
        _fail_unless(t.dim() == ndim, f"{name} must be {ndim}-D {layout}, got {tuple(t.shape)}")
    _fail_unless(value.dtype in _FLOAT_DTYPES, f"value must have dtype {_FLOAT_DTYPES}, got {value.dtype}")
    for name, t in (("sampling_locations", sampling_locations), ("attention_weights", attention_weights)):
        _fail_unless(t.dtype == value.dtype, f"{name} must have value's dtype {value.dtype}, got {t.dtype}")
        _fail_unless(t.device == value.device, f"{name} is on {t.device} but value is on {value.device}")
    for name, t in (("spatial_shapes", spatial_shapes), ("level_start_index", level_start_index)):
        _fail_unless(t.dtype in _INDEX_DTYPES, f"{name} must have dtype int32 or int64, got {t.dtype}")
        _fail_unless(
            t.device in (value.device, torch.device("cpu")),
            f"{name} is on {t.device} but value is on {value.device} (expected {value.device} or cpu)",
        )
    bs, _, heads, _ = value.shape
    levels = spatial_shapes.shape[0]
    expected = (bs, sampling_locations.shape[1], heads, levels, sampling_locations.shape[4], 2)
    wanted = (
        ("spatial_shapes", spatial_shapes, (levels, 2), "[num_levels, 2]"),
        ("level_start_index", level_start_index, (levels,), "[num_levels]"),
        ("sampling_locations", sampling_locations, expected, _LOC),
        ("attention_weights", attention_weights, expected[:5], _ATTN),
    )
    for name, t, want, layout in wanted:
        _fail_unless(tuple(t.shape) == want, f"{name} must have shape {layout} = {want}, got {tuple(t.shape)}")


@torch.library.register_fake("npu_ops::msda")
def _msda_fake(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    _check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    bs, _, heads, channels = value.shape
    return value.new_empty((bs, sampling_locations.shape[1], heads * channels))


@torch.library.register_fake("npu_ops::_msda_backward")
def _msda_backward_fake(grad_output, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    _check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    bs, _, heads, channels = value.shape
    want = (bs, sampling_locations.shape[1], heads * channels)
    _fail_unless(
        tuple(grad_output.shape) == want,
        f"grad_output must have shape [bs, num_queries, num_heads*channels] = {want}, got {tuple(grad_output.shape)}",
    )
    _fail_unless(grad_output.dtype == value.dtype, f"grad_output must have value's dtype {value.dtype}")
    _fail_unless(grad_output.device == value.device, f"grad_output is on {grad_output.device}, value on {value.device}")
    return torch.empty_like(value), torch.empty_like(sampling_locations), torch.empty_like(attention_weights)


def _setup_context(ctx, inputs, output):
    value, spatial_shapes, level_start_index, sampling_locations, attention_weights = inputs
    ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)


def _backward(ctx, grad_output):
    value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
    grad_value, grad_loc, grad_attn = torch.ops.npu_ops._msda_backward.default(
        grad_output, value, spatial_shapes, level_start_index, sampling_locations, attention_weights
    )
    need = ctx.needs_input_grad
    return (
        grad_value if need[0] else None,
        None,
        None,
        grad_loc if need[3] else None,
        grad_attn if need[4] else None,
    )


def _double_backward(ctx, *grads):
    raise RuntimeError(
        "npu_ops.msda supports first-order gradients only (double backward is not implemented, as in mmcv)"
    )


def _setup_backward_context(ctx, inputs, output):
    pass


torch.library.register_autograd("npu_ops::msda", _backward, setup_context=_setup_context)
torch.library.register_autograd("npu_ops::_msda_backward", _double_backward, setup_context=_setup_backward_context)
