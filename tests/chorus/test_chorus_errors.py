"""Bad input to masked_blend / amplified_softmax: clear errors from the kernels and the same from the fakes."""

from __future__ import annotations

import random

import npu_ops
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode


def _both(fn, *tensors, **kwargs):
    """Runs ``fn`` on the real tensors (C++ checks) and on fake copies (Python fakes); returns both outcomes."""
    outcomes = []
    for fake in (False, True):
        try:
            if fake:
                with FakeTensorMode(allow_non_fake_inputs=False) as mode:
                    out = fn(*(mode.from_tensor(t) for t in tensors), **kwargs)
            else:
                out = fn(*tensors, **kwargs)
            outcomes.append(("ok", tuple(out.shape), out.dtype))
        except RuntimeError as e:
            outcomes.append(("error", str(e)))
    return outcomes


def _assert_rejected(fn, tensors, match, **kwargs):
    for where, outcome in zip(("kernel", "fake"), _both(fn, *tensors, **kwargs)):
        assert outcome[0] == "error", f"{where} accepted the input: {outcome}"
        assert __import__("re").search(match, outcome[1]), f"{where}: {outcome[1]!r} does not match {match!r}"


BLEND = torch.ops.npu_ops.masked_blend.default
SOFTMAX = torch.ops.npu_ops.amplified_softmax.default

BLEND_ERRORS = [
    # (fresh, cached, mask, message): every message names the argument, what was expected and what was given
    (
        (2, 3, 4),
        (2, 3, 4),
        (2, 2, 4),
        r"mask of shape \[2, 2, 4\] does not broadcast to fresh's shape \[2, 3, 4\]: "
        r"fresh dim 1 has size 3, mask has 2 \(expected 3 or 1\)",
    ),
    ((3, 4), (3, 4), (1, 3, 4), r"mask of shape \[1, 3, 4\] does not broadcast .* it has 3 dims, at most 2 allowed"),
    ((2, 3, 4), (2, 3, 5), (2, 1, 4), r"cached must have fresh's shape \[2, 3, 4\], got \[2, 3, 5\]"),
]


@pytest.mark.parametrize("fshape, cshape, mshape, match", BLEND_ERRORS, ids=["mask-dim", "mask-rank", "cached-shape"])
def test_blend_shape_errors(fshape, cshape, mshape, match):
    _assert_rejected(BLEND, (torch.randn(fshape), torch.randn(cshape), torch.rand(mshape)), match)


@pytest.mark.parametrize(
    "fdtype, cdtype, mdtype, match",
    [
        (
            torch.float32,
            torch.float16,
            torch.float32,
            r"cached must have fresh's dtype torch.float32, got torch.float16",
        ),
        (
            torch.int32,
            torch.int32,
            torch.bool,
            r"fresh must have dtype float32, float64, float16 or bfloat16, got torch.int32",
        ),
        (torch.float32, torch.float32, torch.int64, r"mask must have dtype bool, uint8 .*, got torch.int64"),
    ],
    ids=["fresh-vs-cached", "integer-data", "integer-mask"],
)
def test_blend_dtype_errors(fdtype, cdtype, mdtype, match):
    tensors = (torch.ones(2, 3, dtype=fdtype), torch.ones(2, 3, dtype=cdtype), torch.ones(2, 1, dtype=mdtype))
    _assert_rejected(BLEND, tensors, match)


def test_device_mismatch():
    meta = torch.empty(2, 3, device="meta")
    with pytest.raises(RuntimeError, match="npu_ops.masked_blend: cached is on meta but fresh is on cpu"):
        npu_ops.masked_blend(torch.randn(2, 3), meta, torch.rand(2, 1))
    with pytest.raises(RuntimeError, match="npu_ops.masked_blend: mask is on meta but fresh is on cpu"):
        npu_ops.masked_blend(torch.randn(2, 3), torch.randn(2, 3), torch.rand(2, 1, device="meta"))
    with pytest.raises(RuntimeError, match="npu_ops.amplified_softmax: alpha is on meta but scores is on cpu"):
        npu_ops.amplified_softmax(torch.randn(2, 3), torch.rand(3, device="meta"))


def test_type_errors():
    with pytest.raises(TypeError, match="mask must be a torch.Tensor, got float"):
        npu_ops.masked_blend(torch.randn(2), torch.randn(2), 0.5)
    with pytest.raises(TypeError, match="alpha must be a torch.Tensor, got list"):
        npu_ops.amplified_softmax(torch.randn(2), [1.0, 1.0])
    with pytest.raises(TypeError, match="scale must be a float, got str"):
        npu_ops.amplified_softmax(torch.randn(2), torch.ones(2), scale="1")


