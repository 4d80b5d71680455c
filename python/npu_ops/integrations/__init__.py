"""Integrations: make the models people already run use :func:`npu_ops.msda`.

Each submodule is imported on demand, so importing :mod:`npu_ops` never imports transformers, mmcv or onnx.

- :mod:`npu_ops.integrations.transformers`: ``enable(model=None)`` swaps Hugging Face transformers'
  ``MultiScaleDeformableAttention`` kernel layer (Deformable-DETR, RT-DETR, Grounding DINO, ...) for npu_ops.
- :mod:`npu_ops.integrations.mmcv`: ``patch()`` makes mmcv's ``MultiScaleDeformableAttnFunction`` and its
  ``grid_sample`` fallback (so every mmdet / mmdet3d model) run npu_ops on CPU and NPU.
- :mod:`npu_ops.integrations.onnx`: ``torch.onnx.export(..., dynamo=True)`` translations: one TensorRT-plugin
  node, or (opt-in) a decomposition into standard ONNX ``GridSample`` ops.

See ``docs/integrations.md``.
"""
