"""Differential check (developer tool): the vector-add driver run through Huawei's own AscendC API
implementation (asc-devkit) on top of the npu_ops intrinsic model (tools/ascend_intrinsic_model).

Needs the asc-devkit and asc-tools checkouts, which CI does not have: set ASC_DEVKIT_DIR and ASC_TOOLS_DIR."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEVKIT = os.environ.get("ASC_DEVKIT_DIR", "")
TOOLS = os.environ.get("ASC_TOOLS_DIR", "")

pytestmark = pytest.mark.skipif(
    not (DEVKIT and (Path(DEVKIT) / "include/kernel_operator.h").is_file() and TOOLS and Path(TOOLS).is_dir()),
    reason="developer tool: set ASC_DEVKIT_DIR / ASC_TOOLS_DIR to asc-devkit and asc-tools checkouts (CI has none)",
)


def test_vector_add_through_real_impl_matches_host_math(tmp_path):
    exe = tmp_path / "vector_add_im"
    build = ROOT / "tools/ascend_intrinsic_model/build.sh"
    src = ROOT / "csrc/ascend/tests/vector_add_driver.cpp"
    res = subprocess.run([str(build), DEVKIT, TOOLS, str(src), str(exe)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "vector add: 0 mismatches of 16384" in run.stdout
    pat = r"add_custom: (\d+) vector, (\d+) dma, (\d+) set_flag, (\d+) wait_flag, \d+ barrier, (\d+) viol"
    m = re.search(pat, run.stdout)
    assert m, run.stdout
    vec, dma, sets, waits, viol = map(int, m.groups())
    # 8 blocks x 16 tiles: one Add, two loads and one store per tile; every set_flag is waited on.
    assert (vec, dma, viol) == (128, 384, 0)
    assert sets == waits > 0
