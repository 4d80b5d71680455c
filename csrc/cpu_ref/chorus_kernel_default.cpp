// Chorus CPU kernels for the default instruction set (flags in CMakeLists.txt): a translation unit of
// its own, like the msda kernels, so the whole TU (and every helper GCC inlines) targets one ISA.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu_ref/chorus_kernel.h"

#define NPU_OPS_CHORUS_ISA chorus_generic
#define NPU_OPS_CHORUS_NAME "generic"
#define NPU_OPS_CHORUS_TARGET
#define NPU_OPS_CHORUS_LANES 4  // floats per vector (see chorus_kernel_impl.h)
#include "cpu_ref/chorus_kernel_impl.h"
