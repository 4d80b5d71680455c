"""Op-independent benchmark plumbing: timing, peak-memory probes, progress bar, environment, CSV and markdown.

Timing (:func:`time_fn`): wall clock (``time.perf_counter``) around single calls on the calling
thread; CPU kernels are synchronous, so no device sync is needed. Warm-up calls come first and are
not recorded. The number of recorded calls is ``repeats`` but is cut so that the recorded calls take
about ``budget_s`` (never fewer than ``min_repeats``), which is how slow baselines keep a sane run time.

Peak memory (:func:`measure_in_subprocess`, :class:`PeakRSS`): the measurement runs in a fresh
``python -m npu_ops.bench.probe`` subprocess. It reads the kernel's resident-set high-water mark
(``VmHWM`` in ``/proc/self/status``) after resetting it (``echo 5 > /proc/self/clear_refs``, Linux
>= 4.0) once the inputs exist; the peak extra memory is ``VmHWM`` after the op minus ``VmRSS``
before it. This counts every page the op touches (tensor outputs, autograd buffers, kernel scratch
allocated outside the PyTorch allocator, per-thread buffers) and nothing that is only reserved. The
child runs with glibc's dynamic mmap threshold disabled (``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` at 128 KiB, glibc's defaults) so freed tensors go back to the OS
and the resident set after one measurement is back at the baseline of the next.
"""

from __future__ import annotations

import csv
import datetime
import functools
import itertools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "Timing",
    "time_fn",
    "time_interleaved",
    "round_spread",
    "stream_bandwidth",
    "quantile",
    "PeakRSS",
    "measure_in_subprocess",
    "Progress",
    "env_info",
    "write_csv",
    "markdown_table",
]

MB = 1e6  # decimal megabytes throughout


# --------------------------------------------------------------------------- timing


