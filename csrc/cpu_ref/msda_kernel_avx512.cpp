// msda CPU kernels for the avx512 instruction set (flags in CMakeLists.txt).
#define NPU_OPS_CPU_CAPABILITY avx512
#include "cpu_ref/msda_kernel_impl.h"
