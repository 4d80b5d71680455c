#!/usr/bin/env bash
# Host-glue compile check of the NPU library, on a machine without CANN or an NPU.
#
# Compiles csrc/ascend/host/*.cpp (and the csrc/common/*.cpp they link) exactly as the NPU
# build does, against the installed torch and the C++ headers of the matching torch-npu
# wheel, with every kernel launch function aclrtlaunch_<entry> declared from the kernel
# sources (csrc/ascend/kernels/*.cpp). Then links them into a shared object and checks that
# every torch_npu symbol they use (c10_npu::, at_npu::) is exported by libtorch_npu.so, and
# every other symbol by torch, libstdc++/libc, the CANN runtime (acl*) or the kernels.
#
# The torch-npu wheel is downloaded with `pip download --no-deps` into a cache directory and
# unpacked there; it is NEVER installed (installed without CANN, it breaks `import torch`).
#
# Usage: .ci/ascend_host_check.sh        (exit status 0 = pass)
# Environment:
#   PYTHON               interpreter whose torch is checked against (default: python)
#   CXX                  host compiler (default: g++)
#   TORCH_NPU_VERSION    torch-npu version to check against (default: torch's X.Y.Z, newest post release)
#   NPU_OPS_CACHE_DIR    wheel cache (default: ${XDG_CACHE_HOME:-$HOME/.cache}/npu_ops/torch_npu)
#   HOST_CHECK_KEEP=1    keep the build directory (printed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
PYTHON=${PYTHON:-python}
CXX=${CXX:-g++}

fail() {
  echo "ascend_host_check: FAIL: $*" >&2
  exit 1
}

# --- (a) the installed torch ------------------------------------------------------------------
read -r torch_version torch_abi torch_dir py_tag < <("$PYTHON" - <<'EOF'
import os, sys, torch
print(torch.__version__.split("+")[0], int(torch.compiled_with_cxx11_abi()), os.path.dirname(torch.__file__),
      f"cp{sys.version_info[0]}{sys.version_info[1]}")
EOF
) || fail "cannot import torch with $PYTHON"
npu_spec=${TORCH_NPU_VERSION:-${torch_version}.*}
echo "== torch ${torch_version} (${torch_dir}, _GLIBCXX_USE_CXX11_ABI=${torch_abi}); torch-npu==${npu_spec}"

# --- (b) torch-npu headers from the wheel, cached, never installed ----------------------------
cache=${NPU_OPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/npu_ops/torch_npu}
wheel_dir="${cache}/wheels"
mkdir -p "$wheel_dir"
find_wheel() {
  # Newest cached wheel matching the spec and this Python (post releases sort last).
  local prefix=${npu_spec%.\*}
  find "$wheel_dir" -maxdepth 1 -name "torch_npu-${prefix}*-${py_tag}-*.whl" | sort -V | tail -n 1
}
wheel=$(find_wheel)
if [[ -z "$wheel" || -n "${TORCH_NPU_VERSION:-}" && "$wheel" != *"torch_npu-${TORCH_NPU_VERSION}-"* ]]; then
  echo "== pip download torch-npu==${npu_spec} --no-deps -> ${wheel_dir}"
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: -d "$wheel_dir" "torch-npu==${npu_spec}" ||
    fail "pip download torch-npu==${npu_spec} failed (no wheel for torch ${torch_version} / ${py_tag}?" \
      "set TORCH_NPU_VERSION to pick another)"
  wheel=$(find_wheel)
fi
[[ -n "$wheel" ]] || fail "no torch-npu wheel in ${wheel_dir}"
npu_version=$(basename "$wheel" | cut -d- -f2)
npu_root="${cache}/unpacked/$(basename "$wheel" .whl)"
npu_dir="${npu_root}/torch_npu"
if [[ ! -f "${npu_dir}/.complete" ]]; then
  echo "== unpacking $(basename "$wheel") (headers + libtorch_npu.so) -> ${npu_root}"
  rm -rf "$npu_root"
  "$PYTHON" - "$wheel" "$npu_root" <<'EOF'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("torch_npu/include/") or n == "torch_npu/lib/libtorch_npu.so"]
    z.extractall(dest, names)
EOF
  touch "${npu_dir}/.complete"
fi
for f in include/torch_npu/csrc/framework/OpCommand.h include/torch_npu/csrc/core/npu/NPUStream.h \
  include/third_party/acl/inc/acl/acl_rt.h lib/libtorch_npu.so; do
  [[ -f "${npu_dir}/$f" ]] || fail "torch-npu ${npu_version} wheel has no torch_npu/$f"
done
echo "== torch-npu ${npu_version}: ${npu_dir}"

build=$(mktemp -d "${TMPDIR:-/tmp}/npu_ops_host_check.XXXXXX")
if [[ "${HOST_CHECK_KEEP:-0}" != 1 ]]; then
  trap 'rm -rf "$build"' EXIT
fi

