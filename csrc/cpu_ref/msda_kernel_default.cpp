// msda CPU kernels for the generic instruction set (flags in CMakeLists.txt).
#define NPU_OPS_CPU_CAPABILITY generic
#include "cpu_ref/msda_kernel_impl.h"
