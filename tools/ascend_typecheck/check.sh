#!/usr/bin/env bash
# Type-check AscendC kernel sources against the real AscendC API headers (asc-devkit +
# asc-tools cpudebug), without CANN. See README.md in this directory.
#
#   tools/ascend_typecheck/check.sh <asc-devkit dir> <asc-tools dir> <file.cpp>...
#
# Runs `g++ -std=c++17 -fsyntax-only` in CPU-debug mode; the closed instruction model
# (stub_fun.h) and securec.h are replaced by the stand-ins in stubs/. Exit status is
# non-zero if any file fails. Extra g++ flags can be passed in $TYPECHECK_CXXFLAGS.
set -euo pipefail

if [[ $# -lt 3 ]]; then
    echo "usage: $0 <asc-devkit dir> <asc-tools dir> <file.cpp>..." >&2
    exit 2
fi
devkit=$(cd "$1" && pwd)
tools=$(cd "$2" && pwd)
shift 2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cxx=${CXX:-g++}

for f in "$devkit/include/kernel_operator.h" "$tools/cpudebug/include/kern_fwk.h"; do
    [[ -f $f ]] || { echo "check.sh: $f not found (wrong asc-devkit/asc-tools dir?)" >&2; exit 2; }
done

# kernel_tiling/kernel_tiling.h is generated at build time in asc-devkit; generate it
# into a cache dir outside the repository (it is asc-devkit code, never committed).
gen=${TYPECHECK_GEN_DIR:-${TMPDIR:-/tmp}/ascend_typecheck_gen}
mkdir -p "$gen/kernel_tiling"
if [[ ! -s $gen/kernel_tiling/kernel_tiling.h ]]; then
    python3 "$devkit/impl/adv_api/cmake/scripts/gen_kernel_tiling_data_def.py" \
        "$devkit/include/adv_api" "$gen/kernel_tiling/kernel_tiling.h" >/dev/null
fi

defs=(-DASCENDC_CPU_DEBUG=1 -D__CCE_KT_TEST__=1 -D__NPU_ARCH__=2201 -D__DAV_C220__
      -D__DAV_C220_VEC__ -D__DAV_VEC__ -D__CCE_AICORE__=220)
incs=(-I"$repo" -isystem "$here/stubs" -isystem "$gen")
for d in include include/basic_api include/utils include/adv_api include/c_api include/simt_api \
         impl impl/basic_api impl/utils impl/adv_api impl/c_api impl/simt_api; do
    incs+=(-isystem "$devkit/$d")
done
incs+=(-isystem "$devkit")
incs+=(-isystem "$tools/cpudebug/include" -isystem "$tools/cpudebug/utils" -isystem "$tools/cpudebug/utils/include")

status=0
for src in "$@"; do
    # Headers from the API are system headers for us: only our own code gets warnings.
    if $cxx -std=c++17 -fsyntax-only -Wall -Wno-unused-variable -Wno-unused-function "${defs[@]}" \
        "${incs[@]}" ${TYPECHECK_CXXFLAGS:-} "$src"; then
        echo "OK    $src"
    else
        echo "FAIL  $src" >&2
        status=1
    fi
done
exit $status
