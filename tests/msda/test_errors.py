"""Every invalid input raises a clean Python exception naming the argument, expected and actual."""

from __future__ import annotations

import random
import re

import npu_ops
import pytest
import torch
from utils import LEVELS_4, LEVELS_MMCV, TOL, MsdaInputs, make_grad_output, make_msda_inputs, reference_fwd_bwd

ERRORS = (RuntimeError, ValueError, TypeError)


def _inp(**kw):
    args = dict(bs=2, nq=5, heads=3, channels=4, levels=LEVELS_4, points=2, dtype=torch.float32, seed=61)
    args.update(kw)
    return make_msda_inputs(**args)


def _call(inp: MsdaInputs, **kw):
    return npu_ops.msda(*inp.args(), **kw)


def _replace(inp: MsdaInputs, **kw) -> MsdaInputs:
    d = dict(
        zip(("value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights"), inp.args())
    )
    d.update(kw)
    return MsdaInputs(**d)


# ---------------------------------------------------------------------------------------------- ndim

NDIM_CASES = {
    "value": (lambda i: i.value[0], r"value must be 4-D .*got 3-D"),
    "spatial_shapes": (lambda i: i.spatial_shapes.flatten(), r"spatial_shapes must be 2-D .*got 1-D"),
    "level_start_index": (lambda i: i.level_start_index[None], r"level_start_index must be 1-D .*got 2-D"),
    "sampling_locations": (lambda i: i.sampling_locations[..., 0], r"sampling_locations must be 6-D .*got"),
    "attention_weights": (lambda i: i.attention_weights[..., None], r"attention_weights must be 5-D .*got"),
}


@pytest.mark.parametrize("name", list(NDIM_CASES))
def test_wrong_ndim(name):
    inp = _inp()
    make_bad, pattern = NDIM_CASES[name]
    bad = _replace(inp, **{name: make_bad(inp)})
    with pytest.raises(ERRORS, match=pattern):
        _call(bad)
    with pytest.raises(ERRORS, match=name):
        torch.ops.npu_ops.msda.default(*bad.args())


# ---------------------------------------------------------------------------------------------- sizes


def _resize(t: torch.Tensor, dim: int, new: int) -> torch.Tensor:
    shape = list(t.shape)
    shape[dim] = new
    return torch.rand(shape, dtype=t.dtype)


# (tensor, dim, what the message must mention)
SIZE_CASES = [
    ("sampling_locations", 0, "bs"),
    ("attention_weights", 0, "bs"),
    ("sampling_locations", 2, "num_heads"),
    ("attention_weights", 2, "num_heads"),
    ("sampling_locations", 3, "num_levels"),
    ("attention_weights", 3, "num_levels"),
    ("attention_weights", 1, "num_queries"),
    ("attention_weights", 4, "num_points"),
    ("sampling_locations", 5, r"\(x, y\)"),
]


@pytest.mark.parametrize("name,dim,what", SIZE_CASES, ids=[f"{n}-dim{d}" for n, d, _ in SIZE_CASES])
def test_disagreeing_sizes(name, dim, what):
    inp = _inp()
    t = getattr(inp, name)
    new = t.shape[dim] + 1
    bad = _replace(inp, **{name: _resize(t, dim, new)})
    # Message: argument name, which size, actual value and expected value.
    pattern = rf"{name}.*{what}.*{new}.*expected {t.shape[dim]}"
    with pytest.raises(ERRORS, match=pattern):
        _call(bad)
    with pytest.raises(ERRORS, match=pattern):
        torch.ops.npu_ops.msda.default(*bad.args())
    grad_out = make_grad_output(inp)
    with pytest.raises(ERRORS, match=name):
        torch.ops.npu_ops._msda_backward.default(grad_out, *bad.args())


def test_value_heads_disagree_with_locations():
    inp = _inp()
    bad = _replace(inp, value=torch.randn(2, inp.value.shape[1], 4, 4))
    with pytest.raises(ERRORS, match=r"sampling_locations.*num_heads.*= 3 at dim 2, expected 4"):
        _call(bad)


