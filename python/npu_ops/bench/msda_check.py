"""Correctness checks run before timing, so that the benchmark never times a wrong kernel silently.

The oracle is ``grid_sample`` in float64 on the very same (dtype-rounded) inputs; ``npu_ops`` runs in the
benchmark dtype. A quantity passes when ``max|npu_ops - oracle| / max(1, max|oracle|)`` is within
:data:`TOLERANCE` of the dtype.

- :func:`check_small`: a scaled-down copy of the case (level sides / 4, bs <= 2): output and the gradients
  of value, locations and weights. The derivative of bilinear sampling jumps where a location falls
  exactly on a pixel-centre line (integer pixel coordinate); both results are valid one-sided
  derivatives. Points within rounding distance of such a line (16 ulp of float32, or of float64 for
  float64, at the level size) can land on either side in the kernel; with float16/bfloat16 locations
  exact hits are common (e.g. on power-of-two maps). Those ``grad_loc`` components are left out and
  their number is reported.
- :func:`check_real`: the real inputs, for up to 512 evenly spread queries: the rows of the first
  timed ``npu_ops`` forward output against the oracle.

``grid_sample`` itself in float16/bfloat16 on CPU can return non-finite values where the float64 oracle
is finite; the run counts them in the baseline's first forward output and reports them (not a failure
of ``npu_ops``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .msda_cases import Case, MsdaInputs, make_inputs, scaled
from .msda_steps import DTYPES, call, leaves, make_grad_out

__all__ = ["Check", "TOLERANCE", "check_small", "check_real"]

#: Tolerance on ``max|a - ref| / max(1, max|ref|)``.
TOLERANCE = {"float64": 1e-9, "float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}
CHECK_SCALE = 4
REAL_QUERIES = 512


@dataclass
class Check:
    """Correctness of one (case, dtype): max abs diff per quantity and whether all are within tolerance."""

    case: str
    dtype: str
    diffs: dict[str, float] = field(default_factory=dict)
    rel: dict[str, float] = field(default_factory=dict)
    ok: bool = True
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, a: Tensor, ref: Tensor, mask: Tensor | None = None) -> None:
        """Compares ``a`` with ``ref`` (where ``mask`` is true, if given)."""
        a, ref = a.detach().double(), ref.detach().double()
        if mask is not None:
            a, ref = a[mask], ref[mask]
        diff = (a - ref).abs().max().item() if a.numel() else 0.0
        scale = max(1.0, ref.abs().max().item() if ref.numel() else 0.0)
        self.diffs[name], self.rel[name] = diff, diff / scale
        # NaN compares false, so a NaN diff fails.
        self.ok = self.ok and self.rel[name] <= TOLERANCE[self.dtype]

    @property
    def max_diff(self) -> float:
        return max(self.diffs.values(), default=float("nan"))

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v:.2e}" for k, v in self.diffs.items())
        notes = "".join(f"; {n}" for n in self.notes)
        return f"check {self.case} {self.dtype}: max|diff| {parts} -> {'OK' if self.ok else 'FAILED'}{notes}"


def _oracle(inp: MsdaInputs, tensors: list[Tensor]) -> list[Tensor]:
    return [t.detach().double().requires_grad_() for t in tensors]


def _off_pixel_lines(inp: MsdaInputs) -> Tensor:
    """True for the location components whose pixel coordinate ``u * size - 0.5`` is farther than the
    kernel's rounding error (16 ulp of its compute dtype at ``size``) from an integer."""
    compute = torch.float64 if inp.sampling_locations.dtype == torch.float64 else torch.float32
    wh = inp.spatial_shapes.flip(-1).double().view(1, 1, 1, -1, 1, 2)
    pix = inp.sampling_locations.double() * wh - 0.5
    return (pix - pix.round()).abs() > 16 * torch.finfo(compute).eps * wh


def check_small(case: Case, dtype_name: str, seed: int) -> Check:
    """``npu_ops`` in the dtype vs the float64 oracle on a scaled copy of ``case``: output and gradients."""
    small = scaled(case, CHECK_SCALE)
    inp = make_inputs(small, DTYPES[dtype_name], seed)
    grad_out = make_grad_out(small, DTYPES[dtype_name], seed)
    xs = leaves(inp)
    out = call("npu_ops", inp, *xs)
    grads = torch.autograd.grad(out, xs, grad_out)
    refs = _oracle(inp, xs)
    ref_out = call("grid_sample", inp, *refs)
    ref_grads = torch.autograd.grad(ref_out, refs, grad_out.double())
    check = Check(case.name, dtype_name)
    check.add("output", out, ref_out)
    check.add("grad_value", grads[0], ref_grads[0])
    keep = _off_pixel_lines(inp)
    check.add("grad_loc", grads[1], ref_grads[1], keep)
    check.add("grad_attn", grads[2], ref_grads[2])
    skipped = int((~keep).sum())
    if skipped:
        check.notes.append(f"grad_loc: {skipped} of {keep.numel()} components on pixel-centre lines skipped")
    return check


def check_real(check: Check, inp: MsdaInputs, npu_out: Tensor | None) -> None:
    """Adds ``real_forward``: ``npu_out`` (or a fresh ``npu_ops`` forward) on up to 512 queries vs the oracle."""
    nq = inp.sampling_locations.shape[1]
    idx = torch.linspace(0, nq - 1, min(nq, REAL_QUERIES)).round().long().unique()
    loc, attn = inp.sampling_locations[:, idx], inp.attention_weights[:, idx]
    with torch.no_grad():
        if npu_out is None:
            got = call("npu_ops", inp, inp.value, loc, attn)
        else:
            got = npu_out[:, idx]
        ref = call("grid_sample", inp, inp.value.double(), loc.double(), attn.double())
    check.add("real_forward", got, ref)


def note_baseline(check: Check, gs_out: Tensor) -> None:
    """Notes non-finite values in the baseline's real-input forward output (a grid_sample issue, not a failure)."""
    bad = int((~torch.isfinite(gs_out)).sum())
    if bad:
        check.notes.append(f"grid_sample {check.dtype} returned {bad} non-finite outputs of {gs_out.numel()}")
