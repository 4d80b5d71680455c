"""Per-request records of Chorus serving, a summary table and a progress bar over requests."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

__all__ = ["RequestRecord", "summarize", "format_summary", "progress"]


@dataclass
class RequestRecord:
    """What happened to one request.

    ``nfe`` is the NFE-equivalents: the sum over steps of the fraction of latent tokens computed
    (a skipped step 0, a full step 1, a region step ``n_computed / N``, halo included). Attention
    cost is quadratic in tokens, so a region step's wall time falls faster than its NFE.
    ``wall_s`` is end to end; ``stage_s`` splits the denoising time by stage; ``retrieval_s``
    (prompt encoding + cache lookup + plan) and ``blend_s`` (region-mask building + ``masked_blend``)
    are the Chorus overheads; ``insert_s`` the cache bookkeeping (insertion on a miss,
    ``record_hit`` on a hit). ``drift`` is the relative L2
    of the final latent against full compute from the same initial noise (only when requested).
    """

    request: int
    prompt: str
    tenant: str
    hit: bool
    reason: str
    tier: str | None
    source_prompt: str | None
    similarity: float | None
    steps_skipped: int
    num_steps: int
    nfe: float
    wall_s: float
    stage_s: dict[str, float] = field(default_factory=dict)
    retrieval_s: float = 0.0
    blend_s: float = 0.0
    insert_s: float = 0.0
    region_frac: float | None = None  # fraction of tokens computed on region steps (halo included)
    added_tokens: int = 0
    removed_tokens: int = 0
    drift: float | None = None
    baseline_wall_s: float | None = None
    cpu_s: float | None = None  # process CPU time (all threads) of serving: robust to other processes' load
    baseline_cpu_s: float | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        for k in (
            "similarity", "nfe", "wall_s", "retrieval_s", "blend_s", "insert_s", "drift", "baseline_wall_s", "cpu_s",
            "baseline_cpu_s",
        ):  # fmt: skip
            if d[k] is not None:
                d[k] = round(float(d[k]), 6)
        d["stage_s"] = {k: round(v, 6) for k, v in d["stage_s"].items()}
        return d


def summarize(records: list[RequestRecord], *, warmup: int = 0) -> dict:
    """Aggregate figures; ``warmup`` leading requests are excluded from ``hit_rate_after_warmup``."""
    n = len(records)
    hits = [r for r in records if r.hit]
    after = records[warmup:]
    full_nfe = sum(r.num_steps for r in records)
    out = {
        "requests": n,
        "hits": len(hits),
        "hit_rate": len(hits) / n if n else 0.0,
        "hit_rate_after_warmup": sum(r.hit for r in after) / len(after) if after else 0.0,
        "warmup": warmup,
        "nfe_total": sum(r.nfe for r in records),
        "nfe_full_total": float(full_nfe),
        "mean_nfe_hit": sum(r.nfe for r in hits) / len(hits) if hits else None,
        "mean_nfe_saving_hit": (1 - sum(r.nfe for r in hits) / sum(r.num_steps for r in hits) if hits else None),
        "wall_s": sum(r.wall_s for r in records),
        "retrieval_s": sum(r.retrieval_s for r in records),
        "blend_s": sum(r.blend_s for r in records),
        "insert_s": sum(r.insert_s for r in records),
    }
    drifts = [r.drift for r in hits if r.drift is not None]
    out["mean_drift_hit"] = sum(drifts) / len(drifts) if drifts else None
    base = [r.baseline_wall_s for r in records if r.baseline_wall_s is not None]
    if base and len(base) == n:
        out["baseline_wall_s"] = sum(base)
        out["speedup"] = out["baseline_wall_s"] / out["wall_s"] if out["wall_s"] > 0 else None
    cpu = [r.cpu_s for r in records if r.cpu_s is not None]
    base_cpu = [r.baseline_cpu_s for r in records if r.baseline_cpu_s is not None]
    if cpu and len(cpu) == len(base_cpu) == n:
        out["cpu_s"], out["baseline_cpu_s"] = sum(cpu), sum(base_cpu)
        out["cpu_speedup"] = out["baseline_cpu_s"] / out["cpu_s"] if out["cpu_s"] > 0 else None
    return out


def format_summary(s: dict) -> str:
    """A small fixed-width table of :func:`summarize`'s figures."""

    def f(v, pct=False):
        if v is None:
            return "-"
        return f"{100 * v:.1f}%" if pct else (f"{v:.3f}" if isinstance(v, float) else str(v))

    rows = [
        ("requests", f(s["requests"])),
        ("hits", f(s["hits"])),
        ("hit rate", f(s["hit_rate"], True)),
        (f"hit rate after {s['warmup']} warm-up", f(s["hit_rate_after_warmup"], True)),
        ("mean NFE on hits", f(s["mean_nfe_hit"])),
        ("mean NFE saving on hits", f(s["mean_nfe_saving_hit"], True)),
        ("NFE total / full", f"{s['nfe_total']:.2f} / {s['nfe_full_total']:.0f}"),
        ("wall s (Chorus)", f(s["wall_s"])),
        ("  retrieval overhead s", f(s["retrieval_s"])),
        ("  blending overhead s", f(s["blend_s"])),
        ("  cache insert s", f(s["insert_s"])),
        ("mean drift on hits", f(s["mean_drift_hit"])),
    ]
    if "speedup" in s:
        rows += [("wall s (no Chorus)", f(s["baseline_wall_s"])), ("speedup (wall)", f"{s['speedup']:.2f}x")]
    if "cpu_speedup" in s:
        rows += [
            ("CPU s Chorus / no Chorus", f"{s['cpu_s']:.3f} / {s['baseline_cpu_s']:.3f}"),
            ("speedup (process CPU time)", f"{s['cpu_speedup']:.2f}x"),
        ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def progress(items: Iterable, *, total: int | None = None, desc: str = "requests", enable: bool = True) -> Iterator:
    """Iterate with a progress bar on stderr: tqdm when installed, else a plain counter line."""
    if not enable:
        yield from items
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(items, total=total, desc=desc, file=sys.stderr, leave=False)
        return
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    for i, item in enumerate(items, 1):
        yield item
        print(f"\r{desc}: {i}/{total if total is not None else '?'}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
