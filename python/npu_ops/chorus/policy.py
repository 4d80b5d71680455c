"""The three-stage Chorus policy: a pure, deterministic ``plan(request, match, config, num_steps)``.

No model, no clock, no randomness: the same inputs give the same :class:`StagePlan`, so the policy
is unit-tested without a DiT. Per step ``k`` (taking the latent ``x_k`` to ``x_{k+1}``):

- ``SKIP``: Stage 1, the step is not computed; the loop starts from the source's cached latent.
- ``FULL_TGAA``: first Stage-2 step: full compute with TGAA on the added tokens; records the
  cross-attention maps of the added (and removed) tokens, from which the region mask is built.
- ``REGION_TGAA``: later Stage-2 steps: only the region tokens (+ halo) are computed, with TGAA, and
  blended into the source's cached ``x_{k+1}``.
- ``FULL_NO_REUSE``: Stage 3 (and any step between Stage 2 and Stage 3): full compute, no reuse.
- ``FULL``: every step of a miss.

Security: a request with a user-fixed seed (``Request.seed`` not None) is **never** served from
another request's latents: reusing a latent means inheriting its noise, which would silently break
the user's reproducibility contract. Such a request is a miss (its own result may still be inserted
and serve later server-seeded requests). A match from another tenant is rejected unless
``config.cross_tenant`` (the cache enforces this too; the check here is defence in depth).
"""

from __future__ import annotations

import enum
import numbers
from dataclasses import dataclass

from .config import ChorusConfig
from .token_diff import TokenDiff, token_diff

__all__ = ["Action", "Request", "StagePlan", "plan", "latent_steps_to_store"]


class Action(str, enum.Enum):
    SKIP = "skip"
    FULL = "full"
    FULL_TGAA = "full_tgaa"
    REGION_TGAA = "region_tgaa"
    FULL_NO_REUSE = "full_no_reuse"


def _is_int(v: object) -> bool:
    # numbers.Integral admits numpy integers (seeds and token ids often come out of numpy / torch).
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _bad(field: str, expected: str, got: object, exc: type[Exception] = ValueError) -> Exception:
    shown = repr(got)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return exc(f"Request.{field} must be {expected}, got {type(got).__name__} {shown}")


def _check_text(field: str, v: object) -> None:
    if not isinstance(v, str):
        raise _bad(field, "a str", v, TypeError)
    if not v.strip():
        raise _bad(field, "a non-empty str (not only whitespace)", v)
    if "\x00" in v:
        raise _bad(field, "a str without NUL characters", v)


@dataclass(frozen=True)
class Request:
    """One generation request, validated at construction (``TypeError`` / ``ValueError`` naming the
    field, the expected and the actual value).

    Fields:
        prompt: non-empty text (not only whitespace, no NUL).
        tenant: non-empty text (not only whitespace, no NUL); part of the cache class.
        seed: ``None`` (the server chooses the noise; reuse allowed) or an int in [0, 2**64)
            (torch's generator range); numpy integers are stored as ``int``.
        token_ids: the DiT text tokens (for the token diff), ints >= 0; filled by the server. A list
            is stored as a tuple.
        request_id: any str (a caller's label).
    """

    prompt: str
    tenant: str = "default"
    seed: int | None = None
    token_ids: tuple[int, ...] = ()
    request_id: str = ""

    def __post_init__(self) -> None:
        _check_text("prompt", self.prompt)
        _check_text("tenant", self.tenant)
        s = self.seed
        if s is not None:
            if not _is_int(s):
                raise _bad("seed", "an int or None", s, TypeError)
            if not 0 <= int(s) < 2**64:
                raise _bad("seed", "None or an int in [0, 2**64)", s)
            object.__setattr__(self, "seed", int(s))
        ids = self.token_ids
        if not isinstance(ids, (tuple, list)):
            raise _bad("token_ids", "a tuple or list of ints >= 0", ids, TypeError)
        for i, t in enumerate(ids):
            if not _is_int(t):
                raise _bad(f"token_ids[{i}]", "an int >= 0", t, TypeError)
            if t < 0:
                raise _bad(f"token_ids[{i}]", "an int >= 0", t)
        object.__setattr__(self, "token_ids", tuple(int(t) for t in ids))
        if not isinstance(self.request_id, str):
            raise _bad("request_id", "a str", self.request_id, TypeError)


@dataclass(frozen=True)
class StagePlan:
    """What to do for one request (see the module docstring)."""

    hit: bool
    tier: str | None  # "full" | "partial" | None (miss)
    reason: str  # "full", "partial"; misses: "no_match", "below_threshold", "user_seed", "tenant",
    # "latent_missing" (the entry lacks the latents the plan needs), "nothing_to_reuse" (config skips nothing)
    source_entry_id: str | None
    source_prompt: str | None
    similarity: float | None
    start_step: int  # the loop starts from x_start_step (cached on a hit, fresh noise x_0 on a miss)
    actions: tuple[Action, ...]  # one per step
    alphas: tuple[float, ...]  # TGAA factor per step (1.0: no amplification)
    added_tokens: tuple[int, ...] = ()  # positions in the request's tokens
    removed_tokens: tuple[int, ...] = ()  # positions in the source's tokens

    @property
    def steps_skipped(self) -> int:
        return sum(a is Action.SKIP for a in self.actions)

    @property
    def num_steps(self) -> int:
        return len(self.actions)


