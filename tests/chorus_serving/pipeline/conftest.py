"""Fixtures for the Chorus serving pipeline tests (tiny random Wan DiT on CPU)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def minilm():
    """One MiniLM encoder for the session (loading takes ~5 s)."""
    from npu_ops.chorus.encoder import MiniLMEncoder

    return MiniLMEncoder()


@pytest.fixture(scope="session")
def tiny_model():
    from npu_ops.chorus.tiny_wan import tiny_wan_transformer

    return tiny_wan_transformer(seed=0)