@pytest.mark.parametrize(
    "scores, alpha, kwargs, match",
    [
        (torch.ones(2, 3, dtype=torch.int64), torch.ones(3), {}, r"scores must have dtype float32.*, got torch.int64"),
        (torch.randn(2, 3), torch.ones(3, dtype=torch.int32), {}, r"alpha must have dtype float32.*, got torch.int32"),
        (
            torch.randn(2, 3),
            torch.ones(2),
            {},
            r"alpha of shape \[2\] does not broadcast to scores's shape \[2, 3\]: "
            r"scores dim 1 has size 3, alpha has 2 \(expected 3 or 1\)",
        ),
        (torch.randn(4, 3), torch.ones(2, 1, 3), {}, r"alpha of shape \[2, 1, 3\] .* it has 3 dims, at most 2 allowed"),
        (torch.randn(2, 3), torch.ones(3), {"scale": float("inf")}, r"scale must be finite, got inf"),
        (torch.tensor(1.0), torch.ones(()), {}, r"scores must have at least 1 dim"),
    ],
    ids=["integer-scores", "integer-alpha", "alpha-shape", "alpha-rank", "scale", "0-d"],
)
def test_softmax_errors(scores, alpha, kwargs, match):
    _assert_rejected(SOFTMAX, (scores, alpha), match, **kwargs)


@pytest.mark.parametrize(
    "value, index",
    [
        (-0.25, "[1, 0, 0, 2]"),
        (float("nan"), "[0, 0, 0, 4]"),
        (float("inf"), "[1, 0, 0, 0]"),
        (-float("inf"), "[0, 0, 0, 1]"),
    ],
    ids=["negative", "nan", "inf", "-inf"],
)
def test_bad_alpha_values_name_the_element(value, index):
    alpha = torch.ones(2, 1, 1, 5)
    alpha[tuple(int(i) for i in index.strip("[]").split(", "))] = value
    alpha[0, 0, 0, 3] = 0.0  # zero is allowed
    for renormalize in (True, False):
        with pytest.raises(
            RuntimeError,
            match=r"alpha must be finite and >= 0 \(alpha = 0 removes a key\), got "
            + __import__("re").escape(f"alpha{index} = "),
        ):
            npu_ops.amplified_softmax(torch.randn(2, 3, 4, 5), alpha, renormalize=renormalize)


def test_bad_alpha_rejected_without_rows():
    with pytest.raises(RuntimeError, match=r"alpha\[1\] = -1"):
        npu_ops.amplified_softmax(torch.randn(0, 3), torch.tensor([1.0, -1.0, 1.0]))


def test_bad_alpha_counts_the_others():
    alpha = torch.full((7,), -1.0)
    with pytest.raises(RuntimeError, match=r"alpha\[0\] = -1 \(and 6 more\)"):
        npu_ops.amplified_softmax(torch.randn(3, 7), alpha)


def test_backward_op_errors():
    g, s, a = torch.randn(2, 3), torch.randn(2, 3), torch.ones(3)
    op = torch.ops.npu_ops._amplified_softmax_backward.default
    with pytest.raises(RuntimeError, match="needs scores"):
        op(g, None, None, a, 1.0, True, [True, False])
    with pytest.raises(RuntimeError, match="renormalize=False needs scores"):
        op(g, s, None, a, 1.0, False, [True, False])
    with pytest.raises(RuntimeError, match="the alpha gradient needs scores"):
        op(g, s, None, a, 1.0, True, [True, True])
    with pytest.raises(RuntimeError, match=r"grad_output must have scores's shape \[2, 3\], got \[3, 3\]"):
        op(torch.randn(3, 3), None, s, a, 1.0, True, [True, True])
    blend_bwd = torch.ops.npu_ops._masked_blend_backward.default
    with pytest.raises(RuntimeError, match="mask has no gradient"):
        blend_bwd(g, s, s, torch.ones(2, 1, dtype=torch.bool), [True, True, True])
    with pytest.raises(RuntimeError, match=r"grad_output must have fresh's dtype torch.float32, got torch.float64"):
        blend_bwd(g.double(), s, s, torch.rand(2, 1), [True, True, True])


def _broadcastable_to(mshape, shape) -> bool:
    if len(mshape) > len(shape):
        return False
    return all(m in (1, d) for m, d in zip(mshape[::-1], shape[::-1]))


