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
import math
import os
import sys
import time

import torch

from .config import ChorusConfig
from .policy import Request, plan
from .records import format_summary, progress, summarize
from .trace import BUILTIN_TRACE, QUICK_TRACE, load_prompt_file

__all__ = ["PROG", "main", "threshold_sweep"]


PROG = "python -m npu_ops.chorus.demo"


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block) and exit status 2."""

    def error(self, message: str):
        raise _Usage([f"{message} (see --help)"])


class _Usage(Exception):
    """Bad options: the reasons, all reported at once on one line."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))


def _args(argv) -> argparse.Namespace:
    # Values are parsed as strings and checked together in _check, so that every bad option is named at once.
    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--prompts", help="prompt file (UTF-8): one 'prompt' or 'tenant<TAB>prompt' per line")
    p.add_argument("--quick", action="store_true", help="CI mode: 6 requests, small latent")
    p.add_argument("--baseline", action="store_true", help="also serve without Chorus: speedup and drift")
    p.add_argument("--plot", help="write a plot (PNG, or another format matplotlib saves) of hit rate / NFE saved")
    p.add_argument("--encoder", default="minilm", help="prompt encoder: minilm (default) or hashing")
    p.add_argument("--latent", default=None, help="C,T,H,W (default 16,5,32,32; C = 16, H and W even)")
    p.add_argument("--steps", default="4", help="denoising steps (default 4; at least stage1_steps_full + 1)")
    p.add_argument("--tau-full", default=None, help="full-hit similarity threshold in [-1, 1] (default 0.95)")
    p.add_argument("--tau-partial", default=None, help="partial-hit threshold in [-1, tau_full] (default 0.80)")
    p.add_argument("--warmup", default=None, help="requests excluded from the after-warm-up hit rate (0 <= n < N)")
    p.add_argument(
        "--threads",
        default="1",
        help="torch threads (default 1: timings stay stable on a shared machine; 0 = torch's default)",
    )
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def _int(errs: list[str], opt: str, s: str, lo: int) -> int | None:
    try:
        v = int(s)
    except ValueError:
        v = None
    if v is None or v < lo:
        errs.append(f"{opt} must be an int >= {lo}, got {s!r}")
        return None
    return v


def _similarity(errs: list[str], opt: str, s: str | None) -> float | None:
    if s is None:
        return None
    try:
        v = float(s)
    except ValueError:
        v = None
    if v is None or not (math.isfinite(v) and -1.0 <= v <= 1.0):
        errs.append(f"{opt} must be a cosine similarity in [-1, 1], got {s!r}")
        return None
    return v


def _latent(errs: list[str], s: str | None, quick: bool) -> tuple[int, ...]:
    from .tiny_wan import TINY_WAN_CONFIG

    if s is None:
        return (1, 16, 3, 16, 16) if quick else (1, 16, 5, 32, 32)
    c_in, (p_t, p_h, p_w) = TINY_WAN_CONFIG["in_channels"], TINY_WAN_CONFIG["patch_size"]
    try:
        parts = tuple(int(v) for v in s.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 4 or min(parts) < 1:
        errs.append(f"--latent must be C,T,H,W (4 positive ints), got {s!r}")
    elif parts[0] != c_in or parts[1] % p_t or parts[2] % p_h or parts[3] % p_w:
        errs.append(
            f"--latent must have C = {c_in} (the model's channels) and T, H, W divisible by the patch "
            f"{(p_t, p_h, p_w)}, got {s!r}"
        )
    return (1, *parts)


def _trace(errs: list[str], path: str | None, quick: bool):
    if path is None:
        return QUICK_TRACE if quick else BUILTIN_TRACE
    what = "--prompts must be a readable UTF-8 file of 'prompt' or 'tenant<TAB>prompt' lines"
    try:
        return load_prompt_file(path)
    except FileNotFoundError:
        errs.append(f"{what}, got {path!r}: no such file")
    except IsADirectoryError:
        errs.append(f"{what}, got {path!r}: a directory")
    except UnicodeDecodeError as e:
        errs.append(f"{what}, got {path!r}: not UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start})")
    except (OSError, ValueError) as e:
        errs.append(f"{what}, got {path!r}: {e}")
    return None


def _plot_path(errs: list[str], path: str | None) -> None:
    if path is None:
        return
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        errs.append(f"--plot needs matplotlib (pip install matplotlib), got --plot {path!r}")
        return
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    parent = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1].lstrip(".").lower()
    if os.path.isdir(path):
        errs.append(f"--plot must be a file path, got {path!r}: a directory")
    elif not os.path.isdir(parent):
        errs.append(f"--plot must be in an existing directory, got {path!r}: {parent!r} does not exist")
    elif not os.access(parent, os.W_OK):
        errs.append(f"--plot must be in a writable directory, got {path!r}")
    elif suffix not in formats:
        errs.append(f"--plot must end in one of {', '.join('.' + f for f in formats)}, got {path!r}")


