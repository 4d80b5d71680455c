// Run-time choice of the instruction set the CPU kernels use.
#pragma once

#include "cpu_ref/msda_kernel.h"

namespace npu_ops::cpu {

// The best variant this CPU supports, or the one named by the environment
// variable NPU_OPS_CPU_CAPABILITY (generic | avx2 | avx512), which may only
// lower it. Chosen once per process.
const MsdaKernels& msda_kernels();

}  // namespace npu_ops::cpu
