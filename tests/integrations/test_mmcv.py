"""npu_ops.integrations.mmcv: patch() makes mmcv's Function and grid_sample fallback run npu_ops; the
registered module loads mmcv checkpoints. Runs against real mmcv when it is installed with its ops, else
against the stand-in in mmcv_standin/ (mmcv has no CPU wheel for this Python on PyPI)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmengine")

import npu_ops  # noqa: E402
import npu_ops.integrations.mmcv as npu_mmcv  # noqa: E402
from npu_ops.msda import multi_scale_deformable_attn_pytorch as reference  # noqa: E402

STANDIN = Path(__file__).parent / "mmcv_standin"


@pytest.fixture(scope="module")
def mmcv_ops():
    added = False
    try:
        importlib.import_module("mmcv.ops.multi_scale_deform_attn")
    except ImportError:
        for name in [n for n in sys.modules if n == "mmcv" or n.startswith("mmcv.")]:
            del sys.modules[name]
        sys.path.insert(0, str(STANDIN))
        added = True
    mod = importlib.import_module("mmcv.ops.multi_scale_deform_attn")
    downstream = importlib.import_module("downstream") if added else None
    yield mod, downstream
    npu_mmcv.unpatch()
    if added:
        sys.path.remove(str(STANDIN))
        for name in [n for n in sys.modules if n in ("mmcv", "downstream") or n.startswith("mmcv.")]:
            del sys.modules[name]


def _inputs(seed=0, bs=2, nq=9, heads=2, channels=8):
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([[5, 6], [3, 2]])
    starts = torch.tensor([0, 30])
    value = torch.randn(bs, 36, heads, channels, generator=gen, requires_grad=True)
    loc = (torch.rand(bs, nq, heads, 2, 3, 2, generator=gen) * 1.2 - 0.1).requires_grad_()
    attn = torch.rand(bs, nq, heads, 2, 3, generator=gen).requires_grad_()
    return value, shapes, starts, loc, attn


def _msda_ran(fn) -> bool:
    with torch.autograd.profiler.profile() as prof:
        fn()
    return any(e.name == "npu_ops::msda" for e in prof.function_events)


def test_patch_makes_function_and_fallback_run_npu_ops(mmcv_ops):
    mod, downstream = mmcv_ops
    value, shapes, starts, loc, attn = _inputs()
    npu_mmcv.unpatch()
    if downstream is not None:  # the stand-in's Function has no CPU kernel, like mmcv's
        with pytest.raises(NotImplementedError):
            mod.MultiScaleDeformableAttnFunction.apply(value, shapes, starts, loc, attn, 64)
    assert not _msda_ran(lambda: mod.multi_scale_deformable_attn_pytorch(value, shapes, loc, attn))

    npu_mmcv.patch()
    npu_mmcv.patch()  # idempotent
    assert npu_mmcv.is_patched()
    want = reference(value, shapes, loc, attn)
    grads_want = torch.autograd.grad(want.square().sum(), (value, loc, attn))
    via_function = lambda: mod.MultiScaleDeformableAttnFunction.apply(value, shapes, starts, loc, attn, 64)  # noqa: E731
    via_fallback = lambda: mod.multi_scale_deformable_attn_pytorch(value, shapes, loc, attn)  # noqa: E731
    for run in (via_function, via_fallback):
        assert _msda_ran(run)
        got = run()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        for g, w in zip(torch.autograd.grad(got.square().sum(), (value, loc, attn)), grads_want):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
    if downstream is not None:  # a project that imported the function by name before patch()
        assert downstream.multi_scale_deformable_attn_pytorch is npu_mmcv.multi_scale_deformable_attn_pytorch
        assert _msda_ran(lambda: downstream.sample(value, shapes, starts, loc, attn))
        assert _msda_ran(lambda: downstream.sample(value, shapes, starts, loc, attn, use_function=True))

    npu_mmcv.unpatch()
    assert not npu_mmcv.is_patched()
    assert not _msda_ran(via_fallback)


def test_mmcv_module_runs_npu_ops_after_patch(mmcv_ops):
    mod, _ = mmcv_ops
    torch.manual_seed(0)
    layer = mod.MultiScaleDeformableAttention(embed_dims=16, num_heads=2, num_levels=2, num_points=3, dropout=0.0)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.3)
    query = torch.randn(9, 2, 16)  # [num_query, bs, embed_dims]
    value = torch.randn(36, 2, 16)
    ref_points = torch.rand(2, 9, 2, 2)
    shapes, starts = torch.tensor([[5, 6], [3, 2]]), torch.tensor([0, 30])

    def run():
        return layer(query, value=value, reference_points=ref_points, spatial_shapes=shapes, level_start_index=starts)

    npu_mmcv.unpatch()
    want = run()
    npu_mmcv.patch()
    assert _msda_ran(run)
    torch.testing.assert_close(run(), want, rtol=1e-5, atol=1e-5)

    # state-dict compatibility: mmcv's checkpoint loads strictly into the registered npu_ops module.
    from mmengine.registry import MODELS

    cfg = dict(type=npu_mmcv.REGISTERED_NAME, embed_dims=16, num_heads=2, num_levels=2, num_points=3, dropout=0.0)
    ours = MODELS.build(cfg)
    assert isinstance(ours, npu_ops.msda.MultiScaleDeformableAttention)
    assert ours.state_dict().keys() == layer.state_dict().keys()
    ours.load_state_dict(layer.state_dict(), strict=True)
    got = ours(query, value=value, reference_points=ref_points, spatial_shapes=shapes, level_start_index=starts)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    layer.load_state_dict(ours.state_dict(), strict=True)  # and back


def test_fallback_accepts_list_shapes_and_names_bad_input(mmcv_ops):
    value, shapes, _, loc, attn = _inputs()
    got = npu_mmcv.multi_scale_deformable_attn_pytorch(value, [(5, 6), (3, 2)], loc, attn)
    torch.testing.assert_close(got, reference(value, shapes, loc, attn), rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="sampling_locations"):
        npu_mmcv.multi_scale_deformable_attn_pytorch(value, shapes, loc[..., :1], attn)


def test_other_devices_keep_mmcv_kernels(mmcv_ops, monkeypatch):
    mod, downstream = mmcv_ops
    from npu_ops.integrations import _devices

    value, shapes, starts, loc, attn = _inputs()
    npu_mmcv.patch()
    monkeypatch.setattr(_devices, "SUPPORTED_DEVICE_TYPES", frozenset())  # as if these were CUDA tensors
    assert not _msda_ran(lambda: mod.multi_scale_deformable_attn_pytorch(value, shapes, loc, attn))
    if downstream is not None:  # mmcv's own Function again: the stand-in has no CPU kernel
        with pytest.raises(NotImplementedError):
            mod.MultiScaleDeformableAttnFunction.apply(value, shapes, starts, loc, attn, 64)
