"""RedisBackend against a real redis-server: sync between workers, outages, slowness, corruption."""

from __future__ import annotations

import threading
import time
import warnings

import pytest
import redis
from cache_helpers import make_entry, make_key, unit
from npu_ops.chorus.cache import ChorusCacheWarning, RedisBackend, RequestCache

BIG = 1 << 30


def _cache(url, **kw):
    backend_kw = {k: kw.pop(k) for k in ("socket_timeout", "retry_interval", "namespace", "log_size") if k in kw}
    return RequestCache(RedisBackend(url, **backend_kw), budget_bytes=kw.pop("budget_bytes", BIG), **kw)


def test_workers_follow_each_other(redis_server):
    a = _cache(redis_server.url, namespace="follow")
    b = _cache(redis_server.url, namespace="follow")
    a.clear()
    assert b.lookup(make_key(), unit(1)) is None
    e1, e2 = make_entry("one", unit(1)), make_entry("two", unit(2))
    assert a.insert(e1) and a.insert(e2)
    assert b.lookup(make_key(), unit(1)).entry.entry_id == e1.entry_id
    assert a.remove(e1.entry_id)
    assert b.lookup(make_key(), unit(1), min_similarity=0.99) is None
    # A trimmed change log leaves a gap in the version numbers: b rebuilds its index.
    e3 = make_entry("three", unit(3))
    assert a.insert(e3)
    redis.Redis.from_url(redis_server.url).xtrim("follow:log", maxlen=0)
    assert b.lookup(make_key(), unit(3)).entry.entry_id == e3.entry_id
    # Another namespace is another cache.
    assert _cache(redis_server.url, namespace="elsewhere").lookup(make_key(), unit(3)) is None


def test_eviction_by_another_worker_is_never_served(redis_server):
    probe = make_entry("p second", unit(0))
    budget = 2 * probe.nbytes() + 10  # two entries
    a = _cache(redis_server.url, namespace="evict", budget_bytes=budget)
    b = _cache(redis_server.url, namespace="evict", budget_bytes=budget)
    a.clear()
    first = make_entry("p first", unit(1))
    assert a.insert(first) and a.insert(make_entry("p second", unit(2)))
    assert b.lookup(make_key(), unit(1)).entry.entry_id == first.entry_id  # b indexes it
    assert a.insert(make_entry("p third", unit(3)))  # evicts 'first' (LRU)
    m = b.lookup(make_key(), unit(1))
    assert m.entry.entry_id != first.entry_id and a.nbytes() <= budget


@pytest.mark.parametrize("what", ["blob", "meta"])
def test_corrupt_redis_entry_is_a_warned_miss(redis_server, what):
    cache = _cache(redis_server.url, namespace=f"corrupt-{what}")
    cache.clear()
    e = make_entry("x", unit(1))
    assert cache.insert(e)
    r = redis.Redis.from_url(redis_server.url)
    if what == "blob":
        blob = r.get(f"corrupt-blob:blob:{e.entry_id}")
        r.set(f"corrupt-blob:blob:{e.entry_id}", blob[:-5])
    else:
        r.hset(f"corrupt-meta:meta:{e.entry_id}", "meta", "{broken")
    with pytest.warns(ChorusCacheWarning, match="corrupt"):
        assert cache.lookup(make_key(), unit(1)) is None
    assert len(cache) == 0 and cache.nbytes() == 0


def test_redis_killed_mid_run_degrades_and_recovers(private_redis_server):
    server = private_redis_server
    a = _cache(server.url, socket_timeout=0.5, retry_interval=0.2)
    b = _cache(server.url, socket_timeout=0.5, retry_interval=0.2)
    e1 = make_entry("before the crash", unit(1))
    assert a.insert(e1)
    assert b.lookup(make_key(), unit(1)).entry.entry_id == e1.entry_id
    server.stop()
    t0 = time.monotonic()
    with pytest.warns(ChorusCacheWarning, match="Redis unavailable|marked down"):
        assert b.lookup(make_key(), unit(1)) is None
    with pytest.warns(ChorusCacheWarning):
        assert not a.insert(make_entry("during the outage", unit(2)))
    with pytest.warns(ChorusCacheWarning):
        a.record_hit(e1.entry_id, 1.0)
    with pytest.warns(ChorusCacheWarning):
        assert a.entries() == []
    assert time.monotonic() - t0 < 3.0
    server.start()  # same port, empty (no persistence)
    time.sleep(0.25)  # past retry_interval
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert b.lookup(make_key(), unit(1)) is None  # the old entry is gone with the old server
        e3 = make_entry("after the restart", unit(3))
        assert a.insert(e3)
        assert b.lookup(make_key(), unit(3)).entry.entry_id == e3.entry_id
        assert len(a) == 1


def test_slow_redis_is_a_miss_not_a_hang(private_redis_server):
    server = private_redis_server
    cache = _cache(server.url, socket_timeout=0.3, retry_interval=0.2)
    e = make_entry("x", unit(1))
    assert cache.insert(e)
    assert cache.lookup(make_key(), unit(1)) is not None
    blocker = threading.Thread(
        target=lambda: redis.Redis.from_url(server.url, socket_timeout=10).execute_command("DEBUG", "SLEEP", "2")
    )
    blocker.start()
    time.sleep(0.2)  # the server is now stuck in DEBUG SLEEP
    t0 = time.monotonic()
    with pytest.warns(ChorusCacheWarning, match="Timeout|timed out|marked down"):
        assert cache.lookup(make_key(), unit(1)) is None
    with pytest.warns(ChorusCacheWarning):
        assert not cache.insert(make_entry("y", unit(2)))  # fails fast: marked down
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"a stalled Redis held the request for {elapsed:.2f} s"
    blocker.join()
    time.sleep(0.25)
    m = cache.lookup(make_key(), unit(1))
    assert m is not None and m.entry.entry_id == e.entry_id


def test_no_redis_at_startup_is_a_miss():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache = _cache(f"redis://127.0.0.1:{port}/0", socket_timeout=0.3)
    t0 = time.monotonic()
    with pytest.warns(ChorusCacheWarning, match="Redis unavailable"):
        assert cache.lookup(make_key(), unit(1)) is None
    with pytest.warns(ChorusCacheWarning):
        assert not cache.insert(make_entry("x", unit(1)))
    with pytest.warns(ChorusCacheWarning):
        assert len(cache) == 0
    assert time.monotonic() - t0 < 2.0
