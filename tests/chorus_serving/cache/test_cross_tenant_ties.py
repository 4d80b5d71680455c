"""Issue 12 failure 7: with ``cross_tenant=True``, a tenant must get its own entry when another
tenant's entry is equally similar (ties prefer the requesting tenant, then the smaller id), on
every backend and whatever the insertion order or the worker that learnt the entries."""

from __future__ import annotations

import numpy as np
import pytest
from cache_helpers import make_entry, make_key, near, unit
from npu_ops.chorus.cache import RequestCache

# Ids chosen so that the plain "smaller id wins" rule picks the other tenant's entry.
_OTHER_ID, _OWN_ID = "a" * 32, "f" * 32


def _pair(emb_own, emb_other):
    own = make_entry("own prompt", emb_own, make_key(tenant="alice"))
    own.entry_id = _OWN_ID
    other = make_entry("other prompt", emb_other, make_key(tenant="bob"))
    other.entry_id = _OTHER_ID
    return own, other


@pytest.mark.parametrize("own_first", [True, False])
def test_own_entry_wins_an_exact_tie(backend_factory, own_first):
    v = unit(1)
    own, other = _pair(v.copy(), v.copy())
    cache = RequestCache(backend_factory(), cross_tenant=True)
    for e in (own, other) if own_first else (other, own):
        assert cache.insert(e)
    for tenant, expect in (("alice", _OWN_ID), ("bob", _OTHER_ID)):
        for _ in range(3):  # deterministic, not first-come
            m = cache.lookup(make_key(tenant=tenant), v)
            assert m is not None and m.entry.entry_id == expect, (tenant, m and m.entry.entry_id)
            assert m.entry.key.tenant == tenant
    # A third tenant owns neither: the id tie-break decides, as before.
    m = cache.lookup(make_key(tenant="carol"), v)
    assert m is not None and m.entry.entry_id == _OTHER_ID


def test_tie_within_rounding_prefers_own_entry(backend_factory):
    """Vectors equal up to float rounding (float32 storage, a different scaling) still tie."""
    v = unit(2)
    own, other = _pair((v * np.float32(3.0)).astype(np.float32), v.astype(np.float64))
    cache = RequestCache(backend_factory(), cross_tenant=True)
    assert cache.insert(other) and cache.insert(own)
    m = cache.lookup(make_key(tenant="alice"), v)
    assert m is not None and m.entry.entry_id == _OWN_ID


def test_a_more_similar_foreign_entry_still_wins(backend_factory):
    """The preference only breaks ties: a strictly better entry of another tenant is served."""
    v = unit(3)
    own, other = _pair(near(v, 0.2, seed=4), v.copy())
    cache = RequestCache(backend_factory(), cross_tenant=True)
    assert cache.insert(own) and cache.insert(other)
    m = cache.lookup(make_key(tenant="alice"), v)
    assert m is not None and m.entry.entry_id == _OTHER_ID


def test_second_worker_agrees(backend_factory):
    """A worker that learns the entries from the backend (not by inserting) picks the same one
    (the memory factory hands both workers the same backend instance)."""
    v = unit(5)
    own, other = _pair(v.copy(), v.copy())
    writer = RequestCache(backend_factory(), cross_tenant=True)
    assert writer.insert(own) and writer.insert(other)
    reader = RequestCache(backend_factory(), cross_tenant=True)
    m = reader.lookup(make_key(tenant="alice"), v)
    assert m is not None and m.entry.entry_id == _OWN_ID


def test_own_entry_deleted_falls_back_to_the_foreign_tie(backend_factory):
    v = unit(6)
    own, other = _pair(v.copy(), v.copy())
    cache = RequestCache(backend_factory(), cross_tenant=True)
    assert cache.insert(own) and cache.insert(other)
    assert cache.remove(_OWN_ID)
    m = cache.lookup(make_key(tenant="alice"), v)
    assert m is not None and m.entry.entry_id == _OTHER_ID


def test_index_prefer_survives_swap_remove():
    """``NumpyIndex`` keeps the owner tags aligned with rows when a removal moves the last row."""
    from npu_ops.chorus.cache import NumpyIndex

    v = unit(7)
    idx = NumpyIndex()
    for eid, owner in (("a", "bob"), ("b", "carol"), ("c", "bob"), ("z", "alice")):
        idx.add(eid, "g", v, owner=owner)
    assert idx.search("g", v, k=4, prefer="alice")[0][0] == "z"
    assert idx.remove("a")  # "z" moves into row 0
    assert [e for e, _ in idx.search("g", v, k=3, prefer="alice")] == ["z", "b", "c"]
    assert [e for e, _ in idx.search("g", v, k=3, prefer="bob")] == ["c", "b", "z"]
    assert [e for e, _ in idx.search("g", v, k=3)] == ["b", "c", "z"]
