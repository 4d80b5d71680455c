// msda CPU kernels for the avx2 instruction set (flags in CMakeLists.txt).
#define NPU_OPS_CPU_CAPABILITY avx2
#include "cpu_ref/msda_kernel_impl.h"
