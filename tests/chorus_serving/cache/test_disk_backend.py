"""DiskBackend: persistence across instances and processes, corrupt and truncated files."""

from __future__ import annotations

import json
import multiprocessing as mp
import os

import pytest
import torch
from cache_helpers import make_entry, make_key, unit
from npu_ops.chorus.cache import ChorusCacheWarning, DiskBackend, RequestCache

BIG = 1 << 30


def test_survives_restart(tmp_path):
    cache = RequestCache(DiskBackend(tmp_path), budget_bytes=BIG, eviction="lfu")
    e = make_entry("persisted", unit(1), dtype=torch.bfloat16, random_latents=True)
    assert cache.insert(e)
    cache.record_hit(e.entry_id, 2.0)
    del cache
    reopened = RequestCache(DiskBackend(tmp_path), budget_bytes=BIG, eviction="lfu")
    m = reopened.lookup(make_key(), unit(1), min_similarity=0.999)
    assert m is not None and m.entry.entry_id == e.entry_id
    for k, t in e.latents.items():
        assert torch.equal(m.entry.latents[k].view(torch.int16), t.view(torch.int16))
    assert m.entry.stats.hits == 1 and m.entry.stats.compute_saved == 2.0
    assert sorted(p.suffix for p in (tmp_path / "entries").iterdir()) == [".json", ".safetensors"]


def test_instances_see_each_others_inserts_and_deletes(tmp_path):
    a = RequestCache(DiskBackend(tmp_path), budget_bytes=BIG)
    b = RequestCache(DiskBackend(tmp_path), budget_bytes=BIG)
    assert b.lookup(make_key(), unit(1)) is None  # b's index is now synced (empty)
    e = make_entry("from a", unit(1))
    assert a.insert(e)
    assert b.lookup(make_key(), unit(1)).entry.prompt == "from a"
    assert a.remove(e.entry_id)
    assert b.lookup(make_key(), unit(1)) is None


def _corrupt(path, how):
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip":
        i = len(data) - 3  # inside the last latent's values: still decodes, checksum catches it
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x40]) + data[i + 1 :])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "delete":
        path.unlink()
    elif how == "garbage_json":
        path.write_text("{not json")
    elif how == "wrong_sha":
        meta = json.loads(data)
        meta["blob_sha256"] = "0" * 64
        path.write_text(json.dumps(meta))
    elif how == "bad_stats":
        meta = json.loads(data)
        meta["stats"]["hits"] = "many"
        path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "suffix, how",
    [
        (".safetensors", "truncate"),
        (".safetensors", "flip"),
        (".safetensors", "empty"),
        (".safetensors", "delete"),
        (".json", "truncate"),
        (".json", "garbage_json"),
        (".json", "wrong_sha"),
        (".json", "bad_stats"),
    ],
)
def test_corrupt_entry_is_a_warned_miss_and_removed(tmp_path, suffix, how):
    cache = RequestCache(DiskBackend(tmp_path), budget_bytes=BIG)
    good = make_entry("good but less similar", unit(2))
    assert cache.insert(good)
    for warm in (True, False):  # the corrupt entry already in the index, or met by a new instance
        bad = make_entry("about to be corrupted", unit(1))
        assert cache.insert(bad)
        _corrupt(tmp_path / "entries" / f"{bad.entry_id}{suffix}", how)
        reader = cache if warm else RequestCache(DiskBackend(tmp_path), budget_bytes=BIG)
        with pytest.warns(ChorusCacheWarning, match=bad.entry_id):
            m = reader.lookup(make_key(), unit(1))
        # never the corrupt latent: the next best entry is served
        assert m is not None and m.entry.entry_id == good.entry_id
        left = {p.name.split(".")[0] for p in (tmp_path / "entries").iterdir()}
        assert left == {good.entry_id}


def test_stray_files_are_cleaned_and_not_charged(tmp_path):
    cache = RequestCache(DiskBackend(tmp_path), budget_bytes=BIG)
    e = make_entry("x", unit(1))
    assert cache.insert(e)
    (tmp_path / "entries" / ".deadbeef.json.1234.tmp").write_bytes(b"half")
    (tmp_path / "entries" / "orphan.safetensors").write_bytes(b"\0" * 1000)
    assert cache.nbytes() == e.nbytes()
    assert sorted(os.listdir(tmp_path / "entries")) == sorted([f"{e.entry_id}.json", f"{e.entry_id}.safetensors"])


def _disk_worker(root: str, worker: int, n: int, budget: int, out) -> None:
    import warnings

    from cache_helpers import make_entry as mk
    from cache_helpers import unit as u
    from npu_ops.chorus.cache import DiskBackend as DB
    from npu_ops.chorus.cache import RequestCache as RC

    warnings.simplefilter("error")  # any cache warning here is a bug
    cache = RC(DB(root), budget_bytes=budget, eviction="lru")
    worst = 0
    for i in range(n):
        cache.insert(mk(f"w{worker} entry {i}", u(1000 * worker + i)))
        worst = max(worst, cache.nbytes())
        m = cache.lookup(make_key(), u(1000 * worker + i))
        if m is not None:
            from cache_helpers import assert_untorn

            assert_untorn(m.entry)
    out.put(worst)


def test_two_processes_share_a_directory_within_budget(tmp_path):
    probe = make_entry("w0 entry 0", unit(0))
    budget = 4 * probe.nbytes() + 100
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_disk_worker, args=(str(tmp_path), w, 15, budget, q)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    worst = [q.get(timeout=5) for _ in procs]
    assert max(worst) <= budget
    cache = RequestCache(DiskBackend(tmp_path), budget_bytes=budget)
    assert 0 < cache.nbytes() <= budget and len(cache) == 4


def test_unusable_directory_is_a_warned_miss(tmp_path):
    import shutil

    cache = RequestCache(DiskBackend(tmp_path), budget_bytes=BIG)
    assert cache.insert(make_entry("x", unit(1)))
    shutil.rmtree(tmp_path / "entries")
    (tmp_path / "entries").write_text("not a directory any more")  # like a vanished mount
    with pytest.warns(ChorusCacheWarning, match="cache directory"):
        assert cache.lookup(make_key(), unit(1)) is None
    with pytest.warns(ChorusCacheWarning, match="cache directory"):
        assert not cache.insert(make_entry("y", unit(2)))
