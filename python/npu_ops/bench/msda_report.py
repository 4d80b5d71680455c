"""Markdown tables and CSV rows of an MSDA benchmark run."""

from __future__ import annotations

import json
import math
from typing import Any

from . import harness
from .msda import Measurement, Results
from .msda_steps import DTYPES, traffic_bytes

#: rows whose rounds disagree by more than this factor are flagged (``round spread`` column)
NOISY = 1.5

__all__ = ["summary_table", "check_table", "csv_rows", "header"]


def _ok(x: float | None) -> bool:
    return x is not None and not math.isnan(x)


def _fmt(x: float | None, spec: str, suffix: str = "", missing: str = "-") -> str:
    return f"{x:{spec}}{suffix}" if _ok(x) else missing


def _fmt_ms(x: float | None) -> str:
    return _fmt(x, ".3f" if _ok(x) and x < 10 else ".1f")


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if _ok(a) and _ok(b) and b != 0 else None


def _p50(m: Measurement | None) -> float | None:
    return m.timing.p50_ms if m is not None and m.timing is not None else None


def _min(m: Measurement | None) -> float | None:
    return m.timing.min_ms if m is not None and m.timing is not None else None


def _spread(npu: Measurement | None, gs: Measurement | None) -> float | None:
    """Round spread of a row: of the per-round ratio when both paths ran, else of npu_ops alone."""
    a = npu.timing if npu is not None else None
    b = gs.timing if gs is not None else None
    if a is None:
        return None
    return harness.round_spread(a, b if b is not None and b.repeats == a.repeats else None)


def _floor_ms(res: Results, case: str, dt: str, mode: str) -> float | None:
    if not _ok(res.bandwidth):
        return None
    return 1e3 * traffic_bytes(res.cases[case], DTYPES[dt], mode) / res.bandwidth


def _peak(m: Measurement | None) -> float | None:
    return m.peak_mb if m is not None else None


def _version() -> str:
    """npu_ops version and git sha: from git in a checkout, else from ``npu_ops._build_info`` / package metadata."""
    env = harness.env_info()
    version = env["npu_ops_version"]
    if not version or version == "unknown":
        try:
            from importlib.metadata import version as dist_version

            version = dist_version("npu_ops")
        except Exception:
            version = "unknown"
    return f"{version} ({env['git_sha']})"


def header(bandwidth: float = float("nan")) -> str:
    """Lines above the tables: environment and how to read the numbers."""
    env = harness.env_info()
    bw = f", streaming bandwidth {bandwidth / 1e9:.1f} GB/s (copy, best of 6)" if _ok(bandwidth) else ""
    return (
        f"npu_ops.msda benchmark: torch {env['torch']}, npu_ops {_version()}, "
        f"{env['threads']} threads, {env['cpu_capability']} kernels, {env['cpu_model']}{bw}\n\n"
        "npu_ops and grid_sample run interleaved, one call of each per round. min / med ms: fastest and median "
        "round. speedup min / med = grid_sample / npu_ops of the mins / of the medians. spread: max/min over rounds "
        f"of the per-round ratio; '!' marks rows above {NOISY}x (rounds disagree: read the min columns). "
        "floor ms: bytes the step must move (inputs read once, outputs written once) / streaming bandwidth; "
        "x floor = npu_ops min / floor. peak MB: peak extra resident memory of the step (1 MB = 1e6 B); "
        "memory ratio = npu_ops / grid_sample."
    )


