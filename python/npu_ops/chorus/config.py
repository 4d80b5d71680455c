"""Chorus serving configuration: similarity tiers, steps per stage, region budget, TGAA.

Every field is validated at construction; a bad value raises ``ValueError`` naming the field, the
expected and the actual value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["RegionPolicy", "TGAAConfig", "ChorusConfig"]


def _fail(owner: str, name: str, expected: str, got) -> None:
    raise ValueError(f"{owner}.{name} must be {expected}, got {got!r}")


def _check_int(owner: str, name: str, v, lo: int = 0) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        _fail(owner, name, f"an int >= {lo}", v)


def _check_unit(owner: str, name: str, v, *, open_low: bool = True) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ok = ok and (0 < v <= 1 if open_low else 0 <= v <= 1)
    if not ok:
        _fail(owner, name, "a number in (0, 1]" if open_low else "a number in [0, 1]", v)


@dataclass(frozen=True)
class RegionPolicy:
    """Which latent tokens Stage 2 recomputes, from the attention mass on the differing tokens.

    Exactly one of ``top_frac`` (keep that fraction of tokens with the largest mass: a predictable
    budget) and ``threshold`` (keep tokens whose mass, max-normalised per ``normalize``, is >=
    ``threshold``; Prompt-to-Prompt uses 0.3) is set. The kept set is dilated by ``dilation``
    tokens along (T', H', W') and becomes the blend mask; ``halo`` more tokens around it (in H', W')
    are also computed (as attention context) but their results are discarded. ``smooth`` box-blurs
    the mass over ``2 * smooth + 1`` tokens in (H', W') before selection, so the budget goes to
    compact regions rather than scattered tokens (whose halos would cover the frame).
    """

    top_frac: float | None = 0.15
    threshold: float | None = None
    dilation: tuple[int, int, int] = (0, 0, 0)
    halo: int = 1
    smooth: int = 2
    normalize: str = "global"  # "global" | "per_frame" max-normalisation before thresholding

    def __post_init__(self) -> None:
        o = "RegionPolicy"
        if (self.top_frac is None) == (self.threshold is None):
            raise ValueError(
                f"{o}: set exactly one of top_frac and threshold, got top_frac={self.top_frac!r}, "
                f"threshold={self.threshold!r}"
            )
        if self.top_frac is not None:
            _check_unit(o, "top_frac", self.top_frac)
        if self.threshold is not None:
            _check_unit(o, "threshold", self.threshold, open_low=False)
        d = self.dilation
        if not (isinstance(d, tuple) and len(d) == 3):
            _fail(o, "dilation", "a tuple of 3 ints >= 0 (T', H', W' radii)", d)
        for v in d:
            _check_int(o, "dilation", v)
        _check_int(o, "halo", self.halo)
        _check_int(o, "smooth", self.smooth)
        if self.normalize not in ("global", "per_frame"):
            _fail(o, "normalize", "'global' or 'per_frame'", self.normalize)


@dataclass(frozen=True)
class TGAAConfig:
    """Token-Guided Attention Amplification on the cross-attention of Stage-2 steps.

    The new prompt's added tokens get the key factor ``alpha(step)``: ``schedule="const"`` keeps
    ``alpha`` on every Stage-2 step; ``"linear_decay"`` goes from ``alpha`` on the first Stage-2 step
    linearly towards 1 (reached on the step after the last Stage-2 step). ``mode="renorm"``:
    ``softmax(s + log alpha)`` (Chorus/PASTA style); ``"value"``: ``softmax(s) * alpha`` without
    renormalising (Prompt-to-Prompt re-weighting). ``alpha=1`` disables TGAA.
    """

    alpha: float = 2.0
    schedule: str = "linear_decay"
    mode: str = "renorm"

    def __post_init__(self) -> None:
        o = "TGAAConfig"
        a = self.alpha
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) or a <= 0:
            _fail(o, "alpha", "a finite number > 0", a)
        if self.schedule not in ("const", "linear_decay"):
            _fail(o, "schedule", "'const' or 'linear_decay'", self.schedule)
        if self.mode not in ("renorm", "value"):
            _fail(o, "mode", "'renorm' or 'value'", self.mode)


@dataclass(frozen=True)
class ChorusConfig:
    """The three-stage policy's knobs (see :func:`npu_ops.chorus.policy.plan`).

    A match with cosine similarity >= ``tau_full`` is a *full* hit, >= ``tau_partial`` a *partial*
    hit, below a miss. Stage 1 skips ``stage1_steps_full`` / ``stage1_steps_partial`` steps by
    starting from the source's cached latent. Stage 2 is the next ``stage2_steps`` steps (``None``:
    every step up to Stage 3): its first step is a full step with TGAA that also records the
    attention maps the region mask comes from; later ones recompute only the region (with TGAA) and
    blend with the source's cached latent. Stage 3 is the last ``stage3_steps`` steps, full compute
    without reuse, to repair seams. ``cross_tenant`` lets tenants share entries (off: a tenant never
    receives another's latents). ``insert_on_miss`` inserts every full generation into the cache.
    """

    tau_full: float = 0.95
    tau_partial: float = 0.80
    stage1_steps_full: int = 2
    stage1_steps_partial: int = 1
    stage2_steps: int | None = None
    stage3_steps: int = 1
    region: RegionPolicy = field(default_factory=RegionPolicy)
    tgaa: TGAAConfig = field(default_factory=TGAAConfig)
    cross_tenant: bool = False
    insert_on_miss: bool = True

    def __post_init__(self) -> None:
        o = "ChorusConfig"
        for name in ("tau_full", "tau_partial"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not -1 <= v <= 1:
                _fail(o, name, "a cosine similarity in [-1, 1]", v)
        if self.tau_partial > self.tau_full:
            raise ValueError(
                f"{o}: tau_partial must be <= tau_full, got tau_partial={self.tau_partial}, tau_full={self.tau_full}"
            )
        _check_int(o, "stage1_steps_full", self.stage1_steps_full)
        _check_int(o, "stage1_steps_partial", self.stage1_steps_partial)
        if self.stage1_steps_partial > self.stage1_steps_full:
            raise ValueError(
                f"{o}: stage1_steps_partial must be <= stage1_steps_full (a closer match skips at least as much), "
                f"got {self.stage1_steps_partial} > {self.stage1_steps_full}"
            )
        if self.stage2_steps is not None:
            _check_int(o, "stage2_steps", self.stage2_steps)
        _check_int(o, "stage3_steps", self.stage3_steps)
        if not isinstance(self.region, RegionPolicy):
            _fail(o, "region", "a RegionPolicy", self.region)
        if not isinstance(self.tgaa, TGAAConfig):
            _fail(o, "tgaa", "a TGAAConfig", self.tgaa)
        for name in ("cross_tenant", "insert_on_miss"):
            if not isinstance(getattr(self, name), bool):
                _fail(o, name, "a bool", getattr(self, name))

    def check_steps(self, num_steps: int) -> None:
        """Raise ValueError if the stages do not fit a ``num_steps`` schedule."""
        _check_int("ChorusConfig.check_steps", "num_steps", num_steps, lo=1)
        need = self.stage1_steps_full + self.stage3_steps
        if need > num_steps:
            raise ValueError(
                f"ChorusConfig: stage1_steps_full + stage3_steps must be <= num_steps = {num_steps}, "
                f"got {self.stage1_steps_full} + {self.stage3_steps}"
            )
