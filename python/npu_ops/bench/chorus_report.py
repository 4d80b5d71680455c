"""Markdown tables and CSV rows of a Chorus benchmark run, with the targets of issue 4 item 5.

Targets (CPU, forward): ``masked_blend`` at least 3x faster than ``naive`` and at most 1.2x the time
of ``torch.lerp`` (``torch.where`` for bool masks); ``amplified_softmax`` (renormalised) at least
1.3x faster than ``unfused``. The backward and ``renormalize=False`` rows have no target.
"""

from __future__ import annotations

import json
import math
from typing import Any

from . import harness
from .chorus_cases import CASES, Case
from .chorus_run import Results

__all__ = ["header", "blend_table", "softmax_table", "check_table", "csv_rows", "targets", "TARGETS"]

#: (baseline, kind, bound): kind ``speedup`` needs baseline / npu_ops >= bound, ``within`` npu_ops / baseline <= bound.
TARGETS = {"naive": ("speedup", 3.0), "lerp": ("within", 1.2), "where": ("within", 1.2), "unfused": ("speedup", 1.3)}


def _ok(x: float | None) -> bool:
    return x is not None and not math.isnan(x)


def _fmt(x: float | None, spec: str, missing: str = "-") -> str:
    return f"{x:{spec}}" if _ok(x) else missing


def _fmt_ms(x: float | None) -> str:
    return _fmt(x, ".3f" if _ok(x) and x < 10 else ".1f")


def _p50(res: Results, key: tuple[str, str, str, str]) -> float | None:
    t = res.timings.get(key)
    return t.p50_ms if t is not None else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if _ok(a) and _ok(b) and b else None


def _has_target(case: Case, mode: str) -> bool:
    return mode == "forward" and case.renormalize


def targets(res: Results, case: Case, dt: str, mode: str) -> dict[str, tuple[float | None, bool | None]]:
    """Per baseline: (ratio in the target's direction, met?); met is None where there is no target."""
    ours = _p50(res, (case.name, dt, mode, "npu_ops"))
    out = {}
    for p in case.providers[1:]:
        base = _p50(res, (case.name, dt, mode, p))
        kind, bound = TARGETS[p]
        r = _ratio(base, ours) if kind == "speedup" else _ratio(ours, base)
        met = None
        if _has_target(case, mode) and r is not None:
            met = r >= bound if kind == "speedup" else r <= bound
        out[p] = (r, met)
    return out


def _target_text(provider: str) -> str:
    kind, bound = TARGETS[provider]
    return f"{provider} / npu_ops >= {bound}" if kind == "speedup" else f"npu_ops / {provider} <= {bound}"


#: p80 / p20 above this for any provider of a row marks the row noisy.
NOISY_SPREAD = 1.5


def _met_text(res: Results, case: Case, dt: str, mode: str, results: list[bool | None]) -> str:
    if not _has_target(case, mode):
        text = "-"
    elif any(m is None for m in results):
        text = "n/a"
    else:
        text = "yes" if all(results) else "NO"
    spreads = [t.p80_ms / t.p20_ms for k, t in res.timings.items() if k[:3] == (case.name, dt, mode) and t.p20_ms > 0]
    spread = max(spreads, default=1.0)
    return text + (f" (noisy: p80/p20 {spread:.1f})" if spread > NOISY_SPREAD else "")


def header(res: Results) -> str:
    """Lines above the tables: environment and how to read the numbers."""
    env = harness.env_info()
    shapes = "--quick shapes (small)" if res.quick else "Wan-2.1 480p shapes"
    return (
        f"npu_ops Chorus benchmark ({shapes}): torch {env['torch']}, npu_ops {env['npu_ops_version']} "
        f"({env['git_sha']}), {env['threads']} threads, {env['cpu_capability']} kernels, {env['cpu_model']}; "
        f"allocator: {res.malloc}.\n\n"
        "ms: median of the recorded calls (p20/p80 and repeats in the CSV); providers interleaved round by round. "
        "forward: no_grad call incl. its output; backward: autograd.grad w.r.t. every floating input. "
        "Targets (forward): masked_blend naive/npu_ops >= 3.0 and npu_ops/lerp (bool: /where) <= 1.2; "
        "amplified_softmax unfused/npu_ops >= 1.3. "
        f"noisy: some provider's p80/p20 > {NOISY_SPREAD} (machine busy; rerun or raise --max-time)."
    )


def _pairs(res: Results, op: str) -> list[tuple[Case, str, str]]:
    seen = dict.fromkeys(k[:3] for k in res.timings)
    return [(CASES[c], dt, mode) for c, dt, mode in seen if CASES[c].op == op]


