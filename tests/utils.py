"""Shared helpers for the npu_ops test suite: input factories, float64 references, assertions."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import time
from collections.abc import Sequence

import npu_ops
import torch
import torch.nn.functional as F
from npu_ops.msda import multi_scale_deformable_attn_pytorch

# Level configurations used across the suite; (h, w) per level.
LEVELS_1x1 = [(1, 1)]
LEVELS_1xW = [(1, 7)]
LEVELS_HxW = [(5, 3)]
LEVELS_4 = [(6, 4), (3, 2), (1, 1), (1, 5)]
LEVELS_5 = [(7, 5), (4, 3), (2, 2), (1, 1), (3, 1)]
LEVELS_MMCV = [(6, 4), (3, 2)]

# Tolerances against the float64 reference: (atol, rtol), atol scaled by the reference's magnitude.
TOL = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-4, 1e-4)}


@dataclasses.dataclass
class MsdaInputs:
    value: torch.Tensor
    spatial_shapes: torch.Tensor
    level_start_index: torch.Tensor
    sampling_locations: torch.Tensor
    attention_weights: torch.Tensor

    def args(self) -> tuple[torch.Tensor, ...]:
        return (
            self.value,
            self.spatial_shapes,
            self.level_start_index,
            self.sampling_locations,
            self.attention_weights,
        )

    def to(self, dtype: torch.dtype, requires_grad: bool = False) -> MsdaInputs:
        """Copy with the three float tensors cast to ``dtype`` (detached, fresh leaves)."""

        def conv(t):
            return t.detach().to(dtype).clone().requires_grad_(requires_grad)

        return MsdaInputs(
            conv(self.value),
            self.spatial_shapes.clone(),
            self.level_start_index.clone(),
            conv(self.sampling_locations),
            conv(self.attention_weights),
        )

    def requires_grad_(self) -> MsdaInputs:
        return self.to(self.value.dtype, requires_grad=True)

    @property
    def float_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.value, self.sampling_locations, self.attention_weights

    @property
    def levels(self) -> list[tuple[int, int]]:
        return [(int(h), int(w)) for h, w in self.spatial_shapes.tolist()]

    def out_shape(self) -> tuple[int, int, int]:
        bs, _, heads, channels = self.value.shape
        return (bs, self.sampling_locations.shape[1], heads * channels)


def shapes_and_starts(levels: Sequence[tuple[int, int]], dtype: torch.dtype = torch.int64):
    shapes = torch.tensor([list(hw) for hw in levels], dtype=torch.int64)
    areas = shapes.prod(1)
    starts = torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])
    return shapes.to(dtype), starts.to(dtype)


def _pixel_coords(gen: torch.Generator, size: int, n: int, mode: str, margin: float) -> torch.Tensor:
    """Pixel coordinates (x = loc * size - 0.5) for ``n`` samples of one axis of one level.

    ``mode``:
      - ``"valid"``: integer part in {-1, ..., size-1}, fractional part in [0.1, 0.9]: every point
        contributes (border bands included) and is far from the bilinear kinks (gradcheck-safe).
      - ``"wide"``: a mix of uniform points over [-1.25, size + 0.25], points in the border bands
        (-1, 0) and (size-1, size), and points far outside the map (location outside [0, 1]); every
        point is then pushed at least ``margin`` pixels away from integers, i.e. from the kinks and
        from x == -1 / x == size, where grid_sample's gradient legitimately differs.
    """
    if mode == "valid":
        k = torch.randint(-1, size, (n,), generator=gen, dtype=torch.float64)
        f = 0.1 + 0.8 * torch.rand(n, generator=gen, dtype=torch.float64)
        return k + f
    if mode != "wide":
        raise ValueError(mode)
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    kind = torch.randint(0, 20, (n,), generator=gen)
    x = -1.25 + (size + 1.5) * u  # uniform over [-1.25, size + 0.25]
    x = torch.where(kind <= 1, -1.0 + u, x)  # band (-1, 0)
    x = torch.where((kind == 2) | (kind == 3), size - 1.0 + u, x)  # band (size-1, size)
    x = torch.where(kind == 4, -2.0 * size - 2.0 * u * size, x)  # location in about [-4, -2]
    x = torch.where(kind == 5, 2.0 * size + 2.0 * u * size, x)  # location in about [2, 4]
    # Push away from integers (kinks, x == -1, x == size).
    r = torch.round(x)
    d = x - r
    close = d.abs() < margin
    x = torch.where(close, r + torch.where(d >= 0, 2 * margin, -2 * margin), x)
    return x


def make_locations(
    gen: torch.Generator,
    bs: int,
    nq: int,
    heads: int,
    levels: Sequence[tuple[int, int]],
    points: int,
    mode: str = "wide",
    margin: float = 1e-3,
) -> torch.Tensor:
    """float64 sampling locations [bs, nq, heads, L, P, 2] built in pixel space per level."""
    n = bs * nq * heads * points
    per_level = []
    for h, w in levels:
        x = _pixel_coords(gen, w, n, mode, margin)
        y = _pixel_coords(gen, h, n, mode, margin)
        lx = (x + 0.5) / w
        ly = (y + 0.5) / h
        per_level.append(torch.stack([lx, ly], -1).view(bs, nq, heads, points, 2))
    return torch.stack(per_level, dim=3)


def make_msda_inputs(
    bs: int = 2,
    nq: int = 5,
    heads: int = 2,
    channels: int = 4,
    levels: Sequence[tuple[int, int]] = LEVELS_MMCV,
    points: int = 2,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    loc_mode: str = "wide",
    margin: float = 1e-3,
    shapes_dtype: torch.dtype = torch.int64,
    attn_mode: str = "randn",
    requires_grad: bool = False,
) -> MsdaInputs:
    """Seeded msda inputs. Values are generated in float64 and then cast to ``dtype``.

    attn_mode: ``"randn"`` (unnormalised, signed) or ``"softmax"`` (softmax over L*P, as the module does).
    """
    gen = torch.Generator().manual_seed(seed)
    shapes, starts = shapes_and_starts(levels, shapes_dtype)
    num_keys = sum(h * w for h, w in levels)
    value = torch.randn(bs, num_keys, heads, channels, generator=gen, dtype=torch.float64)
    loc = make_locations(gen, bs, nq, heads, levels, points, loc_mode, margin)
    L = len(levels)
    attn = torch.randn(bs, nq, heads, L, points, generator=gen, dtype=torch.float64)
    if attn_mode == "softmax":
        attn = attn.view(bs, nq, heads, L * points).softmax(-1).view(bs, nq, heads, L, points)
    elif attn_mode != "randn":
        raise ValueError(attn_mode)
    inp = MsdaInputs(value, shapes, starts, loc, attn).to(dtype)
    _move_points_off_kinks(inp, margin / 2)
    return inp.to(dtype, requires_grad=requires_grad)


def _move_points_off_kinks(inp: MsdaInputs, margin: float) -> None:
    """After rounding to a low-precision dtype a coordinate may land on an integer pixel coordinate
    (e.g. y == -1 exactly, where grid_sample and mmcv legitimately differ): move such points to
    pixel (0.5, 0.5)."""
    loc = inp.sampling_locations
    for lvl, (h, w) in enumerate(inp.levels):
        sl = loc[:, :, :, lvl]
        x = sl[..., 0].double() * w - 0.5
        y = sl[..., 1].double() * h - 0.5
        bad = ((x - x.round()).abs() < margin) | ((y - y.round()).abs() < margin)
        if bad.any():
            sl[..., 0][bad] = 1.0 / w
            sl[..., 1][bad] = 1.0 / h


def make_grad_output(inp: MsdaInputs, seed: int = 1, dtype: torch.dtype | None = None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(inp.out_shape(), generator=gen, dtype=torch.float64)
    return g.to(dtype or inp.value.dtype)


# ----------------------------------------------------------------------------------------------
# References


def _fwd_bwd(fn, value, loc, attn, grad_out):
    value = value.detach().clone().requires_grad_(grad_out is not None)
    loc = loc.detach().clone().requires_grad_(grad_out is not None)
    attn = attn.detach().clone().requires_grad_(grad_out is not None)
    out = fn(value, loc, attn)
    if grad_out is None:
        return out.detach(), None
    grads = torch.autograd.grad(out, (value, loc, attn), grad_out.to(out.dtype))
    return out.detach(), grads


def _fwd_bwd_in(fn, inp: MsdaInputs, grad_out: torch.Tensor | None, dtype: torch.dtype):
    """``_fwd_bwd`` on the inputs (and grad_out) cast to ``dtype``."""
    cast = [t.to(dtype) for t in (inp.value, inp.sampling_locations, inp.attention_weights)]
    return _fwd_bwd(fn, *cast, None if grad_out is None else grad_out.to(dtype))


def reference_fwd_bwd(inp: MsdaInputs, grad_out: torch.Tensor | None = None, dtype: torch.dtype = torch.float64):
    """grid_sample reference (``multi_scale_deformable_attn_pytorch``), by default in float64.

    Returns ``(out, (grad_value, grad_loc, grad_attn))`` (grads None without grad_out).
    """
    shapes = inp.spatial_shapes

    def fn(v, loc, attn):
        return multi_scale_deformable_attn_pytorch(v, shapes, loc, attn)

    return _fwd_bwd_in(fn, inp, grad_out, dtype)


def exact_msda(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    """Differentiable pure-PyTorch transcription of mmcv's CUDA kernel (strict bounds, zero padding).

    Unlike grid_sample it drops a point exactly at x == -1 (zero gradients) and handles NaN/Inf
    (dropped), and it reads value through ``level_start_index``. Use it in float64.
    """
    bs, _, heads, channels = value.shape
    _, nq, _, L, P, _ = sampling_locations.shape
    out = value.new_zeros(bs, nq, heads, channels)
    b_idx = torch.arange(bs).view(bs, 1, 1, 1)
    h_idx = torch.arange(heads).view(1, 1, heads, 1)
    for lvl in range(L):
        H, W = (int(s) for s in spatial_shapes[lvl].tolist())
        start = int(level_start_index[lvl])
        v = value[:, start : start + H * W]  # [bs, HW, heads, C]
        loc = sampling_locations[:, :, :, lvl]  # [bs, nq, heads, P, 2]
        a = attention_weights[:, :, :, lvl]  # [bs, nq, heads, P]
        x = loc[..., 0] * W - 0.5
        y = loc[..., 1] * H - 0.5
        valid = (x > -1) & (y > -1) & (x < W) & (y < H)
        x = torch.where(valid, x, torch.zeros_like(x))
        y = torch.where(valid, y, torch.zeros_like(y))
        a = torch.where(valid, a, torch.zeros_like(a))
        x0 = torch.floor(x).detach()
        y0 = torch.floor(y).detach()
        fx, fy = x - x0, y - y0
        x0, y0 = x0.long(), y0.long()
        corners = [
            (y0, x0, (1 - fy) * (1 - fx)),
            (y0, x0 + 1, (1 - fy) * fx),
            (y0 + 1, x0, fy * (1 - fx)),
            (y0 + 1, x0 + 1, fy * fx),
        ]
        for cy, cx, wgt in corners:
            ok = valid & (cy >= 0) & (cy < H) & (cx >= 0) & (cx < W)
            pix = torch.where(ok, cy * W + cx, torch.zeros_like(cx))  # [bs, nq, heads, P]
            rows = v[b_idx, pix, h_idx]  # [bs, nq, heads, P, C]
            coef = torch.where(ok, wgt * a, torch.zeros_like(wgt))
            out = out + (coef.unsqueeze(-1) * rows).sum(3)
    return out.reshape(bs, nq, heads * channels)


def exact_fwd_bwd(inp: MsdaInputs, grad_out: torch.Tensor | None = None, dtype: torch.dtype = torch.float64):
    shapes, starts = inp.spatial_shapes, inp.level_start_index

    def fn(v, loc, attn):
        return exact_msda(v, shapes, starts, loc, attn)

    return _fwd_bwd_in(fn, inp, grad_out, dtype)


def kernel_fwd_bwd(inp: MsdaInputs, grad_out: torch.Tensor | None = None, fn=None, **kwargs):
    """npu_ops.msda forward (and backward through autograd) on ``inp`` in its own dtypes."""
    fn = fn or npu_ops.msda
    shapes, starts = inp.spatial_shapes, inp.level_start_index

    def call(v, loc, attn):
        return fn(v, shapes, starts, loc, attn, **kwargs)

    return _fwd_bwd(call, inp.value, inp.sampling_locations, inp.attention_weights, grad_out)


# ----------------------------------------------------------------------------------------------
# Assertions

GRAD_NAMES = ("grad_value", "grad_sampling_locations", "grad_attention_weights")


def assert_close_to_ref(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, name: str = "") -> None:
    """Compare with the float64 reference; atol is scaled by the reference's magnitude."""
    atol, rtol = TOL[dtype]
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    assert actual.dtype == dtype, f"{name}: dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    torch.testing.assert_close(
        actual.double(), expected.double(), atol=atol * scale, rtol=rtol, msg=lambda m: f"{name}: {m}"
    )


