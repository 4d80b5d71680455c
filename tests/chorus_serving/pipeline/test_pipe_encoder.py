"""Prompt encoders, token diff and records."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from npu_ops.chorus.encoder import HashingEncoder, PromptEncoder, make_encoder, register_encoder
from npu_ops.chorus.records import RequestRecord, format_summary, progress, summarize
from npu_ops.chorus.token_diff import token_diff


def test_hashing_encoder_is_deterministic_and_normalised():
    a, b = HashingEncoder(), HashingEncoder()
    texts = ["a red bicycle", "a green bicycle", "an astronaut on the moon"]
    ea, eb = a.encode(texts), b.encode(texts)
    assert ea.dtype == np.float32 and ea.shape == (3, 384) and np.array_equal(ea, eb)
    np.testing.assert_allclose(np.linalg.norm(ea, axis=1), 1.0, rtol=1e-6)
    assert ea[0] @ ea[1] > ea[0] @ ea[2]
    assert a.tokenize("A red, bicycle") == b.tokenize("a red , bicycle")
    te = a.token_embeddings("a red bicycle")
    assert te.shape == (3, 384) and torch.equal(te, b.token_embeddings("a red bicycle"))
    assert isinstance(a, PromptEncoder)
    assert not np.array_equal(HashingEncoder(seed=1).encode(texts), ea)


def test_minilm_encoder(minilm):
    texts = ["a red vintage bicycle in the rain", "a green vintage bicycle in the rain", "a bowl of ramen"]
    e = minilm.encode(texts)
    assert e.shape == (3, 384) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    assert e[0] @ e[1] > 0.8 > e[0] @ e[2]
    np.testing.assert_array_equal(minilm.encode(texts), e)  # deterministic
    ids = minilm.tokenize(texts[0])
    tok = minilm.token_embeddings(texts[0])
    assert tok.shape == (len(ids), 384) and ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP]
    # The single-prompt path (mean of the token states, normalised) equals the batch path.
    np.testing.assert_allclose(minilm.encode([texts[0]])[0], e[0], atol=1e-6)
    assert isinstance(minilm, PromptEncoder)


def test_encoder_registry():
    register_encoder("hashing-128", lambda: HashingEncoder(dim=128))
    assert make_encoder("hashing-128").dim == 128
    with pytest.raises(ValueError, match="unknown encoder 'clip'"):
        make_encoder("clip")
    with pytest.raises(ValueError, match="dim"):
        HashingEncoder(dim=0)
    with pytest.raises(TypeError, match="texts"):
        HashingEncoder().encode("a prompt")


@pytest.mark.parametrize(
    "new,src,added,removed",
    [
        ([1, 2, 3], [1, 2, 3], (), ()),
        ([1, 9, 3], [1, 2, 3], (1,), (1,)),  # swap
        ([1, 2, 7, 3], [1, 2, 3], (2,), ()),  # insert
        ([1, 3], [1, 2, 3], (), (1,)),  # delete
        ([5, 6, 7, 8], [5, 6], (2, 3), ()),  # appended
    ],
)
def test_token_diff(new, src, added, removed):
    d = token_diff(new, src)
    assert d.added == added and d.removed == removed
    assert d.added_ids == tuple(new[i] for i in added) and d.removed_ids == tuple(src[i] for i in removed)
    assert d.empty == (not added and not removed)


def test_token_diff_word_order_matters():
    enc = HashingEncoder()
    d = token_diff(enc.tokenize("a cat and a dog"), enc.tokenize("a dog and a cat"))
    assert not d.empty and d.added and d.removed
    with pytest.raises(TypeError, match="new_ids"):
        token_diff("abc", [1])


def _rec(i, hit, nfe, wall, base=None):
    return RequestRecord(
        request=i, prompt="p", tenant="t", hit=hit, reason="x", tier=None, source_prompt=None,
        similarity=None, steps_skipped=0, num_steps=4, nfe=nfe, wall_s=wall, baseline_wall_s=base,
    )  # fmt: skip


def test_summary_and_progress(capsys):
    recs = [_rec(0, False, 4.0, 2.0, 2.0), _rec(1, True, 2.0, 1.0, 2.0), _rec(2, True, 2.4, 1.0, 2.0)]
    s = summarize(recs, warmup=1)
    assert s["hit_rate"] == pytest.approx(2 / 3) and s["hit_rate_after_warmup"] == 1.0
    assert s["mean_nfe_hit"] == pytest.approx(2.2) and s["mean_nfe_saving_hit"] == pytest.approx(1 - 4.4 / 8)
    assert s["speedup"] == pytest.approx(6.0 / 4.0)
    table = format_summary(s)
    assert "speedup" in table and "1.50x" in table
    assert list(progress(range(3), total=3)) == [0, 1, 2]
    assert list(progress(range(3), enable=False)) == [0, 1, 2]
    assert recs[1].to_json()["hit"] is True
