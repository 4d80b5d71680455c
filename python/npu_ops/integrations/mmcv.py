"""mmcv / mmdet / mmdet3d: run mmcv's multi-scale deformable attention on :func:`npu_ops.msda`.

mmcv's ``MultiScaleDeformableAttention`` module calls ``MultiScaleDeformableAttnFunction.apply`` on CUDA,
MLU and NPU (the vendor op there: heads and points 4-8 only) and the ``grid_sample`` function
``multi_scale_deformable_attn_pytorch`` everywhere else. :func:`patch` changes both, without config edits:

- ``MultiScaleDeformableAttnFunction``: its ``forward`` / ``backward`` are replaced *on mmcv's class itself*,
  so every reference to it (``mmcv.ops``, mmdet, mmdet3d, BEVFormer projects, imported before or after)
  runs npu_ops for CPU tensors and NPU tensors (when npu_ops is built for the NPU); other devices (CUDA, MLU)
  keep mmcv's kernels.
- ``multi_scale_deformable_attn_pytorch``: replaced in ``mmcv.ops.multi_scale_deform_attn`` and in every
  already-imported module that holds mmcv's function under that name (``from ... import`` copies), by one that
  runs npu_ops on CPU / NPU and mmcv's own function elsewhere.
- ``REGISTERED_NAME`` (``"NpuOpsMultiScaleDeformableAttention"``) is registered in mmengine's ``MODELS``
  (mmdet's and mmdet3d's registries are its children), for configs that want npu_ops explicitly:
  ``dict(type="NpuOpsMultiScaleDeformableAttention", embed_dims=256, ...)``. The module is
  :class:`npu_ops.msda.MultiScaleDeformableAttention`: mmcv's constructor, forward and parameter names, so
  mmcv checkpoints load into it.

Tested against a stand-in of mmcv's module layout when mmcv itself is not installed (see docs/integrations.md).
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

from ..msda.function import MultiScaleDeformableAttnFunction as _NpuOpsFunction
from ..msda.module import MultiScaleDeformableAttention
from ..msda.ops import msda
from ._devices import runs_on_npu_ops

__all__ = ["REGISTERED_NAME", "patch", "unpatch", "is_patched", "multi_scale_deformable_attn_pytorch"]

REGISTERED_NAME = "NpuOpsMultiScaleDeformableAttention"
_MMCV_MODULE = "mmcv.ops.multi_scale_deform_attn"
_FALLBACK_NAME = "multi_scale_deformable_attn_pytorch"
# What patch() replaced, for unpatch(): the Function's own forward/backward and mmcv's fallback function.
_originals: dict[str, object] = {}


def _level_start_index(spatial_shapes: Tensor) -> Tensor:
    sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    return torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])


def multi_scale_deformable_attn_pytorch(
    value: Tensor, value_spatial_shapes: Tensor, sampling_locations: Tensor, attention_weights: Tensor
) -> Tensor:
    """mmcv's ``multi_scale_deformable_attn_pytorch`` signature, running :func:`npu_ops.msda` on CPU / NPU.

    ``value_spatial_shapes`` may be a tensor or a list of ``(h, w)``. On other devices it calls mmcv's own
    function (after :func:`patch`; before, the npu_ops ``grid_sample`` reference).
    """
    if not isinstance(value_spatial_shapes, Tensor):
        value_spatial_shapes = torch.as_tensor(value_spatial_shapes, dtype=torch.int64)
    if runs_on_npu_ops(value):
        starts = _level_start_index(value_spatial_shapes)
        return msda(value, value_spatial_shapes, starts, sampling_locations, attention_weights)
    fallback = _originals.get(_FALLBACK_NAME)
    if fallback is None:
        from ..msda.reference import multi_scale_deformable_attn_pytorch as fallback
    return fallback(value, value_spatial_shapes, sampling_locations, attention_weights)


def _mmcv_module():
    try:
        import importlib

        return importlib.import_module(_MMCV_MODULE)
    except ImportError as e:
        raise ImportError(f"npu_ops.integrations.mmcv.patch needs mmcv with {_MMCV_MODULE} ({e})") from e


def is_patched() -> bool:
    """True between :func:`patch` and :func:`unpatch`."""
    return bool(_originals)


def patch(register: bool = True) -> None:
    """Make mmcv's multi-scale deformable attention (Function and ``grid_sample`` fallback) run npu_ops.

    Idempotent. Call it once, before or after importing mmdet / model code.

    Args:
        register: also register :data:`REGISTERED_NAME` in mmengine's ``MODELS`` (when mmengine is installed).

    Raises:
        ImportError: mmcv (``mmcv.ops.multi_scale_deform_attn``) is not importable.
    """
    mod = _mmcv_module()
    if not _originals:
        fn_cls = mod.MultiScaleDeformableAttnFunction
        orig_forward, orig_backward = fn_cls.forward, fn_cls.backward

        def forward(
            ctx,
            value,
            value_spatial_shapes,
            value_level_start_index,
            sampling_locations,
            attention_weights,
            im2col_step,
        ):
            ctx.npu_ops = runs_on_npu_ops(value)
            impl = _NpuOpsFunction.forward if ctx.npu_ops else orig_forward
            return impl(
                ctx,
                value,
                value_spatial_shapes,
                value_level_start_index,
                sampling_locations,
                attention_weights,
                im2col_step,
            )

        def backward(ctx, grad_output):
            # Both are once_differentiable already.
            return (_NpuOpsFunction.backward if ctx.npu_ops else orig_backward)(ctx, grad_output)

        _originals.update(function=fn_cls, forward=orig_forward, backward=orig_backward)
        _originals[_FALLBACK_NAME] = getattr(mod, _FALLBACK_NAME)
        fn_cls.forward = staticmethod(forward)
        fn_cls.backward = staticmethod(backward)
    _swap_everywhere(_originals[_FALLBACK_NAME], multi_scale_deformable_attn_pytorch)
    if register:
        _register()


def unpatch() -> None:
    """Undo :func:`patch` (the registry entry stays: mmengine has no unregister)."""
    if not _originals:
        return
    fn_cls = _originals["function"]
    fn_cls.forward = staticmethod(_originals["forward"])
    fn_cls.backward = staticmethod(_originals["backward"])
    _swap_everywhere(multi_scale_deformable_attn_pytorch, _originals[_FALLBACK_NAME])
    _originals.clear()


def _swap_everywhere(old, new) -> None:
    """Rebind ``multi_scale_deformable_attn_pytorch`` in every loaded module that holds ``old`` under that name."""
    for module in list(sys.modules.values()):
        if getattr(module, _FALLBACK_NAME, None) is old and module is not sys.modules[__name__]:
            setattr(module, _FALLBACK_NAME, new)


def _register() -> None:
    try:
        from mmengine.registry import MODELS
    except ImportError:
        return
    if MODELS.get(REGISTERED_NAME) is not MultiScaleDeformableAttention:
        MODELS.register_module(name=REGISTERED_NAME, module=MultiScaleDeformableAttention, force=True)
