#!/usr/bin/env python3
"""Reject AscendC API names in kernel sources that the emulator does not implement.

The kernels in ``csrc/ascend/kernels/`` are verified only through the emulator
(``csrc/ascend/emu/``). A kernel that calls an AscendC API the emulator lacks would reach a
real toolkit unverified, so CI fails on it. The check:

* ``AscendC::Name`` must name an entry of ``csrc/ascend/emu/ALLOWLIST``;
* any other use of a name that the public AscendC headers declare
  (``csrc/ascend/emu/ascendc_api_names.txt``) must be allow-listed too, unless the kernel
  sources define that name themselves (``Init``, ``Process``, ...);
* raw CCE intrinsics and pipe/event spellings (``set_flag``, ``pipe_barrier``, ``copy_gm_to_ubuf``,
  ``vadd``, ``PIPE_MTE1`` ...) are rejected except the ``PIPE_*`` values PipeBarrier takes;
* ``#ifdef``-style switches on the toolchain inside kernels are rejected (the AscendC header is
  chosen by include path, never by the preprocessor);
* every kernel entry (``__global__ __aicore__`` in a ``.cpp``) declares its kernel type with
  ``KERNEL_TASK_TYPE_DEFAULT`` (the compiler cannot infer it when a file holds several entries),
  ``KERNEL_TYPE_MIX_AIV_1_0`` where the kernel calls ``SyncAll`` (SyncAll.md: a pure-vector
  kernel needs ``__mix__(0, 1)``);
* every allow-listed name must be defined by the emulator headers.

Usage: ``python tools/lint_ascend_kernels.py [files or dirs ...]`` (default: csrc/ascend/kernels).
Exit status 1 with one line per problem.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EMU = ROOT / "csrc" / "ascend" / "emu"
KERNELS = ROOT / "csrc" / "ascend" / "kernels"

RAW_CCE = re.compile(
    r"\b(set_flag|wait_flag|pipe_barrier|copy_gm_to_ubuf\w*|copy_ubuf_to_gm\w*|copy_ubuf_to_ubuf|"
    r"set_vector_mask|set_mask_norm|set_mask_count|set_atomic_\w+|get_block_idx|get_block_num|"
    r"v(add|sub|mul|div|max|min|adds|muls|exp|ln|abs|sqrt|rec|conv\w*|cadd|cmax|gather\w*|sel|cmp\w*|"
    r"ector_dup)|dcci|get_ctrl|set_ctrl)\s*\("
)
ALLOWED_PIPES = {"PIPE_V", "PIPE_MTE2", "PIPE_MTE3", "PIPE_ALL"}
PIPE_NAME = re.compile(r"\bPIPE_[A-Z0-9]+\b")
TOOLCHAIN_IFDEF = re.compile(
    r"^\s*#\s*(if|ifdef|ifndef|elif)\b.*\b(ASCENDC_CPU_DEBUG|__CCE_KT_TEST__|NPU_OPS_EMU\w*|__CCE\w*)"
)
QUALIFIED = re.compile(r"\bAscendC::(\w+)")
IDENT = re.compile(r"\b([A-Za-z_]\w*)\b")
DEFINES = [
    re.compile(r"\b(?:class|struct|enum(?:\s+class)?|using|namespace)\s+(\w+)"),
    re.compile(r"^[\w:<>,\s\*&]*?\b(\w+)\s*\([^;{]*\)\s*(?:const)?\s*\{", re.M),  # function definitions
    re.compile(r"#\s*define\s+(\w+)"),
]


def load_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(line)
    return names


def strip_comments_and_strings(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def kernel_files(args: list[str]) -> list[Path]:
    paths = [Path(a) for a in args] if args else [KERNELS]
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.suffix in (".h", ".cpp", ".asc", ".hpp"))
        else:
            files.append(p)
    return files


def lint(files: list[Path], allow: set[str], universe: set[str]) -> list[str]:
    problems: list[str] = []
    texts = {f: strip_comments_and_strings(f.read_text()) for f in files}
    local: set[str] = set()
    for text in texts.values():
        for pat in DEFINES:
            local.update(pat.findall(text))
    for f, text in texts.items():
        rel = f.relative_to(ROOT) if f.is_relative_to(ROOT) else f
        for lineno, line in enumerate(text.splitlines(), 1):
            where = f"{rel}:{lineno}"
            if TOOLCHAIN_IFDEF.search(line):
                problems.append(f"{where}: toolchain #if in kernel code; select the header by include path instead")
            m = RAW_CCE.search(line)
            if m:
                problems.append(f"{where}: raw CCE intrinsic '{m.group(1)}' is not emulated; use the AscendC API")
            for pipe in PIPE_NAME.findall(line):
                if pipe not in ALLOWED_PIPES:
                    problems.append(f"{where}: '{pipe}' is not emulated (allowed: {', '.join(sorted(ALLOWED_PIPES))})")
            for name in QUALIFIED.findall(line):
                if name not in allow:
                    problems.append(f"{where}: AscendC::{name} is not in csrc/ascend/emu/ALLOWLIST")
            for name in IDENT.findall(line):
                if name in universe and name not in allow and name not in local:
                    if re.search(rf"AscendC::{name}\b", line):
                        continue  # reported above
                    problems.append(f"{where}: AscendC API '{name}' is not in csrc/ascend/emu/ALLOWLIST")
    return problems


def check_kernel_types(files: list[Path]) -> list[str]:
    problems = []
    sync_all = any("SyncAll" in strip_comments_and_strings(f.read_text()) for f in files if f.suffix == ".h")
    for f in files:
        if f.suffix != ".cpp":
            continue
        text = strip_comments_and_strings(f.read_text())
        entries = len(re.findall(r"__global__\s+__aicore__", text))
        types = re.findall(r"KERNEL_TASK_TYPE_DEFAULT\((\w+)\)", text)
        rel = f.relative_to(ROOT) if f.is_relative_to(ROOT) else f
        if len(types) < entries:
            problems.append(f"{rel}: {entries} kernel entries but {len(types)} KERNEL_TASK_TYPE_DEFAULT declarations")
        uses_sync = "SyncAll" in text or (
            sync_all
            and any(
                h.name in f.read_text()
                for h in files
                if h.suffix == ".h" and "SyncAll" in strip_comments_and_strings(h.read_text())
            )
        )
        if uses_sync and any(t != "KERNEL_TYPE_MIX_AIV_1_0" for t in types):
            problems.append(f"{rel}: the kernel calls SyncAll; its entries need KERNEL_TYPE_MIX_AIV_1_0")
    return problems


def check_allowlist_emulated(allow: set[str]) -> list[str]:
    emu_text = "\n".join(p.read_text() for p in sorted(EMU.glob("*.h")))
    idents = set(IDENT.findall(emu_text))
    return [f"csrc/ascend/emu/ALLOWLIST: '{n}' is not defined by the emulator headers" for n in sorted(allow - idents)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", help="kernel files or directories (default: csrc/ascend/kernels)")
    args = ap.parse_args(argv)
    allow = load_names(EMU / "ALLOWLIST")
    universe = load_names(EMU / "ascendc_api_names.txt")
    files = kernel_files(args.paths)
    problems = check_allowlist_emulated(allow) + lint(files, allow, universe) + check_kernel_types(files)
    for p in problems:
        print(p)
    if problems:
        print(f"lint_ascend_kernels: {len(problems)} problem(s) in {len(files)} file(s)")
        return 1
    print(f"lint_ascend_kernels: {len(files)} kernel file(s) use only emulated AscendC API")
    return 0


if __name__ == "__main__":
    sys.exit(main())
