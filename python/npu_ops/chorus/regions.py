"""Stage-2 region masks from per-token attention mass (Prompt-to-Prompt LocalBlend style, budgeted).

``mass[N]`` on the token grid ``(T', H', W')`` -> box-blur in (H', W') -> keep the ``top_frac``
largest (or the max-normalised mass >= ``threshold``) -> dilate -> the *core* mask (blended in);
the core dilated by ``halo`` in (H', W') is the *compute* set (the halo is context: computed, then discarded).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import RegionPolicy

__all__ = ["region_masks", "token_mask_to_latent"]


def _dilate(mask: Tensor, radius: tuple[int, int, int]) -> Tensor:
    if not any(radius):
        return mask
    k = tuple(2 * r + 1 for r in radius)
    return F.max_pool3d(mask[None, None].float(), k, stride=1, padding=radius)[0, 0] > 0


def region_masks(mass: Tensor, grid: tuple[int, int, int], policy: RegionPolicy) -> tuple[Tensor, Tensor]:
    """Core and compute token masks.

    Args:
        mass (Tensor[N]): attention mass per latent token, ``N = T' * H' * W'``.
        grid: ``(T', H', W')``.
        policy: the :class:`RegionPolicy`.

    Returns:
        (core Tensor[N] bool, compute Tensor[N] bool); ``core`` is a subset of ``compute``. All-zero
        mass gives empty masks (nothing differs).
    """
    t, h, w = grid
    if mass.dim() != 1 or mass.numel() != t * h * w:
        raise ValueError(f"region_masks: mass must be [N] with N = {t}*{h}*{w} = {t * h * w}, got {list(mass.shape)}")
    m = mass.float().reshape(t, h, w)
    if not bool((m > 0).any()):
        empty = torch.zeros(t * h * w, dtype=torch.bool)
        return empty, empty
    if policy.smooth:
        r = policy.smooth
        m = F.avg_pool3d(
            m[None, None], (1, 2 * r + 1, 2 * r + 1), stride=1, padding=(0, r, r), count_include_pad=False
        )[0, 0]
    if policy.top_frac is not None:
        n_keep = max(1, math.ceil(policy.top_frac * m.numel()))
        order = torch.argsort(m.flatten(), descending=True, stable=True)
        core = torch.zeros(m.numel(), dtype=torch.bool)
        core[order[:n_keep]] = True
        core = core.reshape(t, h, w)
    else:
        if policy.normalize == "per_frame":
            peak = m.flatten(1).amax(dim=1).clamp_min(1e-30).view(t, 1, 1)
        else:
            peak = m.max().clamp_min(1e-30)
        core = (m / peak) >= policy.threshold
    core = _dilate(core, policy.dilation)
    compute = _dilate(core, (0, policy.halo, policy.halo))
    return core.flatten(), compute.flatten()


def token_mask_to_latent(mask: Tensor, grid: tuple[int, int, int], patch_size) -> Tensor:
    """Token mask ``[N]`` -> latent mask ``Tensor[1, 1, T, H, W]`` bool (nearest upsample by the patch)."""
    t, h, w = grid
    p_t, p_h, p_w = patch_size
    m = mask.reshape(t, h, w)
    m = m.repeat_interleave(p_t, 0).repeat_interleave(p_h, 1).repeat_interleave(p_w, 2)
    return m[None, None].contiguous()