def _check(a: argparse.Namespace, *, with_encoder: bool):
    """(trace, latent, config, steps, warmup, threads); raises _Usage naming every bad option."""
    from .encoder import _REGISTRY as encoders  # the registered names (register_encoder adds to it)

    errs: list[str] = []
    trace = _trace(errs, a.prompts, a.quick)
    latent = _latent(errs, a.latent, a.quick)
    steps = _int(errs, "--steps", a.steps, 1)
    threads = _int(errs, "--threads", a.threads, 0)
    warmup = None if a.warmup is None else _int(errs, "--warmup", a.warmup, 0)
    taus = {"tau_full": _similarity(errs, "--tau-full", a.tau_full)}
    taus["tau_partial"] = _similarity(errs, "--tau-partial", a.tau_partial)
    if not with_encoder and a.encoder not in encoders:
        errs.append(f"--encoder must be one of {sorted(encoders)}, got {a.encoder!r}")
    _plot_path(errs, a.plot)
    defaults = ChorusConfig()
    full = defaults.tau_full if taus["tau_full"] is None else taus["tau_full"]
    partial = defaults.tau_partial if taus["tau_partial"] is None else taus["tau_partial"]
    config = None
    if partial > full:
        shown = [
            f"{o} = {v}{'' if given else ' (the default)'}"
            for o, v, given in (
                ("--tau-partial", partial, a.tau_partial is not None),
                ("--tau-full", full, a.tau_full is not None),
            )
        ]
        errs.append(f"--tau-partial must be <= --tau-full, got {shown[0]}, {shown[1]}")
    else:
        config = ChorusConfig(**{k: v for k, v in taus.items() if v is not None})
        need = config.stage1_steps_full + config.stage3_steps
        if steps is not None and steps < need:
            errs.append(f"--steps must be >= stage1_steps_full + stage3_steps = {need}, got {a.steps!r}")
    if trace is not None and warmup is not None and warmup >= len(trace):
        errs.append(f"--warmup must be < the {len(trace)} requests of the trace, got {a.warmup!r}")
    if errs:
        raise _Usage(errs)
    return trace, latent, config, steps, (len(trace) // 4 if warmup is None else warmup), threads


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


def _load_encoder(name: str):
    from .encoder import make_encoder

    try:
        return make_encoder(name)
    except Exception as e:  # noqa: BLE001 - a model that cannot load is a bad --encoder for this machine
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise _Usage([f"--encoder {name!r} could not be loaded ({type(e).__name__}: {first})"]) from None


def main(argv=None, *, encoder=None) -> int:
    """Run the demo; ``encoder`` overrides ``--encoder`` with a ready instance (tests share one).

    Bad options exit with status 2 and one line on stderr naming every bad option, the expected and
    the actual value (checked before any model is built)."""
    try:
        a = _args(argv)
        trace, latent, config, steps, warmup, threads = _check(a, with_encoder=encoder is not None)
        if encoder is None:
            encoder = _load_encoder(a.encoder)
    except _Usage as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    a.steps = steps
    if threads:
        torch.set_num_threads(threads)
    from .cache import RequestCache
    from .pipeline import ChorusPipeline
    from .tiny_wan import tiny_wan_transformer

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
