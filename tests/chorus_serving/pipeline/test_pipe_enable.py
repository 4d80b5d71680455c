"""enable_chorus on a real diffusers WanPipeline built offline from tiny random parts (MiniLM's tokenizer
and BERT as the text encoder, a tiny random AutoencoderKLWan, the tiny Wan DiT)."""

from __future__ import annotations

import pytest
import torch
from npu_ops.chorus.cache import RequestCache
from npu_ops.chorus.config import ChorusConfig
from npu_ops.chorus.enable import disable_chorus, enable_chorus

RED = "a red vintage bicycle leaning against a brick wall in the rain, cinematic lighting"
GREEN = "a green vintage bicycle leaning against a brick wall in the rain, cinematic lighting"
CALL = dict(height=128, width=128, num_frames=9, num_inference_steps=4, output_type="latent", max_sequence_length=32)


@pytest.fixture(scope="module")
def wan_pipe(minilm):
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline
    from npu_ops.chorus.tiny_wan import tiny_wan_transformer

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    pipe = WanPipeline(
        tokenizer=minilm._model.tokenizer,
        text_encoder=minilm._model[0].auto_model,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        transformer=tiny_wan_transformer(seed=1),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _noise(seed):
    return torch.randn((1, 16, 3, 16, 16), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("guidance", [3.0])  # CFG: cond and uncond passes per step
def test_enable_chorus_miss_exact_then_hit(wan_pipe, minilm, guidance):
    ref_red = wan_pipe(RED, latents=_noise(0), guidance_scale=guidance, **CALL).frames
    ref_green = wan_pipe(GREEN, latents=_noise(0), guidance_scale=guidance, **CALL).frames
    cache = RequestCache()
    h = enable_chorus(wan_pipe, cache=cache, config=ChorusConfig(tau_full=0.95, tau_partial=0.8), encoder=minilm)
    try:
        miss = wan_pipe(RED, guidance_scale=guidance, **CALL).frames  # server seed 0
        assert torch.equal(miss, ref_red) and len(cache) == 1
        seen = []
        hit = wan_pipe(
            GREEN, guidance_scale=guidance, callback_on_step_end=lambda p, i, t, kw: seen.append(i) or {}, **CALL
        ).frames
        r = h.records[-1]
        assert r.hit and r.tier == "partial" and r.steps_skipped == 1 and 2.0 < r.nfe < 3.0
        assert seen == [0, 1, 2, 3]  # the user's callback still runs every step
        drift = float((hit - ref_green).norm() / ref_green.norm())
        assert 0 < drift < 0.5
        seeded = wan_pipe(GREEN, generator=torch.Generator().manual_seed(5), guidance_scale=guidance, **CALL)
        assert not h.records[-1].hit and h.records[-1].reason == "user_seed"
        assert seeded.frames.shape == hit.shape
        other = wan_pipe(GREEN, chorus_tenant="other", guidance_scale=guidance, **CALL)
        assert not h.records[-1].hit and other.frames.shape == hit.shape
        assert "hit rate" in h.summary()
    finally:
        disable_chorus(wan_pipe)
    assert type(wan_pipe).__name__ == "WanPipeline" and getattr(wan_pipe, "chorus", None) is None
    assert torch.equal(wan_pipe(RED, latents=_noise(0), guidance_scale=guidance, **CALL).frames, ref_red)


def test_enable_chorus_refuses_what_it_cannot_do_exactly(wan_pipe, minilm):
    from diffusers import UniPCMultistepScheduler

    h = enable_chorus(wan_pipe, config=ChorusConfig(), encoder=minilm)
    stock = wan_pipe.scheduler
    try:
        with pytest.raises(RuntimeError, match="already enabled"):
            enable_chorus(wan_pipe)
        wan_pipe.scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True)
        with pytest.warns(UserWarning, match="not first-order flow-matching Euler"):
            wan_pipe(RED, guidance_scale=1.0, **CALL)
        assert h.records == []
    finally:
        wan_pipe.scheduler = stock
        disable_chorus(wan_pipe)
    with pytest.raises(TypeError, match="config"):
        enable_chorus(wan_pipe, config={"tau_full": 0.9})
    disable_chorus(wan_pipe)


def test_enable_chorus_serves_stage1_steps_full_3_on_4_steps(wan_pipe, minilm):
    """Issue 12 (2): a valid config whose Stage 1 skips 3 of 4 steps raised KeyError inside the request."""
    cache = RequestCache()
    cfg = ChorusConfig(tau_full=0.9, tau_partial=0.8, stage1_steps_full=3, stage3_steps=1)
    h = enable_chorus(wan_pipe, cache=cache, config=cfg, encoder=minilm)
    try:
        wan_pipe(RED, guidance_scale=1.0, **CALL)
        out = wan_pipe(RED + ".", guidance_scale=1.0, **CALL).frames
        r = h.records[-1]
        assert r.hit and r.steps_skipped >= 1 and torch.isfinite(out).all()
    finally:
        disable_chorus(wan_pipe)


def test_disable_chorus_restores_an_earlier_forward_wrapper(wan_pipe, minilm):
    """Issue 12 (4): disable_chorus deleted an instance forward installed before enable_chorus (offload/cache hooks)."""
    tr = wan_pipe.transformer
    stock = tr.forward
    calls = []

    def wrapper(*a, **k):
        calls.append(1)
        return stock(*a, **k)

    tr.forward = wrapper
    try:
        enable_chorus(wan_pipe, config=ChorusConfig(), encoder=minilm)
        disable_chorus(wan_pipe)
        assert tr.__dict__.get("forward") is wrapper
    finally:
        tr.__dict__.pop("forward", None)
    assert "forward" not in tr.__dict__
    enable_chorus(wan_pipe, config=ChorusConfig(), encoder=minilm)
    disable_chorus(wan_pipe)
    assert "forward" not in tr.__dict__  # no instance attribute before: none after
