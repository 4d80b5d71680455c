"""RequestCache on every backend: exact round trips, search, thresholds, eviction, tenants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cache_helpers import make_entry, make_key, near, unit
from npu_ops.chorus.cache import CacheMatch, RequestCache

# Backend trouble (a corrupt or torn entry, an outage) would warn: here any such warning fails.
pytestmark = pytest.mark.filterwarnings("error::npu_ops.chorus.cache.ChorusCacheWarning")

BIG = 1 << 30


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_round_trip_is_bit_exact(backend_factory, dtype):
    cache = RequestCache(backend_factory(), budget_bytes=BIG)
    entry = make_entry("a red fox in snow", unit(1), dtype=dtype, random_latents=True, steps=(0, 1, 4), seed=123)
    entry.stats.full_nfe = 4.0
    # Non-contiguous input latent: stored contiguous, same values.
    entry.latents[1] = entry.latents[1].transpose(-1, -2)
    original = {k: t.clone() for k, t in entry.latents.items()}
    assert cache.insert(entry)
    assert len(entry.entry_id) == 32 and entry.stats.created > 0

    # A second instance on the same storage (the same object for the in-memory backend).
    cache2 = RequestCache(backend_factory(), budget_bytes=BIG)
    for c in (cache, cache2):
        m = c.lookup(entry.key, unit(1), min_similarity=0.999)
        assert isinstance(m, CacheMatch)
        got = m.entry
        assert got.entry_id == entry.entry_id and got.prompt == entry.prompt and got.seed == 123
        assert got.token_ids == entry.token_ids and got.key == entry.key
        assert got.stats.full_nfe == 4.0
        assert np.array_equal(got.embedding, entry.embedding) and got.embedding.dtype == np.float32
        assert sorted(got.latents) == [0, 1, 4]
        for k, t in original.items():
            assert got.latents[k].dtype == dtype and got.latents[k].shape == t.shape
            # bit-exact: compare the raw bits, not values (NaN-safe, -0.0-safe)
            assert torch.equal(got.latents[k].contiguous().view(torch.uint8), t.contiguous().view(torch.uint8))
        assert m.similarity == pytest.approx(1.0, abs=1e-6)
    # The caller mutating a returned latent never changes the cache.
    m.entry.latents[0].zero_()
    again = cache.lookup(entry.key, unit(1))
    assert torch.equal(again.entry.latents[0], original[0])


def test_special_values_round_trip(backend_factory):
    cache = RequestCache(backend_factory(), budget_bytes=BIG)
    e = make_entry("specials", unit(2), steps=(0,))
    e.latents[0] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 1e-45])
    e.token_ids = []
    assert cache.insert(e)
    got = cache.lookup(e.key, unit(2)).entry
    assert torch.equal(got.latents[0].view(torch.int32), e.latents[0].view(torch.int32))
    assert got.token_ids == []


def test_lookup_picks_most_similar_within_class(backend_factory):
    cache = RequestCache(backend_factory(), budget_bytes=BIG)
    base = unit(10)
    key = make_key()
    other_class = make_key(height=64)
    close, far = near(base, 0.05, 1), near(base, 0.5, 2)
    assert cache.insert(make_entry("far", far, key))
    assert cache.insert(make_entry("close", close, key))
    assert cache.insert(make_entry("other-class-exact", base, other_class))  # identical prompt, other class
    assert cache.insert(make_entry("unrelated", unit(99), key))
    m = cache.lookup(key, base)
    assert m.entry.prompt == "close"
    expect = float(np.dot(close.astype(np.float64), base.astype(np.float64)))
    assert m.similarity == pytest.approx(expect, abs=1e-6)
    assert cache.lookup(other_class, base).entry.prompt == "other-class-exact"
    assert cache.lookup(make_key(num_steps=2, sigmas=(1.0, 0.5, 0.0)), base) is None  # empty class


def test_thresholds(backend_factory):
    cache = RequestCache(backend_factory(), budget_bytes=BIG)
    base = unit(20)
    q = near(base, 0.3, 3)
    sim = float(np.dot(base.astype(np.float64), q.astype(np.float64)))
    assert cache.insert(make_entry("base", base))
    assert cache.lookup(make_key(), q, min_similarity=sim - 1e-4).entry.prompt == "base"
    assert cache.lookup(make_key(), q, min_similarity=min(1.0, sim + 1e-4)) is None
    assert cache.lookup(make_key(), -base, min_similarity=-1.0).similarity == pytest.approx(-1.0, abs=1e-6)
    assert cache.lookup(make_key(), -base, min_similarity=0.0) is None


def test_tie_break_is_deterministic(backend_factory):
    cache = RequestCache(backend_factory(), budget_bytes=BIG)
    v = unit(30)
    for eid in ("bbb", "aaa", "ccc"):
        e = make_entry(f"p-{eid}", v)
        e.entry_id = eid
        assert cache.insert(e)
    assert cache.lookup(make_key(), v).entry.entry_id == "aaa"


def test_tenant_isolation_and_opt_in_sharing(backend_factory):
    backend = backend_factory()
    isolated = RequestCache(backend, budget_bytes=BIG)
    v = unit(40)
    assert isolated.insert(make_entry("secret of tenant a", v, make_key(tenant="a")))
    assert isolated.lookup(make_key(tenant="b"), v) is None
    assert isolated.lookup(make_key(tenant="a"), v).entry.prompt == "secret of tenant a"
    shared = RequestCache(backend, budget_bytes=BIG, cross_tenant=True)
    m = shared.lookup(make_key(tenant="b"), v)
    assert m is not None and m.entry.key.tenant == "a"
    # Sharing across tenants still never crosses other parts of the class.
    assert shared.lookup(make_key(tenant="b", dtype="bfloat16"), v) is None


def test_metadata_view_len_nbytes(backend_factory):
    cache = RequestCache(backend_factory(), budget_bytes=BIG)
    entries = [make_entry(f"prompt {i}", unit(50 + i)) for i in range(3)]
    for e in entries:
        assert cache.insert(e)
    assert len(cache) == 3
    assert cache.nbytes() == sum(e.nbytes() for e in entries)
    view = {e.entry_id: e for e in cache.entries()}
    assert set(view) == {e.entry_id for e in entries}
    assert all(v.latents == {} for v in view.values())
    assert cache.remove(entries[0].entry_id) and not cache.remove(entries[0].entry_id)
    assert cache.lookup(make_key(), unit(50), min_similarity=0.99) is None
    assert len(cache) == 2


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def _fill(cache, n, base_seed):
    entries = []
    for i in range(n):
        e = make_entry(f"entry {i}", unit(base_seed + i))
        assert cache.insert(e)
        entries.append(e)
    return entries


@pytest.mark.parametrize(
    "policy, hits, expect_evicted",
    [
        # hits: entry index -> list of compute_saved per hit (in this order, times increasing)
        ("lru", {0: [1.0], 2: [1.0]}, 1),  # 1 is least recently used (0 and 2 were hit later)
        ("lfu", {0: [1.0, 1.0], 1: [1.0], 2: [1.0, 1.0]}, 1),  # 1 has the fewest hits
        ("lfu", {}, 0),  # no hits: the least recently used (oldest) goes
        ("cost", {0: [0.5, 0.5, 0.5], 1: [3.0], 2: [2.0, 2.0]}, 0),  # saved: 1.5 < 3 < 4
        ("cost", {1: [0.1]}, 0),  # never-hit entries score 0; ties -> least recently used
    ],
)
def test_eviction_order_and_budget(backend_factory, policy, hits, expect_evicted):
    clock = FakeClock()
    probe = make_entry("entry 0", unit(0))
    budget = 3 * probe.nbytes() + 10  # room for exactly three entries
    cache = RequestCache(backend_factory(), budget_bytes=budget, eviction=policy, clock=clock)
    entries = _fill(cache, 3, 100)
    for i, saves in hits.items():
        for s in saves:
            cache.record_hit(entries[i].entry_id, s)
    newcomer = make_entry("entry 3", unit(103))
    assert cache.insert(newcomer)
    left = {e.entry_id for e in cache.entries()}
    assert entries[expect_evicted].entry_id not in left
    assert left == {e.entry_id for e in entries + [newcomer]} - {entries[expect_evicted].entry_id}
    assert cache.nbytes() <= budget
    assert cache.lookup(make_key(), unit(100 + expect_evicted), min_similarity=0.999) is None


def test_stats_are_recorded(backend_factory):
    clock = FakeClock()
    cache = RequestCache(backend_factory(), budget_bytes=BIG, clock=clock)
    e = make_entry("x", unit(7))
    assert cache.insert(e)
    cache.record_hit(e.entry_id, 1.5)
    cache.record_hit(e.entry_id, 0.25)
    last_hit = clock.t
    cache.record_hit("no-such-entry", 1.0)  # evicted meanwhile: ignored
    (view,) = cache.entries()
    assert view.stats.hits == 2 and view.stats.compute_saved == pytest.approx(1.75)
    assert view.stats.last_used == last_hit and view.stats.created < view.stats.last_used


def test_budget_with_many_inserts_of_mixed_sizes(backend_factory):
    budget = 40_000
    cache = RequestCache(backend_factory(), budget_bytes=budget, eviction="lru")
    rng = np.random.default_rng(0)
    inserted = 0
    for i in range(40):
        n = int(rng.integers(1, 12))
        e = make_entry(f"mixed {i}", unit(200 + i), shape=(n, 4, 4, 8, 8))
        ok = cache.insert(e)
        assert ok == (e.nbytes() <= budget)
        inserted += ok
        assert cache.nbytes() <= budget
        assert cache.nbytes() == sum(x.nbytes() for x in [cache.get(v.entry_id) for v in cache.entries()])
    assert inserted > 10


def test_entry_larger_than_budget_is_refused_without_evicting(backend_factory):
    cache = RequestCache(backend_factory(), budget_bytes=20_000)
    small = make_entry("small", unit(1))
    assert cache.insert(small)
    huge = make_entry("huge", unit(2), shape=(1, 16, 4, 16, 16))
    assert huge.nbytes() > 20_000
    assert not cache.insert(huge)
    assert [e.entry_id for e in cache.entries()] == [small.entry_id]
