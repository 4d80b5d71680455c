"""npu_ops.integrations.transformers: every installed transformers model with the MSDA kernel layer, tiny
and randomly initialised, gives the fallback's outputs and gradients with npu_ops, and compiles."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("transformers")

import npu_ops.integrations.transformers as npu_hf  # noqa: E402
from npu_ops.integrations import tiny_models  # noqa: E402

MODELS = sorted(tiny_models.BUILDERS)


def _perturbed(name: str):
    model, inputs = tiny_models.build(name)
    # Deformable-DETR's initialisation puts sampling points exactly on pixel centres, where bilinear sampling
    # has a kink and any one-sided gradient is right; a trained model is never there. Move off the lattice.
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.01)
    return model, inputs


def _run(model, inputs):
    torch.manual_seed(0)  # same dropout masks (text encoders) in both runs
    outputs = tiny_models.differentiable_outputs(model(**inputs))
    loss = sum((torch.where(o.isfinite(), o, 0.0) ** 2).mean() for o in outputs)
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return outputs, grads


@pytest.mark.parametrize("name", MODELS)
def test_outputs_and_gradients_match_fallback(name):
    fallback, inputs = _perturbed(name)
    ours = npu_hf.enable(copy.deepcopy(fallback))
    assert not any(isinstance(m, npu_hf.MultiScaleDeformableAttention) for m in fallback.modules())
    swapped = [m for m in ours.modules() if isinstance(m, npu_hf.MultiScaleDeformableAttention)]
    assert len(swapped) >= 2, f"{name}: expected encoder and decoder layers, got {len(swapped)}"
    assert not any(npu_hf.is_transformers_layer(m) for m in ours.modules())
    assert ours.state_dict().keys() == fallback.state_dict().keys()

    out_ref, grad_ref = _run(fallback, inputs)
    out, grad = _run(ours, inputs)
    assert len(out) == len(out_ref) > 0
    for a, b in zip(out, out_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, equal_nan=True)
    assert grad.keys() == grad_ref.keys()
    scale = max(g.abs().max().item() for g in grad_ref.values())
    for key in grad_ref:
        torch.testing.assert_close(
            grad[key], grad_ref[key], rtol=1e-4, atol=1e-5 * scale, msg=lambda m, k=key: f"{k}: {m}"
        )


def test_layer_signature_is_transformers():
    import inspect

    from transformers.models.deformable_detr import modeling_deformable_detr as mdd

    ours = inspect.signature(npu_hf.MultiScaleDeformableAttention.forward)
    theirs = inspect.signature(mdd.MultiScaleDeformableAttention.forward)
    assert list(ours.parameters) == list(theirs.parameters)


def test_enable_without_model_patches_classes_and_disable_restores():
    from transformers.models.rt_detr import modeling_rt_detr as mrt

    original = mrt.MultiScaleDeformableAttention.forward
    try:
        classes = npu_hf.enable()
        assert mrt.MultiScaleDeformableAttention in classes
        assert len(classes) == len(npu_hf.MODEL_TYPES)  # OmDet-Turbo too (no tiny builder: text + task inputs)
        assert mrt.MultiScaleDeformableAttention.forward is npu_hf.MultiScaleDeformableAttention.forward
        model, inputs = _perturbed("rt_detr")  # built after enable(): uses npu_ops without a swap
        called = []
        orig_op = torch.ops.npu_ops.msda.default

        def spy(mod, args, kwargs, out):
            called.append(type(mod))

        hooks = [
            m.register_forward_hook(spy, with_kwargs=True) for m in model.modules() if npu_hf.is_transformers_layer(m)
        ]
        with torch.autograd.profiler.profile() as prof:
            model(**inputs)
        for h in hooks:
            h.remove()
        assert called, "the layers did not run"
        assert any(e.name == orig_op.name() for e in prof.function_events), "npu_ops::msda did not run"
    finally:
        npu_hf.disable()
    assert mrt.MultiScaleDeformableAttention.forward is original


def test_enable_rejects_models_without_the_layer():
    with pytest.raises(ValueError, match="has no transformers MultiScaleDeformableAttention layer"):
        npu_hf.enable(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        npu_hf.enable("deformable_detr")


def test_compiled_layer_has_no_graph_break(dynamo_reset):
    model, inputs = _perturbed("deformable_detr")
    npu_hf.enable(model)
    captured = {}

    def grab(mod, args, kwargs):
        captured.setdefault("args", args)

    layer = next(m for m in model.modules() if isinstance(m, npu_hf.MultiScaleDeformableAttention))
    handle = layer.register_forward_pre_hook(grab, with_kwargs=True)
    model(**inputs)
    handle.remove()
    args = captured["args"]
    explanation = torch._dynamo.explain(layer)(*args)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(*args), layer(*args))


def test_compiled_model_forward_matches_and_breaks_outside_the_layer(dynamo_reset):
    model, inputs = _perturbed("rt_detr")
    npu_hf.enable(model.eval())
    with torch.no_grad():
        expected = model(**inputs).logits
        explanation = torch._dynamo.explain(model)(**inputs)
        for reason in explanation.break_reasons:
            frames = " ".join(f.filename for f in reason.user_stack)
            assert "npu_ops" not in frames, reason
        got = torch.compile(model, backend="eager")(**inputs).logits
    torch.testing.assert_close(got, expected)


def test_layer_off_npu_ops_devices_uses_grid_sample(monkeypatch):
    from npu_ops.integrations import _devices
    from npu_ops.msda import multi_scale_deformable_attn_pytorch as reference

    gen = torch.Generator().manual_seed(0)
    shapes_list = [(5, 6), (3, 2)]
    value = torch.randn(2, 36, 2, 8, generator=gen)
    loc = torch.rand(2, 9, 2, 2, 3, 2, generator=gen)
    attn = torch.rand(2, 9, 2, 2, 3, generator=gen)
    args = (value, torch.tensor(shapes_list), shapes_list, torch.tensor([0, 30]), loc, attn, 64)
    layer = npu_hf.MultiScaleDeformableAttention()
    want = reference(value, torch.tensor(shapes_list), loc, attn)
    for supported, ran in ((_devices.SUPPORTED_DEVICE_TYPES, True), (frozenset(), False)):
        monkeypatch.setattr(_devices, "SUPPORTED_DEVICE_TYPES", supported)
        with torch.autograd.profiler.profile() as prof:
            got = layer(*args)
        assert any(e.name == "npu_ops::msda" for e in prof.function_events) is ran
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
