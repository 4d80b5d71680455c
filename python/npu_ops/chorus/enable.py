"""``enable_chorus(pipe, cache=..., config=...)``: Chorus on a diffusers ``WanPipeline``-like object.

One line, in the style of cache-dit's enablers. It

- switches ``pipe``'s class to a subclass whose ``__call__`` embeds the prompt, looks the cache up,
  plans the request, and then runs the pipeline's own loop;
- wraps ``pipe.transformer.forward``: a skipped step (Stage 1) returns a zero velocity (the Euler
  update then keeps the latent) and a region step computes only the region tokens; both find the
  step from the timestep they get; TGAA processors sit on every ``attn2``;
- chains a ``callback_on_step_end`` that puts the source's cached latent in place after each skipped
  step, blends region steps into the source's cached ``x_{k+1}`` with ``masked_blend``, and captures
  the latents a miss inserts into the cache.

Limits (checked; a request outside them is served by the stock pipeline with a warning, and no
Chorus record is added): first-order flow-matching Euler only (``FlowMatchEulerDiscreteScheduler``:
a cached latent can replace the loop's latent exactly; multistep solvers such as UniPC keep a
history), one prompt string per call, one video per prompt, text-to-video (no Wan 2.2 expanded
timesteps, no second transformer). A call with ``generator`` or ``latents`` has a user-fixed seed:
never served from another request's latents. ``chorus_tenant=`` names the tenant (default
``"default"``). :func:`disable_chorus` undoes everything.
"""

from __future__ import annotations

import copy
import inspect
import time
import warnings

import torch

from .config import ChorusConfig
from .masked_blend import masked_blend
from .pipeline import usable_latents
from .policy import Action, Request, StagePlan, latent_steps_to_store, plan
from .records import RequestRecord, format_summary, summarize
from .regions import region_masks, token_mask_to_latent
from .tgaa import install_tgaa, uninstall_tgaa
from .tiny_wan import subset_forward, unpatchify

__all__ = ["enable_chorus", "disable_chorus", "ChorusHandle"]


class _Request:
    """Per-call state shared by the forward wrapper and the step callback."""

    def __init__(self, plan_: StagePlan, timesteps, entry, store_steps, ctx_len: int):
        self.plan, self.timesteps, self.entry = plan_, timesteps, entry
        self.store_steps, self.stored = store_steps, {}
        self.calls_in_step: dict[int, int] = {}
        self.mass, self.layers = None, 0
        self.core = self.compute = self.latent_core = None
        self.nfe, self.blend_s, self.region_fracs = 0.0, 0.0, []
        self.ctx_len = ctx_len
        self.source_ctx = None  # the source prompt's projected text states (for removed-token maps)

    def step_of(self, timestep) -> int:
        t = float(timestep.flatten()[0])
        diffs = (self.timesteps.float() - t).abs()
        return int(diffs.argmin())


_MISSING = object()


