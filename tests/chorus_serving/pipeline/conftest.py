"""Fixtures for the Chorus serving pipeline tests (tiny random Wan DiT on CPU)."""

from __future__ import annotations

import importlib
import os
import sys

import pytest

try:  # the real cache (branch h6cache); else the test-only stand-in with the same API
    importlib.import_module("npu_ops.chorus.cache")
except ImportError:
    sys.path.insert(0, os.path.dirname(__file__))
    import _cache_standin

    sys.modules["npu_ops.chorus.cache"] = _cache_standin


@pytest.fixture(scope="session")
def minilm():
    """One MiniLM encoder for the session (loading takes ~5 s)."""
    from npu_ops.chorus.encoder import MiniLMEncoder

    return MiniLMEncoder()


@pytest.fixture(scope="session")
def tiny_model():
    from npu_ops.chorus.tiny_wan import tiny_wan_transformer

    return tiny_wan_transformer(seed=0)