def _alphas(config: ChorusConfig, stage2: range, num_steps: int, amplify: bool) -> tuple[float, ...]:
    out = [1.0] * num_steps
    if not amplify:
        return tuple(out)
    a, n = float(config.tgaa.alpha), len(stage2)
    for i, k in enumerate(stage2):
        out[k] = a if config.tgaa.schedule == "const" else a + (1.0 - a) * i / n
    return tuple(out)


def _stage2_len(config: ChorusConfig, k1: int, num_steps: int) -> int:
    room = num_steps - config.stage3_steps - k1
    return room if config.stage2_steps is None else min(config.stage2_steps, room)


def _layout(config: ChorusConfig, k1: int, num_steps: int, diff_empty: bool, available) -> tuple | None:
    """(start, actions, stage2 range) for a hit skipping ``k1`` steps, or None if latents are missing."""
    n2 = _stage2_len(config, k1, num_steps)
    if diff_empty and n2 > 0 and (k1 + n2) in available:
        # Same tokens: Stage 2 would recompute an empty region, so reuse through it.
        k1, n2 = k1 + n2, 0
    if k1 not in available:
        return None
    actions = [Action.SKIP] * k1
    for i in range(n2):
        k = k1 + i
        region_ok = i > 0 and (k + 1) in available
        actions.append(Action.REGION_TGAA if region_ok else Action.FULL_TGAA)
    actions += [Action.FULL_NO_REUSE] * (num_steps - len(actions))
    return k1, tuple(actions), range(k1, k1 + n2)


def _miss(reason: str, num_steps: int, match=None) -> StagePlan:
    return StagePlan(
        hit=False,
        tier=None,
        reason=reason,
        source_entry_id=None,
        source_prompt=None,
        similarity=None if match is None else float(match.similarity),
        start_step=0,
        actions=(Action.FULL,) * num_steps,
        alphas=(1.0,) * num_steps,
    )


def plan(request: Request, match, config: ChorusConfig, num_steps: int) -> StagePlan:
    """Plan one request.

    Args:
        request: the :class:`Request` (``token_ids`` set for the token diff).
        match: the best cache match (``CacheMatch`` with ``.entry`` and ``.similarity``) or None.
        config: the :class:`ChorusConfig`.
        num_steps: steps of the schedule.

    Returns:
        :class:`StagePlan`. A miss plans ``FULL`` for every step.
    """
    if not isinstance(request, Request):
        raise TypeError(f"plan: request must be a Request, got {type(request).__name__}")
    if not isinstance(config, ChorusConfig):
        raise TypeError(f"plan: config must be a ChorusConfig, got {type(config).__name__}")
    config.check_steps(num_steps)
    if request.seed is not None:
        return _miss("user_seed", num_steps)
    if match is None:
        return _miss("no_match", num_steps)
    entry, sim = match.entry, float(match.similarity)
    if entry.key.tenant != request.tenant and not config.cross_tenant:
        return _miss("tenant", num_steps, match)
    if sim < config.tau_partial:
        return _miss("below_threshold", num_steps, match)
    diff: TokenDiff = token_diff(list(request.token_ids), list(entry.token_ids))
    available = set(entry.latents)
    tiers = [("full", config.stage1_steps_full)] if sim >= config.tau_full else []
    tiers.append(("partial", config.stage1_steps_partial))
    reason = "latent_missing"
    for tier, k1 in tiers:
        if k1 == 0 and _stage2_len(config, k1, num_steps) == 0:
            reason = "nothing_to_reuse"  # no step skipped, no Stage 2: full compute
            continue
        layout = _layout(config, k1, num_steps, diff.empty, available)
        if layout is None:
            continue
        start, actions, stage2 = layout
        return StagePlan(
            hit=True,
            tier=tier,
            reason=tier,
            source_entry_id=entry.entry_id,
            source_prompt=entry.prompt,
            similarity=sim,
            start_step=start,
            actions=actions,
            alphas=_alphas(config, stage2, num_steps, amplify=bool(diff.added)),
            added_tokens=diff.added,
            removed_tokens=diff.removed,
        )
    return _miss(reason, num_steps, match)


def latent_steps_to_store(config: ChorusConfig, num_steps: int) -> tuple[int, ...]:
    """The steps ``k`` whose latents ``x_k`` a later hit may read (what a miss inserts)."""
    config.check_steps(num_steps)
    everything = set(range(num_steps + 1))
    steps: set[int] = set()
    for k1 in {config.stage1_steps_full, config.stage1_steps_partial}:
        for diff_empty in (False, True):
            if k1 == 0 and _stage2_len(config, k1, num_steps) == 0:
                continue  # such a plan reuses nothing
            start, actions, _ = _layout(config, k1, num_steps, diff_empty, everything)
            steps.add(start)
            steps.update(k + 1 for k, a in enumerate(actions) if a is Action.REGION_TGAA)
    return tuple(sorted(steps))
