"""Command-line pieces shared by the benchmark CLIs (MSDA: :mod:`.cli`, Chorus: :mod:`.chorus`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

__all__ = ["DTYPE_ALIASES", "add_timing_args", "split_choices", "timing_knobs"]

DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp64": "float64"}


def split_choices(text: str, allowed: Sequence[str], aliases: dict[str, str], what: str) -> list[str]:
    """A comma list of ``allowed`` names (case-insensitive, ``aliases`` resolved, 'all' = every one),
    without repeats, in the order given; raises ``argparse.ArgumentTypeError`` naming a bad item."""
    items: list[str] = []
    for raw in text.split(","):
        item = aliases.get(raw.strip().lower(), raw.strip().lower())
        if item == "all":
            return list(allowed)
        if item not in allowed:
            raise argparse.ArgumentTypeError(f"unknown {what} {raw!r}; choose from {', '.join(allowed)}")
        if item not in items:
            items.append(item)
    return items


def add_timing_args(p: argparse.ArgumentParser, defaults: dict[str, float], unit: str) -> None:
    """``--threads`` and the timing knobs ``--repeats/--warmup/--max-time/--min-repeats``.

    The knobs default to None so that ``--quick`` can fill them in (:func:`timing_knobs`); ``unit``
    names what is recorded ("calls", "rounds") in the help.
    """
    p.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="intra-op threads (default %(default)s)"
    )
    p.add_argument("--repeats", type=int, help=f"recorded {unit} per measurement (default {defaults['repeats']})")
    p.add_argument("--warmup", type=int, help=f"warm-up {unit} per measurement (default {defaults['warmup']})")
    p.add_argument(
        "--max-time",
        type=float,
        help=f"seconds of recorded {unit} per measurement before --repeats is cut (0: no cut; "
        f"default {defaults['max_time']})",
    )
    p.add_argument(
        "--min-repeats", type=int, help=f"recorded {unit} never cut below this (default {defaults['min_repeats']})"
    )


def timing_knobs(ns: argparse.Namespace, defaults: dict[str, float]) -> dict[str, float]:
    """The timing knobs given on the command line, the others from ``defaults`` (normal or --quick)."""
    return {k: getattr(ns, k) if getattr(ns, k) is not None else v for k, v in defaults.items()}
