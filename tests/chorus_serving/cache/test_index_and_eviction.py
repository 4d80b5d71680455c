"""NumpyIndex (exact, grouped, deterministic) and the eviction orders, without a backend."""

from __future__ import annotations

import numpy as np
import pytest
from npu_ops.chorus.cache import EntryStats, NumpyIndex
from npu_ops.chorus.cache.eviction import choose_victims, eviction_order


def test_index_matches_brute_force_and_survives_removals():
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((300, 24))
    idx = NumpyIndex()
    groups = {}
    for i, v in enumerate(vecs):
        g = f"g{i % 3}"
        idx.add(f"id{i:03d}", g, v)
        groups[f"id{i:03d}"] = g
    removed = {f"id{i:03d}" for i in rng.choice(300, 120, replace=False)}
    for eid in sorted(removed):
        assert idx.remove(eid)
    assert not idx.remove(next(iter(removed)))
    assert len(idx) == 180
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    for _ in range(20):
        q = rng.standard_normal(24)
        qn = q / np.linalg.norm(q)
        for g in ("g0", "g1", "g2"):
            live = [i for i in range(300) if f"id{i:03d}" not in removed and groups[f"id{i:03d}"] == g]
            sims = unit[live] @ qn
            want = [f"id{live[j]:03d}" for j in np.argsort(-sims, kind="stable")[:5]]
            got = idx.search(g, q, k=5)
            assert [e for e, _ in got] == want
            assert [s for _, s in got] == pytest.approx(sorted(sims, reverse=True)[:5], abs=1e-9)
            thr = float(np.sort(sims)[-3]) - 1e-8  # scores are rounded to 1e-9
            assert len(idx.search(g, q, min_similarity=thr, k=100)) == 3
    assert idx.search("nope", rng.standard_normal(24)) == []


def test_index_ties_go_to_smaller_id_whatever_the_insertion_order():
    v = np.ones(8)
    for order in (["c", "a", "b"], ["b", "c", "a"], ["a", "b", "c"]):
        idx = NumpyIndex()
        for eid in order:
            idx.add(eid, "g", v * (1 + ord(eid)))  # same direction, different norms
        assert [e for e, _ in idx.search("g", v, k=3)] == ["a", "b", "c"]


def test_index_dim_check_and_replace():
    idx = NumpyIndex(4)
    with pytest.raises(ValueError, match="must have dim 4"):
        idx.add("x", "g", np.ones(5))
    idx.add("x", "g", np.array([1.0, 0, 0, 0]))
    idx.add("x", "h", np.array([0, 1.0, 0, 0]))  # replace: moves group
    assert idx.search("g", np.ones(4)) == [] and idx.search("h", np.array([0, 1.0, 0, 0]))[0][0] == "x"


def _stats(**rows):
    return {k: EntryStats(hits=h, created=c, last_used=u, compute_saved=s) for k, (h, c, u, s) in rows.items()}


def test_eviction_orders():
    st = _stats(
        a=(0, 1.0, 1.0, 0.0),  # oldest, never hit
        b=(5, 2.0, 9.0, 1.0),  # many cheap hits, recent
        c=(1, 3.0, 4.0, 3.0),  # one valuable hit
        d=(0, 4.0, 4.0, 0.0),  # newer, never hit
    )
    assert eviction_order("lru", st) == ["a", "c", "d", "b"]  # c and d tie at 4.0: older created first
    assert eviction_order("lfu", st) == ["a", "d", "c", "b"]
    assert eviction_order("cost", st) == ["a", "d", "b", "c"]  # saved 0, 0, 1, 3
    with pytest.raises(ValueError, match="eviction must be one of"):
        eviction_order("mru", st)


def test_choose_victims_is_minimal():
    st = _stats(a=(0, 1.0, 1.0, 0.0), b=(0, 2.0, 2.0, 0.0), c=(0, 3.0, 3.0, 0.0))
    sizes = {"a": 10, "b": 10, "c": 10}
    assert choose_victims("lru", st, sizes, 5, 40) == []
    assert choose_victims("lru", st, sizes, 15, 40) == ["a", "b"][:1]
    assert choose_victims("lru", st, sizes, 25, 40) == ["a", "b"]
    assert choose_victims("lru", st, sizes, 40, 40) == ["a", "b", "c"]
    assert choose_victims("lru", st, sizes, 41, 40) is None
