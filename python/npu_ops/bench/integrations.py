"""``python -m npu_ops.bench.integrations``: transformers models, fallback (``grid_sample``) vs npu_ops.

For each small randomly initialised model of :mod:`npu_ops.integrations.tiny_models` (every installed
transformers model with the ``MultiScaleDeformableAttention`` layer), in one process: median forward
(eval, no grad) and training-step (forward, backward, SGD step) times with transformers' own layer and
after :func:`npu_ops.integrations.transformers.enable`, and the largest output and gradient differences
between the two (the gradient one relative to the largest gradient). ``--quick``: a smoke run.
"""

from __future__ import annotations

import argparse
import copy
import csv
import sys

import torch

from .cli_common import add_timing_args, timing_knobs
from .harness import time_fn

DEFAULTS = {"repeats": 10, "warmup": 2, "max_time": 3.0, "min_repeats": 3}
QUICK = {"repeats": 2, "warmup": 1, "max_time": 0.5, "min_repeats": 1}


def _loss(model, inputs):
    from npu_ops.integrations.tiny_models import differentiable_outputs

    outputs = differentiable_outputs(model(**inputs))
    return outputs, sum((torch.where(o.isfinite(), o, 0.0) ** 2).mean() for o in outputs)


def _grads(model, inputs):
    torch.manual_seed(0)
    model.zero_grad(set_to_none=True)
    outputs, loss = _loss(model, inputs)
    loss.backward()
    return [o.detach() for o in outputs], {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _diffs(fallback, ours, inputs) -> tuple[float, float]:
    out_a, grad_a = _grads(fallback, inputs)
    out_b, grad_b = _grads(ours, inputs)
    finite = lambda t: torch.where(t.isfinite(), t, 0.0)  # noqa: E731  (masked logits are -inf in both)
    out_diff = max((finite(a) - finite(b)).abs().max().item() for a, b in zip(out_a, out_b))
    scale = max(g.abs().max().item() for g in grad_a.values()) or 1.0
    grad_diff = max((grad_a[k] - grad_b[k]).abs().max().item() for k in grad_a) / scale
    return out_diff, grad_diff


def _times(model, inputs, knobs) -> tuple[float, float]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)

    def forward():
        with torch.no_grad():
            model.eval()(**inputs)

    def step():
        model.train()
        opt.zero_grad(set_to_none=True)
        _loss(model, inputs)[1].backward()
        opt.step()

    timing = {k: knobs[k] for k in ("warmup", "repeats", "min_repeats")}
    fwd = time_fn(forward, budget_s=knobs["max_time"], **timing)["wall"].p50_ms
    train = time_fn(step, budget_s=knobs["max_time"], **timing)["wall"].p50_ms
    return fwd, train


def run(models, batch: int, size: int, knobs, width: dict | None = None) -> list[dict]:
    import npu_ops.integrations.transformers as npu_hf
    from npu_ops.integrations.tiny_models import build

    rows = []
    for name in models:
        fallback, inputs = build(name, batch=batch, size=size, **(width or {}))
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():  # off Deformable-DETR's init lattice, where bilinear sampling has kinks
            for p in fallback.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.01)
        ours = npu_hf.enable(copy.deepcopy(fallback))
        out_diff, grad_diff = _diffs(fallback, ours, inputs)
        fb_fwd, fb_train = _times(fallback, inputs, knobs)
        np_fwd, np_train = _times(ours, inputs, knobs)
        rows.append(
            {
                "model": name,
                "fallback_fwd_ms": fb_fwd,
                "npu_ops_fwd_ms": np_fwd,
                "fwd_speedup": fb_fwd / np_fwd,
                "fallback_train_ms": fb_train,
                "npu_ops_train_ms": np_train,
                "train_speedup": fb_train / np_train,
                "max_out_diff": out_diff,
                "max_grad_rel_diff": grad_diff,
            }
        )
        print(_row_md(rows[-1]), flush=True)
    return rows


_HEADER = (
    "| model | fwd fallback ms | fwd npu_ops ms | fwd speedup | train step fallback ms | train step npu_ops ms "
    "| train speedup | max output diff | max grad diff (rel.) |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|"
)


def _row_md(r: dict) -> str:
    return (
        f"| {r['model']} | {r['fallback_fwd_ms']:.1f} | {r['npu_ops_fwd_ms']:.1f} | {r['fwd_speedup']:.2f}x "
        f"| {r['fallback_train_ms']:.1f} | {r['npu_ops_train_ms']:.1f} | {r['train_speedup']:.2f}x "
        f"| {r['max_out_diff']:.1e} | {r['max_grad_rel_diff']:.1e} |"
    )


def main(argv: list[str] | None = None) -> int:
    from npu_ops.integrations.tiny_models import BUILDERS

    p = argparse.ArgumentParser(prog="python -m npu_ops.bench.integrations", description=__doc__)
    p.add_argument("--models", default=",".join(BUILDERS), help="comma-separated (default: all %(default)s)")
    p.add_argument("--batch", type=int, default=2, help="images per batch (default %(default)s)")
    p.add_argument("--size", type=int, default=320, help="image side in pixels (default %(default)s)")
    p.add_argument("--d-model", type=int, default=256, help="transformer width (default %(default)s, as in the papers)")
    p.add_argument("--heads", type=int, default=8, help="attention heads (default %(default)s)")
    p.add_argument("--points", type=int, default=4, help="MSDA sampling points per level (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="smoke run: the test models (d_model 32), 64x64, batch 1")
    p.add_argument("--csv", help="also write the rows to this CSV file")
    add_timing_args(p, DEFAULTS, "calls")
    ns = p.parse_args(argv)
    models = [m for m in ns.models.split(",") if m]
    unknown = [m for m in models if m not in BUILDERS]
    if unknown:
        p.error(f"--models: unknown {unknown}; choose from {sorted(BUILDERS)}")
    if ns.quick:
        ns.batch, ns.size, ns.d_model, ns.heads, ns.points = 1, 64, 32, 2, 2
    torch.set_num_threads(ns.threads)
    knobs = timing_knobs(ns, QUICK if ns.quick else DEFAULTS)
    print(
        f"# transformers models, fallback vs npu_ops: batch {ns.batch}, {ns.size}x{ns.size}, fp32, {ns.threads} threads"
    )
    print(_HEADER, flush=True)
    rows = run(models, ns.batch, ns.size, knobs, {"d_model": ns.d_model, "heads": ns.heads, "points": ns.points})
    if ns.csv:
        with open(ns.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
