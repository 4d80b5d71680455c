"""MSDA benchmark run: correctness checks, timing and peak-memory probes of every (case, dtype, provider, mode).

What is called and timed: :mod:`npu_ops.bench.msda_steps` (providers, modes). Cases and inputs:
:mod:`npu_ops.bench.msda_cases`. Checks: :mod:`npu_ops.bench.msda_check`; a failed check skips the
timing of that (case, dtype) and makes the run exit with status 1.

Timing (:func:`npu_ops.bench.harness.time_fn`): warm-up calls first, then recorded calls; medians, p20
and p80. Slow calls (the ``grid_sample`` baseline on big cases) get fewer recorded calls, but at least
``--min-repeats``.

Peak memory: peak extra resident memory (MB = 1e6 bytes) of the step, measured in a fresh subprocess per
(case, dtype, provider) once the inputs exist (for ``backward`` also the forward graph and
``grad_out``): ``VmHWM`` after the step minus ``VmRSS`` before it, with the peak counter reset just
before the step (:class:`npu_ops.bench.harness.PeakRSS`). After a warm-up on a tiny copy of the case
the modes run one after the other in that subprocess, each from the resting state the previous one
returned to. ``full`` is the larger of the forward peak and the backward peak, above the resting
state before the forward. Counting resident pages includes everything the step touches (outputs,
autograd buffers, kernel scratch space outside the PyTorch allocator).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from . import harness
from .msda_cases import Case, make_inputs, resolve_case, scaled
from .msda_check import Check, check_real, check_small, note_baseline
from .msda_steps import DTYPES, call, forward_step, leaves, make_grad_out, training_step

__all__ = ["Options", "Results", "Measurement", "run", "probe"]


# --------------------------------------------------------------------------- memory probe (child side)


def probe(spec: dict[str, Any]) -> dict[str, float]:
    """Peak extra memory (MB) per mode of one (case, dtype, provider); runs in the probe subprocess."""
    torch.set_num_threads(int(spec["threads"]))
    case = resolve_case(spec["case"], spec.get("bs"), spec.get("scale"))
    dtype, provider, modes, seed = DTYPES[spec["dtype"]], spec["provider"], spec["modes"], int(spec["seed"])
    train = "backward" in modes or "full" in modes
    # Warm-up on a tiny copy: thread pool, lazy initialisation, first-touch of the code paths.
    tiny = make_inputs(scaled(case, 16, max_bs=1), dtype, seed)
    forward_step(provider, tiny)()
    training_step(provider, tiny, make_grad_out(scaled(case, 16, max_bs=1), dtype, seed))()
    del tiny

    inp = make_inputs(case, dtype, seed)
    result: dict[str, float] = {}
    if "forward" in modes:
        step = forward_step(provider, inp)
        gc.collect()
        with harness.PeakRSS() as m:
            out = step()
            del out
        result["forward"] = m.extra_mb
    if train:
        xs = leaves(inp)
        grad_out = make_grad_out(case, dtype, seed)
        gc.collect()
        with harness.PeakRSS() as mf:
            out = call(provider, inp, *xs)
        with harness.PeakRSS() as mb:
            grads = torch.autograd.grad(out, xs, grad_out)
            del out, grads
        result["backward"] = mb.extra_mb
        result["full"] = max(mf.extra, mb.before + mb.extra - mf.before) / harness.MB
    return result


# --------------------------------------------------------------------------- the run

Key = tuple[str, str, str, str]  # (case, dtype, provider, mode)


@dataclass
class Measurement:
    """Timing and peak memory of one (case, dtype, provider, mode)."""

    timing: harness.Timing | None = None
    peak_mb: float = float("nan")


@dataclass
class Options:
    """What to run (the parsed command line)."""

    cases: list[str]
    modes: list[str]
    dtypes: list[str]
    providers: list[str]
    threads: int
    repeats: int
    warmup: int
    max_time: float
    min_repeats: int
    bs: int | None = None
    scale: int | None = None
    seed: int = 0
    memory: bool = True
    progress: bool = True


@dataclass
class Results:
    """Everything a run produced, in run order."""

    measurements: dict[Key, Measurement] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    cases: dict[str, Case] = field(default_factory=dict)
    #: per (case, dtype): how the inputs were made (``sigma_px``, ``out_of_map``)
    inputs: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    #: streaming bandwidth (bytes/s) measured at the start of the run (:func:`harness.stream_bandwidth`)
    bandwidth: float = float("nan")

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def _steps_per_case_dtype(opts: Options) -> int:
    train = any(m in opts.modes for m in ("backward", "full"))
    return 2 + ("forward" in opts.modes) + train + len(opts.providers) * opts.memory


def _time_case(case: Case, dt: str, opts: Options, res: Results, check: Check, bar: harness.Progress) -> None:
    """Times every provider and mode of one (case, dtype), then checks the real-input forward output."""
    dtype = DTYPES[dt]
    bar.show(f"{case.name} {dt}: making inputs")
    inp = make_inputs(case, dtype, opts.seed)
    res.inputs[(case.name, dt)] = {"sigma_px": round(inp.sigma_px, 4), "out_of_map": round(inp.out_of_map, 4)}
    bar.step()
    train_modes = [m for m in opts.modes if m != "forward"]
    first_out: dict[str, Tensor] = {}
    names = " / ".join(opts.providers)
    if "forward" in opts.modes:
        bar.show(f"{case.name} {dt} forward: {names} interleaved")
        steps: dict[str, Callable[[], Tensor]] = {}
        for provider in opts.providers:
            fwd = forward_step(provider, inp)

            def step(fwd: Callable[[], Tensor] = fwd, provider: str = provider) -> Tensor:
                out = fwd()
                first_out.setdefault(provider, out)  # kept for the real-input check
                return out

            steps[provider] = step
        t = harness.time_interleaved(steps, opts.warmup, opts.repeats, opts.max_time, opts.min_repeats)
        for provider in opts.providers:
            res.measurements[(case.name, dt, provider, "forward")] = Measurement(t[provider]["wall"])
        bar.step()
    if train_modes:
        bar.show(f"{case.name} {dt} {'+'.join(train_modes)}: {names} interleaved")
        grad_out = make_grad_out(case, dtype, opts.seed)
        trains = {provider: training_step(provider, inp, grad_out) for provider in opts.providers}
        t = harness.time_interleaved(trains, opts.warmup, opts.repeats, opts.max_time, opts.min_repeats)
        for provider in opts.providers:
            for mode in train_modes:
                res.measurements[(case.name, dt, provider, mode)] = Measurement(t[provider][mode])
        del trains
        bar.step()
    check_real(check, inp, first_out.get("npu_ops"))
    if "grid_sample" in first_out:
        note_baseline(check, first_out["grid_sample"])


def _measure_memory(case: Case, dt: str, opts: Options, res: Results, bar: harness.Progress) -> None:
    """Peak extra memory of every provider of one (case, dtype), each in a fresh subprocess."""
    for provider in opts.providers:
        bar.show(f"{case.name} {dt} {provider}: peak memory (subprocess)")
        spec = {
            "case": case.name.split("/")[0],
            "bs": opts.bs,
            "scale": opts.scale,
            "dtype": dt,
            "provider": provider,
            "modes": opts.modes,
            "threads": opts.threads,
            "seed": opts.seed,
        }
        try:
            peaks = harness.measure_in_subprocess(__name__, spec)
        except Exception as exc:  # report and go on: memory is secondary to timing
            bar.write(f"peak memory of {case.name} {dt} {provider} failed: {exc}")
            peaks = {}
        for mode, mb in peaks.items():
            res.measurements.setdefault((case.name, dt, provider, mode), Measurement()).peak_mb = mb
        bar.step()


def run(opts: Options) -> Results:
    """Checks, times and (unless ``opts.memory`` is false) memory-probes every (case, dtype, provider, mode)."""
    torch.set_num_threads(opts.threads)
    per = _steps_per_case_dtype(opts)
    bar = harness.Progress(len(opts.cases) * len(opts.dtypes) * per, enabled=opts.progress)
    res = Results()
    bar.show("streaming bandwidth (copy)")
    res.bandwidth = harness.stream_bandwidth(32 if opts.scale else 256)
    for name in opts.cases:
        case = resolve_case(name, opts.bs, opts.scale)
        res.cases[case.name] = case
        for dt in opts.dtypes:
            bar.show(f"{case.name} {dt}: correctness check")
            check = check_small(case, dt, opts.seed)
            res.checks.append(check)
            bar.step()
            if not check.ok:
                bar.write(check.summary() + "; not timing it")
                bar.done += per - 1
                continue
            _time_case(case, dt, opts, res, check, bar)
            bar.write(check.summary())
            gc.collect()
            if opts.memory:
                _measure_memory(case, dt, opts, res, bar)
    bar.close()
    return res
