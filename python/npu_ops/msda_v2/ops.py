"""``npu_ops.msda_v2``: the public function, its fake (meta) kernels and its autograd.

Schemas in ``csrc/registration.cpp``; CPU kernels in ``csrc/cpu_ref/msda_v2_cpu.cpp``; input
checks in ``csrc/common/msda_v2_checks.cpp``. Autograd is attached to the op itself, so eager,
``torch.compile`` and ``opcheck`` all see the same gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..msda.ops import _level_starts, _shapes_tensor

__all__ = ["msda_v2"]

_METHODS = ("default", "discrete")
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_INDEX_DTYPES = (torch.int32, torch.int64)
_LOC = "[bs, num_queries, num_heads, sum(num_points_list), 2]"
_ATTN = "[bs, num_queries, num_heads, sum(num_points_list)]"


def msda_v2(
    value: Tensor,
    spatial_shapes: Tensor | Sequence[tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
    num_points_list: Sequence[int],
    method: str = "default",
    level_start_index: Tensor | None = None,
) -> Tensor:
    """Multi-scale deformable attention v2 (RT-DETRv2, D-FINE, DEIM).

    Same argument order as the reference ``deformable_attention_core_func_v2`` /
    ``multi_scale_deformable_attention_v2``: level ``l`` has ``num_points_list[l]`` sample
    points per (query, head), stored level after level in the points axis.

    Args:
        value (Tensor[bs, num_keys, num_heads, C]): flattened multi-level features,
            ``num_keys = sum(h_l * w_l)``. float32, float64, float16 or bfloat16.
        spatial_shapes (Tensor[num_levels, 2] | list[tuple[int, int]]): ``(h_l, w_l)`` per level.
        sampling_locations (Tensor[bs, num_queries, num_heads, sum(num_points_list), 2]): normalised
            ``(x, y)`` in ``[0, 1]`` (any value legal). Cast to ``value.dtype``.
        attention_weights (Tensor[bs, num_queries, num_heads, sum(num_points_list)]): used as given
            (no softmax inside). Cast to ``value.dtype``.
        num_points_list (list[int]): points per level, each >= 1.
        method (str): ``"default"``: bilinear, ``grid_sample(align_corners=False, padding_mode="zeros")``
            semantics (points outside ``(-1, size)`` in pixel space, and NaN/Inf, contribute zero).
            ``"discrete"``: the nearest pixel ``clamp(floor(loc * size + 0.5), 0, size - 1)`` per axis;
            no gradient flows to ``sampling_locations`` (zeros), as in the reference.
        level_start_index (Tensor[num_levels] | None): derived from ``spatial_shapes`` when ``None``.

    Returns:
        Tensor[bs, num_queries, num_heads * C] in ``value.dtype`` (fp16/bf16 accumulate in fp32).

    Example::

        >>> value = torch.randn(2, 8 * 8 + 4 * 4, 8, 32)
        >>> loc = torch.rand(2, 300, 8, 4 + 2, 2)
        >>> attn = torch.rand(2, 300, 8, 6).softmax(-1)
        >>> npu_ops.msda_v2(value, [(8, 8), (4, 4)], loc, attn, [4, 2]).shape
        torch.Size([2, 300, 256])
    """
    if not isinstance(spatial_shapes, Tensor):
        if not isinstance(spatial_shapes, Sequence) or isinstance(spatial_shapes, str):
            raise TypeError(
                "npu_ops.msda_v2: spatial_shapes must be a torch.Tensor [num_levels, 2] or a list/tuple of (h, w), "
                f"got {type(spatial_shapes).__name__}"
            )
        try:
            spatial_shapes = _shapes_tensor(spatial_shapes)
        except ValueError as e:
            raise ValueError(str(e).replace("npu_ops.msda:", "npu_ops.msda_v2:")) from None
    for name, t in (
        ("value", value),
        ("sampling_locations", sampling_locations),
        ("attention_weights", attention_weights),
    ):
        if not isinstance(t, Tensor):
            raise TypeError(f"npu_ops.msda_v2: {name} must be a torch.Tensor, got {type(t).__name__}")
    if level_start_index is None:
        if spatial_shapes.dim() != 2 or spatial_shapes.shape[-1] != 2:
            raise ValueError(
                f"npu_ops.msda_v2: spatial_shapes must be 2-D [num_levels, 2], got {tuple(spatial_shapes.shape)}"
            )
        level_start_index = _level_starts(spatial_shapes)
    elif not isinstance(level_start_index, Tensor):
        raise TypeError(
            f"npu_ops.msda_v2: level_start_index must be a torch.Tensor or None, got {type(level_start_index).__name__}"
        )
    if isinstance(num_points_list, (str, Tensor)) or not isinstance(num_points_list, Sequence):
        raise TypeError(
            f"npu_ops.msda_v2: num_points_list must be a list of ints, got {type(num_points_list).__name__}"
        )
    bad = [
        f"entry {i} is {n!r}"
        for i, n in enumerate(num_points_list)
        if isinstance(n, bool) or not isinstance(n, (int, torch.SymInt)) or n < 1
    ]
    if bad or not num_points_list:
        raise ValueError(
            "npu_ops.msda_v2: num_points_list must be a non-empty list of ints >= 1, got "
            f"{list(num_points_list)!r}" + (f" ({'; '.join(bad)})" if bad else "")
        )
    if method not in _METHODS:
        raise ValueError(f'npu_ops.msda_v2: method must be "default" or "discrete", got {method!r}')
    for name, t in (("sampling_locations", sampling_locations), ("attention_weights", attention_weights)):
        if not t.is_floating_point():
            raise TypeError(f"npu_ops.msda_v2: {name} must be a floating-point tensor, got dtype {t.dtype}")
        if t.device != value.device:
            raise RuntimeError(f"npu_ops.msda_v2: {name} is on {t.device} but value is on {value.device}")
    if value.is_floating_point():
        sampling_locations = sampling_locations.to(value.dtype)
        attention_weights = attention_weights.to(value.dtype)
    return torch.ops.npu_ops.msda_v2.default(
        value,
        spatial_shapes,
        level_start_index,
        sampling_locations,
        attention_weights,
        [int(n) for n in num_points_list],
        method,
    )


def _fail_unless(cond, msg: str) -> None:
    torch._check(cond, lambda: f"npu_ops.msda_v2: {msg}")


def _check_inputs(value, spatial_shapes, level_start_index, loc, attn, num_points_list, method) -> None:
    """The checks the fakes can make from metadata; they mirror ``msda_v2_check`` in C++."""
    layouts = (
        ("value", value, 4, "[bs, num_keys, num_heads, channels]"),
        ("spatial_shapes", spatial_shapes, 2, "[num_levels, 2]"),
        ("level_start_index", level_start_index, 1, "[num_levels]"),
        ("sampling_locations", loc, 5, _LOC),
        ("attention_weights", attn, 4, _ATTN),
    )
    for name, t, ndim, layout in layouts:
        _fail_unless(t.dim() == ndim, f"{name} must be {ndim}-D {layout}, got {ndim}-D shape {tuple(t.shape)}")
    _fail_unless(
        value.dtype in _FLOAT_DTYPES, f"value must be float32, float64, float16 or bfloat16, got {value.dtype}"
    )
    for name, t in (("sampling_locations", loc), ("attention_weights", attn)):
        _fail_unless(t.dtype == value.dtype, f"{name} must have value's dtype {value.dtype}, got {t.dtype}")
        _fail_unless(t.device == value.device, f"{name} is on {t.device} but value is on {value.device}")
    for name, t in (("spatial_shapes", spatial_shapes), ("level_start_index", level_start_index)):
        _fail_unless(t.dtype in _INDEX_DTYPES, f"{name} must have dtype int32 or int64, got {t.dtype}")
    _fail_unless(method in _METHODS, f'method must be "default" or "discrete", got "{method}"')
    levels = spatial_shapes.shape[0]
    _fail_unless(
        len(num_points_list) == levels,
        f"num_points_list must have one entry per level (num_levels = {levels}), got {len(num_points_list)} entries",
    )
    for i, n in enumerate(num_points_list):
        _fail_unless(n >= 1, f"num_points_list[{i}] must be >= 1, got {n}")
    bs, _, heads, _ = value.shape
    want = (bs, loc.shape[1], heads, sum(num_points_list), 2)
    _fail_unless(tuple(loc.shape) == want, f"sampling_locations must have shape {_LOC} = {list(want)}")
    _fail_unless(tuple(attn.shape) == want[:4], f"attention_weights must have shape {_ATTN} = {list(want[:4])}")


@torch.library.register_fake("npu_ops::msda_v2")
def _msda_v2_fake(value, spatial_shapes, level_start_index, loc, attn, num_points_list, method):
    _check_inputs(value, spatial_shapes, level_start_index, loc, attn, num_points_list, method)
    bs, _, heads, channels = value.shape
    return value.new_empty((bs, loc.shape[1], heads * channels))


@torch.library.register_fake("npu_ops::_msda_v2_backward")
def _msda_v2_backward_fake(grad_output, value, spatial_shapes, level_start_index, loc, attn, num_points_list, method):
    _check_inputs(value, spatial_shapes, level_start_index, loc, attn, num_points_list, method)
    bs, _, heads, channels = value.shape
    want = (bs, loc.shape[1], heads * channels)
    _fail_unless(tuple(grad_output.shape) == want, f"grad_output must have shape {list(want)}")
    _fail_unless(grad_output.dtype == value.dtype, f"grad_output must have value's dtype {value.dtype}")
    return torch.empty_like(value), torch.empty_like(loc), torch.empty_like(attn)


def _setup_context(ctx, inputs, output):
    *tensors, num_points_list, method = inputs
    ctx.save_for_backward(*tensors)
    ctx.num_points_list = num_points_list
    ctx.method = method


def _backward(ctx, grad_output):
    value, spatial_shapes, level_start_index, loc, attn = ctx.saved_tensors
    grad_value, grad_loc, grad_attn = torch.ops.npu_ops._msda_v2_backward.default(
        grad_output, value, spatial_shapes, level_start_index, loc, attn, ctx.num_points_list, ctx.method
    )
    need = ctx.needs_input_grad
    return (
        grad_value if need[0] else None,
        None,
        None,
        grad_loc if need[3] else None,
        grad_attn if need[4] else None,
        None,
        None,
    )


def _double_backward(ctx, *grads):
    raise RuntimeError("npu_ops.msda_v2 supports first-order gradients only (double backward is not implemented)")


def _setup_backward_context(ctx, inputs, output):
    pass


torch.library.register_autograd("npu_ops::msda_v2", _backward, setup_context=_setup_context)
torch.library.register_autograd("npu_ops::_msda_v2_backward", _double_backward, setup_context=_setup_backward_context)
