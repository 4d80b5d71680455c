"""``RedisBackend``: one cache shared by serving workers on several machines.

Keys under ``<ns>:`` (``ns`` = ``namespace``)::

    blob:<id>   safetensors bytes (latents, embedding, token ids)
    meta:<id>   hash: ``meta`` (JSON: key, prompt, token ids, embedding, checksum, ...) and the
                statistics as separate fields (``hits``, ``compute_saved``, ... for atomic updates)
    ids         set of entry ids;  bytes: bytes charged;  ver: change counter;  epoch: random token
    log         stream of changes (``op`` add/del, ``id``, ``ver``), trimmed to ``log_size``

Each worker keeps its own numpy index and follows ``log``; a gap in ``ver`` (trimmed log) or a new
``epoch`` (Redis restarted empty) makes it rebuild from ``ids``. Inserts run optimistically under
WATCH on ``ids``/``bytes``/``ver``: read statistics, choose victims with the shared eviction code,
then MULTI/EXEC; a concurrent writer aborts the EXEC and the step is retried, so the byte budget
holds across workers. Deletes and statistics updates are Lua scripts (atomic, and a statistics
update of an entry deleted meanwhile does not resurrect a partial hash).

Every command has a socket timeout; a failure raises ``BackendUnavailableError`` (the cache turns
it into a warning and a miss) and marks Redis down for ``retry_interval`` seconds, during which
calls fail at once instead of waiting again. redis-py reconnects on the next call after that.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Collection
from typing import Any

from ..entry import CacheEntry, EntryStats
from ..errors import BackendUnavailableError, CorruptEntryError
from ..eviction import choose_victims
from ..serialization import EntryRecord, entry_from_blob, entry_meta, entry_to_blob, meta_from_json, record_from_meta
from .base import CacheBackend, Changes, InsertResult, warn_cache

__all__ = ["RedisBackend"]

_STAT_FIELDS = ("hits", "created", "last_used", "compute_saved", "full_nfe")

# An insert starts no round trip later than this many socket timeouts after it began.
_INSERT_DEADLINE_TIMEOUTS = 2
# A WATCH conflict (another writer got in first) is retried, up to this many tries in all, the k-th
# retry after a jittered pause of about min(_CONFLICT_BACKOFF * 2**k, _CONFLICT_BACKOFF_MAX) s,
# within the deadline. Measured with 4 threads inserting into one budget: 35% of inserts conflict
# once, 1.3% three times; 8 tries makes running out (a warned miss) about a one-in-10^5 event.
_CONFLICT_TRIES = 8
_CONFLICT_BACKOFF = 0.002
_CONFLICT_BACKOFF_MAX = 0.05

# KEYS: meta, blob, ids, bytes, ver, log; ARGV: id, log_size. Returns 1 if the entry existed.
_DELETE_LUA = """
local nb = redis.call('HGET', KEYS[1], 'nbytes')
if not nb then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('DECRBY', KEYS[4], nb)
local v = redis.call('INCR', KEYS[5])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[2], '*', 'op', 'del', 'id', ARGV[1], 'ver', v)
return 1
"""

# KEYS: meta; ARGV: hits, compute_saved, last_used. Returns 1 if the entry exists.
_STATS_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'hits', ARGV[1])
redis.call('HINCRBYFLOAT', KEYS[1], 'compute_saved', ARGV[2])
redis.call('HSET', KEYS[1], 'last_used', ARGV[3])
return 1
"""


