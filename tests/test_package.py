"""Package-level behaviour: public names, build info, fakes for every op, CPU kernel variants."""

from __future__ import annotations

import textwrap

import npu_ops
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from utils import (
    LEVELS_4,
    LEVELS_MMCV,
    TOL,
    assert_close_to_ref,
    make_grad_output,
    make_msda_inputs,
    reference_fwd_bwd,
    run_pythons,
    supported_capabilities,
)

ALL_CAPS = ["generic", "avx2", "avx512"]


# ---------------------------------------------------------------------------------------------- public API


def test_msda_is_callable_and_a_package():
    assert callable(npu_ops.msda)
    inp = make_msda_inputs(1, 3, 2, 4, LEVELS_MMCV, 2, seed=81)
    out = npu_ops.msda(*inp.args())
    assert out.shape == (1, 3, 8)
    import npu_ops.msda as m

    assert m.MultiScaleDeformableAttention is npu_ops.msda.MultiScaleDeformableAttention
    assert callable(m.MultiScaleDeformableAttnFunction.apply)
    assert callable(m.multi_scale_deformable_attn_pytorch)
    assert torch.equal(m.msda(*inp.args()), out)
    from npu_ops.msda import MultiScaleDeformableAttention, msda  # noqa: F401

    assert torch.equal(msda(*inp.args()), out)
    assert set(npu_ops.msda.__all__) >= {
        "msda",
        "MultiScaleDeformableAttnFunction",
        "MultiScaleDeformableAttention",
        "multi_scale_deformable_attn_pytorch",
    }
    assert npu_ops.msda.__doc__  # help(npu_ops.msda) documents the op


def test_public_names():
    for name in npu_ops.__all__:
        assert hasattr(npu_ops, name), name
    assert isinstance(npu_ops.__version__, str) and npu_ops.__version__
    assert npu_ops.has_npu_backend() is False
    assert npu_ops.cpu_capability() in ALL_CAPS


def test_build_info():
    from npu_ops import _build_info

    assert _build_info.WITH_NPU is False
    assert isinstance(_build_info.NPU_REASON, str) and len(_build_info.NPU_REASON) > 10
    assert _build_info.TORCH_VERSION.split("+")[0] == torch.__version__.split("+")[0]


def test_info_report():
    from npu_ops import info

    report = info.report()
    assert report["npu_library_built"] is False
    assert report["npu_build_reason"]
    assert report["cpu_kernels"] == npu_ops.cpu_capability()
    assert {"msda", "_msda_backward"} <= set(report["ops"])


# ---------------------------------------------------------------------------------------------- fakes


def _npu_ops_ops():
    return sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("npu_ops::"))


def test_every_tensor_op_has_a_fake():
    from torch._library.simple_registry import singleton

    ops = _npu_ops_ops()
    assert {"msda", "_msda_backward"} <= set(ops)
    for name in ops:
        schema = getattr(torch.ops.npu_ops, name).default._schema
        uses_tensors = any("Tensor" in str(a.type) for a in (*schema.arguments, *schema.returns))
        if not uses_tensors:
            continue
        has_meta = torch._C._dispatch_has_kernel_for_dispatch_key(f"npu_ops::{name}", "Meta")
        has_fake = singleton.find(f"npu_ops::{name}").fake_impl.kernel is not None
        assert has_meta or has_fake, f"npu_ops::{name} has no fake / meta kernel"


def test_ops_under_fake_tensor_mode():
    inp = make_msda_inputs(3, 7, 2, 5, LEVELS_4, 3, dtype=torch.float32, seed=82)
    grad_out = make_grad_output(inp)
    with FakeTensorMode() as mode:
        args = [mode.from_tensor(t) for t in inp.args()]
        out = torch.ops.npu_ops.msda.default(*args)
        grads = torch.ops.npu_ops._msda_backward.default(mode.from_tensor(grad_out), *args)
        out_api = npu_ops.msda(*args)
    assert tuple(out.shape) == (3, 7, 10) and tuple(out_api.shape) == (3, 7, 10)
    assert [tuple(g.shape) for g in grads] == [tuple(t.shape) for t in inp.float_tensors]


# ---------------------------------------------------------------------------------------------- CPU variants

_VARIANT_SCRIPT = textwrap.dedent(
    """
    import os, torch
    import npu_ops
    torch.set_num_threads(2)
    data = torch.load({inp!r})
    res = {{"cap": npu_ops.cpu_capability(), "results": {{}}}}
    for key, (args, grad_out) in data.items():
        out = torch.ops.npu_ops.msda.default(*args)
        grads = torch.ops.npu_ops._msda_backward.default(grad_out, *args)
        res["results"][key] = (out, grads)
    # The variant is chosen once per process: changing the variable later has no effect.
    os.environ["NPU_OPS_CPU_CAPABILITY"] = "generic"
    res["cap_after_env_change"] = npu_ops.cpu_capability()
    torch.save(res, {out!r})
    """
)

VARIANT_CASES = {
    # name: (bs, nq, heads, channels, levels, points, dtype); channel counts hit the two-vector, one-vector
    # and scalar-tail loops of both accumulation types, and the chunked backward.
    "fp32_c3": (2, 9, 3, 3, LEVELS_4, 4, torch.float32),
    "fp32_c53": (2, 9, 2, 53, LEVELS_4, 3, torch.float32),
    "fp32_chunked": (1, 200, 1, 20, LEVELS_MMCV, 2, torch.float32),
    "fp64_c29": (2, 9, 3, 29, LEVELS_4, 4, torch.float64),
    "fp16_c53": (1, 9, 2, 53, LEVELS_4, 3, torch.float16),
    "bf16_c53": (1, 9, 2, 53, LEVELS_4, 3, torch.bfloat16),
}