class ChorusHandle:
    """What :func:`enable_chorus` returns: the cache, config, per-request records and a summary."""

    def __init__(self, pipe, cache, config: ChorusConfig, encoder, model_id: str):
        self.pipe, self.cache, self.config, self.model_id = pipe, cache, config, model_id
        self._encoder = encoder
        self.records: list[RequestRecord] = []
        self._seed_next = 0
        self._cur: _Request | None = None
        self._orig_forward = pipe.transformer.forward
        self._orig_class = pipe.__class__
        # An instance-level forward installed before us (offload or cache hooks) is put back on disable;
        # _MISSING means there was none, so the class method shows through again.
        self._orig_instance_forward = pipe.transformer.__dict__.get("forward", _MISSING)
        self.tgaa = install_tgaa(pipe.transformer)

    @property
    def encoder(self):
        if self._encoder is None:
            from .encoder import MiniLMEncoder

            self._encoder = MiniLMEncoder()
        return self._encoder

    def summary(self) -> str:
        return format_summary(summarize(self.records))

    # -- the wrapped transformer ---------------------------------------------------------
    def _forward(self, hidden_states, timestep, encoder_hidden_states, *args, return_dict: bool = True, **kwargs):
        cur = self._cur
        if cur is None or not cur.plan.hit:
            return self._orig_forward(
                hidden_states, timestep, encoder_hidden_states, *args, return_dict=return_dict, **kwargs
            )
        k = cur.step_of(timestep)
        first_call = cur.calls_in_step.get(k, 0) == 0  # WanPipeline calls cond first, then uncond
        cur.calls_in_step[k] = cur.calls_in_step.get(k, 0) + 1
        a = cur.plan.actions[k]
        model = self.pipe.transformer
        if a is Action.SKIP:
            out = torch.zeros_like(hidden_states)
        elif a is Action.REGION_TGAA:
            out = self._region(cur, k, hidden_states, timestep, encoder_hidden_states, first_call)
        elif a is Action.FULL_TGAA:
            self._set_tgaa(cur, k, encoder_hidden_states.shape[1], amplify=first_call, record=first_call)
            try:
                out = self._orig_forward(
                    hidden_states, timestep, encoder_hidden_states, *args, return_dict=False, **kwargs
                )[0]
            finally:
                self.tgaa.active = False
            if first_call and Action.REGION_TGAA in cur.plan.actions:
                st = self.tgaa
                tb = time.perf_counter()
                mass = st.mass[0] / max(st.layers, 1) if st.mass is not None else None
                grid = self._grid(hidden_states)
                mass = mass if mass is not None else torch.zeros(grid[0] * grid[1] * grid[2])
                cur.core, cur.compute = region_masks(mass, grid, self.config.region)
                cur.latent_core = token_mask_to_latent(cur.core, grid, tuple(model.config.patch_size))
                cur.blend_s += time.perf_counter() - tb
            if first_call:
                cur.nfe += 1.0
        else:
            out = self._orig_forward(
                hidden_states, timestep, encoder_hidden_states, *args, return_dict=False, **kwargs
            )[0]
            if first_call:
                cur.nfe += 1.0
        return out if not return_dict else _output(out)

    def _grid(self, x):
        p = self.pipe.transformer.config.patch_size
        return (x.shape[2] // p[0], x.shape[3] // p[1], x.shape[4] // p[2])

    def _region(self, cur, k, x, timestep, ctx, first_call):
        model = self.pipe.transformer
        n = cur.compute.numel()
        frac = float(cur.compute.sum()) / n
        if first_call:
            cur.nfe += frac
            cur.region_fracs.append(frac)
        if frac == 0:
            return torch.zeros_like(x)
        idx = cur.compute.nonzero().squeeze(1)
        self._set_tgaa(cur, k, ctx.shape[1], amplify=first_call, record=False)
        try:
            tokens = subset_forward(model, x, timestep, ctx, idx)
        finally:
            self.tgaa.active = False
        full = tokens.new_zeros(tokens.shape[0], n, tokens.shape[2])
        full[:, idx] = tokens
        return unpatchify(full, x.shape, tuple(model.config.patch_size))

    def _set_tgaa(self, cur, k, n_text, *, amplify: bool, record: bool):
        st, p = self.tgaa, cur.plan
        st.active, st.renormalize, st.record = True, self.config.tgaa.mode == "renorm", record
        st.alpha = None
        added = [i for i in p.added_tokens if i < n_text]
        if amplify and added and p.alphas[k] != 1.0:
            st.alpha = torch.ones(1, 1, 1, n_text)
            st.alpha[..., added] = p.alphas[k]
        st.added_mask = torch.zeros(n_text, dtype=torch.bool)
        st.added_mask[added] = True
        st.source_ctx = st.removed_mask = None
        if record and cur.source_ctx is not None and p.removed_tokens:
            n_src = cur.source_ctx.shape[1]
            st.source_ctx = cur.source_ctx
            st.removed_mask = torch.zeros(n_src, dtype=torch.bool)
            st.removed_mask[[i for i in p.removed_tokens if i < n_src]] = True
        st.reset_maps()

    # -- the step callback ---------------------------------------------------------------
    def _callback(self, user_cb):
        def cb(pipe, i, t, kwargs):
            cur = self._cur
            out = {}
            if cur is not None:
                lat = kwargs["latents"]
                if cur.plan.hit:
                    a = cur.plan.actions[i]
                    if a is Action.SKIP:
                        # A skip keeps the latent (zero velocity); only x_start is stored for a Stage-1 run
                        # (the steps inside it are not), and it is what the loop must hold when Stage 1 ends.
                        lats = cur.entry.latents
                        src = lats[i + 1] if (i + 1) in lats else lats[cur.plan.start_step]
                        out["latents"] = src.to(lat.dtype).clone()
                    elif a is Action.REGION_TGAA:
                        tb = time.perf_counter()
                        cached = cur.entry.latents[i + 1].to(lat.dtype)
                        out["latents"] = (
                            masked_blend(lat, cached, cur.latent_core) if cur.compute.any() else cached.clone()
                        )
                        cur.blend_s += time.perf_counter() - tb
                elif (i + 1) in cur.store_steps:
                    cur.stored[i + 1] = lat.detach().to("cpu").clone()
            if user_cb is not None:
                if out:
                    kwargs = {**kwargs, **out}
                user_out = user_cb(pipe, i, t, kwargs) or {}
                out.update(user_out)
            return out

        return cb

    # -- the call ------------------------------------------------------------------------
    def call(self, stock_call, pipe, args, kwargs):
        tenant = kwargs.pop("chorus_tenant", "default")
        bound = inspect.signature(stock_call).bind(pipe, *args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        why = self._unsupported(a)
        if why:
            warnings.warn(f"enable_chorus: serving without Chorus: {why}", stacklevel=3)
            return stock_call(pipe, *args, **kwargs)
        t_start = time.perf_counter()
        cfg, n_steps, prompt = self.config, int(a["num_inference_steps"]), a["prompt"]
        sched = copy.deepcopy(pipe.scheduler)
        sched.set_timesteps(n_steps)
        key = self._key(pipe, a, sched, tenant)
        user_seed = a.get("generator") is not None or a.get("latents") is not None
        ids = list(pipe.tokenizer(prompt, truncation=True, max_length=a["max_sequence_length"])["input_ids"])
        t0 = time.perf_counter()
        emb = self.encoder.encode([prompt])[0]
        match = None
        if not user_seed:
            try:
                match = self.cache.lookup(key, emb, min_similarity=cfg.tau_partial)
            except Exception as e:  # noqa: BLE001 - the cache promises not to raise; be safe anyway
                warnings.warn(f"enable_chorus: cache lookup failed ({type(e).__name__}: {e}); a miss", stacklevel=3)
        plan_ = plan(
            Request(prompt, tenant=tenant, seed=0 if user_seed else None, token_ids=tuple(ids)), match, cfg, n_steps
        )
        retrieval_s = time.perf_counter() - t0
        shape = self._latent_shape(pipe, a)
        seed = None
        if plan_.hit and not usable_latents(match.entry, plan_, shape, "enable_chorus"):
            plan_ = plan(Request(prompt, tenant=tenant, token_ids=tuple(ids)), None, cfg, n_steps)
        if plan_.hit:
            a["latents"] = match.entry.latents[plan_.start_step].clone()
            a["generator"] = None
        elif not user_seed:
            seed = self._seed_next
            self._seed_next += 1
            a["latents"] = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        store = set(latent_steps_to_store(cfg, n_steps))
        cur = _Request(plan_, sched.timesteps, match.entry if plan_.hit else None, store, a["max_sequence_length"])
        if plan_.hit and plan_.removed_tokens and Action.REGION_TGAA in plan_.actions:
            # Where the source's removed tokens attended must be recomputed too: their text states.
            with torch.no_grad():
                src = pipe.encode_prompt(
                    match.entry.prompt, do_classifier_free_guidance=False, max_sequence_length=a["max_sequence_length"]
                )[0]
                model = pipe.transformer
                cur.source_ctx = model.condition_embedder.text_embedder(src.to(model.dtype))
        if 0 in store and a.get("latents") is not None and not plan_.hit:
            cur.stored[0] = a["latents"].detach().to("cpu").clone()
        user_cb = a.get("callback_on_step_end")
        a["callback_on_step_end"] = self._callback(user_cb)
        inputs = list(a.get("callback_on_step_end_tensor_inputs") or [])
        a["callback_on_step_end_tensor_inputs"] = inputs + (["latents"] if "latents" not in inputs else [])
        self._cur = cur
        try:
            result = stock_call(*bound.args, **bound.kwargs)
        finally:
            self._cur = None
        insert_s = 0.0
        t0 = time.perf_counter()
        try:  # cache trouble must never fail a request that has been served
            if plan_.hit:
                self.cache.record_hit(plan_.source_entry_id, float(n_steps - cur.nfe))
            elif cfg.insert_on_miss and len(cur.stored) == len(store):
                from .cache import CacheEntry, EntryStats

                self.cache.insert(
                    CacheEntry(key=key, prompt=prompt, token_ids=ids, embedding=emb, latents=cur.stored, seed=seed,
                               stats=EntryStats(full_nfe=float(n_steps)))
                )  # fmt: skip
        except Exception as e:  # noqa: BLE001 - any backend failure degrades to "not cached"
            warnings.warn(f"enable_chorus: cache update failed ({type(e).__name__}: {e})", stacklevel=3)
        insert_s = time.perf_counter() - t0
        self.records.append(
            RequestRecord(
                request=len(self.records), prompt=prompt, tenant=tenant, hit=plan_.hit, reason=plan_.reason,
                tier=plan_.tier, source_prompt=plan_.source_prompt, similarity=plan_.similarity,
                steps_skipped=plan_.steps_skipped, num_steps=n_steps, nfe=cur.nfe if plan_.hit else float(n_steps),
                wall_s=time.perf_counter() - t_start, retrieval_s=retrieval_s, blend_s=cur.blend_s, insert_s=insert_s,
                region_frac=sum(cur.region_fracs) / len(cur.region_fracs) if cur.region_fracs else None,
                added_tokens=len(plan_.added_tokens), removed_tokens=len(plan_.removed_tokens),
            )
        )  # fmt: skip
        return result

    def _unsupported(self, a) -> str | None:
        from diffusers import FlowMatchEulerDiscreteScheduler

        if not isinstance(self.pipe.scheduler, FlowMatchEulerDiscreteScheduler):
            return f"scheduler {type(self.pipe.scheduler).__name__} is not first-order flow-matching Euler"
        if getattr(self.pipe.scheduler.config, "stochastic_sampling", False):
            return "stochastic sampling"
        if not isinstance(a.get("prompt"), str) or a.get("prompt_embeds") is not None:
            return "Chorus needs one prompt string per call (no prompt lists, no prompt_embeds)"
        if not a["prompt"].strip() or "\x00" in a["prompt"]:  # what chorus.policy.Request rejects
            return "an empty prompt (or one with NUL characters) has nothing to match"
        if a.get("num_videos_per_prompt", 1) != 1:
            return "num_videos_per_prompt != 1"
        if getattr(self.pipe, "transformer_2", None) is not None or getattr(
            self.pipe.config, "expand_timesteps", False
        ):
            return "two-transformer (Wan 2.2) or expanded-timestep pipelines"
        return None

    def _latent_shape(self, pipe, a) -> tuple[int, ...]:
        cfg = pipe.transformer.config
        frames = (int(a["num_frames"]) - 1) // pipe.vae_scale_factor_temporal + 1
        s = pipe.vae_scale_factor_spatial
        return (1, int(cfg.in_channels), frames, int(a["height"]) // s, int(a["width"]) // s)

    def _key(self, pipe, a, sched, tenant):
        from .cache import CompatKey

        g = float(a.get("guidance_scale") or 1.0)
        return CompatKey(
            model_id=self.model_id,
            height=int(a["height"]),
            width=int(a["width"]),
            num_frames=int(a["num_frames"]),
            scheduler=f"{type(sched).__name__}:shift={sched.config.shift}",
            sigmas=tuple(round(float(s), 6) for s in sched.sigmas),
            num_steps=int(a["num_inference_steps"]),
            guidance=f"cfg:{g}" if g > 1.0 else "none",
            dtype=str(pipe.transformer.dtype).replace("torch.", ""),
            tenant=tenant,
        )


def _output(sample):
    from diffusers.models.modeling_outputs import Transformer2DModelOutput

    return Transformer2DModelOutput(sample=sample)


def enable_chorus(pipe, cache=None, config: ChorusConfig | None = None, *, encoder=None, model_id: str | None = None):
    """Enable Chorus inter-request caching on a diffusers ``WanPipeline``-like ``pipe`` (see the module).

    Args:
        pipe: the pipeline (``transformer``, ``tokenizer``, ``scheduler`` and a ``WanPipeline``-style
            ``__call__`` with ``latents`` and ``callback_on_step_end``).
        cache: a ``npu_ops.chorus.cache.RequestCache`` (default: a new in-memory one).
        config: the :class:`ChorusConfig` (default ``ChorusConfig()``).
        encoder: the retrieval :class:`~npu_ops.chorus.encoder.PromptEncoder` (default MiniLM, loaded
            on first use). Token diffs use ``pipe.tokenizer`` (the DiT's own tokens).
        model_id: part of the cache key (default: the transformer's ``_name_or_path`` or class name).

    Returns:
        :class:`ChorusHandle` (``records``, ``summary()``); also set as ``pipe.chorus``.
    """
    if getattr(pipe, "chorus", None) is not None:
        raise RuntimeError("enable_chorus: Chorus is already enabled on this pipeline (disable_chorus first)")
    for attr in ("transformer", "tokenizer", "scheduler"):
        if getattr(pipe, attr, None) is None:
            raise TypeError(f"enable_chorus: pipe must have a {attr!r} (a WanPipeline-like object), got none")
    config = config if config is not None else ChorusConfig()
    if not isinstance(config, ChorusConfig):
        raise TypeError(f"enable_chorus: config must be a ChorusConfig, got {type(config).__name__}")
    if cache is None:
        from .cache import RequestCache

        cache = RequestCache()
    mid = model_id or getattr(pipe.transformer.config, "_name_or_path", "") or type(pipe.transformer).__name__
    handle = ChorusHandle(pipe, cache, config, encoder, mid)
    stock = pipe.__class__

    def __call__(self, *args, **kwargs):
        return self.chorus.call(stock.__call__, self, args, kwargs)

    pipe.__class__ = type(f"Chorus{stock.__name__}", (stock,), {"__call__": __call__})
    pipe.transformer.forward = handle._forward
    pipe.chorus = handle
    return handle


def disable_chorus(pipe) -> None:
    """Undo :func:`enable_chorus` (class, transformer forward, attention processors)."""
    handle = getattr(pipe, "chorus", None)
    if handle is None:
        return
    pipe.__class__ = handle._orig_class
    if handle._orig_instance_forward is _MISSING:
        pipe.transformer.__dict__.pop("forward", None)
    else:
        pipe.transformer.forward = handle._orig_instance_forward
    uninstall_tgaa(pipe.transformer)
    pipe.chorus = None
