"""Generate the kernel launch declarations the NPU host code is compiled against.

Every kernel entry in ``csrc/ascend/kernels/*.cpp`` is an
``extern "C" __global__ __aicore__ void <name>(GM_ADDR ..., GM_ADDR tiling)`` definition.
The host code (``csrc/ascend/host/*.cpp``, plain C++ compiled by the host compiler) never
sees those kernels: it calls ``aclrtlaunch_<name>(uint32_t numBlocks, aclrtStream stream,
void* ..., void* tiling)``, the launch function that CANN's legacy ``ascendc_library`` flow
generates for each entry (``aclrtlaunch_<name>.h``; pointer parameters become ``void*``,
scalars keep their type). This script produces:

``--header OUT``
    one header declaring ``aclrtlaunch_<name>`` for every entry (used by every build flow
    and by the CI host-glue compile check, which has no CANN).
``--asc-shim KERNEL OUT``
    for the CANN >= 9 ``find_package(ASC)`` flow, which generates no such functions: an
    Ascend C translation unit that includes KERNEL and defines ``aclrtlaunch_<name>`` for
    each of its entries with the ``<<<numBlocks, 0, stream>>>`` launch.
``--legacy-check OUT``
    for the CANN < 9 flow: a translation unit that includes our header and every
    ``aclrtlaunch_<name>.h`` CANN generated, so a prototype mismatch fails the build.
``--list``
    print ``<file>: <entry>(<params>)`` for every entry found.

Entries are found after preprocessing with the host compiler (``$CXX``, default ``g++``),
so entries stamped out by macros are found too. AscendC headers are replaced by empty
stand-ins for this scan only (the scan reads names and parameter lists, not the API).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

_ENTRY = re.compile(r'extern\s+"C"\s+((?:__\w+__\s+)+)void\s+(\w+)\s*\(([^()]*)\)\s*\{')
_MISSING = re.compile(r"fatal error: ([^:\n]+): No such file or directory")
_MAX_STUBS = 64


@dataclass(frozen=True)
class Param:
    type: str  # as written in the kernel (after preprocessing), e.g. "GM_ADDR"
    name: str

    @property
    def is_pointer(self) -> bool:
        return "*" in self.type or "GM_ADDR" in self.type or "__gm__" in self.type

    @property
    def launch_type(self) -> str:
        """The parameter's type in aclrtlaunch_<entry>: void* for GM pointers, else as written."""
        return "void*" if self.is_pointer else self.type


@dataclass(frozen=True)
class Entry:
    name: str
    params: tuple[Param, ...]
    source: Path

    def launch_prototype(self) -> str:
        params = ["uint32_t numBlocks", "aclrtStream stream"]
        params += [f"{p.launch_type} {p.name}" for p in self.params]
        return f"uint32_t aclrtlaunch_{self.name}({', '.join(params)})"


def _parse_params(text: str, where: str) -> tuple[Param, ...]:
    text = " ".join(text.split())
    if text in ("", "void"):
        return ()
    params = []
    for i, raw in enumerate(text.split(",")):
        raw = raw.strip()
        m = re.fullmatch(r"(.*?[\s*&])(\w+)", raw)
        if m is None or not m.group(1).strip():
            raise SystemExit(f"gen_launch_decls: {where}: cannot parse parameter {i} '{raw}' (unnamed?)")
        params.append(Param(" ".join(m.group(1).split()), m.group(2)))
    return tuple(params)


