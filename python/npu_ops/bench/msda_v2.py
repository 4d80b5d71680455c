"""Benchmark npu_ops.msda_v2 against the RT-DETRv2 / D-FINE pure-PyTorch formulation, in one process.

    python -m npu_ops.bench.msda_v2 [--quick] [--repeats N] [--threads T]

Cases are RT-DETRv2 decoder shapes (640x640 input: maps 80x80, 40x40, 20x20; 300 queries, 8 heads,
C = 32) with num_points_list [4, 4, 4] and a mixed [3, 6, 3], both sampling methods. The baseline is
``multi_scale_deformable_attention_v2_pytorch`` (grid_sample / gather, the same math as the reference
implementations); reported figures are medians over repeats and baseline/npu_ops ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch

import npu_ops
from npu_ops.msda_v2 import multi_scale_deformable_attention_v2_pytorch

LEVELS = [(80, 80), (40, 40), (20, 20)]


@dataclass
class Case:
    name: str
    bs: int
    npl: list[int]
    method: str


def cases(quick: bool) -> list[Case]:
    bs = 2 if quick else 16
    out = [Case(f"rtdetrv2_b{bs}_444", bs, [4, 4, 4], "default"), Case(f"rtdetrv2_b{bs}_363", bs, [3, 6, 3], "default")]
    out.append(Case(f"rtdetrv2_b{bs}_444_discrete", bs, [4, 4, 4], "discrete"))
    return out


def _inputs(c: Case, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    nk = sum(h * w for h, w in LEVELS)
    value = torch.randn(c.bs, nk, 8, 32, generator=g).to(dtype)
    # Reference points spread over the image plus offsets of a few pixels (about 5% leave [0, 1]).
    ref = torch.rand(c.bs, 300, 1, 1, 2, generator=g)
    loc = (ref + 0.03 * torch.randn(c.bs, 300, 8, sum(c.npl), 2, generator=g)).to(dtype)
    attn = torch.rand(c.bs, 300, 8, sum(c.npl), generator=g).softmax(-1).to(dtype)
    return value, loc, attn


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_case(c: Case, dtype: torch.dtype, repeats: int) -> dict[str, float]:
    value, loc, attn = _inputs(c, dtype)

    def ours(v, lo, a):
        return npu_ops.msda_v2(v, LEVELS, lo, a, c.npl, c.method)

    def base(v, lo, a):
        return multi_scale_deformable_attention_v2_pytorch(v, LEVELS, lo, a, c.npl, c.method)

    res = {}
    for label, fn in (("npu_ops", ours), ("pytorch", base)):
        with torch.no_grad():
            res[f"{label}_fwd"] = _median_time(lambda fn=fn: fn(value, loc, attn), repeats)
        t = [x.detach().requires_grad_(i != 1 or c.method == "default") for i, x in enumerate((value, loc, attn))]

        def step(fn=fn, t=t):
            out = fn(*t)
            grads = torch.autograd.grad(out, [x for x in t if x.requires_grad], torch.ones_like(out))
            return grads

        res[f"{label}_fwd_bwd"] = _median_time(step, repeats)
    with torch.no_grad():
        a, b = ours(value, loc, attn), base(value, loc, attn)
    res["max_abs_diff"] = (a.double() - b.double()).abs().max().item()
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m npu_ops.bench.msda_v2", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="batch 2 instead of 16, 3 repeats (about 10 s)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (median reported)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads before timing")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ns = p.parse_args(argv)
    if ns.threads:
        torch.set_num_threads(ns.threads)
    repeats = ns.repeats or (3 if ns.quick else 7)
    dtype = getattr(torch, ns.dtype)
    print(
        f"npu_ops {npu_ops.__version__} msda_v2 benchmark, CPU, {torch.get_num_threads()} threads, {ns.dtype}, "
        f"median of {repeats}; maps {LEVELS}, 300 queries, 8 heads, C 32"
    )
    header = f"{'case':30s} {'fwd ms (ours/pytorch)':>24s} {'x':>6s} {'fwd+bwd ms (ours/pytorch)':>28s} {'x':>6s}"
    header += f" {'max|diff|':>9s}"
    print(header)
    for c in cases(ns.quick):
        r = run_case(c, dtype, repeats)
        f, fb = r["npu_ops_fwd"], r["npu_ops_fwd_bwd"]
        bf, bfb = r["pytorch_fwd"], r["pytorch_fwd_bwd"]
        print(
            f"{c.name:30s} {f * 1e3:10.2f} / {bf * 1e3:10.2f} {bf / f:6.2f} {fb * 1e3:13.2f} / {bfb * 1e3:11.2f} "
            f"{bfb / fb:6.2f} {r['max_abs_diff']:9.2g}"
        )


if __name__ == "__main__":
    main()
