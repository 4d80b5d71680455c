"""The Chorus serving loop: flow-matching Euler denoising around a Wan DiT, executing a StagePlan.

:class:`ChorusPipeline` serves one request at a time: encode the prompt, look the request cache up
within its compatibility class, :func:`~npu_ops.chorus.policy.plan` the steps, run them, record
what happened, and insert the latents of a miss. Per step ``k`` (``x_k -> x_{k+1}``, sigmas from
diffusers' ``FlowMatchEulerDiscreteScheduler`` and the same Euler update ``x + (s_{k+1} - s_k) v``
in float32):

- ``SKIP`` (Stage 1): not computed; the loop starts from the source's cached ``x_start``.
- ``FULL_TGAA`` (Stage 2, first step): full forward with TGAA on ``attn2``, recording the attention
  mass of the added/removed tokens; the region mask is built from it.
- ``REGION_TGAA`` (Stage 2): only the region tokens + halo go through the blocks
  (:func:`~npu_ops.chorus.tiny_wan.subset_forward`); ``masked_blend`` puts the fresh region into
  the source's cached ``x_{k+1}``.
- ``FULL`` / ``FULL_NO_REUSE`` (miss, Stage 3): the stock forward (bit-identical to the model alone).

Region compute attends only among the computed tokens (plus halo): cheaper, but the region loses
the rest of the sequence as attention context; Stage 3 is what repairs seams (see
/work/shared/notes/chorus.md section 8a). Batch size 1, text-to-video, no CFG (the 4-step
distilled models Chorus targets are CFG-distilled).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .config import ChorusConfig
from .masked_blend import masked_blend
from .policy import Action, Request, StagePlan, latent_steps_to_store, plan
from .records import RequestRecord
from .regions import region_masks, token_mask_to_latent
from .tgaa import install_tgaa
from .tiny_wan import subset_forward, unpatchify

__all__ = ["ChorusPipeline", "ServeResult", "flow_match_sigmas", "usable_latents"]

_STAGE = {
    Action.SKIP: "stage1",
    Action.FULL_TGAA: "stage2",
    Action.REGION_TGAA: "stage2",
    Action.FULL_NO_REUSE: "stage3",
    Action.FULL: "full",
}


def flow_match_sigmas(num_steps: int, shift: float) -> tuple[Tensor, Tensor]:
    """(sigmas [num_steps + 1], timesteps [num_steps]) of diffusers' FlowMatchEulerDiscreteScheduler."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(num_steps)
    return sched.sigmas.clone(), sched.timesteps.clone()


def usable_latents(entry, plan_: StagePlan, shape: tuple[int, ...], who: str) -> bool:
    """Whether the cached latents a hit's plan reads exist and are sane (shape, floating, finite);
    if not, warn: the request is then served as a miss, never from a wrong latent."""
    need = [plan_.start_step] + [k + 1 for k, a in enumerate(plan_.actions) if a is Action.REGION_TGAA]
    for k in need:
        lat = entry.latents.get(k)
        why = None
        if not isinstance(lat, Tensor):
            why = "is missing"
        elif tuple(lat.shape) != tuple(shape):
            why = f"has shape {tuple(lat.shape)}, expected {tuple(shape)}"
        elif not lat.is_floating_point():
            why = f"has dtype {lat.dtype}"
        elif not bool(torch.isfinite(lat).all()):
            why = "has non-finite values"
        if why:
            warnings.warn(
                f"{who}: cached latent x_{k} of entry {entry.entry_id!r} {why}; serving as a miss", stacklevel=3
            )
            return False
    return True


@dataclass
class ServeResult:
    latent: Tensor  # the final latent x_num_steps, Tensor[B, C, T, H, W]
    record: RequestRecord
    plan: StagePlan


