"""What the MSDA benchmark calls: the two providers and the timed step of each mode.

Providers
    ``npu_ops``: :func:`npu_ops.msda`, the fused kernel. ``grid_sample``:
    :func:`npu_ops.msda.multi_scale_deformable_attn_pytorch`, the pure-PyTorch path mmcv and
    transformers run on CPU.

Modes (in the training modes value, locations and weights all require grad, as in a layer)
    ``forward``: inference forward under ``torch.no_grad()``.
    ``backward``: ``torch.autograd.grad(out, (value, loc, attn), grad_out)``; the forward with grad that
    builds the graph runs just before, outside the timed region. Both providers go through autograd
    in the same way (for ``npu_ops``: one autograd node calling ``npu_ops::_msda_backward``). The graph is
    not retained, so freeing the saved tensors is part of the step, as in training.
    ``full``: forward with grad plus that backward. ``backward`` and ``full`` are read from the same
    calls, each of which records when its forward and its backward end.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

import npu_ops
from npu_ops.msda import multi_scale_deformable_attn_pytorch

from .msda_cases import Case, MsdaInputs

__all__ = [
    "traffic_bytes",
    "PROVIDERS",
    "MODES",
    "DTYPES",
    "call",
    "forward_step",
    "training_step",
    "leaves",
    "make_grad_out",
]

PROVIDERS = ("npu_ops", "grid_sample")
MODES = ("forward", "backward", "full")
DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


def call(provider: str, inp: MsdaInputs, value: Tensor, loc: Tensor, attn: Tensor) -> Tensor:
    """One MSDA forward by ``provider`` with ``inp``'s shapes and the given float tensors."""
    if provider == "npu_ops":
        return npu_ops.msda(value, inp.spatial_shapes, inp.level_start_index, loc, attn)
    if provider == "grid_sample":
        return multi_scale_deformable_attn_pytorch(value, inp.spatial_shapes, loc, attn)
    raise ValueError(f"unknown provider {provider!r}")


def forward_step(provider: str, inp: MsdaInputs) -> Callable[[], Tensor]:
    """The ``forward`` mode: inference forward under ``no_grad``."""

    def step() -> Tensor:
        with torch.no_grad():
            return call(provider, inp, inp.value, inp.sampling_locations, inp.attention_weights)

    return step


def leaves(inp: MsdaInputs) -> list[Tensor]:
    """Leaf views (sharing storage) of value, locations and weights that require grad."""
    return [t.detach().requires_grad_() for t in (inp.value, inp.sampling_locations, inp.attention_weights)]


def make_grad_out(case: Case, dtype: torch.dtype, seed: int) -> Tensor:
    """Seeded ``grad_output`` of shape ``[bs, Nq, heads * C]``."""
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randn(case.bs, case.nq, case.heads * case.channels, generator=g).to(dtype)


def training_step(provider: str, inp: MsdaInputs, grad_out: Tensor) -> Callable[[], dict[str, float]]:
    """The ``backward`` and ``full`` modes: forward with grad, then ``autograd.grad``; returns both durations (s)."""
    xs = leaves(inp)

    def step() -> dict[str, float]:
        t0 = time.perf_counter()
        out = call(provider, inp, *xs)
        t1 = time.perf_counter()
        grads = torch.autograd.grad(out, xs, grad_out)
        t2 = time.perf_counter()
        del out, grads
        return {"backward": t2 - t1, "full": t2 - t0}

    return step


def traffic_bytes(case: Case, dtype: torch.dtype, mode: str) -> int:
    """Bytes a step must move at least: every input read once, every output written once.

    ``forward``: value, locations, weights read, output written. ``backward``: value, locations,
    weights and ``grad_out`` read, the three gradients written. ``full``: both. Index tensors are
    negligible and not counted.
    """
    size = torch.empty((), dtype=dtype).element_size()
    n_val = case.bs * case.num_keys * case.heads * case.channels
    n_pts = case.bs * case.nq * case.heads * len(case.levels) * case.points
    n_out = case.bs * case.nq * case.heads * case.channels
    ins = n_val + 3 * n_pts  # value, loc (x, y), attn
    fwd = ins + n_out
    bwd = 2 * ins + n_out
    return size * {"forward": fwd, "backward": bwd, "full": fwd + bwd}[mode]
