"""The kernel lint passes on csrc/ascend/kernels and rejects every kind of unemulated AscendC use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = ROOT / "tools" / "lint_ascend_kernels.py"


def lint(*paths):
    return subprocess.run([sys.executable, str(LINT), *map(str, paths)], capture_output=True, text=True)


def test_kernels_use_only_emulated_api():
    res = lint()
    assert res.returncode == 0, res.stdout
    assert "use only emulated AscendC API" in res.stdout


BAD = {
    "qualified": ("AscendC::Brcb(dst, src, 1, {1, 8});", "AscendC::Brcb is not in"),
    "unqualified": ("Axpy(dst, src, 2.0f, 64);", "AscendC API 'Axpy'"),
    "raw_intrinsic": ("pipe_barrier(PIPE_ALL);", "raw CCE intrinsic 'pipe_barrier'"),
    "cube_pipe": ("PipeBarrier<PIPE_MTE1>();", "'PIPE_MTE1' is not emulated"),
    "ifdef": ("#ifdef ASCENDC_CPU_DEBUG\n#endif", "toolchain #if in kernel code"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_lint_rejects(tmp_path, case):
    code, message = BAD[case]
    f = tmp_path / "bad_kernel.h"
    f.write_text(f'#include "kernel_operator.h"\nvoid K() {{\n  {code}\n}}\n')
    res = lint(f)
    assert res.returncode == 1
    assert message in res.stdout
    assert "bad_kernel.h:3" in res.stdout or "bad_kernel.h:" in res.stdout


def test_locally_defined_names_are_not_api_uses(tmp_path):
    # Init/Process/Compute are also AscendC class members; a kernel defining its own is fine.
    f = tmp_path / "ok_kernel.h"
    f.write_text(
        "class K {\n public:\n  void Init() {}\n  void Process() { Compute(); }\n"
        "  void Compute() { AscendC::PipeBarrier<PIPE_V>(); }\n};\n"
    )
    res = lint(f)
    assert res.returncode == 0, res.stdout


def test_allowlist_names_are_emulated():
    allow = [
        line.strip()
        for line in (ROOT / "csrc/ascend/emu/ALLOWLIST").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    emu = "".join(p.read_text() for p in (ROOT / "csrc/ascend/emu").glob("*.h"))
    assert allow and all(name in emu for name in allow)