def test_level_start_index_wrong_length():
    inp = _inp()
    bad = _replace(inp, level_start_index=inp.level_start_index[:-1])
    with pytest.raises(ERRORS, match=r"level_start_index.*num_levels.*= 3.*expected 4"):
        _call(bad)


def test_spatial_shapes_wrong_second_dim():
    inp = _inp()
    bad = _replace(inp, spatial_shapes=torch.cat([inp.spatial_shapes, inp.spatial_shapes[:, :1]], 1))
    with pytest.raises(ERRORS, match=r"spatial_shapes.*= 3 at dim 1, expected 2"):
        _call(bad)


def test_zero_levels():
    inp = _inp(levels=[(1, 1)])
    bad = MsdaInputs(
        inp.value[:, :0],
        inp.spatial_shapes[:0],
        inp.level_start_index[:0],
        inp.sampling_locations[:, :, :, :0],
        inp.attention_weights[:, :, :, :0],
    )
    with pytest.raises(ERRORS, match="spatial_shapes must describe at least one level"):
        _call(bad)


@pytest.mark.parametrize("delta", [-1, 1, 7])
def test_num_keys_mismatch(delta):
    inp = _inp()
    nk = inp.value.shape[1]
    bad = _replace(inp, value=torch.randn(2, nk + delta, 3, 4))
    with pytest.raises(ERRORS, match=rf"value\.shape\[1\].*must equal.*= {nk}, got {nk + delta}"):
        _call(bad)


@pytest.mark.parametrize(
    "starts,level,expected",
    [([0, 24, 29, 31], 2, 30), ([0, 23, 30, 31], 1, 24), ([1, 25, 31, 32], 0, 0), ([0, 30, 24, 31], 1, 24)],
    ids=["off_by_one_last", "off_by_one", "not_from_zero", "shuffled"],
)
def test_inconsistent_level_start_index(starts, level, expected):
    inp = _inp()  # LEVELS_4: areas 24, 6, 1, 5 -> starts [0, 24, 30, 31]
    assert inp.level_start_index.tolist() == [0, 24, 30, 31]
    bad = _replace(inp, level_start_index=torch.tensor(starts))
    with pytest.raises(ERRORS, match=rf"level_start_index\[{level}\] must be {expected}.*got {starts[level]}"):
        _call(bad)


@pytest.mark.parametrize("hw", [(0, 2), (3, 0), (-3, -2), (-1, 6)])
def test_non_positive_level_sizes(hw):
    inp = _inp(levels=LEVELS_MMCV)
    shapes = inp.spatial_shapes.clone()
    shapes[1] = torch.tensor(hw)
    bad = _replace(inp, spatial_shapes=shapes)
    with pytest.raises(ERRORS, match=rf"spatial_shapes\[1\] must be positive.*got \({hw[0]}, {hw[1]}\)"):
        _call(bad)


def test_level_size_overflow():
    inp = _inp(levels=LEVELS_MMCV)
    shapes = inp.spatial_shapes.clone()
    shapes[0] = torch.tensor([2**62, 4])
    with pytest.raises(ERRORS, match="spatial_shapes"):
        _call(_replace(inp, spatial_shapes=shapes))


# ---------------------------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.uint8, torch.complex64])
def test_value_dtype(dtype):
    inp = _inp()
    bad = _replace(inp, value=inp.value.to(dtype))
    with pytest.raises(ERRORS, match=r"value must have dtype float32, float64, float16 or bfloat16"):
        _call(bad)


@pytest.mark.parametrize("name", ["spatial_shapes", "level_start_index"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int16, torch.uint8, torch.bool])
def test_index_tensor_dtype(name, dtype):
    inp = _inp()
    bad = _replace(inp, **{name: getattr(inp, name).to(dtype)})
    with pytest.raises(ERRORS, match=rf"{name} must have dtype int32 or int64, got"):
        _call(bad)


@pytest.mark.parametrize("name", ["sampling_locations", "attention_weights"])
def test_integer_locations_or_weights(name):
    inp = _inp()
    bad = _replace(inp, **{name: getattr(inp, name).long()})
    with pytest.raises(TypeError, match=rf"{name} must be a floating-point tensor, got dtype torch.int64"):
        _call(bad)


