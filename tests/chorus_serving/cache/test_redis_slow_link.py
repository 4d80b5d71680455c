"""A slow link to a real redis-server: a timeout is a warned miss within a bound, never a retry storm.

The link is a TCP proxy on loopback that holds every reply from Redis for ``delay`` seconds and/or
carries ``bandwidth`` bytes/s (unlimited at first, so the cache can be filled quickly), and counts
the WATCH commands, i.e. insert attempts. A large entry over a narrow link times out on EXEC, after
WATCH succeeded: redis-py reports that as a WatchError, which the insert used to retry 200 times.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
import warnings

import pytest
from cache_helpers import make_entry, make_key, unit
from npu_ops.chorus.cache import BackendUnavailableError, ChorusCacheWarning, RedisBackend, RequestCache

TIMEOUT = 0.2
BOUND = 3 * TIMEOUT + 0.2  # the documented bound (3 socket timeouts) plus slack for a loaded machine
MAX_ATTEMPTS = 8  # WATCH conflict tries per insert


class SlowProxy:
    """127.0.0.1:<port> -> Redis, each reply held for ``delay`` seconds; counts WATCH commands."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.delay = 0.0
        self.bandwidth = 0.0  # bytes/s each way; 0: unlimited
        self.watches = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._socks += [client, upstream]
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, up), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, to_redis: bool) -> None:
        try:
            while not self._stop.is_set():
                data = src.recv(1 << 16)
                if not data:
                    break
                if to_redis:
                    with self._lock:
                        self.watches += data.upper().count(b"$5\r\nWATCH\r\n")  # not UNWATCH
                elif self.delay:
                    time.sleep(self.delay)
                if self.bandwidth:
                    time.sleep(len(data) / self.bandwidth)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.delay = self.bandwidth = 0.0  # let the pumps drain and see the stop flag
        self._stop.set()
        self._listener.close()
        with self._lock:
            for s in self._socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)  # wakes a pump blocked in recv (close alone does not)
                except OSError:
                    pass
                s.close()
        for t in self._threads:
            t.join(5)


@pytest.fixture
def slow_link(redis_server, request):
    proxy = SlowProxy(redis_server.port)
    yield proxy
    proxy.close()


def _entry(prompt, embedding, **kw):
    e = make_entry(prompt, embedding, **kw)
    e.entry_id = uuid.uuid4().hex  # RequestCache.insert would assign one; the backend needs it set
    return e


def _filled_backend(proxy: SlowProxy, namespace: str, n: int = 4, **kw) -> RedisBackend:
    backend = RedisBackend(proxy.url, namespace=namespace, socket_timeout=TIMEOUT, **kw)
    backend.clear()
    for i in range(n):
        assert backend.insert(_entry(f"filler {i}", unit(50 + i)), budget=1 << 30, policy="lru").ok
    return backend


LINKS = {
    "reply-past-timeout": dict(delay=1.5 * TIMEOUT),
    "slow-round-trips": dict(delay=0.9 * TIMEOUT),  # each reply in time, an insert's 5 round trips not
    "large-entry-narrow-link": dict(bandwidth=1e6),
}


@pytest.mark.parametrize("link", list(LINKS))
def test_insert_over_a_slow_link_is_bounded_and_not_retried(slow_link, link):
    backend = _filled_backend(slow_link, f"slow-insert-{link}")
    big = link.startswith("large")
    entry = _entry("over the slow link", unit(7), shape=(1, 16, 4, 32, 32) if big else (1, 4, 2, 4, 4))
    for name, v in LINKS[link].items():
        setattr(slow_link, name, v)
    slow_link.watches = 0
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="Timeout|deadline"):
        backend.insert(entry, budget=1 << 30, policy="lru")
    elapsed = time.monotonic() - t0
    assert elapsed <= BOUND, f"a slow Redis held an insert for {elapsed:.2f} s ({slow_link.watches} attempts)"
    assert slow_link.watches <= 1, f"a timeout was retried: {slow_link.watches} attempts"
    backend.close()


@pytest.mark.parametrize("link", ["slow-round-trips", "large-entry-narrow-link"])
def test_request_cache_over_a_slow_link_is_a_warned_miss_in_bounded_time(slow_link, link):
    backend = _filled_backend(slow_link, f"slow-cache-{link}", retry_interval=0.0)  # no fast-fail: each call waits
    cache = RequestCache(backend, budget_bytes=1 << 30)
    assert cache.lookup(make_key(), unit(50)) is not None
    for name, v in LINKS[link].items():
        setattr(slow_link, name, v)
    slow_link.watches = 0
    shape = (1, 16, 4, 32, 32) if link.startswith("large") else (1, 4, 2, 4, 4)
    worst = 0.0
    for i in range(3):
        for call in (
            lambda i=i: cache.insert(make_entry(f"slow request {i}", unit(70 + i), shape=shape)),
            lambda i=i: cache.lookup(make_key(), unit(50 + i), min_similarity=0.99),
        ):
            t0 = time.monotonic()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = call()  # no exception into the request
            worst = max(worst, time.monotonic() - t0)
            if isinstance(result, bool):
                assert result is False, "an insert over the slow link reported success"
                assert any(issubclass(w.category, ChorusCacheWarning) for w in caught), "the miss was not warned"
    # A lookup over a slow link may still succeed in time; what matters is that no call waits long.
    assert worst <= BOUND + 2 * TIMEOUT, f"a slow Redis held a request for {worst:.2f} s"
    assert slow_link.watches <= 3, f"timeouts were retried: {slow_link.watches} insert attempts for 3 inserts"
    slow_link.delay = 0.0
    time.sleep(0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.insert(make_entry("after the link recovered", unit(90)))
    backend.close()


def test_watch_conflicts_get_a_small_bounded_retry(redis_server, monkeypatch):
    """A real conflict on every try: a few attempts with back-off, then a warned miss, all in time."""
    import redis

    backend = RedisBackend(redis_server.url, namespace="always-conflict", socket_timeout=TIMEOUT)
    backend.clear()
    other = redis.Redis.from_url(redis_server.url)
    attempts = []
    real_smembers = redis.client.Pipeline.smembers

    def smembers_then_conflict(pipe, key):
        attempts.append(time.monotonic())
        out = real_smembers(pipe, key)
        other.incr("always-conflict:ver")  # another writer changes a watched key: EXEC aborts
        return out

    monkeypatch.setattr(redis.client.Pipeline, "smembers", smembers_then_conflict)
    cache = RequestCache(backend, budget_bytes=1 << 30)
    t0 = time.monotonic()
    with pytest.warns(ChorusCacheWarning, match="conflicting"):
        assert not cache.insert(make_entry("never gets in", unit(3)))
    elapsed = time.monotonic() - t0
    assert 2 <= len(attempts) <= MAX_ATTEMPTS, f"{len(attempts)} attempts"
    assert elapsed <= BOUND, f"conflict retries took {elapsed:.2f} s"
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    assert all(g > 0 for g in gaps)
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.insert(make_entry("gets in now", unit(4)))  # one conflict-free try suffices
    backend.close()
