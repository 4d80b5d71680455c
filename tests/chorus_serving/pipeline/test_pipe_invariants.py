"""Serving-loop invariants on the tiny random Wan DiT (CPU): exactness where Chorus must not change
anything, and the effect of a hit where it must."""

from __future__ import annotations

import pytest
import torch
from npu_ops.chorus.cache import RequestCache
from npu_ops.chorus.config import ChorusConfig, RegionPolicy, TGAAConfig
from npu_ops.chorus.encoder import HashingEncoder
from npu_ops.chorus.pipeline import ChorusPipeline
from npu_ops.chorus.policy import Action, Request
from npu_ops.chorus.regions import region_masks, token_mask_to_latent
from npu_ops.chorus.tgaa import install_tgaa, uninstall_tgaa
from npu_ops.chorus.tiny_wan import subset_forward, unpatchify

LATENT = (1, 16, 3, 16, 16)
RED = "a red vintage bicycle leaning against a brick wall in the rain, cinematic lighting"
GREEN = "a green vintage bicycle leaning against a brick wall in the rain, cinematic lighting"
ENC = HashingEncoder()  # cos(RED, GREEN) = 0.86 with this encoder


def _pipe(model, cache=None, **cfg):
    cfg = {"tau_full": 0.95, "tau_partial": 0.8, **cfg}
    return ChorusPipeline(model, ENC, cache, ChorusConfig(**cfg), latent_shape=LATENT, num_steps=4)


