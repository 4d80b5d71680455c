"""Eviction policies: which entries leave first when an insertion needs room.

* ``lru``: least recently used first (``last_used``; a hit via ``record_hit`` refreshes it).
* ``lfu``: fewest hits first, then least recently used.
* ``cost``: NIRVANA's LCBFU (least cost-benefit x frequency used): score = hit frequency x
  compute saved per hit, i.e. ``hits * (compute_saved / hits)`` = the NFE-equivalents the entry
  has saved so far; lowest first, then least recently used. An entry that was never hit scores 0.

Every order ends with ``created`` then the entry id, so it is total and deterministic and every
backend and worker evicts the same entries given the same statistics.
"""

from __future__ import annotations

from collections.abc import Mapping

from .entry import EntryStats

__all__ = ["EVICTION_POLICIES", "eviction_order", "choose_victims", "check_eviction"]

EVICTION_POLICIES = ("lru", "lfu", "cost")


def check_eviction(eviction: object) -> str:
    if eviction not in EVICTION_POLICIES:
        raise ValueError(f"eviction must be one of {EVICTION_POLICIES}, got {eviction!r}")
    return eviction  # type: ignore[return-value]


def _score(policy: str, s: EntryStats) -> tuple:
    if policy == "lru":
        return (s.last_used,)
    if policy == "lfu":
        return (s.hits, s.last_used)
    # cost: frequency x mean saving per hit (0 for a never-hit entry).
    saved_per_hit = s.compute_saved / s.hits if s.hits > 0 else 0.0
    return (s.hits * saved_per_hit, s.last_used)


def eviction_order(policy: str, stats: Mapping[str, EntryStats]) -> list[str]:
    """All entry ids, first to evict first."""
    check_eviction(policy)
    return sorted(stats, key=lambda eid: (*_score(policy, stats[eid]), stats[eid].created, eid))


def choose_victims(
    policy: str, stats: Mapping[str, EntryStats], sizes: Mapping[str, int], need: int, budget: int
) -> list[str] | None:
    """Fewest entries, in policy order, whose removal makes ``used + need <= budget``.

    Returns None when ``need`` alone exceeds the budget (nothing is evicted then).
    """
    if need > budget:
        return None
    used = sum(sizes.values())
    victims: list[str] = []
    for eid in eviction_order(policy, stats):
        if used + need <= budget:
            break
        victims.append(eid)
        used -= sizes[eid]
    return victims
