"""MEASURED MSDA times on a real Ascend NPU: ``python bench/bench_ascend_msda.py --npu``.

Times :func:`npu_ops.msda` (the co-designed AscendC kernels behind ``PrivateUse1``), the same op
with the naive baseline kernels (``NPU_OPS_MSDA_DESIGN=naive``, read by the launcher per call) and the
grid_sample formulation (``npu_ops.msda.multi_scale_deformable_attn_pytorch``, the baseline of the
xMSDA paper) on the NPU, at the full benchmark shapes of :mod:`npu_ops.bench.msda_cases`: forward
(no grad) and backward (``autograd.grad`` after an untimed forward). Each call is bracketed by
``torch.npu.synchronize()``; p20/p50/p80 over the recorded calls. Needs torch_npu, CANN and an NPU
with the package built with ``NPU_OPS_WITH_NPU=1`` (``npu_ops.has_npu_backend()``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

import torch

from . import harness
from .msda_cases import CASES, MsdaInputs, make_inputs
from .msda_steps import call

__all__ = ["measure"]

# npu_ops_naive: the naive baseline kernels, through the launcher's NPU_OPS_MSDA_DESIGN=naive.
PROVIDERS = ("npu_ops", "npu_ops_naive", "grid_sample")


def _npu_ready() -> str:
    """Why the NPU cannot be benchmarked here, or '' if it can."""
    import npu_ops

    try:
        import torch_npu  # noqa: F401
    except ImportError as e:
        return f"torch_npu does not import ({e})"
    if not npu_ops.has_npu_backend():
        return "npu_ops was built without the NPU library (_C_npu); see docs/ascend_build.md"
    return ""


def _sync_time(fn: Callable[[], object]) -> float:
    """Seconds of ``fn()`` with the NPU stream drained before and after."""
    torch.npu.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.npu.synchronize()
    return time.perf_counter() - t0


def _samples(provider: str, mode: str, inp: MsdaInputs, grad: torch.Tensor, warmup: int, repeats: int) -> list[float]:
    os.environ["NPU_OPS_MSDA_DESIGN"] = "naive" if provider == "npu_ops_naive" else "codesign"
    provider = "npu_ops" if provider == "npu_ops_naive" else provider
    xs = [t.detach().requires_grad_() for t in (inp.value, inp.sampling_locations, inp.attention_weights)]

    def forward() -> object:
        with torch.no_grad():
            return call(provider, inp, inp.value, inp.sampling_locations, inp.attention_weights)

    out = []
    for i in range(warmup + repeats):
        if mode == "forward":
            dt = _sync_time(forward)
        else:
            y = call(provider, inp, *xs)  # untimed forward with grad
            dt = _sync_time(lambda y=y: torch.autograd.grad(y, xs, grad))
        if i >= warmup:
            out.append(dt)
    return out


def measure(cases: Sequence[str], dtypes: Sequence[str], repeats: int = 20, warmup: int = 3) -> list[dict]:
    """Rows (case, dtype, provider, mode, p20/p50/p80 ms) measured on ``npu:0``."""
    why = _npu_ready()
    if why:
        raise RuntimeError(f"--npu: cannot measure on an NPU: {why}")
    saved = os.environ.get("NPU_OPS_MSDA_DESIGN")
    try:
        return _measure(cases, dtypes, repeats, warmup)
    finally:
        if saved is None:
            os.environ.pop("NPU_OPS_MSDA_DESIGN", None)
        else:
            os.environ["NPU_OPS_MSDA_DESIGN"] = saved


def _measure(cases: Sequence[str], dtypes: Sequence[str], repeats: int, warmup: int) -> list[dict]:
    rows = []
    for name in cases:
        case = CASES[name]
        for dt in dtypes:
            inp = make_inputs(case, getattr(torch, dt))
            for f in ("value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights"):
                setattr(inp, f, getattr(inp, f).npu())
            grad = torch.randn(case.bs, case.nq, case.heads * case.channels).to(inp.value.dtype).npu()
            for provider in PROVIDERS:
                for mode in ("forward", "backward"):
                    samples = _samples(provider, mode, inp, grad, warmup, repeats)
                    rows.append(
                        {
                            "label": "MEASURED on NPU",
                            "case": name,
                            "dtype": dt,
                            "provider": provider,
                            "mode": mode,
                            "p20_ms": round(1e3 * harness.quantile(samples, 0.2), 4),
                            "p50_ms": round(1e3 * harness.quantile(samples, 0.5), 4),
                            "p80_ms": round(1e3 * harness.quantile(samples, 0.8), 4),
                            "device": torch.npu.get_device_name(0),
                        }
                    )
    return rows


def table(rows: Sequence[dict]) -> str:
    t: dict[tuple[str, str, str], dict[str, float]] = {}
    for r in rows:
        t.setdefault((r["case"], r["dtype"], r["mode"]), {})[r["provider"]] = r["p50_ms"]
    body = []
    for (c, d, m), ms in t.items():
        co, na, gs = (ms.get(p, float("nan")) for p in PROVIDERS)
        body.append([c, d, m, co, na, gs, f"{na / co:.2f}x", f"{gs / co:.2f}x"])
    headers = ["case", "dtype", "mode", "codesign p50 ms", "naive p50 ms", "grid_sample p50 ms"]
    return harness.markdown_table(headers + ["codesign vs naive", "codesign vs grid_sample"], body)