class ChorusPipeline:
    """Serve prompts through a Wan transformer with an inter-request latent cache.

    Args:
        transformer: a diffusers ``WanTransformer3DModel`` (e.g. :func:`tiny_wan_transformer`); its
            ``text_dim`` must equal ``encoder.text_dim``.
        encoder: a :class:`~npu_ops.chorus.encoder.PromptEncoder`.
        cache: a ``npu_ops.chorus.cache.RequestCache``, or None (serve without Chorus: every request
            is a full-compute miss and nothing is inserted).
        config: the :class:`ChorusConfig`.
        latent_shape: ``(B=1, C, T, H, W)`` of the latent.
        num_steps: denoising steps; ``shift``: the flow-matching sigma shift.
        model_id / model_revision: part of the cache key's compatibility class.
        seed_base: server-chosen seeds are ``seed_base, seed_base + 1, ...`` (deterministic runs).
    """

    def __init__(
        self,
        transformer,
        encoder,
        cache=None,
        config: ChorusConfig | None = None,
        *,
        latent_shape: tuple[int, ...] = (1, 16, 5, 32, 32),
        num_steps: int = 4,
        shift: float = 3.0,
        model_id: str = "tiny-wan-random",
        model_revision: str = "",
        seed_base: int = 0,
    ):
        self.config = config if config is not None else ChorusConfig()
        if not isinstance(self.config, ChorusConfig):
            raise TypeError(f"ChorusPipeline: config must be a ChorusConfig, got {type(self.config).__name__}")
        self.config.check_steps(num_steps)
        if len(latent_shape) != 5 or latent_shape[0] != 1:
            raise ValueError(f"ChorusPipeline: latent_shape must be (1, C, T, H, W), got {latent_shape}")
        cfg = transformer.config
        if int(cfg.text_dim) != int(encoder.text_dim):
            raise ValueError(
                f"ChorusPipeline: transformer text_dim = {cfg.text_dim} must equal "
                f"encoder.text_dim = {encoder.text_dim}"
            )
        p = tuple(cfg.patch_size)
        _, c, t, h, w = latent_shape
        if c != cfg.in_channels or t % p[0] or h % p[1] or w % p[2]:
            raise ValueError(
                f"ChorusPipeline: latent_shape {latent_shape} needs C = in_channels = {cfg.in_channels} and "
                f"T, H, W divisible by the patch size {p}"
            )
        self.model, self.encoder, self.cache = transformer, encoder, cache
        self.latent_shape, self.num_steps, self.shift = tuple(latent_shape), num_steps, shift
        self.model_id, self.model_revision = model_id, model_revision
        self.patch, self.grid = p, (t // p[0], h // p[1], w // p[2])
        self.n_tokens = self.grid[0] * self.grid[1] * self.grid[2]
        self.sigmas, self.timesteps = flow_match_sigmas(num_steps, shift)
        self.tgaa = install_tgaa(transformer)
        self._store_steps = set(latent_steps_to_store(self.config, num_steps))
        self._seed_next = seed_base
        self._served = 0

    # -- keys, noise, steps ---------------------------------------------------------------
    def compat_key(self, tenant: str):
        from .cache import CompatKey

        _, _, t, h, w = self.latent_shape
        return CompatKey(
            model_id=self.model_id,
            height=h * 8,
            width=w * 8,
            num_frames=(t - 1) * 4 + 1,
            scheduler=f"flow_match_euler:shift={self.shift}",
            sigmas=tuple(round(float(s), 6) for s in self.sigmas),
            num_steps=self.num_steps,
            model_revision=self.model_revision,
            tenant=tenant,
        )

    def noise(self, seed: int) -> Tensor:
        return torch.randn(self.latent_shape, generator=torch.Generator().manual_seed(int(seed)))

    def _timestep(self, k: int) -> Tensor:
        return self.timesteps[k].expand(self.latent_shape[0])

    def _euler(self, x: Tensor, v: Tensor, k: int) -> Tensor:
        # As FlowMatchEulerDiscreteScheduler.step: float32 update, cast to the model output's dtype.
        return (x.to(torch.float32) + (self.sigmas[k + 1] - self.sigmas[k]) * v).to(v.dtype)

    @torch.no_grad()
    def _full_step(self, x: Tensor, k: int, ctx: Tensor) -> Tensor:
        v = self.model(hidden_states=x, timestep=self._timestep(k), encoder_hidden_states=ctx, return_dict=False)[0]
        return self._euler(x, v, k)

    @torch.no_grad()
    def _region_step(self, x: Tensor, k: int, ctx: Tensor, compute: Tensor) -> Tensor:
        idx = compute.nonzero().squeeze(1)
        out = subset_forward(self.model, x, self._timestep(k), ctx, idx)
        tokens = out.new_zeros(out.shape[0], self.n_tokens, out.shape[2])
        tokens[:, idx] = out
        return self._euler(x, unpatchify(tokens, x.shape, self.patch), k)

    @torch.no_grad()
    def full_generate(self, ctx: Tensor, x0: Tensor) -> Tensor:
        """Plain full-compute denoising of ``x0`` (the no-Chorus baseline)."""
        x = x0
        for k in range(self.num_steps):
            x = self._full_step(x, k, ctx)
        return x

    def _set_tgaa(self, plan_: StagePlan, k: int, n_text: int, *, record: bool, src=None) -> None:
        st = self.tgaa
        st.active, st.renormalize, st.record = True, self.config.tgaa.mode == "renorm", record
        alpha_k = plan_.alphas[k]
        st.alpha = None
        if plan_.added_tokens and alpha_k != 1.0:
            st.alpha = torch.ones(1, 1, 1, n_text)
            st.alpha[..., list(plan_.added_tokens)] = alpha_k
        st.added_mask = torch.zeros(n_text, dtype=torch.bool)
        st.added_mask[list(plan_.added_tokens)] = True
        st.source_ctx, st.removed_mask = None, None
        if record and src is not None and plan_.removed_tokens:
            st.source_ctx, st.removed_mask = src
        st.reset_maps()

    def _clear_tgaa(self) -> None:
        st = self.tgaa
        st.active, st.record, st.alpha, st.source_ctx = False, False, None, None

    # -- serving --------------------------------------------------------------------------
    @torch.no_grad()
    def serve(self, request: Request | str, *, baseline: bool = False) -> ServeResult:
        """Serve one request (a :class:`Request` or a prompt string for tenant "default").

        ``baseline=True`` also runs full compute from the same initial noise (the source's on a hit)
        and fills ``record.drift`` and ``record.baseline_wall_s``.
        """
        if isinstance(request, str):
            request = Request(prompt=request)
        if not isinstance(request, Request):
            raise TypeError(f"ChorusPipeline.serve: request must be a Request or str, got {type(request).__name__}")
        cfg, n_steps = self.config, self.num_steps
        t_start, cpu_start = time.perf_counter(), time.process_time()

        # Retrieval: embed, tokenize, look up, plan.
        ids = tuple(self.encoder.tokenize(request.prompt))
        ctx = self.encoder.token_embeddings(request.prompt)[None]
        t0 = time.perf_counter()
        emb, match, key = None, None, None
        if self.cache is not None:
            emb = self.encoder.encode([request.prompt])[0]
            key = self.compat_key(request.tenant)
            if request.seed is None:  # a user-fixed seed is never served from another request's latents
                try:
                    match = self.cache.lookup(key, emb, min_similarity=cfg.tau_partial)
                except Exception as e:  # noqa: BLE001 - the cache promises not to raise; be safe anyway
                    warnings.warn(
                        f"ChorusPipeline: cache lookup failed ({type(e).__name__}: {e}); a miss", stacklevel=2
                    )
        req = replace(request, token_ids=ids)
        plan_ = plan(req, match, cfg, n_steps)
        if plan_.hit and not usable_latents(match.entry, plan_, self.latent_shape, "ChorusPipeline"):
            plan_ = plan(req, None, cfg, n_steps)
        retrieval_s = time.perf_counter() - t0

        # Initial latent.
        stage_s = {"stage1": 0.0, "stage2": 0.0, "stage3": 0.0, "full": 0.0}
        t0 = time.perf_counter()
        if plan_.hit:
            entry = match.entry
            x, seed = entry.latents[plan_.start_step].to(torch.float32).clone(), entry.seed
            src = None
            if plan_.removed_tokens:  # the source's text states, to map where its removed tokens attended
                src_ctx = self.model.condition_embedder.text_embedder(self.encoder.token_embeddings(entry.prompt)[None])
                removed = torch.zeros(src_ctx.shape[1], dtype=torch.bool)
                removed[list(plan_.removed_tokens)] = True
                src = (src_ctx, removed)
        else:
            entry, src = None, None
            seed = request.seed if request.seed is not None else self._take_seed()
            x = self.noise(seed)
        stage_s["stage1"] += time.perf_counter() - t0
        stored = {0: x.clone()} if (not plan_.hit and 0 in self._store_steps) else {}

        nfe, blend_s, core, compute, region_fracs = 0.0, 0.0, None, None, []
        has_region = Action.REGION_TGAA in plan_.actions
        for k in range(plan_.start_step, n_steps):
            a = plan_.actions[k]
            t0 = time.perf_counter()
            if a is Action.FULL_TGAA:
                self._set_tgaa(plan_, k, ctx.shape[1], record=has_region, src=src)
                try:
                    x = self._full_step(x, k, ctx)
                finally:
                    self._clear_tgaa()
                nfe += 1.0
                if has_region:
                    tb = time.perf_counter()
                    st = self.tgaa
                    mass = st.mass[0] / max(st.layers, 1) if st.mass is not None else torch.zeros(self.n_tokens)
                    core, compute = region_masks(mass, self.grid, cfg.region)
                    latent_core = token_mask_to_latent(core, self.grid, self.patch)
                    blend_s += time.perf_counter() - tb
            elif a is Action.REGION_TGAA:
                cached_next = entry.latents[k + 1].to(torch.float32)
                frac = float(compute.sum()) / self.n_tokens
                if frac > 0:
                    self._set_tgaa(plan_, k, ctx.shape[1], record=False)
                    try:
                        fresh = self._region_step(x, k, ctx, compute)
                    finally:
                        self._clear_tgaa()
                    tb = time.perf_counter()
                    x = masked_blend(fresh, cached_next, latent_core)
                    blend_s += time.perf_counter() - tb
                else:
                    x = cached_next.clone()
                nfe += frac
                region_fracs.append(frac)
            elif a is Action.SKIP:
                raise AssertionError("SKIP after the start step")  # plans only skip a prefix
            else:
                x = self._full_step(x, k, ctx)
                nfe += 1.0
            stage_s[_STAGE[a]] += time.perf_counter() - t0
            if (k + 1) in self._store_steps and not plan_.hit:
                stored[k + 1] = x.clone()

        insert_s = 0.0
        if self.cache is not None:
            t0 = time.perf_counter()
            try:  # cache trouble must never fail a request that has been served
                if plan_.hit:
                    self.cache.record_hit(plan_.source_entry_id, float(n_steps - nfe))
                elif cfg.insert_on_miss:
                    self._insert(key, request.prompt, ids, emb, stored, seed)
            except Exception as e:  # noqa: BLE001 - any backend failure degrades to "not cached"
                warnings.warn(f"ChorusPipeline: cache update failed ({type(e).__name__}: {e})", stacklevel=2)
            insert_s = time.perf_counter() - t0
        wall_s, cpu_s = time.perf_counter() - t_start, time.process_time() - cpu_start

        record = RequestRecord(
            request=self._served,
            prompt=request.prompt,
            tenant=request.tenant,
            hit=plan_.hit,
            reason=plan_.reason,
            tier=plan_.tier,
            source_prompt=plan_.source_prompt,
            similarity=plan_.similarity,
            steps_skipped=plan_.steps_skipped,
            num_steps=n_steps,
            nfe=nfe,
            wall_s=wall_s,
            stage_s={k: v for k, v in stage_s.items() if v > 0},
            retrieval_s=retrieval_s,
            blend_s=blend_s,
            insert_s=insert_s,
            region_frac=sum(region_fracs) / len(region_fracs) if region_fracs else None,
            added_tokens=len(plan_.added_tokens),
            removed_tokens=len(plan_.removed_tokens),
            cpu_s=cpu_s,
        )
        self._served += 1
        if baseline:
            self._baseline(record, request.prompt, x, seed)
        return ServeResult(latent=x, record=record, plan=plan_)

    def _baseline(self, record: RequestRecord, prompt: str, final: Tensor, seed: int | None) -> None:
        getattr(self.encoder, "clear_memo", lambda: None)()  # a server without Chorus encodes the prompt too
        t0, c0 = time.perf_counter(), time.process_time()
        ctx = self.encoder.token_embeddings(prompt)[None]
        # The source's noise when known (drift is then meaningful); else time a full run only.
        ref = self.full_generate(ctx, self.noise(seed if seed is not None else 0))
        record.baseline_wall_s, record.baseline_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        if seed is None:
            return
        record.drift = float((final - ref).norm() / ref.norm().clamp_min(1e-30))

    def _take_seed(self) -> int:
        seed = self._seed_next
        self._seed_next += 1
        return seed

    def _insert(self, key, prompt: str, ids, emb, stored: dict, seed: int | None) -> None:
        from .cache import CacheEntry, EntryStats

        entry = CacheEntry(
            key=key,
            prompt=prompt,
            token_ids=list(ids),
            embedding=emb,
            latents={k: v.contiguous() for k, v in stored.items()},
            seed=seed,
            stats=EntryStats(full_nfe=float(self.num_steps)),
        )
        if not self.cache.insert(entry):
            warnings.warn(f"ChorusPipeline: entry for {prompt!r} does not fit the cache budget", stacklevel=3)