def _preprocess(src: Path, cxx: str, include_dirs: list[Path]) -> str:
    """Preprocess src with cxx; missing headers (AscendC, CANN) become empty stand-ins."""
    with tempfile.TemporaryDirectory(prefix="npu_ops_scan_") as stubs:
        for name in ("kernel_operator.h", "tikicpulib.h"):
            Path(stubs, name).touch()
        for _ in range(_MAX_STUBS):
            cmd = [cxx, "-E", "-P", "-w", "-x", "c++", "-std=c++17", "-DNPU_OPS_KERNEL_SCAN=1"]
            cmd += [f"-I{d}" for d in include_dirs] + [f"-I{stubs}", str(src)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode == 0:
                return res.stdout
            missing = _MISSING.search(res.stderr)
            if missing is None:
                raise SystemExit(f"gen_launch_decls: preprocessing {src} failed:\n{res.stderr}")
            stub = Path(stubs, missing.group(1))
            if stub.exists():
                raise SystemExit(f"gen_launch_decls: cannot stand in for header {missing.group(1)} in {src}")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.touch()
    raise SystemExit(f"gen_launch_decls: {src} includes more than {_MAX_STUBS} unavailable headers")


def scan(sources: list[Path], cxx: str, include_dirs: list[Path]) -> list[Entry]:
    """All kernel entries defined in sources, in file order; duplicate names are an error."""
    entries: dict[str, Entry] = {}
    for src in sources:
        text = _preprocess(src, cxx, include_dirs)
        for m in _ENTRY.finditer(text):
            quals, name, params = m.group(1).split(), m.group(2), m.group(3)
            if "__global__" not in quals:
                continue
            entry = Entry(name, _parse_params(params, f"{src.name}: {name}"), src)
            if name in entries and entries[name].source != src:
                raise SystemExit(f"gen_launch_decls: entry {name} is defined in {entries[name].source} and {src}")
            entries[name] = entry
    return list(entries.values())


def header_text(entries: list[Entry], sources: list[Path]) -> str:
    lines = [
        "// Generated by csrc/ascend/host/gen_launch_decls.py from",
        *(f"//   {s.name}" for s in sources),
        "// Do not edit. Declares aclrtlaunch_<entry> for every AscendC kernel entry: CANN's legacy",
        "// ascendc_library flow defines these functions, and on CANN >= 9 the generated Ascend C",
        "// shims (gen_launch_decls.py --asc-shim) define them with the <<<>>> launch.",
        "#pragma once",
        "",
        "#include <cstdint>",
        "",
        '#include "acl/acl_base.h"  // aclrtStream',
        "",
        'extern "C" {',
        *(e.launch_prototype() + ";" for e in entries),
        '}  // extern "C"',
        "",
        "// X-macro over every entry name, e.g. to check at startup that a name exists.",
        "#define NPU_OPS_FOR_EACH_KERNEL_ENTRY(X) \\",
        *(f"  X({e.name}) \\" for e in entries),
        "  /* end */",
        "",
    ]
    return "\n".join(lines)


def shim_text(kernel: Path, entries: list[Entry]) -> str:
    lines = [
        f"// Generated by csrc/ascend/host/gen_launch_decls.py from {kernel.name}. Do not edit.",
        "// CANN >= 9 (find_package(ASC)) flow: the kernel source is compiled as Ascend C here, and each",
        "// entry gets the aclrtlaunch_<entry> function that CANN's legacy flow would have generated,",
        "// so the host code links against one interface whichever CANN built the kernels.",
        f'#include "{kernel.resolve()}"',
        "",
        '#include "acl/acl.h"',
        "",
    ]
    for e in entries:
        args = ", ".join(f"({p.type}){p.name}" if p.is_pointer else p.name for p in e.params)
        lines += [
            f'extern "C" {e.launch_prototype()} {{',
            f"  {e.name}<<<numBlocks, 0, stream>>>({args});",
            "  return static_cast<uint32_t>(aclrtGetLastError(ACL_RT_THREAD_LEVEL));",
            "}",
            "",
        ]
    return "\n".join(lines)


def legacy_check_text(entries: list[Entry]) -> str:
    lines = [
        "// Generated by csrc/ascend/host/gen_launch_decls.py. Do not edit.",
        "// CANN < 9 flow: our aclrtlaunch_<entry> prototypes next to the ones CANN generated;",
        "// any difference is a conflicting declaration, i.e. a compile error.",
        '#include "npu_ops_aclrtlaunch.h"',
        *(f'#include "aclrtlaunch_{e.name}.h"' for e in entries),
        "",
    ]
    return "\n".join(lines)


def _write_if_changed(path: Path, text: str) -> None:
    """Keep the timestamp when nothing changed, so dependants are not rebuilt."""
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernels", nargs="*", type=Path, required=True, help="kernel sources to scan")
    ap.add_argument("-I", dest="include_dirs", action="append", type=Path, default=[], help="include dir for the scan")
    ap.add_argument("--cxx", default=os.environ.get("CXX") or "g++", help="host compiler used to preprocess")
    ap.add_argument("--header", type=Path, help="write the aclrtlaunch_<entry> declarations here")
    ap.add_argument("--asc-shim", nargs=2, type=Path, metavar=("KERNEL", "OUT"), action="append", default=[])
    ap.add_argument("--legacy-check", type=Path, help="write the CANN < 9 prototype consistency check here")
    ap.add_argument("--list", action="store_true", help="print the entries found")
    args = ap.parse_args(argv)

    if shutil.which(args.cxx) is None and not Path(args.cxx).is_file():
        raise SystemExit(f"gen_launch_decls: compiler {args.cxx!r} not found (set CXX or --cxx)")
    sources = sorted({k.resolve() for k in args.kernels})
    entries = scan(sources, args.cxx, args.include_dirs)
    if args.list:
        for e in entries:
            print(f"{e.source.name}: {e.name}({', '.join(p.launch_type for p in e.params)})")
    if args.header:
        _write_if_changed(args.header, header_text(entries, sources))
    if args.legacy_check:
        _write_if_changed(args.legacy_check, legacy_check_text(entries))
    for kernel, out in args.asc_shim:
        own = [e for e in entries if e.source == kernel.resolve()]
        if not own:
            raise SystemExit(f"gen_launch_decls: no kernel entry in {kernel} (is it listed in --kernels?)")
        _write_if_changed(out, shim_text(kernel, own))
    return 0


if __name__ == "__main__":
    sys.exit(main())
