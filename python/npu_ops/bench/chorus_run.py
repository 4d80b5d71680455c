"""Chorus benchmark run: correctness gate, then interleaved timing of every (case, dtype, mode).

Correctness (before any timing of a (case, dtype); a failure skips its timing and makes the run
exit with status 1). Quantities compare as ``max|a - ref| / max(1, max|ref|)``:

- ``fwd``: ``npu_ops`` on the benchmark inputs vs a float64 oracle on the same (dtype-rounded)
  inputs (:data:`FWD_TOL`; for the softmax on up to 4096 evenly spread rows).
- ``vs <baseline>``: ``npu_ops`` vs each baseline's output in the benchmark dtype (:data:`BASE_TOL`;
  the baselines round intermediates to the dtype, so bf16 is loose). A bool mask must give exactly
  ``torch.where``'s result. The baselines' own error vs the oracle is reported, not gated.
- ``grad`` (when backward is timed): the gradients of a small copy (the ``--quick`` shapes) vs
  float64 autograd through the closed form (:data:`GRAD_TOL`).

Timing: the providers of a (case, dtype, mode) are timed together, in rounds; each round calls
every provider once, the order rotated from round to round, so load drift on a shared machine hits
all of them alike. Warm-up rounds first (cut after ``budget_s / 4``), then ``repeats`` rounds cut
so the recorded rounds take about ``budget_s`` (never fewer than ``min_repeats``). Medians, p20 and
p80 per provider (:class:`npu_ops.bench.harness.Timing`). ``forward``: the call under
``torch.no_grad()``, output included. ``backward``: ``torch.autograd.grad`` of the outputs with
respect to every floating input (all but a bool mask), the forward with grad run just before,
outside the timed region.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from . import harness
from .chorus_cases import CASES, DTYPES, Case, call, grad_leaves, make_inputs, with_leaves

__all__ = ["Options", "Check", "Results", "run", "set_malloc", "time_interleaved", "MODES"]

MODES = ("forward", "backward")
FWD_TOL = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3, "bfloat16": 1e-2}
BASE_TOL = {"float64": 1e-10, "float32": 1e-5, "float16": 1e-2, "bfloat16": 5e-2}
GRAD_TOL = {"float64": 1e-10, "float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}
ORACLE_ROWS = 4096


# --------------------------------------------------------------------------- allocator


def set_malloc(mode: str) -> str:
    """``warm``: glibc never returns big blocks to the OS (no mmap, trim threshold 2 GiB), so outputs
    and temporaries reuse resident memory, as with a caching allocator, and page faults do not
    swamp memory-bound kernels. ``default``: glibc as is (blocks over its dynamic mmap threshold,
    at most 32 MiB, are mapped fresh and page-faulted on every call). Returns a description."""
    if mode == "default":
        return "glibc default"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        ok = libc.mallopt(m_mmap_max, 0) == 1 and libc.mallopt(m_trim_threshold, 2**31 - 1) == 1
    except (OSError, AttributeError):
        ok = False
    return "warm heap (glibc mmap off, trim threshold 2 GiB)" if ok else "glibc default (mallopt unavailable)"


# --------------------------------------------------------------------------- checks


@dataclass
class Check:
    """Correctness of one (case, dtype): gated diffs (``diffs``), informative ones (``info``)."""

    case: str
    dtype: str
    diffs: dict[str, float] = field(default_factory=dict)
    info: dict[str, float] = field(default_factory=dict)
    ok: bool = True
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, a: Tensor, ref: Tensor, tol: float | None) -> None:
        """Records ``max|a - ref| / max(1, max|ref|)``; gated when ``tol`` is given (NaN fails)."""
        a, ref = a.detach(), ref.detach()
        wide = torch.float64 if torch.float64 in (a.dtype, ref.dtype) else torch.float32
        diff = (a.to(wide) - ref.to(wide)).abs().max().item() if a.numel() else 0.0
        rel = diff / max(1.0, ref.abs().max().item() if ref.numel() else 0.0)
        if tol is None:
            self.info[name] = rel
            return
        self.diffs[name] = rel
        if not rel <= tol:
            self.ok = False
            self.notes.append(f"{name} {rel:.2e} > {tol:.0e}")

    def exact(self, name: str, a: Tensor, ref: Tensor) -> None:
        """Gated bitwise equality (reported as 0 or the max abs diff)."""
        self.add(name, a, ref, None)
        self.diffs[name] = self.info.pop(name)
        if not torch.equal(a, ref):
            self.ok = False
            self.notes.append(f"{name}: not bitwise equal")

    @property
    def max_diff(self) -> float:
        return max(self.diffs.values(), default=float("nan"))

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v:.1e}" for k, v in self.diffs.items())
        tail = "".join(f"; {n}" for n in self.notes)
        return f"check {self.case} {self.dtype}: {parts} -> {'OK' if self.ok else 'FAILED'}{tail}"


def _oracle(case: Case, xs: list[Tensor], rows: Tensor | None = None) -> Tensor:
    """The closed form in float64 (``rows``: only those rows of the flattened ``[..., L]`` softmax)."""
    if case.op == "masked_blend":
        fresh, cached, mask = (x.double() for x in xs)
        return cached + mask * (fresh - cached)
    scores, alpha = xs
    if rows is not None:
        alpha = alpha.expand(scores.shape).flatten(0, -2)[rows]  # flatten of the expanded alpha is a view
        scores = scores.flatten(0, -2)[rows]
    s, a = case.scale * scores.double(), alpha.double()
    return (s + a.log()).softmax(-1) if case.renormalize else s.softmax(-1) * a


def _rows(case: Case, out: Tensor) -> Tensor | None:
    if case.op != "amplified_softmax":
        return None
    n = out.numel() // out.shape[-1]
    return torch.linspace(0, n - 1, min(n, ORACLE_ROWS)).round().long().unique()


def check_forward(case: Case, dt: str, xs: list[Tensor]) -> Check:
    """``npu_ops`` vs the float64 oracle and vs every baseline, on the benchmark inputs."""
    check = Check(case.name, dt)
    with torch.no_grad():
        outs = {p: call(case, p, *xs) for p in case.providers}
        rows = _rows(case, outs["npu_ops"])
        ref = _oracle(case, xs, rows)

        def pick(t: Tensor) -> Tensor:
            return t if rows is None else t.flatten(0, -2)[rows]

        check.add("fwd", pick(outs["npu_ops"]), ref, FWD_TOL[dt])
        for p in case.providers[1:]:
            if p == "where":
                check.exact("vs where", outs["npu_ops"], outs[p])
            else:
                check.add(f"vs {p}", outs["npu_ops"], outs[p], BASE_TOL[dt])
            check.add(f"{p} fwd", pick(outs[p]), ref, None)
    return check


def check_backward(check: Check, case: Case, dt: str, seed: int) -> None:
    """Gradients of a small copy (the ``--quick`` shapes) vs float64 autograd through the closed form."""
    xs = make_inputs(case, DTYPES[dt], quick=True, seed=seed)
    leaves = grad_leaves(case, xs)
    out = call(case, "npu_ops", *with_leaves(xs, leaves))
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 1)).to(out.dtype)
    grads = torch.autograd.grad(out, leaves, g)
    ref_leaves = [x.detach().double().requires_grad_() for x in leaves]
    ref_xs = with_leaves(xs, ref_leaves)
    ref_grads = torch.autograd.grad(_oracle(case, ref_xs), ref_leaves, g.double())
    names = ("fresh", "cached", "mask") if case.op == "masked_blend" else ("scores", "alpha")
    for name, a, ref in zip(names, grads, ref_grads):
        check.add(f"grad_{name}", a, ref, GRAD_TOL[dt])


# --------------------------------------------------------------------------- timing


def _timed(fn: Callable[[], object]) -> float:
    """Seconds of one call: the float ``fn`` returns (it timed itself), else the wall time."""
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    return float(out) if isinstance(out, float) else dt


def time_interleaved(
    steps: dict[str, Callable[[], object]],
    warmup: int,
    repeats: int,
    budget_s: float,
    min_repeats: int = 3,
) -> dict[str, harness.Timing]:
    """Times the ``steps`` in rounds (each once per round, order rotated); one Timing per step.

    Warm-up: up to ``warmup`` rounds, stopped after ``budget_s / 4`` (at least one when ``warmup``
    > 0). Recorded: ``repeats`` rounds, cut so that they take about ``budget_s`` but never fewer
    than ``min(min_repeats, repeats)`` (``budget_s <= 0``: no cut).
    """
    names = list(steps)
    spent, done = 0.0, 0
    while done < warmup and (done == 0 or budget_s <= 0 or spent < budget_s / 4):
        t0 = time.perf_counter()
        for n in names:
            steps[n]()
        spent += time.perf_counter() - t0
        done += 1
    samples: dict[str, list[float]] = {n: [] for n in names}
    rounds, i = repeats, 0
    while i < rounds:
        k = i % len(names)
        t0 = time.perf_counter()
        for n in names[k:] + names[:k]:
            samples[n].append(_timed(steps[n]))
        if i == 0 and budget_s > 0:
            rounds = min(repeats, max(min_repeats, int(budget_s / max(time.perf_counter() - t0, 1e-9))))
        i += 1
    return {n: harness.Timing(s, done) for n, s in samples.items()}


def _forward_step(case: Case, provider: str, xs: list[Tensor]) -> Callable[[], object]:
    def step() -> None:
        with torch.no_grad():
            call(case, provider, *xs)

    return step


def _backward_step(case: Case, provider: str, xs: list[Tensor], grad_out: Tensor) -> Callable[[], object]:
    leaves = grad_leaves(case, xs)
    args = with_leaves(xs, leaves)

    def step() -> float:
        out = call(case, provider, *args)
        t0 = time.perf_counter()
        grads = torch.autograd.grad(out, leaves, grad_out)
        dt = time.perf_counter() - t0
        del out, grads
        return dt

    return step


# --------------------------------------------------------------------------- the run


@dataclass
class Options:
    """What to run (the parsed command line)."""

    cases: list[str]
    dtypes: list[str]
    modes: list[str]
    threads: int
    repeats: int
    warmup: int
    max_time: float
    min_repeats: int
    quick: bool = False
    seed: int = 0
    malloc: str = "warm"
    progress: bool = True


Key = tuple[str, str, str, str]  # (case, dtype, mode, provider)


@dataclass
class Results:
    """Timings and checks of a run, in run order."""

    timings: dict[Key, harness.Timing] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    malloc: str = ""
    quick: bool = False

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def run(opts: Options) -> Results:
    """Checks, then times, every (case, dtype, mode, provider) of ``opts``."""
    torch.set_num_threads(opts.threads)
    res = Results(malloc=set_malloc(opts.malloc), quick=opts.quick)
    bar = harness.Progress(len(opts.cases) * len(opts.dtypes) * (1 + len(opts.modes)), enabled=opts.progress)
    for name in opts.cases:
        case = CASES[name]
        for dt in opts.dtypes:
            bar.show(f"{name} {dt}: inputs and correctness check")
            xs = make_inputs(case, DTYPES[dt], opts.quick, opts.seed)
            check = check_forward(case, dt, xs)
            if "backward" in opts.modes:
                check_backward(check, case, dt, opts.seed)
            res.checks.append(check)
            bar.step()
            bar.write(check.summary() + ("" if check.ok else "; not timing it"))
            if not check.ok:
                bar.done += len(opts.modes)
                continue
            for mode in opts.modes:
                bar.show(f"{name} {dt} {mode}")
                gc.collect()
                if mode == "forward":
                    steps = {p: _forward_step(case, p, xs) for p in case.providers}
                else:
                    g = torch.Generator().manual_seed(opts.seed + 1)
                    grad_out = torch.randn(xs[0].shape, generator=g).to(xs[0].dtype)
                    steps = {p: _backward_step(case, p, xs, grad_out) for p in case.providers}
                times = time_interleaved(steps, opts.warmup, opts.repeats, opts.max_time, opts.min_repeats)
                for p, t in times.items():
                    res.timings[(name, dt, mode, p)] = t
                del steps
                bar.step()
            del xs
            gc.collect()
    bar.close()
    return res
