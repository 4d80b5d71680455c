"""plan() and ChorusConfig: pure policy tests, no model."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from npu_ops.chorus.config import ChorusConfig, RegionPolicy, TGAAConfig
from npu_ops.chorus.policy import Action, Request, latent_steps_to_store, plan

A = Action


@dataclass
class _Key:
    tenant: str = "t"


@dataclass
class _Entry:
    token_ids: list
    latents: dict
    key: _Key = field(default_factory=_Key)
    prompt: str = "source"
    entry_id: str = "e1"


@dataclass
class _Match:
    entry: _Entry
    similarity: float


SRC = [101, 1, 2, 3, 4, 102]
NEW = [101, 1, 9, 3, 4, 102]  # token 2 -> 9 at position 2


def _match(sim, ids=SRC, steps=range(5), tenant="t"):
    return _Match(_Entry(list(ids), dict.fromkeys(steps), _Key(tenant)), sim)


def _req(ids=NEW, seed=None, tenant="t"):
    return Request("new", tenant=tenant, seed=seed, token_ids=tuple(ids))


CFG = ChorusConfig(tau_full=0.95, tau_partial=0.8, tgaa=TGAAConfig(alpha=3.0, schedule="const"))


def test_miss_without_match_plans_full_steps():
    p = plan(_req(), None, CFG, 4)
    assert not p.hit and p.reason == "no_match" and p.actions == (A.FULL,) * 4 and p.steps_skipped == 0
    assert p.alphas == (1.0,) * 4 and p.start_step == 0 and p.source_entry_id is None


def test_partial_tier_layout_for_four_steps():
    p = plan(_req(), _match(0.9), CFG, 4)
    assert p.hit and p.tier == "partial" and p.start_step == 1 and p.steps_skipped == 1
    assert p.actions == (A.SKIP, A.FULL_TGAA, A.REGION_TGAA, A.FULL_NO_REUSE)
    assert p.alphas == (1.0, 3.0, 3.0, 1.0)
    assert p.added_tokens == (2,) and p.removed_tokens == (2,) and p.source_entry_id == "e1"


def test_full_tier_skips_more():
    p = plan(_req(), _match(0.97), CFG, 4)
    assert p.tier == "full" and p.actions == (A.SKIP, A.SKIP, A.FULL_TGAA, A.FULL_NO_REUSE)


@pytest.mark.parametrize("sim,hit", [(0.7999, False), (0.8, True), (0.9499, True), (0.95, True)])
def test_threshold_edges(sim, hit):
    p = plan(_req(), _match(sim), CFG, 4)
    assert p.hit == hit
    if hit:
        assert p.tier == ("full" if sim >= 0.95 else "partial")
    else:
        assert p.reason == "below_threshold"


def test_user_fixed_seed_is_never_served_from_cache():
    p = plan(_req(seed=7), _match(1.0, ids=NEW), CFG, 4)
    assert not p.hit and p.reason == "user_seed"


def test_other_tenant_needs_cross_tenant():
    m = _match(0.99, tenant="other")
    assert plan(_req(), m, CFG, 4).reason == "tenant"
    cfg = ChorusConfig(tau_full=0.95, tau_partial=0.8, cross_tenant=True)
    assert plan(_req(), m, cfg, 4).hit


def test_linear_decay_schedule():
    cfg = ChorusConfig(tau_full=0.99, tau_partial=0.5, stage3_steps=1, tgaa=TGAAConfig(alpha=3.0))
    p = plan(_req(), _match(0.9, steps=range(9)), cfg, 8)  # partial: skip 1, Stage 2 = steps 1..6
    assert p.actions[1] is A.FULL_TGAA and all(a is A.REGION_TGAA for a in p.actions[2:7])
    assert p.alphas[1] == 3.0 and p.alphas[7] == 1.0 and p.alphas[0] == 1.0
    decay = p.alphas[1:7]
    assert all(a > b for a, b in zip(decay, decay[1:])) and decay[-1] > 1.0
    assert decay[1] == pytest.approx(3.0 - 2.0 / 6)


def test_no_added_tokens_means_no_amplification():
    ids = [101, 1, 3, 4, 102]  # token 2 deleted: removed only
    p = plan(_req(ids=ids), _match(0.9), CFG, 4)
    assert p.added_tokens == () and p.removed_tokens == (2,) and p.alphas == (1.0,) * 4
    assert A.REGION_TGAA in p.actions  # the removed token's region is still recomputed


def test_identical_tokens_reuse_through_stage_2():
    p = plan(_req(ids=SRC), _match(0.9), CFG, 4)
    assert p.hit and p.actions == (A.SKIP, A.SKIP, A.SKIP, A.FULL_NO_REUSE) and p.start_step == 3


def test_missing_latents_fall_back():
    # No x_2 stored: no region step (blend target missing): Stage 2 is full + TGAA.
    p = plan(_req(), _match(0.9, steps=[1]), CFG, 4)
    assert p.actions == (A.SKIP, A.FULL_TGAA, A.FULL_TGAA, A.FULL_NO_REUSE)
    # Full tier without x_2 falls back to the partial tier.
    p = plan(_req(), _match(0.99, steps=[1, 2 + 1]), CFG, 4)
    assert p.tier == "partial"
    p = plan(_req(), _match(0.99, steps=[4]), CFG, 4)
    assert not p.hit and p.reason == "latent_missing"


def test_stage1_zero_without_stage2_is_a_miss():
    cfg = ChorusConfig(stage1_steps_full=0, stage1_steps_partial=0, stage2_steps=0, stage3_steps=1)
    p = plan(_req(), _match(0.99), cfg, 4)
    assert not p.hit and p.reason == "nothing_to_reuse" and p.actions == (A.FULL,) * 4
    assert latent_steps_to_store(cfg, 4) == ()


def test_plan_is_deterministic_and_pure():
    m = _match(0.9)
    assert plan(_req(), m, CFG, 4) == plan(_req(), m, CFG, 4)
    assert m.entry.latents == dict.fromkeys(range(5))


def test_latent_steps_to_store_default():
    # full tier starts at 2; partial at 1 and blends into x_3; identical prompts start at 3.
    assert latent_steps_to_store(ChorusConfig(), 4) == (1, 2, 3)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(tau_full=1.5), "tau_full"),
        (dict(tau_full=0.8, tau_partial=0.9), "tau_partial must be <= tau_full"),
        (dict(stage1_steps_full=-1), "stage1_steps_full"),
        (dict(stage1_steps_full=1, stage1_steps_partial=2), "stage1_steps_partial"),
        (dict(stage3_steps=1.5), "stage3_steps"),
        (dict(cross_tenant="yes"), "cross_tenant"),
        (dict(region="x"), "region"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ChorusConfig(**kwargs)


@pytest.mark.parametrize(
    "cls,kwargs,match",
    [
        (RegionPolicy, dict(top_frac=0.2, threshold=0.3), "exactly one"),
        (RegionPolicy, dict(top_frac=None), "exactly one"),
        (RegionPolicy, dict(top_frac=0.0), "top_frac"),
        (RegionPolicy, dict(top_frac=None, threshold=1.5), "threshold"),
        (RegionPolicy, dict(dilation=(1, 1)), "dilation"),
        (RegionPolicy, dict(halo=-1), "halo"),
        (RegionPolicy, dict(normalize="frame"), "normalize"),
        (TGAAConfig, dict(alpha=0.0), "alpha"),
        (TGAAConfig, dict(alpha=float("inf")), "alpha"),
        (TGAAConfig, dict(schedule="cosine"), "schedule"),
        (TGAAConfig, dict(mode="add"), "mode"),
    ],
)
def test_sub_config_errors(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_steps_must_fit_the_schedule():
    with pytest.raises(ValueError, match="num_steps = 2"):
        plan(_req(), None, ChorusConfig(stage1_steps_full=2, stage3_steps=1), 2)


def test_plan_argument_types():
    with pytest.raises(TypeError, match="request"):
        plan("prompt", None, CFG, 4)
    with pytest.raises(TypeError, match="config"):
        plan(_req(), None, {"tau_full": 0.9}, 4)
