"""Builds the emulator's C++ drivers (CANN CPU-debug style) with g++, as a CANN user would."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EMU = ROOT / "csrc" / "ascend" / "emu"
DRIVERS = ROOT / "csrc" / "ascend" / "tests"


def build_driver(out_dir: Path, source: Path) -> Path:
    """Compile `source` + the emulator runtime into an executable; the kernel code is unchanged."""
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.fail("g++ is required to build the emulator drivers")
    exe = out_dir / source.stem
    cmd = [cxx, "-std=c++17", "-O1", "-Wall", "-Werror", "-Wno-unused-parameter", "-Wno-unused-variable"]
    cmd += ["-I", str(EMU), str(source), str(EMU / "emu_runtime.cpp"), "-o", str(exe), "-lpthread"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"building {source.name} failed:\n{res.stderr[-4000:]}"
    return exe


@pytest.fixture(scope="session")
def driver_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("emu_drivers")


@pytest.fixture(scope="session")
def rule_driver(driver_dir) -> Path:
    return build_driver(driver_dir, DRIVERS / "rule_kernels.cpp")


@pytest.fixture(scope="session")
def vector_add_driver(driver_dir) -> Path:
    return build_driver(driver_dir, DRIVERS / "vector_add_driver.cpp")


@pytest.fixture(scope="session")
def api_semantics_driver(driver_dir) -> Path:
    return build_driver(driver_dir, DRIVERS / "api_semantics.cpp")


@pytest.fixture(scope="session")
def counters_driver(driver_dir) -> Path:
    return build_driver(driver_dir, DRIVERS / "counters_driver.cpp")
