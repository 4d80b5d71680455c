"""Training step of the ``MultiScaleDeformableAttention`` layer: npu_ops against the grid_sample layer.

``python -m npu_ops.bench --op msda_module [--cases detr_enc] [--quick]``. One step = the layer's
forward (value / offset / weight projections, softmax, locations, sampling, output projection,
residual) and the backward into every parameter and the query, as in training. The grid_sample layer
is the same module with the sampling step swapped for
:func:`npu_ops.msda.multi_scale_deformable_attn_pytorch` (what mmcv's layer runs on CPU), so the two
differ only in the op. Both run interleaved, one step each per round (:func:`harness.time_interleaved`).
A profile of one npu_ops step (``torch.profiler``, self CPU time per op) says where the time goes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from npu_ops.msda import MultiScaleDeformableAttention, multi_scale_deformable_attn_pytorch

from . import harness
from .msda_cases import CASES, QUICK_SCALE, Case, _own_pixel_centres, resolve_case

__all__ = ["GridSampleLayer", "main", "make_layer_inputs", "module_step"]


class GridSampleLayer(MultiScaleDeformableAttention):
    """The same layer with mmcv's CPU sampling path (``grid_sample`` per level)."""

    def _sample(
        self, value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, locations: Tensor, weights: Tensor
    ) -> Tensor:
        return multi_scale_deformable_attn_pytorch(value, spatial_shapes, locations, weights)


def make_layer_inputs(case: Case, seed: int = 0) -> dict[str, Tensor]:
    """Query (encoder: also the value), reference points and shapes of ``case`` (batch first)."""
    g = torch.Generator().manual_seed(seed)
    embed = case.heads * case.channels
    shapes = torch.tensor(case.levels, dtype=torch.long)
    sizes = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    if case.num_queries is None:
        ref = _own_pixel_centres(case.levels).expand(case.bs, -1, -1)
    else:
        ref = torch.rand(case.bs, case.nq, 2, generator=g)
    ref = ref[:, :, None, :].expand(-1, -1, len(case.levels), -1).contiguous()
    query = torch.randn(case.bs, case.nq, embed, generator=g)
    value = query if case.num_queries is None else torch.randn(case.bs, case.num_keys, embed, generator=g)
    return {"query": query, "value": value, "reference_points": ref, "spatial_shapes": shapes, "starts": starts}


def _layer(cls: type, case: Case, seed: int) -> MultiScaleDeformableAttention:
    torch.manual_seed(seed)  # xavier init draws from the global generator: both layers get the same weights
    layer = cls(
        embed_dims=case.heads * case.channels,
        num_heads=case.heads,
        num_levels=len(case.levels),
        num_points=case.points,
        dropout=0.0,
        batch_first=True,
    )
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():  # a trained-looking layer: offsets of a pixel or so, non-uniform weights
        layer.sampling_offsets.weight.normal_(0.0, 0.02, generator=g)
        layer.attention_weights.weight.normal_(0.0, 0.05, generator=g)
    return layer


def module_step(layer: MultiScaleDeformableAttention, inp: dict[str, Tensor]) -> Callable[[], None]:
    """One training step: forward, then backward of a fixed ``grad_out`` into the parameters and the query."""
    query = inp["query"].detach().requires_grad_()
    value = query if inp["value"] is inp["query"] else inp["value"].detach().requires_grad_()
    grad_out = torch.randn(query.shape, generator=torch.Generator().manual_seed(1))

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        out = layer(
            query,
            value=value,
            reference_points=inp["reference_points"],
            spatial_shapes=inp["spatial_shapes"],
            level_start_index=inp["starts"],
        )
        out.backward(grad_out)
        query.grad = None

    return step


def _profile(step: Callable[[], None], top: int) -> str:
    step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m npu_ops.bench --op msda_module", description=__doc__.split("\n")[0])
    p.add_argument("--cases", default="detr_enc", help=f"comma list of {', '.join(CASES)} (default detr_enc)")
    p.add_argument("--repeats", type=int, default=10, help="rounds (default 10, cut to about --max-time s)")
    p.add_argument("--max-time", type=float, default=30.0, help="time budget of the rounds per case (s)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--profile", type=int, default=15, help="rows of the npu_ops step profile (0: none)")
    p.add_argument("--quick", action="store_true", help=f"CI smoke run: scaled down {QUICK_SCALE}x, 2 rounds")
    ns = p.parse_args(argv)
    torch.set_num_threads(ns.threads)
    rows, profiles = [], []
    for name in ns.cases.split(","):
        if name not in CASES:
            p.error(f"--cases: unknown case {name!r}; expected one of {', '.join(CASES)}")
        case = resolve_case(name, None, QUICK_SCALE if ns.quick else None)
        inp = make_layer_inputs(case)
        steps = {
            "npu_ops": module_step(_layer(MultiScaleDeformableAttention, case, 0), inp),
            "grid_sample": module_step(_layer(GridSampleLayer, case, 0), inp),
        }
        t0 = time.perf_counter()
        t = harness.time_interleaved(steps, 1, 2 if ns.quick else ns.repeats, 0 if ns.quick else ns.max_time, 3)
        npu, gs = t["npu_ops"]["wall"], t["grid_sample"]["wall"]
        spread = harness.round_spread(npu, gs)
        rows.append(
            [
                case.name,
                f"{npu.min_ms:.1f}",
                f"{npu.p50_ms:.1f}",
                f"{gs.min_ms:.1f}",
                f"{gs.p50_ms:.1f}",
                f"{gs.min_ms / npu.min_ms:.2f}x",
                f"{gs.p50_ms / npu.p50_ms:.2f}x",
                f"{spread:.2f}x" + (" !" if spread > 1.5 else ""),
                str(npu.repeats),
            ]
        )
        if ns.profile:
            profiles.append(
                f"npu_ops layer step, {case.name}: self CPU time per op\n{_profile(steps['npu_ops'], ns.profile)}"
            )
        print(f"{case.name}: {time.perf_counter() - t0:.1f} s", flush=True)
    env = harness.env_info()
    print(
        f"\nMultiScaleDeformableAttention training step (forward + backward, fp32, batch_first, dropout 0): "
        f"torch {env['torch']}, npu_ops {env['npu_ops_version']} ({env['git_sha']}), {env['threads']} threads\n"
    )
    headers = [
        "case",
        "npu_ops min ms",
        "npu_ops med ms",
        "grid_sample min ms",
        "grid_sample med ms",
        "speedup min",
        "speedup med",
        "spread",
        "rounds",
    ]
    print(harness.markdown_table(headers, rows))
    for prof in profiles:
        print("\n" + prof)
    return 0
