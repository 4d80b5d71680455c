"""Fixtures shared by the npu_ops tests."""

from __future__ import annotations

import random
import time

import pytest
import torch


def _import_npu_ops():
    # Another process may be rebuilding python/npu_ops/_C*.so: retry a transient import failure.
    last = None
    for _ in range(6):
        try:
            import npu_ops

            return npu_ops
        except (ImportError, OSError) as e:  # pragma: no cover - only during a concurrent rebuild
            last = e
            time.sleep(3)
    raise last


_import_npu_ops()


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same global RNG state (inputs use explicit generators anyway)."""
    torch.manual_seed(0)
    random.seed(0)
    yield


@pytest.fixture
def dynamo_reset():
    import torch._dynamo

    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture
def num_threads():
    """Set torch's intra-op thread count for one test, restoring it afterwards."""
    old = torch.get_num_threads()

    def set_threads(n: int) -> None:
        torch.set_num_threads(n)

    yield set_threads
    torch.set_num_threads(old)
