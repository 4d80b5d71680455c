"""Bad configuration and bad arguments get clear errors naming the argument (plus a small fuzz)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from cache_helpers import DIM, make_entry, make_key, unit
from npu_ops.chorus.cache import CompatKey, DiskBackend, RedisBackend, RequestCache


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(budget_bytes=-1), ValueError, "budget_bytes must be >= 0, got -1"),
        (dict(budget_bytes=1.5), TypeError, "budget_bytes must be an int"),
        (dict(budget_bytes=True), TypeError, "budget_bytes must be an int"),
        (dict(eviction="fifo"), ValueError, r"eviction must be one of \('lru', 'lfu', 'cost'\), got 'fifo'"),
        (dict(eviction=None), ValueError, "eviction must be one of"),
        (dict(cross_tenant="yes"), TypeError, "cross_tenant must be a bool"),
        (dict(embedding_dim=0), ValueError, "embedding_dim must be None or an int >= 1, got 0"),
        (dict(backend=object()), TypeError, "backend must be a CacheBackend, got object"),
        (dict(clock=5), TypeError, "clock must be callable"),
    ],
)
def test_bad_cache_configuration(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        RequestCache(**kwargs)


@pytest.mark.parametrize(
    "overrides, exc, match",
    [
        (dict(height=0), ValueError, "height must be > 0, got 0"),
        (dict(width=-3), ValueError, "width must be > 0, got -3"),
        (dict(num_frames=2.0), TypeError, "num_frames must be an int"),
        (dict(model_id=""), ValueError, "model_id must be a non-empty str"),
        (dict(tenant=None), TypeError, "tenant must be a str"),
        (dict(sigmas=(1.0, 0.0)), ValueError, r"sigmas must hold num_steps \+ 1 = 5 values, got 2"),
        (dict(sigmas=(1.0, float("nan"), 0.5, 0.25, 0.0)), ValueError, "sigmas must be finite"),
        (dict(sigmas="abcde"), TypeError, "sigmas must be a sequence of numbers"),
        (dict(lora=(("a", 1.0), ("a", 0.5))), ValueError, "lora names must be unique"),
        (dict(lora=(("a", float("inf")),)), ValueError, "lora weight of 'a' must be finite"),
        (dict(lora=("a",)), TypeError, r"lora must hold \(name: str, weight: float\) pairs"),
    ],
)
def test_bad_compat_key(overrides, exc, match):
    with pytest.raises(exc, match=match):
        make_key(**overrides)


def test_class_digest_canonical():
    k = make_key(lora=(("b", 0.5), ("a", 1.0)))
    assert k.lora == (("a", 1.0), ("b", 0.5))
    assert k.class_digest() == make_key(lora=[("a", 1.0), ("b", 0.5)]).class_digest()
    # sigmas compared rounded to 1e-6: float32-computed schedules land in the same class.
    s32 = tuple(float(np.float32(s)) for s in (1.0, 0.7, 0.5, 0.3, 0.0))
    assert make_key(sigmas=s32).class_digest() == make_key(sigmas=(1.0, 0.7, 0.5, 0.3, 0.0)).class_digest()
    assert make_key(sigmas=(1.0, 0.7, 0.5, 0.3, -0.0)).class_digest() == make_key(sigmas=s32).class_digest()
    assert make_key(sigmas=(1.0, 0.7001, 0.5, 0.3, 0.0)).class_digest() != make_key(sigmas=s32).class_digest()
    # every field counts, the tenant only when asked
    base = make_key()
    for change in (
        dict(model_id="m2"),
        dict(model_revision="r2"),
        dict(lora=(("x", 1.0),)),
        dict(height=64),
        dict(width=64),
        dict(num_frames=9),
        dict(scheduler="unipc"),
        dict(guidance="cfg:5.0"),
        dict(dtype="bfloat16"),
        dict(tenant="t2"),
    ):
        assert make_key(**change).class_digest() != base.class_digest(), change
    assert make_key(tenant="t2").class_digest(include_tenant=False) == base.class_digest(include_tenant=False)
    assert CompatKey.from_dict(base.to_dict()) == base
    assert len(base.class_digest()) == 64 and base.class_digest() == make_key().class_digest()


@pytest.mark.parametrize(
    "embedding, exc, match",
    [
        (np.full(DIM, np.nan, dtype=np.float32), ValueError, "embedding must be finite"),
        (np.r_[np.ones(DIM - 1), np.inf], ValueError, "embedding must be finite"),
        (np.zeros(DIM), ValueError, "non-zero L2 norm, got an all-zero vector"),
        (np.full(DIM, 1e-320), None, None),  # subnormal but non-zero: fine
        (np.ones((2, DIM // 2)), ValueError, r"must be 1-D and non-empty, got shape \(2, 8\)"),
        (np.ones(DIM + 1), ValueError, f"must have dim {DIM} .*got {DIM + 1}"),
        (np.array(["a"] * DIM), TypeError, "1-D float array"),
        (np.full(DIM, 1e300), None, None),  # huge but finite: normalised in float64, fine
    ],
)
def test_bad_embeddings(embedding, exc, match):
    cache = RequestCache(embedding_dim=DIM)
    if exc is None:
        assert cache.insert(make_entry("huge", embedding))
        assert cache.lookup(make_key(), embedding, min_similarity=0.999) is not None
        return
    with pytest.raises(exc, match=match):
        cache.lookup(make_key(), embedding)
    with pytest.raises(exc, match=match):
        cache.insert(make_entry("bad", embedding))
    assert len(cache) == 0


def test_dim_fixed_by_first_entry():
    cache = RequestCache()
    assert cache.insert(make_entry("a", unit(1)))
    with pytest.raises(ValueError, match=f"must have dim {DIM}"):
        cache.lookup(make_key(), unit(1, dim=DIM * 2))


@pytest.mark.parametrize(
    "mutate, exc, match",
    [
        (lambda e: setattr(e, "key", "k"), TypeError, "entry.key must be a CompatKey"),
        (lambda e: setattr(e, "prompt", None), TypeError, "entry.prompt must be a str"),
        (lambda e: setattr(e, "token_ids", [1, "x"]), TypeError, "entry.token_ids must be a list of ints"),
        (lambda e: setattr(e, "token_ids", [2**64]), ValueError, "fit in int64"),
        (lambda e: setattr(e, "seed", 1.5), TypeError, "entry.seed must be an int or None"),
        (lambda e: e.latents.update({9: torch.zeros(2)}), ValueError, r"step 9 is outside \[0, num_steps=4\]"),
        (lambda e: e.latents.update({"0": torch.zeros(2)}), TypeError, "keys must be ints"),
        (lambda e: e.latents.update({1: np.zeros(2)}), TypeError, r"entry.latents\[1\] must be a torch.Tensor"),
        (lambda e: setattr(e, "latents", [torch.zeros(1)]), TypeError, "entry.latents must be a dict"),
        (lambda e: e.latents.update({1: torch.zeros(2, dtype=torch.complex64)}), TypeError, "floating-point tensor"),
        (lambda e: e.latents.update({1: torch.zeros(2, dtype=torch.int32)}), TypeError, "floating-point tensor"),
        (lambda e: setattr(e, "entry_id", "../../etc/passwd"), ValueError, "entry.entry_id must hold only"),
        (lambda e: setattr(e.stats, "compute_saved", float("nan")), ValueError, "compute_saved must be finite"),
        (lambda e: setattr(e.stats, "hits", -1), ValueError, "entry.stats.hits must be an int >= 0, got -1"),
        (lambda e: setattr(e.stats, "full_nfe", -4.0), ValueError, "entry.stats.full_nfe must be finite and >= 0"),
    ],
)
def test_bad_entries(mutate, exc, match):
    cache = RequestCache()
    e = make_entry("p", unit(1))
    mutate(e)
    with pytest.raises(exc, match=match):
        cache.insert(e)
    assert len(cache) == 0


def test_bad_call_arguments():
    cache = RequestCache()
    with pytest.raises(TypeError, match="key must be a CompatKey"):
        cache.lookup("key", unit(1))
    with pytest.raises(ValueError, match=r"min_similarity must be in \[-1, 1\], got 1.5"):
        cache.lookup(make_key(), unit(1), min_similarity=1.5)
    with pytest.raises(ValueError, match="min_similarity must be in"):
        cache.lookup(make_key(), unit(1), min_similarity=float("nan"))
    with pytest.raises(ValueError, match="compute_saved must be finite and >= 0, got -1.0"):
        cache.record_hit("x", -1.0)
    with pytest.raises(TypeError, match="entry_id must be a str"):
        cache.record_hit(5, 1.0)


def test_bad_backend_configuration(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        DiskBackend(tmp_path / "f")
    with pytest.raises(TypeError, match="root must be a path"):
        DiskBackend(3)
    with pytest.raises(ValueError, match="namespace must be a non-empty str"):
        RedisBackend(namespace="")
    with pytest.raises(ValueError, match="socket_timeout must be a finite number >= 0, got -1"):
        RedisBackend(socket_timeout=-1)
    with pytest.raises(ValueError, match="log_size must be an int >= 1"):
        RedisBackend(log_size=0)


def test_fuzz_configuration_and_embeddings():
    """Random junk never crashes in an unclear way: either accepted or a TypeError/ValueError."""
    rng = random.Random(0)
    junk = [None, -1, 0, 1, 2**70, -0.5, 1.5, math.nan, math.inf, "", "x", "lru", [], [1.0], (1,), {}, True, b"b"]
    for _ in range(300):
        kw = {rng.choice(["budget_bytes", "eviction", "cross_tenant", "embedding_dim"]): rng.choice(junk)}
        try:
            RequestCache(**kw)
        except (TypeError, ValueError) as e:
            assert any(name in str(e) for name in kw), (kw, e)
    cache = RequestCache(embedding_dim=DIM)
    for _ in range(300):
        kind = rng.randrange(5)
        if kind == 0:
            emb = np.random.default_rng(rng.randrange(10**6)).standard_normal(rng.choice([DIM, DIM - 1, 0]))
        elif kind == 1:
            emb = unit(rng.randrange(100)).astype(rng.choice([np.float16, np.float64, np.float32]))
        elif kind == 2:
            emb = unit(1).copy()
            emb[rng.randrange(DIM)] = rng.choice([np.nan, np.inf, -np.inf])
        elif kind == 3:
            emb = rng.choice(junk)
        else:
            emb = torch.randn(DIM)
        sim = rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0, math.nan, "0.5"])
        try:
            cache.lookup(make_key(), emb, min_similarity=sim)
        except (TypeError, ValueError) as e:
            assert "embedding" in str(e) or "min_similarity" in str(e), e


def test_key_accepts_numpy_integers_and_tensor_sigmas():
    k = make_key(height=np.int64(32), num_frames=np.int32(5), sigmas=torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    assert type(k.height) is int and k.class_digest() == make_key().class_digest()
