// The Chorus CPU kernels, compiled for generic x86-64, AVX2 and AVX-512 in
// this one file (GCC target attributes on every kernel function; see
// chorus_kernel_impl.h), and the run-time choice between them, which follows
// the msda kernels' (npu_ops.cpu_capability(), NPU_OPS_CPU_CAPABILITY).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu_ref/chorus_kernel.h"
#include "cpu_ref/cpu_capability.h"

// 64-byte vectors in the generic build change the (internal) calling convention; nothing
// here is visible outside this file.
#pragma GCC diagnostic ignored "-Wpsabi"

#define NPU_OPS_CHORUS_ISA chorus_generic
#define NPU_OPS_CHORUS_NAME "generic"
#define NPU_OPS_CHORUS_TARGET
#include "cpu_ref/chorus_kernel_impl.h"
#undef NPU_OPS_CHORUS_ISA
#undef NPU_OPS_CHORUS_NAME
#undef NPU_OPS_CHORUS_TARGET

#define NPU_OPS_CHORUS_ISA chorus_avx2
#define NPU_OPS_CHORUS_NAME "avx2"
#define NPU_OPS_CHORUS_TARGET __attribute__((target("avx2,fma,f16c")))
#include "cpu_ref/chorus_kernel_impl.h"
#undef NPU_OPS_CHORUS_ISA
#undef NPU_OPS_CHORUS_NAME
#undef NPU_OPS_CHORUS_TARGET

#define NPU_OPS_CHORUS_ISA chorus_avx512
#define NPU_OPS_CHORUS_NAME "avx512"
#define NPU_OPS_CHORUS_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#include "cpu_ref/chorus_kernel_impl.h"
#undef NPU_OPS_CHORUS_ISA
#undef NPU_OPS_CHORUS_NAME
#undef NPU_OPS_CHORUS_TARGET

namespace npu_ops::cpu {

const ChorusKernels& chorus_kernels() {
  static const ChorusKernels& k = []() -> const ChorusKernels& {
    const char* name = msda_kernels().name;  // the process-wide choice
    if (std::strcmp(name, "avx512") == 0) return chorus_avx512::chorus_kernels_table();
    if (std::strcmp(name, "avx2") == 0) return chorus_avx2::chorus_kernels_table();
    return chorus_generic::chorus_kernels_table();
  }();
  return k;
}

}  // namespace npu_ops::cpu
