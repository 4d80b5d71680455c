"""Worker process for the two-process Redis test (spawned; imports only what it needs)."""

from __future__ import annotations

import warnings


def serve(url: str, namespace: str, worker: int, budget: int, phase_events, out) -> None:
    """Phase 1: worker 1 inserts, worker 2 finds it. Phase 2: both insert under ``budget``."""
    from cache_helpers import assert_untorn, make_entry, make_key, unit
    from npu_ops.chorus.cache import RedisBackend, RequestCache

    warnings.simplefilter("error")  # any cache warning (outage, corruption) fails the worker
    inserted, looked, ready = phase_events
    cache = RequestCache(RedisBackend(url, namespace=namespace, socket_timeout=5.0), budget_bytes=budget)
    result = {"worker": worker}
    if worker == 1:
        e = make_entry("shared by worker one", unit(4242))
        result["inserted"] = cache.insert(e)
        result["entry_id"] = e.entry_id
        inserted.set()
    else:
        assert inserted.wait(30), "worker 1 never inserted"
        m = cache.lookup(make_key(), unit(4242), min_similarity=0.999)
        result["found"] = None if m is None else m.entry.entry_id
        if m is not None:
            assert_untorn(m.entry)
        looked.set()
    assert ready.wait(60), "phase 2 never started"
    worst, hits = 0, 0
    for i in range(25):
        cache.insert(make_entry(f"w{worker} request {i}", unit(10_000 * worker + i)))
        worst = max(worst, cache.nbytes())
        other = 3 - worker
        m = cache.lookup(make_key(), unit(10_000 * other + i))
        if m is not None:
            assert_untorn(m.entry)
            hits += 1
    result["worst"] = worst
    result["hits"] = hits
    out.put(result)