@pytest.fixture(scope="module")
def variant_results(tmp_path_factory):
    """Run every instruction-set variant the CPU supports in its own process on the same inputs."""
    tmp = tmp_path_factory.mktemp("variants")
    data = {}
    inputs = {}
    for i, (key, (bs, nq, heads, channels, levels, points, dtype)) in enumerate(VARIANT_CASES.items()):
        inp = make_msda_inputs(bs, nq, heads, channels, levels, points, dtype=dtype, seed=90 + i)
        grad_out = make_grad_output(inp, seed=190 + i)
        inputs[key] = (inp, grad_out)
        data[key] = (inp.args(), grad_out)
    in_file = tmp / "inputs.pt"
    torch.save(data, in_file)
    jobs = [
        (_VARIANT_SCRIPT.format(inp=str(in_file), out=str(tmp / f"{cap}.pt")), {"NPU_OPS_CPU_CAPABILITY": cap})
        for cap in ALL_CAPS
    ]
    procs = run_pythons(jobs)
    results = {}
    for cap, proc in zip(ALL_CAPS, procs):
        results[cap] = (proc, torch.load(tmp / f"{cap}.pt") if proc.returncode == 0 else None)
    return inputs, results


@pytest.mark.parametrize("cap", ALL_CAPS)
def test_cpu_variant_selected_or_cleanly_refused(cap, variant_results):
    _, results = variant_results
    proc, res = results[cap]
    if cap in supported_capabilities():
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert res["cap"] == cap
        assert res["cap_after_env_change"] == cap
    else:
        assert proc.returncode != 0
        assert f"NPU_OPS_CPU_CAPABILITY={cap} is not supported by this CPU" in proc.stderr


@pytest.mark.parametrize("cap", ALL_CAPS)
def test_cpu_variant_matches_reference(cap, variant_results):
    inputs, results = variant_results
    if cap not in supported_capabilities():
        assert results[cap][1] is None
        return
    res = results[cap][1]["results"]
    for key, (inp, grad_out) in inputs.items():
        out, grads = res[key]
        ref_out, ref_grads = reference_fwd_bwd(inp, grad_out)
        dtype = inp.value.dtype
        if dtype in TOL:
            assert_close_to_ref(out, ref_out, dtype, f"{cap} {key} output")
            for g, r, n in zip(grads, ref_grads, ("grad_value", "grad_loc", "grad_attn")):
                assert_close_to_ref(g, r, dtype, f"{cap} {key} {n}")
        else:
            low_out, low_grads = reference_fwd_bwd(inp, grad_out, dtype=dtype)
            for n, k, r, lo in zip(
                ("out", "gv", "gl", "ga"), (out, *grads), (ref_out, *ref_grads), (low_out, *low_grads)
            ):
                k_err = float((k.double() - r).abs().max())
                lo_err = float((lo.double() - r).abs().max())
                assert k_err <= 2 * lo_err + 1e-5 * float(r.abs().max()), f"{cap} {key} {n}: {k_err} vs {lo_err}"


def test_cpu_variants_agree(variant_results):
    inputs, results = variant_results
    caps = [c for c in ALL_CAPS if c in supported_capabilities()]
    base = results[caps[0]][1]["results"]
    for cap in caps[1:]:
        other = results[cap][1]["results"]
        for key, (inp, _) in inputs.items():
            dtype = inp.value.dtype
            rtol = {torch.float64: 1e-12, torch.float32: 1e-5}.get(dtype, 1e-2)
            (o1, g1), (o2, g2) = base[key], other[key]
            for n, a, b in zip(("out", "gv", "gl", "ga"), (o1, *g1), (o2, *g2)):
                scale = max(1.0, float(a.abs().max()))
                torch.testing.assert_close(
                    b.double(),
                    a.double(),
                    atol=rtol * scale,
                    rtol=rtol,
                    msg=lambda m, c=cap, k=key, n=n: f"{c} vs {caps[0]} {k} {n}: {m}",
                )


_INVALID_CAPS = ["sse9", "AVX-512", "avx1024"]


@pytest.fixture(scope="module")
def invalid_cap_runs():
    code = textwrap.dedent(
        """
        import torch, npu_ops
        from npu_ops.msda import msda
        for fn in (npu_ops.cpu_capability,
                   lambda: msda(torch.rand(1, 1, 1, 1), torch.tensor([[1, 1]]), torch.tensor([0]),
                                torch.rand(1, 1, 1, 1, 1, 2), torch.rand(1, 1, 1, 1, 1))):
            try:
                fn()
            except RuntimeError as e:
                print("ERROR:", str(e).splitlines()[0])
            else:
                print("NO ERROR")
        """
    )
    procs = run_pythons([(code, {"NPU_OPS_CPU_CAPABILITY": bad}) for bad in _INVALID_CAPS])
    return dict(zip(_INVALID_CAPS, procs))


@pytest.mark.parametrize("bad", _INVALID_CAPS)
def test_invalid_cpu_capability_env_is_a_clear_error(bad, invalid_cap_runs):
    proc = invalid_cap_runs[bad]
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2, proc.stdout
    for line in lines:
        assert line.startswith("ERROR:"), line
        assert f"NPU_OPS_CPU_CAPABILITY must be generic, avx2 or avx512, got '{bad}'" in line, line