def assert_all_close_to_ref(out, grads, ref_out, ref_grads, dtype) -> None:
    assert_close_to_ref(out, ref_out, dtype, "output")
    if grads is not None:
        for g, r, n in zip(grads, ref_grads, GRAD_NAMES):
            assert_close_to_ref(g, r, dtype, n)


def max_abs_err(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.numel() == 0:
        return 0.0
    return float((a.double() - b.double()).abs().max())


def assert_equal_tuple(a, b, what: str = "") -> None:
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.dtype == y.dtype and x.shape == y.shape, f"{what}[{i}]: {x.dtype}{tuple(x.shape)} vs {y.dtype}"
        assert torch.equal(x, y), f"{what}[{i}]: not bit-identical (max diff {max_abs_err(x, y)})"


# ----------------------------------------------------------------------------------------------
# Subprocesses


def _python_env(env: dict | None) -> dict:
    full_env = dict(os.environ)
    full_env.pop("NPU_OPS_CPU_CAPABILITY", None)
    full_env.setdefault("OMP_NUM_THREADS", "2")
    full_env.update(env or {})
    return full_env


def _transient_import_failure(proc) -> bool:
    # A concurrent rebuild of python/npu_ops/_C*.so can make the import fail for a moment.
    return proc.returncode != 0 and "ImportError" in proc.stderr and "_C" in proc.stderr


def run_pythons(jobs: Sequence[tuple[str, dict | None]], timeout: float = 120, retries: int = 2):
    """Run each ``(code, env)`` in a fresh interpreter, concurrently; returns CompletedProcess objects."""
    results: list = [None] * len(jobs)
    pending = list(range(len(jobs)))
    for attempt in range(retries + 1):
        procs = {
            i: subprocess.Popen(
                [sys.executable, "-c", jobs[i][0]],
                env=_python_env(jobs[i][1]),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in pending
        }
        for i, p in procs.items():
            try:
                out, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
            results[i] = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        pending = [i for i in pending if _transient_import_failure(results[i])]
        if not pending or attempt == retries:
            break
        time.sleep(5)
    return results


def run_python(code: str, env: dict | None = None, timeout: float = 120):
    return run_pythons([(code, env)], timeout=timeout)[0]


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def supported_capabilities() -> list[str]:
    """CPU kernel variants this machine can run, from /proc/cpuinfo (the C++ side's rule)."""
    flags = cpu_flags()
    caps = ["generic"]
    if {"avx2", "fma", "f16c"} <= flags:
        caps.append("avx2")
        if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
            caps.append("avx512")
    return caps


def grid_sample_lowp_supported(dtype: torch.dtype) -> bool:
    try:
        F.grid_sample(torch.zeros(1, 1, 2, 2, dtype=dtype), torch.zeros(1, 1, 1, 2, dtype=dtype), align_corners=False)
        return True
    except RuntimeError:
        return False


def numel(shape) -> int:
    return math.prod(shape)
