"""A tiny randomly initialised diffusers ``WanTransformer3DModel`` for CPU tests and the demo, and the
token-subset forward Stage 2 uses.

No weights can be downloaded here, so the model is random (seeded): it exercises the mechanics
(latent shapes, attention cost, cross-attention to real MiniLM tokens with ``text_dim=384``) but says
nothing about visual quality. Real weights load with :func:`load_wan_transformer` from a local
diffusers-format directory (``from_pretrained``), where a user has them.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["TINY_WAN_CONFIG", "tiny_wan_transformer", "load_wan_transformer", "subset_forward", "unpatchify"]

# ~1 M parameters; 4 heads of 32, 4 blocks. text_dim=384 takes MiniLM token states directly.
TINY_WAN_CONFIG = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=4,
    attention_head_dim=32,
    in_channels=16,
    out_channels=16,
    text_dim=384,
    freq_dim=64,
    ffn_dim=256,
    num_layers=4,
    rope_max_seq_len=256,
)


def tiny_wan_transformer(seed: int = 0, **overrides):
    """The tiny Wan DiT with weights drawn from ``torch.manual_seed(seed)`` (global RNG restored)."""
    from diffusers import WanTransformer3DModel

    cfg = {**TINY_WAN_CONFIG, **overrides}
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = WanTransformer3DModel(**cfg)
    finally:
        torch.random.set_rng_state(state)
    return model.eval().requires_grad_(False)


def load_wan_transformer(path: str, *, subfolder: str | None = None, torch_dtype=torch.float32):
    """Real Wan weights from a local diffusers directory (no download: ``local_files_only=True``)."""
    from diffusers import WanTransformer3DModel

    model = WanTransformer3DModel.from_pretrained(
        path, subfolder=subfolder, torch_dtype=torch_dtype, local_files_only=True
    )
    return model.eval().requires_grad_(False)


def unpatchify(tokens: Tensor, latent_shape, patch_size) -> Tensor:
    """``Tensor[B, N, p_t*p_h*p_w*C]`` (proj_out's layout) -> ``Tensor[B, C, T, H, W]`` as Wan's forward does."""
    b, _, t, h, w = latent_shape
    p_t, p_h, p_w = patch_size
    x = tokens.reshape(b, t // p_t, h // p_h, w // p_w, p_t, p_h, p_w, -1)
    return x.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)


@torch.no_grad()
def subset_forward(model, hidden_states: Tensor, timestep: Tensor, encoder_hidden_states: Tensor, token_idx):
    """Wan forward computing only the latent tokens ``token_idx`` (self-attention among them only).

    Patch embedding -> gather the tokens and their RoPE cos/sin -> blocks -> output norm/projection.
    With every token kept (``token_idx=None`` or ``arange(N)``) it runs the same operations as
    ``model(...)``, so its unpatchified output equals the full forward.

    Args:
        model: a diffusers ``WanTransformer3DModel`` (text-to-video: no image embedding).
        hidden_states (Tensor[B, C, T, H, W]): the latent.
        timestep (Tensor[B]): timesteps.
        encoder_hidden_states (Tensor[B, L, text_dim]): text states.
        token_idx (Tensor[n] long or None): token indices into the ``T' * H' * W'`` grid.

    Returns:
        Tensor[B, n, p_t*p_h*p_w*C_out]: ``proj_out``'s output for those tokens.
    """
    rot_cos, rot_sin = model.rope(hidden_states)
    h = model.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()
    if token_idx is not None:
        h = h[:, token_idx].contiguous()
        rot_cos, rot_sin = rot_cos[:, token_idx], rot_sin[:, token_idx]
    temb, timestep_proj, ctx, _ = model.condition_embedder(timestep, encoder_hidden_states, None)
    timestep_proj = timestep_proj.unflatten(1, (6, -1))
    for block in model.blocks:
        h = block(h, ctx, timestep_proj, (rot_cos, rot_sin))
    shift, scale = (model.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
    h = (model.norm_out(h.float()) * (1 + scale) + shift).type_as(h)
    return model.proj_out(h)
