"""ONNX export of :func:`npu_ops.msda` with ``torch.onnx.export(..., dynamo=True)``.

Two translations of ``npu_ops::msda`` (pass one as ``custom_translation_table``, or call :func:`export`):

- default: one TensorRT-plugin node, ``TRT::MultiscaleDeformableAttnPlugin_TRT`` (the name TensorRT's
  ``multiscaleDeformableAttnPlugin`` registers and onnx-tensorrt imports), inputs in the plugin's order
  ``value, spatial_shapes, level_start_index, sampling_locations, attention_weights``, no attributes,
  integer inputs cast to int32 as the plugin wants. The plugin returns ``[N, Lq, M, D]``; a ``Reshape``
  after it gives npu_ops' ``[N, Lq, M*D]``.
- ``decompose=True``: standard ONNX only (one ``GridSample`` per level, ``align_corners=0``, zero padding,
  the same formulation as the PyTorch reference), for runtimes without the plugin (onnxruntime, OpenVINO...).
  Level sizes and offsets are read from the ``spatial_shapes`` / ``level_start_index`` tensors at run time;
  the number of levels and points and the channel count come from the static input shapes.

Example::

    from npu_ops.integrations import onnx as npu_onnx
    npu_onnx.export(model, (x,), "model.onnx")                  # TensorRT plugin node
    npu_onnx.export(model, (x,), "model_ort.onnx", decompose=True)  # GridSample graph
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["TRT_DOMAIN", "TRT_OP_TYPE", "translation_table", "export"]

TRT_DOMAIN = "TRT"
TRT_OP_TYPE = "MultiscaleDeformableAttnPlugin_TRT"
_OPSET = 18  # GridSample (16+) with mode "bilinear"; the exporter's default opset family


def _static_dim(value, axis: int, what: str) -> int:
    dim = value.shape[axis]
    if not isinstance(dim, int):
        raise ValueError(
            f"npu_ops ONNX decomposition: {what} (axis {axis} of {value.name}) must be static, got {dim!r}; "
            "mark only batch and query/key counts dynamic"
        )
    return dim


def _register_plugin_schema() -> None:
    """The exporter's tracer needs an OpSchema for every op it emits: describe the plugin's signature once."""
    import onnx

    if onnx.defs.has(TRT_OP_TYPE, TRT_DOMAIN):
        return
    param = onnx.defs.OpSchema.FormalParameter
    schema = onnx.defs.OpSchema(
        TRT_OP_TYPE,
        TRT_DOMAIN,
        1,
        doc="TensorRT multiscaleDeformableAttnPlugin: output [N, Lq, M, D]",
        inputs=[
            param("value", "T"),
            param("spatial_shapes", "I"),
            param("level_start_index", "I"),
            param("sampling_locations", "T"),
            param("attention_weights", "T"),
        ],
        outputs=[param("output", "T")],
        type_constraints=[
            ("T", ["tensor(float)", "tensor(float16)", "tensor(bfloat16)"], "float values"),
            ("I", ["tensor(int32)"], "level shapes and offsets"),
        ],
    )
    onnx.defs.register_schema(schema)


def _translations() -> tuple[Callable, Callable]:
    from onnxscript import opset18 as op
    from onnxscript import values

    _register_plugin_schema()
    plugin_op = values.Op(values.Opset(TRT_DOMAIN, 1), TRT_OP_TYPE)

    def msda_plugin(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        out = plugin_op(
            value,
            op.Cast(spatial_shapes, to=6),  # INT32
            op.Cast(level_start_index, to=6),
            sampling_locations,
            attention_weights,
        )
        batch_queries = op.Shape(sampling_locations, start=0, end=2)
        return op.Reshape(out, op.Concat(batch_queries, op.Constant(value_ints=[-1]), axis=0))

    def msda_grid_sample(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        heads = _static_dim(value, 2, "num_heads")
        channels = _static_dim(value, 3, "channels")
        levels = _static_dim(sampling_locations, 3, "num_levels")
        points = _static_dim(sampling_locations, 4, "num_points")
        shapes = op.Cast(spatial_shapes, to=7)  # INT64
        starts = op.Cast(level_start_index, to=7)
        num_queries = op.Shape(sampling_locations, start=1, end=2)
        minus_one = op.Constant(value_ints=[-1])
        # value [N, S, M, D] -> [N*M, D, S]
        v = op.Reshape(
            op.Transpose(value, perm=[0, 2, 3, 1]),
            op.Concat(minus_one, op.Constant(value_ints=[channels]), op.Shape(value, start=1, end=2), axis=0),
        )
        # grid in [-1, 1]: [N, Lq, M, L, P, 2] -> [N, M, Lq, L, P, 2]
        grid = op.Transpose(
            op.Sub(
                op.Mul(sampling_locations, op.CastLike(2.0, sampling_locations)), op.CastLike(1.0, sampling_locations)
            ),
            perm=[0, 2, 1, 3, 4, 5],
        )
        samples = []
        for level in range(levels):
            idx = op.Constant(value_ints=[level])
            hw = op.Reshape(op.Gather(shapes, idx, axis=0), op.Constant(value_ints=[2]))
            start = op.Gather(starts, idx, axis=0)
            end = op.Add(start, op.ReduceProd(hw, keepdims=1))
            v_l = op.Slice(v, start, end, op.Constant(value_ints=[2]))
            v_l = op.Reshape(v_l, op.Concat(minus_one, op.Constant(value_ints=[channels]), hw, axis=0))
            g_l = op.Gather(grid, op.Constant(value_int=level), axis=3)  # [N, M, Lq, P, 2]
            g_l = op.Reshape(g_l, op.Concat(minus_one, num_queries, op.Constant(value_ints=[points, 2]), axis=0))
            samples.append(op.GridSample(v_l, g_l, mode="bilinear", padding_mode="zeros", align_corners=0))
        stacked = op.Concat(*samples, axis=3)  # [N*M, D, Lq, L*P]
        weights = op.Transpose(attention_weights, perm=[0, 2, 1, 3, 4])
        weights = op.Reshape(
            weights,
            op.Concat(
                minus_one, op.Constant(value_ints=[1]), num_queries, op.Constant(value_ints=[levels * points]), axis=0
            ),
        )
        out = op.ReduceSum(op.Mul(stacked, weights), op.Constant(value_ints=[-1]), keepdims=0)  # [N*M, D, Lq]
        out = op.Reshape(out, op.Concat(minus_one, op.Constant(value_ints=[heads * channels]), num_queries, axis=0))
        return op.Transpose(out, perm=[0, 2, 1])

    return msda_plugin, msda_grid_sample


def translation_table(decompose: bool = False) -> dict[Any, Callable]:
    """``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)``.

    Args:
        decompose: False: one TensorRT-plugin node per call; True: standard ONNX ops (``GridSample``).
    """
    plugin, grid_sample = _translations()
    return {torch.ops.npu_ops.msda.default: grid_sample if decompose else plugin}


def export(model: torch.nn.Module, args: tuple, f: Any = None, *, decompose: bool = False, **kwargs: Any):
    """``torch.onnx.export(model, args, f, dynamo=True, custom_translation_table=...)`` with npu_ops' MSDA
    translation merged into any ``custom_translation_table`` given; returns the ``ONNXProgram``."""
    table = dict(kwargs.pop("custom_translation_table", None) or {})
    table.update(translation_table(decompose))
    kwargs.setdefault("opset_version", _OPSET)
    return torch.onnx.export(model, args, f, dynamo=True, custom_translation_table=table, **kwargs)
