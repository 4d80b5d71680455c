"""The module's one-pass location maths and the swappable sampling step (used by the layer benchmark)."""

from __future__ import annotations

import npu_ops.msda.module as msda_module
import torch
from npu_ops.bench.msda_cases import resolve_case
from npu_ops.bench.msda_module import GridSampleLayer, _layer, make_layer_inputs, module_step
from npu_ops.msda import MultiScaleDeformableAttention


def _old_locations(ref: torch.Tensor, offsets: torch.Tensor, shapes: torch.Tensor, points: int) -> torch.Tensor:
    """The two-pass formulas the module used before (mmcv's)."""
    if ref.shape[-1] == 2:
        normalizer = torch.stack([shapes[..., 1], shapes[..., 0]], -1).to(offsets.dtype)
        return ref[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
    return ref[:, :, None, :, None, :2] + offsets / points * ref[:, :, None, :, None, 2:] * 0.5


def test_locations_bit_identical_to_two_pass_formula() -> None:
    g = torch.Generator().manual_seed(5)
    shapes = torch.tensor([[13, 7], [5, 3]])
    for dtype in (torch.float32, torch.float64):
        offsets = (torch.randn(2, 9, 4, 2, 3, 2, generator=g) * 5).to(dtype)
        for ref_dim in (2, 4):
            ref = torch.rand(2, 9, 2, ref_dim, generator=g).to(dtype)
            seen = {}

            def capture(value, s, starts, loc, attn, im2col_step, seen=seen):
                seen["loc"] = loc
                return value.new_zeros(value.shape[0], loc.shape[1], value.shape[2] * value.shape[3])

            layer = MultiScaleDeformableAttention(embed_dims=8, num_heads=4, num_levels=2, num_points=3).to(dtype)
            with torch.no_grad():
                layer.sampling_offsets.weight.zero_()
            orig = msda_module.msda
            msda_module.msda = capture
            try:
                layer.sampling_offsets.bias.data.copy_(offsets[0, 0].reshape(-1))
                query = torch.zeros(9, 2, 8, dtype=dtype)
                starts = torch.tensor([0, 91])
                value = torch.zeros(91 + 15, 2, 8, dtype=dtype)
                layer(query, value=value, reference_points=ref, spatial_shapes=shapes, level_start_index=starts)
            finally:
                msda_module.msda = orig
            off = offsets[0, 0].expand(2, 9, 4, 2, 3, 2)
            assert torch.equal(seen["loc"], _old_locations(ref, off, shapes, 3)), (dtype, ref_dim)


def test_grid_sample_layer_matches_npu_layer_and_has_same_state_dict() -> None:
    case = resolve_case("mask2former", None, 16)
    inp = make_layer_inputs(case)
    npu, gs = _layer(MultiScaleDeformableAttention, case, 0), _layer(GridSampleLayer, case, 0)
    assert npu.state_dict().keys() == gs.state_dict().keys()
    for a, b in zip(npu.state_dict().values(), gs.state_dict().values()):
        assert torch.equal(a, b)
    module_step(npu, inp)()
    module_step(gs, inp)()
    for (name, p), q in zip(npu.named_parameters(), gs.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
