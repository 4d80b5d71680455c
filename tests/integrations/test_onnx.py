"""npu_ops.integrations.onnx: dynamo export to one TensorRT-plugin node, or to standard ops run by onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from npu_ops.integrations import onnx as npu_onnx  # noqa: E402
from npu_ops.msda import MultiScaleDeformableAttention  # noqa: E402


class _Encoder(torch.nn.Module):
    """One mmcv-style deformable attention layer over two fixed feature levels."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = MultiScaleDeformableAttention(32, num_heads=2, num_levels=2, num_points=3, batch_first=True)
        self.register_buffer("shapes", torch.tensor([[6, 5], [3, 3]]))
        self.register_buffer("starts", torch.tensor([0, 30]))

    def forward(self, query, value, reference_points):
        return self.attn(
            query,
            value=value,
            reference_points=reference_points,
            spatial_shapes=self.shapes,
            level_start_index=self.starts,
        )


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = _Encoder().eval()
    with torch.no_grad():
        for p in m.parameters():  # off the zero/ring init, so points land anywhere (also outside the maps)
            p.add_(torch.randn_like(p) * 0.2)
    return m


def _inputs(batch: int, queries: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, queries, 32, generator=gen),
        torch.randn(batch, 39, 32, generator=gen),
        torch.rand(batch, queries, 2, 2, generator=gen) * 1.2 - 0.1,
    )


def test_default_export_is_one_tensorrt_plugin_node(model):
    program = npu_onnx.export(model, _inputs(2, 7), verbose=False)
    graph = program.model_proto.graph
    custom = [n for n in graph.node if n.domain]
    assert [(n.domain, n.op_type) for n in custom] == [(npu_onnx.TRT_DOMAIN, npu_onnx.TRT_OP_TYPE)]
    node = custom[0]
    assert len(node.input) == 5 and len(node.output) == 1 and not node.attribute
    assert not [n for n in graph.node if n.op_type == "GridSample"]
    # the plugin's integer inputs (spatial_shapes, level_start_index) are int32: a Cast, or folded constants
    producers = {out: n for n in graph.node for out in n.output}
    constants = {t.name: t for t in graph.initializer}
    for name in node.input[1:3]:
        if name in constants:
            assert constants[name].data_type == onnx.TensorProto.INT32
        else:
            assert producers[name].op_type == "Cast" and producers[name].attribute[0].i == onnx.TensorProto.INT32
    assert any(o.domain == npu_onnx.TRT_DOMAIN for o in program.model_proto.opset_import)


@pytest.mark.parametrize("batch,queries", [(2, 7), (3, 4)])
def test_decomposed_export_runs_in_onnxruntime_and_matches(model, batch, queries):
    batch_dim, query_dim = torch.export.Dim("batch", max=64), torch.export.Dim("queries", max=4096)
    dynamic = {
        "query": {0: batch_dim, 1: query_dim},
        "value": {0: batch_dim},
        "reference_points": {0: batch_dim, 1: query_dim},
    }
    program = npu_onnx.export(model, _inputs(2, 7), decompose=True, dynamic_shapes=dynamic, verbose=False)
    proto = program.model_proto
    assert not [n for n in proto.graph.node if n.domain]
    assert sum(n.op_type == "GridSample" for n in proto.graph.node) == 2  # one per level
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    args = _inputs(batch, queries, seed=1)
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, {n: a.numpy() for n, a in zip(names, args)})[0]
    with torch.no_grad():
        want = model(*args).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_export_keeps_user_translations(model):
    calls = []
    table = npu_onnx.translation_table()
    assert list(table) == [torch.ops.npu_ops.msda.default]

    def relu(x):
        from onnxscript import opset18 as op

        calls.append(1)
        return op.Relu(x)

    class WithRelu(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, q, v, r):
            return torch.relu(self.inner(q, v, r))

    program = npu_onnx.export(
        WithRelu(model), _inputs(1, 3), decompose=True, custom_translation_table={torch.ops.aten.relu.default: relu}
    )
    assert calls and any(n.op_type == "Relu" for n in program.model_proto.graph.node)
