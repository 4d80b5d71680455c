"""Environment and build report: ``python -m npu_ops.info``. Paste it into bug reports."""

from __future__ import annotations

import importlib.util
import platform

import torch

import npu_ops
from npu_ops import _build_info


def report() -> dict[str, object]:
    """The build configuration and what this process can run."""
    return {
        "npu_ops": npu_ops.__version__,
        "git_sha": _build_info.GIT_SHA,
        "build_type": _build_info.BUILD_TYPE,
        "built_against_torch": _build_info.TORCH_VERSION,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "cpu_kernels": npu_ops.cpu_capability(),
        "npu_library_built": _build_info.WITH_NPU,
        "npu_build_reason": _build_info.NPU_REASON,
        "torch_npu_importable": importlib.util.find_spec("torch_npu") is not None,
        "npu_backend_loaded": npu_ops.has_npu_backend(),
        "ops": sorted(n for n in dir(torch.ops.npu_ops) if not n.startswith("__") and n not in ("name", "_dir")),
    }


def main() -> None:
    for key, value in report().items():
        print(f"{key:22s} {value}")


if __name__ == "__main__":
    main()
