#!/usr/bin/env bash
# Build a CPU-debug driver against the real AscendC API implementation (asc-devkit) with the
# npu_ops intrinsic model under it. See README.md.
#   tools/ascend_intrinsic_model/build.sh <asc-devkit> <asc-tools> <driver.cpp> <out exe>
set -euo pipefail
[[ $# -eq 4 ]] || { echo "usage: $0 <asc-devkit dir> <asc-tools dir> <driver.cpp> <out exe>" >&2; exit 2; }
devkit=$(cd "$1" && pwd); tools=$(cd "$2" && pwd); src=$3; out=$4
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
gen=${IM_GEN_DIR:-${TMPDIR:-/tmp}/ascend_intrinsic_model_gen}
mkdir -p "$gen/kernel_tiling"
[[ -s $gen/kernel_tiling/kernel_tiling.h ]] || python3 "$devkit/impl/adv_api/cmake/scripts/gen_kernel_tiling_data_def.py" \
    "$devkit/include/adv_api" "$gen/kernel_tiling/kernel_tiling.h" >/dev/null
# Every builtin the API headers may call, minus those the model implements (names defined in include/).
impl=$(grep -v "^#" "$here/implemented.txt")
grep -oE 'NPU_OPS_STUB_BUILTIN\([a-zA-Z_0-9]+\)' "$repo/tools/ascend_typecheck/stubs/stub_builtins.inc" \
    | sed 's/NPU_OPS_STUB_BUILTIN(\(.*\))/\1/' | grep -vxF -f <(echo "$impl") \
    | sed 's/.*/NPU_OPS_STUB_BUILTIN(&)/' > "$gen/missing_builtins.inc"
defs=(-DASCENDC_CPU_DEBUG=1 -D__CCE_KT_TEST__=1 -D__NPU_ARCH__=2201 -D__DAV_C220__ -D__DAV_C220_VEC__ -D__DAV_VEC__
      -D__CCE_AICORE__=220 -DASCENDC_NPUCHK_OFF)
incs=(-I"$repo" -isystem "$here/include" -isystem "$repo/tools/ascend_typecheck/stubs" -isystem "$gen")
for d in include include/basic_api include/utils include/adv_api include/c_api include/simt_api \
         impl impl/basic_api impl/utils impl/adv_api impl/c_api impl/simt_api; do incs+=(-isystem "$devkit/$d"); done
incs+=(-isystem "$devkit" -isystem "$tools/cpudebug/include" -isystem "$tools/cpudebug/utils" \
       -isystem "$tools/cpudebug/utils/include")
${CXX:-g++} -std=c++17 -O1 "${defs[@]}" "${incs[@]}" ${IM_CXXFLAGS:-} "$src" "$here/runtime.cpp" \
    "$tools/cpudebug/src/acl_stub/kernel_fp16.cpp" -o "$out" -lpthread
