"""Chorus: inter-request caching for video diffusion-transformer serving.

The kernels (masked latent blending, token-guided attention amplification) and
the serving side land in later issues; this subpackage is their home.
"""

__all__: list[str] = []