# --- (c) aclrtlaunch_<entry> declarations from the kernel sources -------------------------------
shopt -s nullglob
kernels=(csrc/ascend/kernels/*.cpp)
host_srcs=(csrc/ascend/host/*.cpp)
common_srcs=(csrc/ascend/host/tiling/*.cpp csrc/common/*.cpp)  # as in csrc/ascend/CMakeLists.txt
shopt -u nullglob
[[ ${#host_srcs[@]} -gt 0 ]] || fail "no host sources in csrc/ascend/host"
kernel_includes=(-I csrc/ascend -I csrc/ascend/kernels -I csrc)
gen=(csrc/ascend/host/gen_launch_decls.py --cxx "$CXX" "${kernel_includes[@]}" --kernels "${kernels[@]}")
echo "== kernel entries (${#kernels[@]} kernel files)"
"$PYTHON" "${gen[@]}" --list --header "${build}/gen/npu_ops_aclrtlaunch.h" | sed 's/^/   /' ||
  fail "scanning csrc/ascend/kernels for entries"
n_entries=$(grep -c '^uint32_t aclrtlaunch_' "${build}/gen/npu_ops_aclrtlaunch.h" || true)
# The CANN >= 9 shims and the CANN < 9 consistency check must at least generate.
for k in "${kernels[@]}"; do
  "$PYTHON" "${gen[@]}" --asc-shim "$k" "${build}/gen/$(basename "$k" .cpp)_launch.asc" >/dev/null ||
    fail "generating the Ascend C launch shim of $k"
done
"$PYTHON" "${gen[@]}" --legacy-check "${build}/gen/aclrtlaunch_consistency.cpp" >/dev/null ||
  fail "generating the legacy consistency check"

# --- (d) compile, as the NPU build does ----------------------------------------------------------
cxxflags=(-std=c++17 -fPIC -O0 -Wall -Wextra -Wno-unused-parameter -Werror "-D_GLIBCXX_USE_CXX11_ABI=${torch_abi}"
  -I csrc -I csrc/ascend -I "${build}/gen"
  -isystem "${torch_dir}/include" -isystem "${torch_dir}/include/torch/csrc/api/include"
  -isystem "${npu_dir}/include" -isystem "${npu_dir}/include/third_party/acl/inc")
objs=()
for src in "${host_srcs[@]}" "${common_srcs[@]}"; do
  obj="${build}/obj/$(echo "$src" | tr / _).o"
  mkdir -p "${build}/obj"
  t0=$(date +%s)
  "$CXX" "${cxxflags[@]}" -c "$src" -o "$obj" || fail "compiling $src against torch ${torch_version} + torch-npu ${npu_version}"
  echo "== compiled ${src} ($(($(date +%s) - t0)) s)"
  objs+=("$obj")
done

# --- (e) link, and check that every symbol used is exported ------------------------------------
so="${build}/_C_npu_check.so"
"$CXX" -shared -o "$so" "${objs[@]}" -L "${torch_dir}/lib" -L "${npu_dir}/lib" -ltorch_npu -ltorch -ltorch_cpu -lc10 \
  2> "${build}/link.log" || {
  cat "${build}/link.log" >&2
  fail "linking the host objects against libtorch_npu.so"
}
"$PYTHON" - "$so" "${npu_dir}/lib/libtorch_npu.so" "${torch_dir}/lib" <<'EOF' || fail "symbol check"
import subprocess, sys
from pathlib import Path

so, npu_lib, torch_lib = sys.argv[1], sys.argv[2], Path(sys.argv[3])

def nm(path, *flags):
    out = subprocess.run(["nm", "-D", *flags, path], capture_output=True, text=True, check=True).stdout
    return [line.split() for line in out.splitlines() if line.strip()]

def exported(path):
    return {f[-1].split("@")[0] for f in nm(path, "--defined-only") if len(f) >= 3}

def demangle(names):
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return dict(zip(names, out.splitlines()))

undefined = [f[-1] for f in nm(so, "--undefined-only") if f[0] == "U"]
npu_exports = exported(npu_lib)
torch_exports = set()
for name in ("libtorch.so", "libtorch_cpu.so", "libc10.so", "libtorch_python.so"):
    if (torch_lib / name).exists():
        torch_exports |= exported(torch_lib / name)
plain = [u.split("@")[0] for u in undefined]
readable = demangle(plain)
system = ("GLIBC_", "GLIBCXX_", "CXXABI_", "GCC_")
npu_used, missing, acl, launch = [], [], [], []
for full, name in zip(undefined, plain):
    text = readable[name]
    if "@" in full and full.split("@")[-1].startswith(system) or text.startswith(("std::", "__cxa", "__gxx")):
        continue  # libc / libstdc++ (std:: may bind to a copy exported by libtorch_npu.so: harmless)
    if "c10_npu" in text or "at_npu" in text or name in npu_exports and name not in torch_exports:
        (npu_used if name in npu_exports else missing).append(text)
    elif name.startswith("aclrtlaunch_"):
        launch.append(name)
    elif name.startswith(("acl", "Acl")):
        acl.append(name)
    elif name not in torch_exports and name not in npu_exports:
        missing.append(text)
print(f"== symbols: {len(npu_used)} from libtorch_npu.so, all exported; {len(acl)} CANN runtime (acl*): "
      f"{', '.join(sorted(acl)) or '-'}; {len(launch)} kernel launch functions")
# CANN functions that libtorch_npu.so links as well exist wherever torch_npu loads.
npu_acl = {f[-1].split("@")[0] for f in nm(npu_lib, "--undefined-only")}
for name in sorted(set(acl) - npu_acl):
    print(f"   warning: {name} is not linked by libtorch_npu.so: check that the oldest supported CANN has it")
for s in sorted(npu_used):
    print(f"   {s}")
if missing:
    print("ascend_host_check: symbols exported by neither libtorch_npu.so nor torch:", file=sys.stderr)
    for s in sorted(missing):
        print(f"   {s}", file=sys.stderr)
    sys.exit(1)
EOF

echo "== ascend host check: PASS (torch ${torch_version}, torch-npu ${npu_version}, ${#kernels[@]} kernel files," \
  "${n_entries} entries, $((${#host_srcs[@]} + ${#common_srcs[@]})) translation units) in $(($(date +%s) - start)) s"
if [[ "${HOST_CHECK_KEEP:-0}" == 1 ]]; then echo "   build dir: ${build}"; fi
