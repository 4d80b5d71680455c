// The run-time choice between the Chorus CPU kernels compiled for generic x86-64, AVX2 and
// AVX-512 (chorus_kernel_<isa>.cpp), which follows the msda kernels' (npu_ops.cpu_capability(),
// NPU_OPS_CPU_CAPABILITY).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu_ref/chorus_kernel.h"
#include "cpu_ref/cpu_capability.h"

namespace npu_ops::cpu {
// Defined in chorus_kernel_{default,avx2,avx512}.cpp, each compiled with its ISA's flags.
namespace chorus_generic {
const ChorusKernels& chorus_kernels_table();
}
namespace chorus_avx2 {
const ChorusKernels& chorus_kernels_table();
}
namespace chorus_avx512 {
const ChorusKernels& chorus_kernels_table();
}
}  // namespace npu_ops::cpu

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