def summary_table(res: Results, modes: list[str]) -> str:
    """One row per (case, mode, dtype)."""
    headers = [
        "case",
        "mode",
        "dtype",
        "npu_ops min ms",
        "npu_ops med ms",
        "grid_sample min ms",
        "grid_sample med ms",
        "speedup min",
        "speedup med",
        "spread",
        "floor ms",
        "x floor",
        "npu_ops peak MB",
        "grid_sample peak MB",
        "memory ratio",
    ]
    rows = []
    for case, dt in dict.fromkeys(k[:2] for k in res.measurements):
        for mode in modes:
            npu = res.measurements.get((case, dt, "npu_ops", mode))
            gs = res.measurements.get((case, dt, "grid_sample", mode))
            if npu is None and gs is None:
                continue
            spread = _spread(npu, gs)
            floor = _floor_ms(res, case, dt, mode)
            rows.append(
                [
                    case,
                    mode,
                    dt,
                    _fmt_ms(_min(npu)),
                    _fmt_ms(_p50(npu)),
                    _fmt_ms(_min(gs)),
                    _fmt_ms(_p50(gs)),
                    _fmt(_ratio(_min(gs), _min(npu)), ".1f", "x"),
                    _fmt(_ratio(_p50(gs), _p50(npu)), ".1f", "x"),
                    _fmt(spread, ".2f", "x" + (" !" if _ok(spread) and spread > NOISY else "")),
                    _fmt_ms(floor),
                    _fmt(_ratio(_min(npu), floor), ".1f", "x"),
                    _fmt(_peak(npu), ".1f"),
                    _fmt(_peak(gs), ".1f"),
                    _fmt(_ratio(_peak(npu), _peak(gs)), ".3f"),
                ]
            )
    return harness.markdown_table(headers, rows)


_CHECKED = ("output", "grad_value", "grad_loc", "grad_attn", "real_forward")


def check_table(res: Results) -> str:
    """Correctness: max abs diff vs the float64 oracle, small-scale copy and real-input forward (real_forward)."""
    headers = ["case", "dtype", *_CHECKED, "status", "notes"]
    rows = []
    for c in res.checks:
        diffs = [_fmt(c.diffs.get(n), ".2e") for n in _CHECKED]
        rows.append([c.case, c.dtype, *diffs, "OK" if c.ok else "FAILED", "; ".join(c.notes)])
    return harness.markdown_table(headers, rows)


def csv_rows(res: Results) -> list[dict[str, Any]]:
    """One row per (case, provider, mode, dtype), with the environment columns."""
    env = harness.env_info()
    checks = {(c.case, c.dtype): c for c in res.checks}
    rows = []
    for (case, dt, provider, mode), m in res.measurements.items():
        base = res.measurements.get((case, dt, "grid_sample", mode))
        npu_m = res.measurements.get((case, dt, "npu_ops", mode))
        check = checks.get((case, dt))
        real_diff = check.diffs.get("real_forward") if check else None
        shape = {**res.cases[case].shape_dict(), "dtype": dt, **res.inputs.get((case, dt), {})}
        t = m.timing
        rows.append(
            {
                "op": "msda",
                "case": case,
                "provider": provider,
                "mode": mode,
                "dtype": dt,
                "shape_json": json.dumps(shape, separators=(",", ":")),
                "warmup": t.warmup if t else "",
                "repeats": t.repeats if t else "",
                "min_ms": _fmt(t.min_ms if t else None, ".4f", missing=""),
                "p20_ms": _fmt(t.p20_ms if t else None, ".4f", missing=""),
                "p50_ms": _fmt(t.p50_ms if t else None, ".4f", missing=""),
                "p80_ms": _fmt(t.p80_ms if t else None, ".4f", missing=""),
                "peak_extra_mb": _fmt(m.peak_mb, ".2f", missing=""),
                "speedup_vs_grid_sample": _fmt(_ratio(_p50(base), _p50(m)), ".3f", missing=""),
                "speedup_min_vs_grid_sample": _fmt(_ratio(_min(base), _min(m)), ".3f", missing=""),
                "round_spread": _fmt(_spread(m if provider == "npu_ops" else npu_m, base), ".3f", missing=""),
                "floor_ms": _fmt(_floor_ms(res, case, dt, mode), ".4f", missing=""),
                "bandwidth_gb_s": _fmt(res.bandwidth / 1e9, ".2f", missing=""),
                "mem_ratio_vs_grid_sample": _fmt(_ratio(_peak(m), _peak(base)), ".4f", missing=""),
                "check_ok": check.ok if check else "",
                "check_notes": "; ".join(check.notes) if check else "",
                "check_max_abs_diff": _fmt(check.max_diff if check else None, ".3e", missing=""),
                "real_forward_max_abs_diff": _fmt(real_diff, ".3e", missing=""),
                **env,
            }
        )
    return rows