def _reference(model, prompt: str, seed: int) -> torch.Tensor:
    """Independent baseline: the model's own forward + diffusers' scheduler.step, as WanPipeline runs them."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(4)
    x = torch.randn(LATENT, generator=torch.Generator().manual_seed(seed))
    ctx = ENC.token_embeddings(prompt)[None]
    with torch.no_grad():
        for t in sched.timesteps:
            v = model(hidden_states=x, timestep=t.expand(1), encoder_hidden_states=ctx, return_dict=False)[0]
            x = sched.step(v, t, x, return_dict=False)[0]
    return x


def test_miss_is_bit_exact_baseline(tiny_model):
    pipe = _pipe(tiny_model, RequestCache())
    out = pipe.serve(Request(RED))  # empty cache: a miss, server seed 0
    assert not out.record.hit and out.record.nfe == 4.0
    assert torch.equal(out.latent, _reference(tiny_model, RED, seed=0))
    assert len(pipe.cache) == 1  # inserted on the miss


def test_hit_reuses_and_computes_less(tiny_model):
    cache = RequestCache()
    pipe = _pipe(tiny_model, cache, region=RegionPolicy(top_frac=0.2, halo=1))
    pipe.serve(Request(RED))
    res = pipe.serve(Request(GREEN), baseline=True)
    r = res.record
    assert r.hit and r.tier == "partial" and r.source_prompt == RED and r.steps_skipped == 1
    assert res.plan.actions == (Action.SKIP, Action.FULL_TGAA, Action.REGION_TGAA, Action.FULL_NO_REUSE)
    assert 0 < r.region_frac < 1 and r.nfe == pytest.approx(3.0 + r.region_frac - 1.0)
    assert 0 < r.drift < 0.5  # full compute from the source's noise is close but not identical
    assert cache.entries()[0].stats.hits == 1
    assert len(cache) == 1  # hits are not inserted


def test_stage1_zero_without_stage2_gives_baseline(tiny_model):
    pipe = _pipe(tiny_model, RequestCache(), stage1_steps_full=0, stage1_steps_partial=0, stage2_steps=0)
    pipe.serve(Request(RED))
    out = pipe.serve(Request(GREEN))  # a match exists, but the config reuses nothing
    assert not out.record.hit and out.record.reason == "nothing_to_reuse"
    assert torch.equal(out.latent, _reference(tiny_model, GREEN, seed=1))


def test_user_seed_and_tenants_are_isolated(tiny_model):
    pipe = _pipe(tiny_model, RequestCache())
    pipe.serve(Request(RED, tenant="a"))
    seeded = pipe.serve(Request(RED, tenant="a", seed=1234))
    assert not seeded.record.hit and seeded.record.reason == "user_seed"
    assert torch.equal(seeded.latent, _reference(tiny_model, RED, seed=1234))
    other = pipe.serve(Request(RED, tenant="b"))
    assert not other.record.hit
    same = pipe.serve(Request(RED, tenant="a"))
    assert same.record.hit and same.record.steps_skipped == 3  # identical tokens: reuse through Stage 2


def test_tgaa_alpha_one_and_empty_diff_is_a_noop(tiny_model):
    x = torch.randn(LATENT, generator=torch.Generator().manual_seed(3))
    ctx = ENC.token_embeddings(RED)[None]
    t = torch.tensor([800.0])
    with torch.no_grad():
        ref = tiny_model(x, t, ctx, return_dict=False)[0]
        pipe = _pipe(tiny_model)
        st = pipe.tgaa
        try:
            # The pipeline's own setting for an empty diff: no alpha -> the stock processor, exactly.
            st.active, st.alpha = True, None
            assert torch.equal(tiny_model(x, t, ctx, return_dict=False)[0], ref)
            # Forcing the amplified path with alpha = 1 everywhere: same maths, other kernels.
            st.alpha = torch.ones(1, 1, 1, ctx.shape[1])
            torch.testing.assert_close(tiny_model(x, t, ctx, return_dict=False)[0], ref, rtol=1e-5, atol=1e-5)
            st.record, st.added_mask = True, torch.zeros(ctx.shape[1], dtype=torch.bool)
            torch.testing.assert_close(tiny_model(x, t, ctx, return_dict=False)[0], ref, rtol=1e-5, atol=1e-5)
            # and alpha != 1 does change the output
            st.record, st.alpha = False, torch.ones(1, 1, 1, ctx.shape[1])
            st.alpha[..., 2] = 4.0
            assert (tiny_model(x, t, ctx, return_dict=False)[0] - ref).abs().max() > 1e-4
        finally:
            st.active, st.alpha, st.record = False, None, False
    uninstall_tgaa(tiny_model)
    assert torch.equal(tiny_model(x, t, ctx, return_dict=False)[0], ref)
    install_tgaa(tiny_model)


def test_all_ones_region_mask_equals_full_step(tiny_model):
    from npu_ops.chorus import masked_blend

    pipe = _pipe(tiny_model)
    x = torch.randn(LATENT, generator=torch.Generator().manual_seed(4))
    ctx = ENC.token_embeddings(GREEN)[None]
    full = pipe._full_step(x, 2, ctx)
    ones = torch.ones(pipe.n_tokens, dtype=torch.bool)
    fresh = pipe._region_step(x, 2, ctx, ones)
    cached = torch.randn(LATENT)
    blended = masked_blend(fresh, cached, token_mask_to_latent(ones, pipe.grid, pipe.patch))
    assert torch.equal(blended, full)


def test_subset_forward_all_tokens_equals_full_forward(tiny_model):
    x = torch.randn(LATENT, generator=torch.Generator().manual_seed(5))
    ctx = ENC.token_embeddings(RED)[None]
    t = torch.tensor([600.0])
    with torch.no_grad():
        ref = tiny_model(x, t, ctx, return_dict=False)[0]
        n = 3 * 8 * 8
        for idx in (None, torch.arange(n)):
            out = unpatchify(subset_forward(tiny_model, x, t, ctx, idx), x.shape, (1, 2, 2))
            assert torch.equal(out, ref)
        # A subset is a different computation (tokens attend only among themselves), not a slice.
        idx = torch.arange(0, n, 2)
        part = subset_forward(tiny_model, x, t, ctx, idx)
        assert part.shape == (1, n // 2, 64)
        full_tokens = ref.reshape(1, 16, 3, 8, 2, 8, 2).permute(0, 2, 3, 5, 4, 6, 1).reshape(1, n, 64)
        assert not torch.allclose(part, full_tokens[:, idx])


def test_region_masks():
    grid = (2, 6, 6)
    mass = torch.zeros(72)
    mass[[7, 8, 50]] = torch.tensor([1.0, 0.9, 0.5])
    core, compute = region_masks(mass, grid, RegionPolicy(top_frac=2 / 72, smooth=0, halo=0))
    assert core.nonzero().flatten().tolist() == [7, 8] and torch.equal(core, compute)
    core, compute = region_masks(mass, grid, RegionPolicy(top_frac=2 / 72, smooth=0, halo=1))
    assert bool(compute[core].all()) and int(compute.sum()) == 12  # 3x4 box around tokens 7, 8 in frame 0
    core, _ = region_masks(mass, grid, RegionPolicy(top_frac=None, threshold=0.5, smooth=0, halo=0))
    assert core.nonzero().flatten().tolist() == [7, 8, 50]
    core, _ = region_masks(mass, grid, RegionPolicy(top_frac=None, threshold=0.6, smooth=0, halo=0, dilation=(1, 0, 0)))
    assert core.nonzero().flatten().tolist() == [7, 8, 43, 44]  # dilated into frame 1
    empty, empty_c = region_masks(torch.zeros(72), grid, RegionPolicy())
    assert not empty.any() and not empty_c.any()
    with pytest.raises(ValueError, match="mass must be"):
        region_masks(torch.zeros(71), grid, RegionPolicy())
    lat = token_mask_to_latent(core, grid, (1, 2, 2))
    assert lat.shape == (1, 1, 2, 12, 12) and int(lat.sum()) == 4 * 4


def test_value_mode_tgaa_runs(tiny_model):
    cache = RequestCache()
    pipe = _pipe(tiny_model, cache, tgaa=TGAAConfig(alpha=2.0, mode="value", schedule="const"))
    pipe.serve(Request(RED))
    r = pipe.serve(Request(GREEN)).record
    assert r.hit and r.added_tokens == 1 and r.removed_tokens == 1


def test_pipeline_argument_errors(tiny_model):
    with pytest.raises(ValueError, match="text_dim"):
        ChorusPipeline(tiny_model, HashingEncoder(text_dim=128), None)
    with pytest.raises(ValueError, match="latent_shape"):
        ChorusPipeline(tiny_model, ENC, None, latent_shape=(1, 16, 3, 15, 16))
    with pytest.raises(TypeError, match="config"):
        ChorusPipeline(tiny_model, ENC, None, config={"tau_full": 0.9})


class _BrokenCache:
    """A cache whose every operation fails (e.g. a backend that went away mid-request)."""

    def lookup(self, *a, **k):
        raise ConnectionError("backend down")

    def insert(self, entry):
        raise ConnectionError("backend down")

    def record_hit(self, *a):
        raise ConnectionError("backend down")


def test_cache_failures_never_fail_a_request(tiny_model):
    pipe = _pipe(tiny_model, _BrokenCache())
    with pytest.warns(UserWarning) as rec:
        out = pipe.serve(Request(RED))
    messages = " | ".join(str(w.message) for w in rec)
    assert "cache lookup failed" in messages and "cache update failed" in messages
    assert not out.record.hit and torch.equal(out.latent, _reference(tiny_model, RED, seed=0))


@pytest.mark.parametrize("corrupt", ["nan", "shape", "missing"])
def test_corrupt_cached_latent_is_a_miss(tiny_model, corrupt):
    cache = RequestCache()
    pipe = _pipe(tiny_model, cache)
    pipe.serve(Request(RED))
    real_lookup = cache.lookup

    def lookup(*a, **k):  # what a corrupted store could hand back
        m = real_lookup(*a, **k)
        lat = dict(m.entry.latents)
        if corrupt == "nan":
            lat[1] = torch.full_like(lat[1], float("nan"))
        elif corrupt == "shape":
            lat[1] = lat[1][..., :8]
        else:
            del lat[3]  # the region step's blend target
        m.entry.latents = lat
        return m

    cache.lookup = lookup
    if corrupt == "missing":  # the plan degrades: Stage 2 computes in full instead of blending
        out = pipe.serve(Request(GREEN))
        assert out.record.hit and Action.REGION_TGAA not in out.plan.actions
        return
    with pytest.warns(UserWarning, match="serving as a miss"):
        out = pipe.serve(Request(GREEN))
    assert not out.record.hit and torch.equal(out.latent, _reference(tiny_model, GREEN, seed=1))
