"""Issue 12 failure 8: ``Request`` validates its fields at construction; errors name the field,
the expected and the actual value. Parametrised bad values, then a small fuzz against an
independent oracle of the documented rules."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from npu_ops.chorus.policy import Request

GOOD = dict(prompt="a red fox", tenant="acme", seed=7, token_ids=(1, 2, 3), request_id="r1")

BAD = [
    # field, value, error type, fragment of the expected-value text
    ("prompt", "", ValueError, "non-empty"),
    ("prompt", "   \n\t", ValueError, "non-empty"),
    ("prompt", None, TypeError, "a str"),
    ("prompt", b"bytes", TypeError, "a str"),
    ("prompt", 3, TypeError, "a str"),
    ("prompt", "nul\x00byte", ValueError, "NUL"),
    ("tenant", "", ValueError, "non-empty"),
    ("tenant", "  ", ValueError, "non-empty"),
    ("tenant", None, TypeError, "a str"),
    ("tenant", 5, TypeError, "a str"),
    ("seed", 1.0, TypeError, "an int or None"),
    ("seed", "7", TypeError, "an int or None"),
    ("seed", True, TypeError, "an int or None"),
    ("seed", -1, ValueError, "[0, 2**64)"),
    ("seed", 2**64, ValueError, "[0, 2**64)"),
    ("token_ids", "123", TypeError, "a tuple or list of ints"),
    ("token_ids", None, TypeError, "a tuple or list of ints"),
    ("token_ids", (1, 2.0), TypeError, "token_ids[1]"),
    ("token_ids", (1, True), TypeError, "token_ids[1]"),
    ("token_ids", (0, -3), ValueError, "token_ids[1]"),
    ("request_id", None, TypeError, "a str"),
    ("request_id", 12, TypeError, "a str"),
]


@pytest.mark.parametrize("field,value,exc,expected", BAD, ids=[f"{f}={v!r}" for f, v, _, _ in BAD])
def test_bad_field_is_named(field, value, exc, expected):
    with pytest.raises(exc) as ei:
        Request(**{**GOOD, field: value})
    msg = str(ei.value)
    assert f"Request.{field}" in msg, msg
    assert expected in msg, msg
    actual = value[1] if expected.startswith("token_ids[") else value  # the offending element
    assert f"got {type(actual).__name__} {actual!r}"[:40] in msg, msg
    assert "\n" not in msg


def test_good_values_and_normalisation():
    r = Request(**GOOD)
    assert (r.prompt, r.tenant, r.seed, r.token_ids, r.request_id) == ("a red fox", "acme", 7, (1, 2, 3), "r1")
    assert Request("p").tenant == "default" and Request("p").seed is None and Request("p").token_ids == ()
    # numpy integers (seeds and token ids often come out of numpy / torch) are accepted as plain ints.
    r = Request("p", seed=np.int64(5), token_ids=[np.int32(4), 9])
    assert type(r.seed) is int and r.seed == 5 and r.token_ids == (4, 9) and all(type(t) is int for t in r.token_ids)
    assert Request("p", seed=0).seed == 0 and Request("p", seed=2**64 - 1).seed == 2**64 - 1
    hash(r)  # still a frozen, hashable value


def test_replace_validates_too():
    with pytest.raises(ValueError, match=r"Request\.token_ids\[0\]"):
        replace(Request("p"), token_ids=(-1,))


# -- fuzz --------------------------------------------------------------------------------------
_POOL = [
    None, True, False, 0, 1, -1, 7, 2**63, 2**64 - 1, 2**64, -(2**70), 1.5, float("nan"), "", " ", "x", "a b",
    "\x00", b"x", (), (1,), (0, 5), (1, -1), (1.0,), [3, 4], ["3"], {1: 2}, np.int64(3), np.float32(2.0), object(),
]  # fmt: skip


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _oracle(field, v) -> bool:
    """The documented rules, written independently of the implementation."""
    if field in ("prompt", "tenant"):
        return isinstance(v, str) and v.strip() != "" and "\x00" not in v
    if field == "request_id":
        return isinstance(v, str)
    if field == "seed":
        return v is None or (_is_int(v) and 0 <= int(v) < 2**64)
    if field == "token_ids":
        return isinstance(v, (tuple, list)) and all(_is_int(t) and int(t) >= 0 for t in v)
    raise AssertionError(field)


def test_fuzz_request_fields():
    rng = random.Random(12)
    fields = list(GOOD)
    for _ in range(600):
        kwargs = dict(GOOD)
        bad = set()
        for f in rng.sample(fields, rng.randint(1, 3)):
            kwargs[f] = rng.choice(_POOL)
            if not _oracle(f, kwargs[f]):
                bad.add(f)
        try:
            r = Request(**kwargs)
        except (TypeError, ValueError) as e:
            assert bad, f"rejected a valid request {kwargs!r}: {e}"
            assert any(f"Request.{f}" in str(e) for f in bad), (kwargs, str(e))
        else:
            assert not bad, f"accepted bad field(s) {sorted(bad)}: {kwargs!r}"
            assert isinstance(r.token_ids, tuple) and (r.seed is None or type(r.seed) is int)
