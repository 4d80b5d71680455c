"""Hugging Face transformers: run its ``MultiScaleDeformableAttention`` kernel layer on :func:`npu_ops.msda`.

transformers marks one stateless layer, ``MultiScaleDeformableAttention`` (the ``grid_sample`` loop), with
``@use_kernel_forward_from_hub("MultiScaleDeformableAttention")`` in every model that uses it (Deformable-DETR,
RT-DETR, Grounding DINO, MM Grounding DINO, OmDet-Turbo, LW-DETR, RF-DETR, PP-DocLayout v2/v3/v4). Its forward
is ``(value, value_spatial_shapes, value_spatial_shapes_list, level_start_index, sampling_locations,
attention_weights, im2col_step)``; :class:`MultiScaleDeformableAttention` here has exactly that signature.

:func:`enable` swaps the layer, it does not go through the ``kernels`` package's mapping: transformers 5.x only
activates that mechanism with ``kernels>=0.18.2,<0.19``, which PyPI does not have (0.17.2 is the newest), so the
decorator is a no-op and ``kernelize`` never sees the layer; and ``LocalLayerRepository`` loads a kernel *build
directory* (``build/torch-*/<package>``), not a layer class from an installed package. Swapping the stateless
layer changes no parameter, buffer or state-dict key, works for every transformers version with that layer, and
``torch.compile`` traces it without graph breaks.

Example::

    import npu_ops.integrations.transformers as npu_hf
    model = DeformableDetrForObjectDetection(config)
    npu_hf.enable(model)          # this model's layers
    npu_hf.enable()               # or: every such layer class, including models built later
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys

from torch import Tensor, nn

from ..msda.ops import msda
from ..msda.reference import multi_scale_deformable_attn_pytorch
from ._devices import runs_on_npu_ops

__all__ = [
    "LAYER_NAME",
    "MODEL_TYPES",
    "MultiScaleDeformableAttention",
    "enable",
    "disable",
    "is_transformers_layer",
]

LAYER_NAME = "MultiScaleDeformableAttention"
# transformers.models.<type> modules that define the hub-kernel layer (checked against transformers 5.24).
# Others (RT-DETRv2, D-FINE, DEIMv2: per-level point counts; Mask2Former, OneFormer: a module-level
# function, no layer) do not use this layer and are not touched.
MODEL_TYPES = (
    "deformable_detr",
    "grounding_dino",
    "mm_grounding_dino",
    "omdet_turbo",
    "lw_detr",
    "rf_detr",
    "rt_detr",
    "pp_doclayout_v2",
    "pp_doclayout_v3",
    "pp_doclayout_v4",
)
_FORWARD_PARAMS = (
    "self",
    "value",
    "value_spatial_shapes",
    "value_spatial_shapes_list",
    "level_start_index",
    "sampling_locations",
    "attention_weights",
    "im2col_step",
)
# Layer classes whose forward enable() replaced (model=None), with the original forward, for disable().
_patched: dict[type, object] = {}


class MultiScaleDeformableAttention(nn.Module):
    """Drop-in for transformers' ``MultiScaleDeformableAttention`` layer, backed by :func:`npu_ops.msda`.

    Stateless like the original (no parameters or buffers). On devices npu_ops has no kernel for (CUDA,
    MPS, ...) it computes the same ``grid_sample`` formulation as transformers.
    """

    def forward(
        self,
        value: Tensor,
        value_spatial_shapes: Tensor,
        value_spatial_shapes_list: list[tuple],
        level_start_index: Tensor,
        sampling_locations: Tensor,
        attention_weights: Tensor,
        im2col_step: int,
    ) -> Tensor:
        """Multi-scale deformable attention, transformers' kernel-layer signature.

        Args:
            value: ``Tensor[bs, num_keys, num_heads, C]``.
            value_spatial_shapes: ``Tensor[num_levels, 2]`` of ``(h, w)``.
            value_spatial_shapes_list: the same sizes as a Python list (used only off npu_ops devices).
            level_start_index: ``Tensor[num_levels]``.
            sampling_locations: ``Tensor[bs, num_queries, num_heads, num_levels, num_points, 2]``, ``(x, y)`` in [0, 1].
            attention_weights: ``Tensor[bs, num_queries, num_heads, num_levels, num_points]``.
            im2col_step: accepted for compatibility (no numerical effect).

        Returns:
            ``Tensor[bs, num_queries, num_heads * C]``.
        """
        if runs_on_npu_ops(value):
            return msda(
                value, value_spatial_shapes, level_start_index, sampling_locations, attention_weights, im2col_step
            )
        shapes = value_spatial_shapes.new_tensor(value_spatial_shapes_list)
        return multi_scale_deformable_attn_pytorch(value, shapes, sampling_locations, attention_weights)


def is_transformers_layer(module: nn.Module) -> bool:
    """True for an instance of a transformers ``MultiScaleDeformableAttention`` kernel layer (any model)."""
    cls = type(module)
    return cls.__name__ == LAYER_NAME and cls.__module__.startswith("transformers.") and _has_layer_signature(cls)


def _has_layer_signature(cls: type) -> bool:
    try:
        params = tuple(inspect.signature(_patched.get(cls, cls.forward)).parameters)
    except (TypeError, ValueError):
        return False
    return params == _FORWARD_PARAMS


def _layer_classes() -> list[type]:
    """The layer classes of every installed model type in MODEL_TYPES, plus any already-imported lookalike."""
    names = []
    for model_type in MODEL_TYPES:
        name = f"transformers.models.{model_type}.modeling_{model_type}"
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            names.append(name)
    names += [n for n in list(sys.modules) if n.startswith("transformers.models.") and n not in names]
    classes = []
    for name in names:
        module = sys.modules.get(name) or importlib.import_module(name)
        cls = getattr(module, LAYER_NAME, None)
        if isinstance(cls, type) and issubclass(cls, nn.Module) and _has_layer_signature(cls) and cls not in classes:
            classes.append(cls)
    return classes


def enable(model: nn.Module | None = None) -> nn.Module | list[type]:
    """Make transformers' ``MultiScaleDeformableAttention`` layers run :func:`npu_ops.msda`.

    Args:
        model: with a model, each of its layers is replaced by a :class:`MultiScaleDeformableAttention`
            (the layer has no state, so nothing else changes). Without one, the ``forward`` of the layer
            class of every installed model type (:data:`MODEL_TYPES`) is replaced, so models built
            afterwards use npu_ops too; :func:`disable` undoes it.

    Returns:
        The model (same object), or the list of patched layer classes when ``model`` is None.

    Raises:
        ValueError: ``model`` has no such layer (nothing to enable).
    """
    if model is None:
        classes = _layer_classes()
        for cls in classes:
            if cls not in _patched:
                _patched[cls] = cls.__dict__["forward"]
                cls.forward = MultiScaleDeformableAttention.forward
        return classes
    if not isinstance(model, nn.Module):
        raise TypeError(f"enable: model must be a torch.nn.Module or None, got {type(model).__name__}")
    targets = [name for name, module in model.named_modules() if name and is_transformers_layer(module)]
    already = any(isinstance(m, MultiScaleDeformableAttention) for m in model.modules())
    if not targets and not already:
        raise ValueError(
            f"enable: {type(model).__name__} has no transformers {LAYER_NAME} layer (models that have one: "
            f"{', '.join(MODEL_TYPES)})"
        )
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        old = getattr(parent, child)
        new = MultiScaleDeformableAttention().train(old.training)
        setattr(parent, child, new)
    return model


def disable() -> None:
    """Restore the layer classes' own forward after ``enable()`` (models passed to ``enable(model)`` keep
    their npu_ops layers)."""
    while _patched:
        cls, forward = _patched.popitem()
        cls.forward = forward
