"""Concurrent threads and processes: the budget holds and no torn entry is ever returned."""

from __future__ import annotations

import multiprocessing as mp
import threading

import pytest
import redis
from cache_helpers import assert_untorn, make_entry, make_key, unit
from npu_ops.chorus.cache import RedisBackend, RequestCache

# Backend trouble (a corrupt or torn entry, an outage) would warn: here any such warning fails.
pytestmark = pytest.mark.filterwarnings("error::npu_ops.chorus.cache.ChorusCacheWarning")


def test_threads_keep_budget_and_never_see_torn_entries(backend_factory):
    probe = make_entry("t0 entry 00", unit(0), shape=(1, 4, 2, 8, 8))
    budget = 5 * probe.nbytes() + 50
    backend = backend_factory()
    caches = [RequestCache(backend, budget_bytes=budget, eviction=p) for p in ("lru", "lfu", "cost", "lru")]
    errors, worst = [], [0]
    stop = threading.Event()

    def monitor():
        while not stop.is_set():
            worst[0] = max(worst[0], backend.total_bytes())

    def work(t):
        cache = caches[t]
        try:
            for i in range(12):
                e = make_entry(f"t{t} entry {i:02d}", unit(100 * t + i), shape=(1, 4, 2, 8, 8))
                assert cache.insert(e)
                for other in range(4):
                    m = cache.lookup(make_key(), unit(100 * other + i))
                    if m is not None:
                        assert_untorn(m.entry)
                        cache.record_hit(m.entry.entry_id, 1.0)
        except BaseException as ex:  # noqa: BLE001 - reported below
            errors.append(ex)

    mon = threading.Thread(target=monitor)
    mon.start()
    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stop.set()
    mon.join()
    assert not errors, errors
    assert worst[0] <= budget
    final = backend.records()
    assert len(final) == 5 and sum(r.nbytes for r in final) == backend.total_bytes() <= budget
    for r in final:
        assert_untorn(caches[0].get(r.entry_id))


def test_two_processes_share_one_redis(redis_server):
    import cache_mp_worker

    ns = "two-workers"
    probe = make_entry("w1 request 10", unit(0))
    budget = 6 * probe.nbytes() + 50
    RedisBackend(redis_server.url, namespace=ns).clear()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    events = (ctx.Event(), ctx.Event(), ctx.Event())  # inserted, looked up, phase 2
    procs = [
        ctx.Process(target=cache_mp_worker.serve, args=(redis_server.url, ns, w, budget, events, out)) for w in (1, 2)
    ]
    for p in procs:
        p.start()
    # Phase 2 starts when both are up and phase 1 is done; sample the shared byte counter meanwhile.
    r = redis.Redis.from_url(redis_server.url)
    results = []
    assert events[1].wait(90), "worker 2 never looked up"  # before any phase-2 insert can evict
    events[2].set()
    worst_seen = 0
    while len(results) < 2:
        worst_seen = max(worst_seen, int(r.get(f"{ns}:bytes") or 0))
        try:
            results.append(out.get(timeout=0.01))
        except Exception:  # noqa: BLE001 - queue.Empty
            if any(p.exitcode not in (None, 0) for p in procs):
                break
    for p in procs:
        p.join(60)
        assert p.exitcode == 0, f"worker exited with {p.exitcode}"
    by = {res["worker"]: res for res in results}
    assert by[1]["inserted"] and by[2]["found"] == by[1]["entry_id"]
    assert max(by[1]["worst"], by[2]["worst"], worst_seen) <= budget
    # The shared byte counter agrees with the stored entries, and the budget holds.
    backend = RedisBackend(redis_server.url, namespace=ns)
    records = backend.records()
    assert sum(rec.nbytes for rec in records) == backend.total_bytes() <= budget
    assert len(records) == 6
