"""``python -m npu_ops.chorus.demo``: serve a prompt trace through a tiny random Wan DiT with Chorus.

Prints one JSON line per request (``request, prompt, tenant, hit, source_prompt, similarity,
steps_skipped, nfe, wall_s`` and more), then a ``{"summary": ...}`` line; a readable summary table
goes to stderr. ``--baseline`` also serves every request without Chorus (full compute from the same
noise) and reports the wall-time speedup and the latent drift. ``--plot PATH`` writes a PNG of hit
rate and estimated mean NFE saved against the similarity threshold, swept on the trace's embeddings.
The DiT is random: the figures are mechanics (compute, time, hit rates), not visual quality.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from .config import ChorusConfig
from .policy import Request, plan
from .records import format_summary, progress, summarize
from .trace import BUILTIN_TRACE, QUICK_TRACE, load_prompt_file

__all__ = ["main", "threshold_sweep"]


def _parse_latent(s: str) -> tuple[int, ...]:
    parts = tuple(int(v) for v in s.split(","))
    if len(parts) != 4 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"--latent must be C,T,H,W (4 positive ints), got {s!r}")
    return (1, *parts)


def _args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m npu_ops.chorus.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", help="prompt file: one 'prompt' or 'tenant<TAB>prompt' per line")
    p.add_argument("--quick", action="store_true", help="CI mode: 6 requests, small latent")
    p.add_argument("--baseline", action="store_true", help="also serve without Chorus: speedup and drift")
    p.add_argument("--plot", help="write a PNG of hit rate / NFE saved vs similarity threshold")
    p.add_argument("--encoder", default="minilm", help="prompt encoder: minilm (default) or hashing")
    p.add_argument("--latent", type=_parse_latent, default=None, help="C,T,H,W (default 16,5,32,32)")
    p.add_argument("--steps", type=int, default=4, help="denoising steps (default 4)")
    p.add_argument("--tau-full", type=float, default=None)
    p.add_argument("--tau-partial", type=float, default=None)
    p.add_argument("--warmup", type=int, default=None, help="requests excluded from the after-warm-up hit rate")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: timings stay stable on a shared machine; 0 = torch's default)",
    )
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def threshold_sweep(prompts, tenants, embeddings, token_ids, config: ChorusConfig, num_steps: int, region_frac: float):
    """Hit rate and estimated mean NFE saved per request, against the partial-reuse threshold.

    Online simulation on the trace: each request is matched against the earlier requests of its
    tenant (the best cosine similarity); a request planned as a hit costs the NFE its plan gives,
    with region steps costing ``region_frac`` (the mean measured in the run). ``tau_full`` stays
    the config's (or the swept threshold when that is higher).
    """
    from .policy import Action

    class _E:  # the minimum plan() reads from a cache entry
        def __init__(self, i):
            self.key = type("K", (), {"tenant": tenants[i]})()
            self.token_ids, self.prompt, self.entry_id = token_ids[i], prompts[i], str(i)
            self.latents = dict.fromkeys(range(num_steps + 1))

    class _M:
        def __init__(self, i, sim):
            self.entry, self.similarity = _E(i), sim

    taus = [round(0.3 + 0.025 * i, 3) for i in range(29)]
    sims = embeddings @ embeddings.T
    hit_rates, saved = [], []
    for tau in taus:
        cfg = ChorusConfig(
            tau_full=max(config.tau_full, tau),
            tau_partial=tau,
            stage1_steps_full=config.stage1_steps_full,
            stage1_steps_partial=config.stage1_steps_partial,
            stage2_steps=config.stage2_steps,
            stage3_steps=config.stage3_steps,
        )
        hits, save = 0, 0.0
        for i in range(len(prompts)):
            same = [j for j in range(i) if tenants[j] == tenants[i]]
            match = None
            if same:
                best = max(same, key=lambda j: sims[i, j])
                match = _M(best, float(sims[i, best]))
            p = plan(Request(prompts[i], tenant=tenants[i], token_ids=tuple(token_ids[i])), match, cfg, num_steps)
            if p.hit:
                hits += 1
                nfe = sum({Action.SKIP: 0.0, Action.REGION_TGAA: region_frac}.get(a, 1.0) for a in p.actions)
                save += 1 - nfe / num_steps
        hit_rates.append(hits / len(prompts))
        saved.append(save / len(prompts))
    return taus, hit_rates, saved


def _plot(path: str, taus, hit_rates, saved, config: ChorusConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(taus, [100 * h for h in hit_rates], "o-", label="hit rate")
    ax.plot(taus, [100 * s for s in saved], "s-", label="mean NFE saved per request (est.)")
    ax.axvline(config.tau_partial, color="gray", ls="--", lw=1, label=f"tau_partial = {config.tau_partial}")
    ax.set_xlabel("similarity threshold (tau_partial)")
    ax.set_ylabel("% of requests / % of full NFE")
    ax.set_title("Chorus on the trace: hit rate and compute saved vs threshold")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None, *, encoder=None) -> int:
    """Run the demo; ``encoder`` overrides ``--encoder`` with a ready instance (tests share one)."""
    a = _args(argv)
    if a.threads < 0:
        raise SystemExit(f"--threads must be >= 0, got {a.threads}")
    if a.threads:
        torch.set_num_threads(a.threads)
    from .cache import RequestCache
    from .encoder import make_encoder
    from .pipeline import ChorusPipeline
    from .tiny_wan import tiny_wan_transformer

    trace = load_prompt_file(a.prompts) if a.prompts else (QUICK_TRACE if a.quick else BUILTIN_TRACE)
    latent = a.latent or ((1, 16, 3, 16, 16) if a.quick else (1, 16, 5, 32, 32))
    overrides = {k: v for k, v in (("tau_full", a.tau_full), ("tau_partial", a.tau_partial)) if v is not None}
    config = ChorusConfig(**overrides)
    warmup = a.warmup if a.warmup is not None else len(trace) // 4

    encoder = encoder if encoder is not None else make_encoder(a.encoder)
    model = tiny_wan_transformer(seed=0, text_dim=encoder.text_dim)
    cache = RequestCache(budget_bytes=256 * 2**20, eviction="cost")
    pipe = ChorusPipeline(model, encoder, cache, config, latent_shape=latent, num_steps=a.steps)
    # Warm torch's kernels up outside the measurement (first calls are slow, and would bias whichever runs first).
    warm = ChorusPipeline(model, encoder, None, config, latent_shape=latent, num_steps=a.steps)
    warm.serve("warm-up prompt", baseline=False)

    records = []
    t0 = time.perf_counter()
    for tenant, prompt in progress(trace, total=len(trace), enable=not a.no_progress):
        rec = pipe.serve(Request(prompt=prompt, tenant=tenant), baseline=a.baseline).record
        records.append(rec)
        print(json.dumps(rec.to_json()), flush=True)
    total_s = time.perf_counter() - t0

    summary = summarize(records, warmup=warmup)
    summary["trace_wall_s"] = total_s
    summary["latent_shape"] = list(latent)
    summary["num_steps"] = a.steps
    summary["encoder"] = encoder.name
    if a.plot:
        prompts = [p for _, p in trace]
        tenants = [t for t, _ in trace]
        emb = encoder.encode(prompts)
        ids = [encoder.tokenize(p) for p in prompts]
        fracs = [r.region_frac for r in records if r.region_frac is not None]
        rf = sum(fracs) / len(fracs) if fracs else (config.region.top_frac or 0.5)
        taus, hr, sv = threshold_sweep(prompts, tenants, emb, ids, config, a.steps, rf)
        _plot(a.plot, taus, hr, sv, config)
        summary["plot"] = a.plot
        summary["sweep"] = {"tau": taus, "hit_rate": hr, "nfe_saved": sv}
    print(json.dumps({"summary": summary}), flush=True)
    print(format_summary(summary), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