def _connection_failure(e: BaseException) -> BaseException | None:
    """The timeout or connection error behind a ``WatchError``, if it stands for one, else None."""
    import redis as redis_lib

    seen = e.__cause__ or e.__context__
    while seen is not None:
        if isinstance(seen, (redis_lib.exceptions.ConnectionError, redis_lib.exceptions.TimeoutError, OSError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    if "occurred while watching" in str(e):  # redis-py's wording when the context was lost
        return redis_lib.exceptions.ConnectionError(str(e))
    return None


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class RedisBackend(CacheBackend):
    """Cache entries in Redis (any version >= 6.2; no modules needed).

    Args:
        url: ``redis://host:port/db`` (ignored when ``client`` is given).
        namespace: key prefix; workers sharing a cache use the same one.
        socket_timeout: seconds a command may take before it counts as a failure (a miss); an insert
            takes at most about 3x this (it starts no round trip after 2x), whatever Redis does.
        retry_interval: seconds Redis is skipped after a failure.
        log_size: approximate length the change stream is trimmed to.
        client: a ready ``redis.Redis`` (its own timeouts apply; ``socket_timeout`` still sets the
            insert deadline).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "chorus",
        socket_timeout: float = 0.5,
        retry_interval: float = 1.0,
        log_size: int = 100_000,
        client: Any = None,
    ) -> None:
        try:
            import redis as redis_lib
        except ImportError as e:
            raise ImportError("RedisBackend needs the 'redis' package: pip install 'npu_ops[chorus]'") from e

        if not isinstance(namespace, str) or not namespace or any(c.isspace() for c in namespace):
            raise ValueError(f"RedisBackend: namespace must be a non-empty str without spaces, got {namespace!r}")
        for name, v in (("socket_timeout", socket_timeout), ("retry_interval", retry_interval)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf"):
                raise ValueError(f"RedisBackend: {name} must be a finite number >= 0, got {v!r}")
        if socket_timeout == 0:
            raise ValueError("RedisBackend: socket_timeout must be > 0, got 0")
        if isinstance(log_size, bool) or not isinstance(log_size, int) or log_size < 1:
            raise ValueError(f"RedisBackend: log_size must be an int >= 1, got {log_size!r}")
        self._redis = redis_lib
        if client is None:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            client = redis_lib.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 0),  # one try: a slow Redis is a miss, not a longer wait
            )
        self.client = client
        self.namespace = namespace
        self.retry_interval = float(retry_interval)
        self.socket_timeout = float(socket_timeout)
        self.log_size = log_size
        self._down_until = 0.0
        self._down_lock = threading.Lock()
        self._delete_script = client.register_script(_DELETE_LUA)
        self._stats_script = client.register_script(_STATS_LUA)

    # -- keys and error handling --------------------------------------------------------------
    def _k(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    def _call(self, fn: Callable[[], Any]) -> Any:
        if time.monotonic() < self._down_until:
            raise BackendUnavailableError(f"Redis marked down for {self.retry_interval:g} s after a failure")
        try:
            return fn()
        except (self._redis.exceptions.RedisError, OSError) as e:
            with self._down_lock:
                self._down_until = time.monotonic() + self.retry_interval
            raise BackendUnavailableError(f"Redis unavailable ({type(e).__name__}: {e})") from e

    def _meta_from_hash(self, eid: str, h: dict) -> dict[str, Any]:
        h = {_s(k): v for k, v in h.items()}
        if "meta" not in h:
            raise CorruptEntryError(eid, "metadata hash lacks 'meta'")
        meta = meta_from_json(eid, h["meta"])
        try:
            meta["stats"] = {f: float(_s(h[f])) for f in _STAT_FIELDS}
            meta["stats"]["hits"] = int(meta["stats"]["hits"])
        except (KeyError, ValueError) as e:
            raise CorruptEntryError(eid, f"bad statistics fields ({e})") from e
        if meta.get("entry_id") != eid:
            raise CorruptEntryError(eid, f"metadata names entry {meta.get('entry_id')!r}")
        return meta

    def _fetch_records(self, ids: list[str]) -> list[EntryRecord]:
        pipe = self.client.pipeline(transaction=False)
        for eid in ids:
            pipe.hgetall(self._k("meta", eid))
        out = []
        for eid, h in zip(ids, pipe.execute()):
            if not h:
                continue  # deleted meanwhile
            try:
                out.append(record_from_meta(self._meta_from_hash(eid, h)))
            except CorruptEntryError as e:
                warn_cache(f"RedisBackend: removing {e}")
                self._delete(eid)
        return out

    def _delete(self, eid: str) -> bool:
        keys = [self._k("meta", eid), self._k("blob", eid)] + [self._k(n) for n in ("ids", "bytes", "ver", "log")]
        return bool(self._delete_script(keys=keys, args=[eid, self.log_size]))

    # -- CacheBackend -------------------------------------------------------------------------
    def insert(self, entry: CacheEntry, *, budget: int, policy: str) -> InsertResult:
        blob = entry_to_blob(entry)
        meta = entry_meta(entry, blob)
        stats = meta.pop("stats")
        eid = entry.entry_id
        size = int(meta["nbytes"])
        meta_json = json.dumps(meta)
        return self._call(lambda: self._insert(eid, blob, meta_json, stats, size, budget, policy))

    def _insert(self, eid, blob, meta_json, stats, size, budget, policy) -> InsertResult:
        # Bounded time whatever Redis does: a round trip is started only before the deadline, and
        # each one is itself bounded by socket_timeout, so an insert takes < 3 socket_timeouts.
        # A timeout is never retried; only a real WATCH conflict is, a few times with back-off.
        deadline = time.monotonic() + _INSERT_DEADLINE_TIMEOUTS * self.socket_timeout
        k_ids, k_bytes, k_ver, k_log = self._k("ids"), self._k("bytes"), self._k("ver"), self._k("log")

        def in_time() -> None:
            if time.monotonic() > deadline:
                raise self._redis.exceptions.TimeoutError(
                    f"insert ran past its {_INSERT_DEADLINE_TIMEOUTS * self.socket_timeout:g} s deadline"
                )

        for attempt in range(_CONFLICT_TRIES):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(k_ids, k_bytes, k_ver)
                    in_time()
                    ids = sorted(_s(i) for i in pipe.smembers(k_ids))
                    in_time()
                    ver = int(pipe.get(k_ver) or 0)
                    sizes, st = {}, {}
                    if ids:
                        in_time()
                        reader = self.client.pipeline(transaction=False)
                        for i in ids:
                            reader.hmget(self._k("meta", i), "nbytes", *_STAT_FIELDS)
                        for i, row in zip(ids, reader.execute()):
                            if i == eid or row[0] is None:
                                continue
                            sizes[i] = int(row[0])
                            vals = [float(_s(x)) if x is not None else 0.0 for x in row[1:]]
                            st[i] = EntryStats(int(vals[0]), *vals[1:])
                    victims = choose_victims(policy, st, sizes, size, budget)
                    if victims is None:
                        pipe.unwatch()
                        return InsertResult(False)
                    old_size = None
                    if eid in ids:
                        in_time()
                        old_size = pipe.hget(self._k("meta", eid), "nbytes")
                    pipe.multi()
                    removed = [(v, sizes[v]) for v in victims]
                    if old_size is not None:
                        removed.append((eid, int(old_size)))
                    for v, vsize in removed:
                        ver += 1
                        pipe.delete(self._k("meta", v), self._k("blob", v))
                        pipe.srem(k_ids, v)
                        pipe.decrby(k_bytes, vsize)
                        pipe.xadd(k_log, {"op": "del", "id": v, "ver": ver}, maxlen=self.log_size, approximate=True)
                    ver += 1
                    pipe.set(self._k("blob", eid), blob)
                    pipe.hset(self._k("meta", eid), mapping={"meta": meta_json, "nbytes": size, **stats})
                    pipe.sadd(k_ids, eid)
                    pipe.incrby(k_bytes, size)
                    pipe.set(k_ver, ver)
                    pipe.xadd(k_log, {"op": "add", "id": eid, "ver": ver}, maxlen=self.log_size, approximate=True)
                    in_time()
                    pipe.execute()
                    return InsertResult(True, victims)
                except self._redis.exceptions.WatchError as e:
                    cause = _connection_failure(e)
                    if cause is not None:  # redis-py reports a timeout while WATCHing as a WatchError
                        raise cause from e
                    if attempt + 1 == _CONFLICT_TRIES:
                        break
                    # Jittered exponential back-off, never past the deadline.
                    pause = random.uniform(0.5, 1.0) * min(_CONFLICT_BACKOFF * 2**attempt, _CONFLICT_BACKOFF_MAX)
                    if time.monotonic() + pause > deadline:
                        break
                    time.sleep(pause)
        raise BackendUnavailableError(f"Redis insert kept conflicting with other writers ({attempt + 1} tries)")

    def get(self, entry_id: str) -> CacheEntry | None:
        def fetch():
            pipe = self.client.pipeline(transaction=True)  # meta and blob from one instant
            pipe.hgetall(self._k("meta", entry_id))
            pipe.get(self._k("blob", entry_id))
            return pipe.execute()

        h, blob = self._call(fetch)
        if not h and blob is None:
            return None
        if not h or blob is None:
            raise CorruptEntryError(entry_id, "metadata or blob missing")
        return entry_from_blob(self._meta_from_hash(entry_id, h), blob)

    def delete(self, entry_id: str) -> bool:
        return self._call(lambda: self._delete(entry_id))

    def records(self) -> list[EntryRecord]:
        def scan():
            ids = sorted(_s(i) for i in self.client.smembers(self._k("ids")))
            return self._fetch_records(ids)

        return self._call(scan)

    def changes(self, cursor: Any, known: Collection[str]) -> Changes:
        return self._call(lambda: self._changes(cursor))

    def _changes(self, cursor: Any) -> Changes:
        # One round trip: (create and) read the epoch, the version and the log after the cursor.
        k_epoch = self._k("epoch")
        last_id = cursor[2] if cursor is not None else "0-0"
        pipe = self.client.pipeline(transaction=True)
        pipe.set(k_epoch, uuid.uuid4().hex, nx=True)
        pipe.get(k_epoch)
        pipe.get(self._k("ver"))
        pipe.xrange(self._k("log"), min=f"({last_id}", max="+", count=self.log_size)
        _, epoch, cur_ver, events = pipe.execute()
        epoch = _s(epoch)
        if cursor is not None and cursor[0] == epoch:
            _, ver, last_id = cursor
            cur_ver = int(cur_ver or 0)
            vers = [int(_s(f[b"ver"])) for _, f in events]
            contiguous = vers == list(range(ver + 1, ver + 1 + len(vers)))
            if contiguous and (events or cur_ver == ver):
                adds, removed = {}, set()
                for _, f in events:
                    eid = _s(f[b"id"])
                    if _s(f[b"op"]) == "add":
                        adds[eid] = True
                        removed.discard(eid)
                    else:
                        adds.pop(eid, None)
                        removed.add(eid)
                new_cursor = (epoch, vers[-1], _s(events[-1][0])) if events else cursor
                return Changes(new_cursor, False, self._fetch_records(sorted(adds)), sorted(removed))
        # Rebuild: remember the log position first, so changes made during the scan are replayed
        # (replays are idempotent: an add of a deleted id finds no hash and is skipped).
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self._k("ver"))
        pipe.xrevrange(self._k("log"), max="+", min="-", count=1)
        pipe.smembers(self._k("ids"))
        ver, last, ids = pipe.execute()
        last_id = _s(last[0][0]) if last else "0-0"
        records = self._fetch_records(sorted(_s(i) for i in ids))
        return Changes((epoch, int(ver or 0), last_id), True, records, [])

    def update_stats(self, entry_id: str, *, hits: int, compute_saved: float, last_used: float) -> bool:
        return bool(
            self._call(
                lambda: self._stats_script(
                    keys=[self._k("meta", entry_id)], args=[int(hits), repr(float(compute_saved)), repr(last_used)]
                )
            )
        )

    def total_bytes(self) -> int:
        return int(self._call(lambda: self.client.get(self._k("bytes"))) or 0)

    def count(self) -> int:
        return int(self._call(lambda: self.client.scard(self._k("ids"))))

    def close(self) -> None:
        self.client.close()
