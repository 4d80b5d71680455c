#include "cpu_ref/cpu_capability.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdlib>
#include <string>

namespace npu_ops::cpu {
namespace {

int supported_level() {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return avx512 ? 2 : (avx2 ? 1 : 0);
}

int chosen_level() {
  int level = supported_level();
  if (const char* env = std::getenv("NPU_OPS_CPU_CAPABILITY")) {
    const std::string want(env);
    int asked = -1;
    if (want == "generic") asked = 0;
    if (want == "avx2") asked = 1;
    if (want == "avx512") asked = 2;
    TORCH_CHECK(asked >= 0, "NPU_OPS_CPU_CAPABILITY must be generic, avx2 or avx512, got '", want, "'");
    TORCH_CHECK(asked <= level, "NPU_OPS_CPU_CAPABILITY=", want, " is not supported by this CPU");
    level = asked;
  }
  return level;
}

}  // namespace

const MsdaKernels& msda_kernels() {
  static const MsdaKernels& k = []() -> const MsdaKernels& {
    switch (chosen_level()) {
      case 2: return avx512::msda_kernels();
      case 1: return avx2::msda_kernels();
      default: return generic::msda_kernels();
    }
  }();
  return k;
}

}  // namespace npu_ops::cpu

TORCH_LIBRARY_IMPL(npu_ops, CompositeExplicitAutograd, m) {
  m.impl("_cpu_capability", []() -> std::string { return npu_ops::cpu::msda_kernels().name; });
}