def blend_table(res: Results) -> str:
    """masked_blend: one row per (case, dtype, mode)."""
    headers = [
        "case",
        "shape",
        "dtype",
        "mode",
        "npu_ops ms",
        "naive ms",
        "lerp/where ms",
        "naive / npu_ops (>=3)",
        "npu_ops / lerp or where (<=1.2)",
        "targets met",
    ]
    rows = []
    for case, dt, mode in _pairs(res, "masked_blend"):
        second = case.providers[2]
        tg = targets(res, case, dt, mode)
        rows.append(
            [
                case.name,
                case.shape_text(res.quick),
                dt,
                mode,
                _fmt_ms(_p50(res, (case.name, dt, mode, "npu_ops"))),
                _fmt_ms(_p50(res, (case.name, dt, mode, "naive"))),
                _fmt_ms(_p50(res, (case.name, dt, mode, second))) + f" ({second})",
                _fmt(tg["naive"][0], ".2f") + "x",
                _fmt(tg[second][0], ".2f") + "x",
                _met_text(res, case, dt, mode, [tg["naive"][1], tg[second][1]]),
            ]
        )
    return harness.markdown_table(headers, rows)


def softmax_table(res: Results) -> str:
    """amplified_softmax: one row per (case, dtype, mode)."""
    headers = ["case", "shape", "dtype", "mode", "npu_ops ms", "unfused ms", "unfused / npu_ops (>=1.3)", "target met"]
    rows = []
    for case, dt, mode in _pairs(res, "amplified_softmax"):
        r, met = targets(res, case, dt, mode)["unfused"]
        rows.append(
            [
                case.name + ("" if case.renormalize else " (renormalize=False)"),
                case.shape_text(res.quick),
                dt,
                mode,
                _fmt_ms(_p50(res, (case.name, dt, mode, "npu_ops"))),
                _fmt_ms(_p50(res, (case.name, dt, mode, "unfused"))),
                _fmt(r, ".2f") + "x",
                _met_text(res, case, dt, mode, [met]),
            ]
        )
    return harness.markdown_table(headers, rows)


def check_table(res: Results) -> str:
    """Correctness gate: gated diffs, then the baselines' own error vs the float64 oracle."""
    headers = ["case", "dtype", "gated: max abs diff / max(1, max abs ref)", "baselines vs fp64 oracle", "status"]
    rows = []
    for c in res.checks:
        gated = ", ".join(f"{k} {v:.1e}" for k, v in c.diffs.items())
        info = ", ".join(f"{k} {v:.1e}" for k, v in c.info.items())
        status = "OK" if c.ok else "FAILED: " + "; ".join(c.notes)
        rows.append([c.case, c.dtype, gated, info or "-", status])
    return harness.markdown_table(headers, rows)


def csv_rows(res: Results) -> list[dict[str, Any]]:
    """One row per (case, dtype, mode, provider), with the environment columns."""
    env = harness.env_info()
    checks = {(c.case, c.dtype): c for c in res.checks}
    rows = []
    for (name, dt, mode, provider), t in res.timings.items():
        case = CASES[name]
        data, aux = case.shapes(res.quick)
        check = checks.get((name, dt))
        tg = targets(res, case, dt, mode).get(provider, (None, None)) if provider != "npu_ops" else (None, None)
        ours = _p50(res, (name, dt, mode, "npu_ops"))
        shape = {"data": list(data), "aux": list(aux), "hard_mask": case.hard, "renormalize": case.renormalize}
        rows.append(
            {
                "op": case.op,
                "case": name,
                "provider": provider,
                "mode": mode,
                "dtype": dt,
                "shape_json": json.dumps(shape, separators=(",", ":")),
                "warmup": t.warmup,
                "repeats": t.repeats,
                "p20_ms": f"{t.p20_ms:.4f}",
                "p50_ms": f"{t.p50_ms:.4f}",
                "p80_ms": f"{t.p80_ms:.4f}",
                "npu_ops_speedup": _fmt(_ratio(t.p50_ms, ours), ".3f", "") if provider != "npu_ops" else "",
                "target": "" if provider == "npu_ops" or not _has_target(case, mode) else _target_text(provider),
                "target_met": "" if tg[1] is None else tg[1],
                "check_ok": check.ok if check else "",
                "check_max_diff": _fmt(check.max_diff if check else None, ".3e", ""),
                "check_notes": "; ".join(check.notes) if check else "",
                "allocator": res.malloc,
                **env,
            }
        )
    return rows