@pytest.mark.parametrize("name", ["sampling_locations", "attention_weights"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_raw_op_mismatched_float_dtype(name, dtype):
    """The raw op does not cast: it must say so (npu_ops.msda() casts)."""
    inp = _inp()
    bad = _replace(inp, **{name: getattr(inp, name).to(dtype)})
    pattern = rf"{name} must have value's dtype Float, got {'Double' if dtype == torch.float64 else 'Half'}"
    with pytest.raises(RuntimeError, match=pattern):
        torch.ops.npu_ops.msda.default(*bad.args())
    with pytest.raises(RuntimeError, match=pattern):
        torch.ops.npu_ops._msda_backward.default(make_grad_output(inp), *bad.args())
    # The public function casts and succeeds.
    assert _call(bad).dtype == torch.float32


# spatial_shapes may be a list of (h, w) (tests/msda/test_list_shapes.py).
@pytest.mark.parametrize("name", ["value", "level_start_index", "sampling_locations"])
def test_not_a_tensor(name):
    inp = _inp()
    bad = list(inp.args())
    idx = ("value", "spatial_shapes", "level_start_index", "sampling_locations").index(name)
    bad[idx] = bad[idx].tolist()
    with pytest.raises(TypeError, match=rf"{name} must be a torch.Tensor, got list"):
        npu_ops.msda(*bad)


# ---------------------------------------------------------------------------------------------- devices


@pytest.mark.parametrize(
    "name", ["value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights"]
)
def test_tensor_on_other_device(name):
    """One tensor on the meta device, the others on CPU: a clear device error naming the tensor
    (never a silent fake result)."""
    inp = _inp()
    bad = _replace(inp, **{name: getattr(inp, name).to("meta")})
    with pytest.raises(ERRORS, match=rf"{name} is on meta|value is on meta"):
        _call(bad)


@pytest.mark.parametrize(
    "name", ["value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights"]
)
def test_raw_op_tensor_on_other_device(name):
    inp = _inp()
    bad = _replace(inp, **{name: getattr(inp, name).to("meta")})
    with pytest.raises(ERRORS, match=rf"{name} is on meta|value is on meta"):
        torch.ops.npu_ops.msda.default(*bad.args())
    with pytest.raises(ERRORS, match=rf"{name} is on meta|value is on meta"):
        torch.ops.npu_ops._msda_backward.default(make_grad_output(inp), *bad.args())


def test_all_tensors_on_meta_give_shapes():
    """All on meta is fine (fake kernel): shape propagation only."""
    inp = _inp()
    meta = MsdaInputs(*[t.to("meta") for t in inp.args()])
    out = _call(meta)
    assert out.device.type == "meta" and out.shape == (2, 5, 12)


# ---------------------------------------------------------------------------------------------- backward


def test_double_backward_raises():
    inp = _inp(dtype=torch.float64).requires_grad_()
    out = _call(inp)
    grads = torch.autograd.grad(out.square().sum(), inp.float_tensors, create_graph=True)
    assert all(g.requires_grad for g in grads)
    with pytest.raises(RuntimeError, match="first-order gradients only"):
        torch.autograd.grad(sum(g.sum() for g in grads), inp.float_tensors)


@pytest.mark.parametrize(
    "make_bad,pattern",
    [
        (lambda g: g[:, :-1], r"grad_output must have shape \[bs, num_queries, num_heads\*channels\] = \[2, 5, 12\]"),
        (lambda g: g.reshape(2, 5, 3, 4), r"grad_output must have shape .*got \[2, 5, 3, 4\]"),
        (lambda g: g.double(), r"grad_output must have value's dtype Float, got Double"),
        (lambda g: g.to("meta"), r"grad_output is on meta"),
    ],
    ids=["shape", "ndim", "dtype", "device"],
)
def test_raw_backward_bad_grad_output(make_bad, pattern):
    inp = _inp()
    grad_out = make_grad_output(inp)
    with pytest.raises(ERRORS, match=pattern):
        torch.ops.npu_ops._msda_backward.default(make_bad(grad_out), *inp.args())


# ---------------------------------------------------------------------------------------------- im2col_step


@pytest.mark.parametrize("step", [0, -1, 2.5, True, False, "64", None])
def test_bad_im2col_step(step):
    inp = _inp()
    with pytest.raises(
        (ValueError, TypeError), match=rf"im2col_step must be a positive int, got {re.escape(repr(step))}"
    ):
        _call(inp, im2col_step=step)


# ---------------------------------------------------------------------------------------------- fuzz


def _random_valid_config(rng: random.Random) -> dict:
    levels = [(rng.randint(1, 6), rng.randint(1, 6)) for _ in range(rng.randint(1, 4))]
    return dict(
        bs=rng.randint(0, 3),
        nq=rng.choice([0, 1, 2, 7, 31, 33]),
        heads=rng.randint(1, 5),
        channels=rng.choice([1, 2, 3, 8, 17, 33]),
        levels=levels,
        points=rng.randint(1, 5),
        dtype=rng.choice([torch.float32, torch.float64, torch.float16, torch.bfloat16]),
        shapes_dtype=rng.choice([torch.int32, torch.int64]),
        seed=rng.randint(0, 10**6),
    )


def _corrupt(rng: random.Random, inp: MsdaInputs):
    """Returns (description, args, kwargs, expected name in the message) for one invalid call."""
    v, shapes, starts, loc, attn = inp.args()
    L = shapes.shape[0]
    kind = rng.choice(
        [
            "drop_dim",
            "add_dim",
            "change_loc_dim",
            "change_attn_dim",
            "change_value_dim",
            "value_dtype",
            "index_dtype",
            "float_dtype_int",
            "starts_shuffle",
            "starts_offset",
            "level_size",
            "extra_level",
            "im2col",
            "meta",
        ]
    )
    names = ["value", "spatial_shapes", "level_start_index", "sampling_locations", "attention_weights"]
    args = list(inp.args())
    kwargs = {}
    if kind in ("drop_dim", "add_dim"):
        i = rng.randrange(5)
        t = args[i]
        if kind == "drop_dim" and t.dim() > 1:
            d = rng.randrange(t.dim() - 1)
            args[i] = t.flatten(d, d + 1)
        else:
            args[i] = t.unsqueeze(rng.randrange(t.dim() + 1))
        return kind, args, kwargs, names[i]
    if kind == "change_loc_dim":
        dim = rng.choice([0, 2, 3, 5, 1, 4])
        args[3] = _resize(loc, dim, loc.shape[dim] + rng.randint(1, 2))
        return f"{kind}{dim}", args, kwargs, "sampling_locations|attention_weights"
    if kind == "change_attn_dim":
        dim = rng.randrange(5)
        args[4] = _resize(attn, dim, attn.shape[dim] + rng.randint(1, 2))
        return f"{kind}{dim}", args, kwargs, "attention_weights"
    if kind == "change_value_dim":
        dim = rng.choice([0, 1, 2])  # channels (dim 3) may be anything
        args[0] = _resize(v, dim, v.shape[dim] + rng.randint(1, 2))
        return f"{kind}{dim}", args, kwargs, "sampling_locations|value"
    if kind == "value_dtype":
        args[0] = v.to(rng.choice([torch.int64, torch.int32, torch.bool, torch.complex64]))
        return kind, args, kwargs, "value"
    if kind == "index_dtype":
        i = rng.choice([1, 2])
        args[i] = args[i].to(rng.choice([torch.float32, torch.float64, torch.int16, torch.uint8]))
        return kind, args, kwargs, names[i]
    if kind == "float_dtype_int":
        i = rng.choice([3, 4])
        args[i] = args[i].to(torch.int64)
        return kind, args, kwargs, names[i]
    if kind == "starts_shuffle" and L > 1:
        perm = torch.randperm(L, generator=torch.Generator().manual_seed(rng.randint(0, 999)))
        while torch.equal(starts[perm], starts):
            perm = perm.roll(1)
        args[2] = starts[perm]
        return kind, args, kwargs, "level_start_index"
    if kind in ("starts_offset", "starts_shuffle"):
        s = starts.clone()
        s[rng.randrange(L)] += rng.choice([-1, 1, 5])
        args[2] = s
        return kind, args, kwargs, "level_start_index"
    if kind == "level_size":
        s = shapes.clone()
        s[rng.randrange(L), rng.randrange(2)] = rng.choice([0, -1, -5])
        args[1] = s
        return kind, args, kwargs, "spatial_shapes"
    if kind == "extra_level":
        args[1] = torch.cat([shapes, shapes[:1]])
        args[2] = torch.cat([starts, starts[-1:] + 1])
        return kind, args, kwargs, "level_start_index|sampling_locations"
    if kind == "im2col":
        kwargs["im2col_step"] = rng.choice([0, -3, 1.5, True, "2"])
        return kind, args, kwargs, "im2col_step"
    i = rng.randrange(5)
    args[i] = args[i].to("meta")
    return "meta", args, kwargs, f"{names[i]}|value is on meta"


def _expect_error(fn, args, kwargs, pattern):
    """None if ``fn`` raised a matching clean error, else a description of what happened."""
    try:
        fn(*args, **kwargs)
    except ERRORS as e:
        if not re.search(pattern, str(e)):
            return f"{type(e).__name__} not matching {pattern!r}: {str(e)[:200]}"
        if "npu_ops.msda" not in str(e):
            return f"message does not name npu_ops.msda: {str(e)[:200]}"
        return None
    return "no error (silent success)"


def test_fuzz_invalid_inputs_raise_cleanly():
    """200 seeded random valid configurations, each with one random corruption: npu_ops.msda and the
    raw forward / backward ops must raise a clean error naming the culprit (never crash, never succeed)."""
    rng = random.Random(1234)
    failures = []
    for it in range(200):
        cfg = _random_valid_config(rng)
        inp = make_msda_inputs(**cfg)
        desc, args, kwargs, name = _corrupt(rng, inp)
        problem = _expect_error(npu_ops.msda, args, kwargs, name)
        if problem:
            failures.append(f"#{it} {desc} npu_ops.msda: {problem}")
        if desc in ("im2col", "float_dtype_int"):
            continue  # checks of the Python wrapper only
        # The raw ops validate too (forward and backward); they do not cast, so cast what msda() would.
        raw = list(args)
        for i in (3, 4):
            if raw[0].is_floating_point() and raw[i].is_floating_point() and not raw[i].is_meta:
                raw[i] = raw[i].to(raw[0].dtype)
        problem = _expect_error(torch.ops.npu_ops.msda.default, raw, {}, name)
        if problem:
            failures.append(f"#{it} {desc} raw msda: {problem}")
        grad_out = torch.zeros(inp.out_shape(), dtype=inp.value.dtype)
        problem = _expect_error(torch.ops.npu_ops._msda_backward.default, [grad_out, *raw], {}, ".")
        if problem:
            failures.append(f"#{it} {desc} raw _msda_backward: {problem}")
    assert not failures, f"{len(failures)} bad outcomes:\n" + "\n".join(failures)


def test_fuzz_valid_inputs_succeed():
    rng = random.Random(4321)
    for it in range(60):
        cfg = _random_valid_config(rng)
        inp = make_msda_inputs(**cfg)
        step = rng.choice([1, 2, 64, 1000])
        out = npu_ops.msda(*inp.args(), im2col_step=step)
        assert out.shape == inp.out_shape() and out.dtype == cfg["dtype"]
        assert torch.isfinite(out).all(), (it, cfg)
        grad_out = make_grad_output(inp)
        grads = torch.ops.npu_ops._msda_backward.default(grad_out, *inp.args())
        for g, t in zip(grads, inp.float_tensors):
            assert g.shape == t.shape and g.dtype == t.dtype and torch.isfinite(g).all(), (it, cfg)
        if cfg["dtype"] in TOL:
            ref, _ = reference_fwd_bwd(inp)
            atol, rtol = TOL[cfg["dtype"]]
            torch.testing.assert_close(out.double(), ref, atol=atol * 10, rtol=rtol * 10)