def quantile(samples: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of a non-empty sequence."""
    xs = sorted(samples)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class Timing:
    """Recorded call times in seconds (warm-up excluded)."""

    samples: list[float]
    warmup: int

    @property
    def repeats(self) -> int:
        return len(self.samples)

    def ms(self, q: float) -> float:
        return 1e3 * quantile(self.samples, q)

    @property
    def min_ms(self) -> float:
        return 1e3 * min(self.samples)

    @property
    def p20_ms(self) -> float:
        return self.ms(0.2)

    @property
    def p50_ms(self) -> float:
        return 1e3 * statistics.median(self.samples)

    @property
    def p80_ms(self) -> float:
        return self.ms(0.8)


def time_fn(
    fn: Callable[[], Any],
    warmup: int,
    repeats: int,
    budget_s: float,
    min_repeats: int = 3,
) -> dict[str, Timing]:
    """Times ``fn()``; returns one :class:`Timing` per phase.

    If ``fn`` returns a dict of durations in seconds (phases it timed itself, e.g. ``{"forward": ..,
    "backward": ..}``) those are recorded; otherwise the wall time of the call is recorded as ``"wall"``.
    The return value is dropped before the next call.

    Warm-up: ``warmup`` calls, stopped early once they took ``budget_s / 4`` (at least one call when
    ``warmup > 0``). Recorded calls: ``repeats``, cut so that they take about ``budget_s`` but never
    fewer than ``min(min_repeats, repeats)`` (``budget_s <= 0`` disables the cut).
    """
    spent, done = 0.0, 0
    est = float("inf")
    while done < warmup and (done == 0 or budget_s <= 0 or spent < budget_s / 4):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        spent += dt
        est = min(est, dt)
        done += 1
    n = repeats
    samples: dict[str, list[float]] = {}
    for i in itertools.count():
        if i >= n:
            break
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        phases = out if isinstance(out, dict) else {"wall": dt}
        del out
        for key, val in phases.items():
            samples.setdefault(key, []).append(float(val))
        if i == 0 and budget_s > 0:
            est = min(est, dt)
            n = min(repeats, max(min_repeats, int(budget_s / max(est, 1e-9))))
    return {key: Timing(vals, done) for key, vals in samples.items()}


def time_interleaved(
    fns: dict[str, Callable[[], Any]],
    warmup: int,
    repeats: int,
    budget_s: float,
    min_repeats: int = 3,
) -> dict[str, dict[str, Timing]]:
    """Times several paths round by round: each round calls every ``fns[name]()`` once, in order.

    Interleaving means a burst of load from the machine's neighbours hits every path in that round
    instead of one path's whole series, so per-round ratios (:func:`round_spread`) stay meaningful on
    a noisy machine. Phases, warm-up and the ``budget_s`` cut are those of :func:`time_fn`, applied
    to whole rounds: every path gets the same number of recorded calls. Returns
    ``{name: {phase: Timing}}``.
    """
    spent, done = 0.0, 0
    while done < warmup and (done == 0 or budget_s <= 0 or spent < budget_s / 4):
        t0 = time.perf_counter()
        for fn in fns.values():
            fn()
        spent += time.perf_counter() - t0
        done += 1
    n = repeats
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in fns}
    for i in itertools.count():
        if i >= n:
            break
        r0 = time.perf_counter()
        for name, fn in fns.items():
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
            phases = out if isinstance(out, dict) else {"wall": dt}
            del out
            for key, val in phases.items():
                samples[name].setdefault(key, []).append(float(val))
        if i == 0 and budget_s > 0:
            rt = time.perf_counter() - r0
            n = min(repeats, max(min_repeats, int(budget_s / max(rt, 1e-9))))
    return {name: {k: Timing(v, done) for k, v in ph.items()} for name, ph in samples.items()}


def round_spread(a: Timing, b: Timing | None = None) -> float:
    """How much the rounds disagree: max/min over rounds of ``b[i] / a[i]`` (of ``a[i]`` alone without ``b``).

    1.0 means every round gave the same ratio; 1.5 means the rounds' ratios span a factor of 1.5.
    """
    if b is None:
        xs = a.samples
    else:
        xs = [y / x for x, y in zip(a.samples, b.samples) if x > 0]
    return max(xs) / min(xs) if xs and min(xs) > 0 else float("nan")


@functools.cache
def stream_bandwidth(mbytes: int = 128, calls: int = 6) -> float:
    """Streaming bandwidth of this machine (bytes/s) with the run's thread count: best of ``calls``
    ``dst.copy_(src)`` on ``mbytes`` MB fp32 buffers, counting ``mbytes`` read plus ``mbytes`` written.

    Best, not median: the floor is what the machine can do, the noise is the neighbours. Buffers well
    above the last-level cache so the copy streams from DRAM.
    """
    n = mbytes * 1_000_000 // 4
    src = torch.ones(n)
    dst = torch.empty(n)
    dst.copy_(src)  # first touch
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return 2 * n * 4 / best


# --------------------------------------------------------------------------- memory


def _proc_status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class PeakRSS:
    """Context manager: peak extra resident memory (bytes) of the block, ``VmHWM`` after minus ``VmRSS`` before.

    Linux only; resets the process's peak-RSS counter on entry.
    """

    def __init__(self) -> None:
        self.before = 0
        self.extra = 0

    def __enter__(self) -> PeakRSS:
        _reset_peak_rss()
        self.before = _proc_status_kb("VmRSS") * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        self.extra = max(0, _proc_status_kb("VmHWM") * 1024 - self.before)

    @property
    def extra_mb(self) -> float:
        return self.extra / MB


def peak_rss_supported() -> bool:
    """Whether :class:`PeakRSS` works here (Linux with a writable ``/proc/self/clear_refs``)."""
    try:
        _reset_peak_rss()
        _proc_status_kb("VmHWM")
        return True
    except (OSError, RuntimeError):
        return False


def measure_in_subprocess(module: str, spec: dict[str, Any], timeout_s: float = 1800) -> dict[str, Any]:
    """Runs ``module.probe(spec)`` in a fresh ``python -m npu_ops.bench.probe`` and returns its dict.

    Raises ``RuntimeError`` with the child's stderr tail when it fails.
    """
    env = dict(os.environ)
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
    env.setdefault("MALLOC_TRIM_THRESHOLD_", "131072")
    cmd = [sys.executable, "-m", "npu_ops.bench.probe", module, json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("PROBE_RESULT "):
            return json.loads(line[len("PROBE_RESULT ") :])
    if proc.returncode < 0:
        try:
            why = f"killed by {signal.Signals(-proc.returncode).name}"
        except ValueError:
            why = f"killed by signal {-proc.returncode}"
    else:
        why = f"exit status {proc.returncode}"
    raise RuntimeError(f"memory probe failed ({why}) {proc.stderr[-2000:].strip()}".strip())


# --------------------------------------------------------------------------- progress


class Progress:
    """A dependency-free progress bar on stderr (one line per step when stderr is not a terminal)."""

    def __init__(self, total: int, width: int = 24, enabled: bool = True) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.width = width
        self.enabled = enabled
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last = ""

    def _line(self, label: str) -> str:
        frac = min(self.done / self.total, 1.0)
        filled = int(round(frac * self.width))
        elapsed = time.perf_counter() - self.start
        bar = "#" * filled + "." * (self.width - filled)
        return f"[{bar}] {self.done}/{self.total} {elapsed:6.1f}s {label}"

    def show(self, label: str) -> None:
        """Shows the step about to run."""
        if not self.enabled:
            return
        self._last = self._line(label)
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + self._last)
        else:
            sys.stderr.write(self._last + "\n")
        sys.stderr.flush()

    def step(self, label: str = "") -> None:
        """Marks one step done."""
        self.done += 1
        if label:
            self.show(label)

    def write(self, msg: str) -> None:
        """Prints a message line without breaking the bar."""
        if self.tty and self.enabled:
            sys.stderr.write("\r\x1b[2K" + msg + "\n" + self._last)
        else:
            sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\r\x1b[2K" + self._line("done") + "\n")
            sys.stderr.flush()


# --------------------------------------------------------------------------- environment and output


def _git_sha() -> str:
    here = Path(__file__).resolve().parent
    try:
        # Only our own checkout counts: an install under some other git repository (a venv inside a project)
        # must not report that repository's sha, so the toplevel must hold this package's sources.
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if not top or (Path(top) / "python" / "npu_ops" / "bench").resolve() != here:
            raise OSError
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if not sha:
            raise OSError
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from npu_ops import _build_info

        return str(getattr(_build_info, "GIT_SHA", "unknown"))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def env_info() -> dict[str, str]:
    """Columns describing where and what was measured (same for every row of a run)."""
    import npu_ops

    return {
        "threads": str(torch.get_num_threads()),
        "cpu_capability": npu_ops.cpu_capability(),
        "cpu_model": _cpu_model(),
        "torch": torch.__version__,
        "npu_ops_version": npu_ops.__version__,
        "git_sha": _git_sha(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def write_csv(rows: Iterable[dict[str, Any]], path: str | os.PathLike[str], append: bool = False) -> Path:
    """Writes ``rows`` (dicts with the same keys) to ``path``, creating parent directories.

    With ``append`` the rows go after the existing ones and the header is written only for a new file.
    """
    rows = list(rows)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not rows:
        return out
    new = not (append and out.exists() and out.stat().st_size > 0)
    with out.open("a" if append else "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        if new:
            writer.writeheader()
        writer.writerows(rows)
    return out


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub markdown table; numeric-looking columns are right-aligned."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def numeric(i: int) -> bool:
        vals = [r[i] for r in rows if r[i] not in ("", "-", "n/a")]
        return bool(vals) and all(v.replace(".", "", 1).rstrip("x").lstrip("-").isdigit() for v in vals)

    align = [numeric(i) for i in range(len(headers))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"]
    lines.append("|" + "|".join(("-" * (w + 1) + ":") if a else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|")
    for r in rows:
        cells = [c.rjust(w) if a else c.ljust(w) for c, w, a in zip(r, widths, align)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
