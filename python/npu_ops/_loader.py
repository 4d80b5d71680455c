"""Loads the compiled libraries into the PyTorch dispatcher.

``_C`` (schemas and CPU kernels) is always loaded. ``_C_npu`` (AscendC kernels,
PrivateUse1 registration) is loaded only when it was built and ``torch_npu``
imports, and always after ``torch_npu`` so that PrivateUse1 is set up.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
_npu_loaded = False


def _find(stem: str) -> Path | None:
    hits = sorted(_HERE.glob(f"{stem}.*.so")) + sorted(_HERE.glob(f"{stem}.so"))
    return hits[0] if hits else None


def load() -> None:
    global _npu_loaded
    lib = _find("_C")
    if lib is None:
        raise ImportError(
            f"npu_ops: compiled library _C not found in {_HERE}. Build the package with "
            "'pip install --no-build-isolation -e .' on top of an installed torch."
        )
    torch.ops.load_library(str(lib))
    npu_lib = _find("_C_npu")
    if npu_lib is not None and importlib.util.find_spec("torch_npu") is not None:
        import torch_npu  # noqa: F401  (registers the PrivateUse1 backend)

        torch.ops.load_library(str(npu_lib))
        _npu_loaded = True


def has_npu_backend() -> bool:
    """True when the AscendC kernels are loaded (built with CANN and torch_npu importable)."""
    return _npu_loaded


def cpu_capability() -> str:
    """Instruction-set variant the CPU kernels run: ``generic``, ``avx2`` or ``avx512``."""
    return torch.ops.npu_ops._cpu_capability()