def test_fuzz_checks_agree_with_broadcasting():
    """Random shapes and dtypes: kernel and fake accept exactly the broadcastable, well-typed inputs,
    and accepted inputs give the reference result (the canonical-form code on random layouts)."""
    rng = random.Random(1234)
    float_dtypes = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
    mask_dtypes = [torch.bool, torch.uint8, *float_dtypes, torch.int32]
    accepted = rejected = 0
    for _ in range(60):
        rank = rng.randint(1, 4)
        shape = [rng.choice([1, 2, 3, 5]) for _ in range(rank)]
        mrank = rng.randint(0, rank + (1 if rng.random() < 0.2 else 0))
        mshape = [rng.choice([1, 1, 2, 3, 5]) for _ in range(mrank)]
        if rng.random() < 0.5:  # mostly-valid masks: copy or 1 per dim
            mshape = [d if rng.random() < 0.5 else 1 for d in shape[len(shape) - mrank :]] if mrank <= rank else mshape
        dt, mdt = rng.choice(float_dtypes), rng.choice(mask_dtypes)
        ok = _broadcastable_to(mshape, shape) and mdt != torch.int32
        fresh, cached = torch.randn(shape).to(dt), torch.randn(shape).to(dt)
        mask = (torch.rand(mshape) * 3).to(mdt) if mdt != torch.bool else torch.rand(mshape) > 0.5
        outcomes = _both(BLEND, fresh, cached, mask)
        for where, outcome in zip(("kernel", "fake"), outcomes):
            assert (outcome[0] == "ok") == ok, f"{where} {shape} {mshape} {dt} {mdt}: {outcome}"
            if not ok:
                assert "npu_ops.masked_blend: mask" in outcome[1]
        if ok:
            accepted += 1
            assert outcomes[0] == outcomes[1]  # same shape and dtype from the fake
            out = npu_ops.masked_blend(fresh, cached, mask)
            m = mask.bool() if mdt in (torch.bool, torch.uint8) else mask
            ref = (
                torch.where(m, fresh, cached)
                if m.dtype == torch.bool
                else cached.double() + m.double() * (fresh.double() - cached.double())
            )
            tol = 1e-2 if torch.float16 in (dt, mdt) or torch.bfloat16 in (dt, mdt) else 1e-5
            torch.testing.assert_close(out.double(), ref.double(), atol=tol, rtol=tol)
        else:
            rejected += 1

        # alpha against scores
        arank = rng.randint(0, rank + (1 if rng.random() < 0.2 else 0))
        ashape = [rng.choice([1, 2, 3, 5]) for _ in range(arank)]
        if rng.random() < 0.5 and arank <= rank:
            ashape = [d if rng.random() < 0.5 else 1 for d in shape[len(shape) - arank :]]
        adt = rng.choice([*float_dtypes, torch.int64])
        ok = _broadcastable_to(ashape, shape) and adt != torch.int64
        alpha = (torch.rand(ashape) * 2).to(adt)
        outcomes = _both(SOFTMAX, fresh, alpha, scale=0.5, renormalize=rng.random() < 0.5)
        for where, outcome in zip(("kernel", "fake"), outcomes):
            assert (outcome[0] == "ok") == ok, f"{where} {shape} {ashape} {adt}: {outcome}"
            if not ok:
                assert "npu_ops.amplified_softmax: alpha" in outcome[1]
        if ok:
            assert outcomes[0] == outcomes[1]
            out = npu_ops.amplified_softmax(fresh, alpha, scale=0.5)
            compute = torch.float64 if dt == torch.float64 else torch.float32
            ref = (0.5 * fresh.double() + alpha.to(compute).double().log()).softmax(-1)
            ref = torch.nan_to_num(ref, nan=0.0)  # rows with every alpha 0
            tol = 1e-2 if dt in (torch.float16, torch.bfloat16) else 1e-5
            torch.testing.assert_close(out.double(), ref, atol=tol, rtol=tol)
    assert accepted >= 10 and rejected >= 10  # the fuzz covers both sides


CHORUS_OPS = {
    "masked_blend": "npu_ops.chorus.masked_blend",
    "_masked_blend_backward": "npu_ops.chorus.masked_blend",
    "amplified_softmax": "npu_ops.chorus.amplified_softmax",
    "_amplified_softmax_backward": "npu_ops.chorus.amplified_softmax",
}


@pytest.mark.parametrize("name", list(CHORUS_OPS))
def test_schemas_name_their_fake_modules(name):
    """Each schema points torch at the module with its fake (set_python_module of its fragment),
    and that module registered a fake and a CPU kernel."""
    from torch._library.simple_registry import singleton

    assert torch._C._dispatch_pystub(f"npu_ops::{name}", "") == (CHORUS_OPS[name], "")
    assert singleton.find(f"npu_ops::{name}").fake_impl.kernel is not None
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"npu_ops::{name}", "CPU")
